package slackfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

const (
	botToken = "xoxb-1-fake-bot-token"
	appToken = "xapp-1-fake-app-token"
)

func newFake(t *testing.T) (*slackfake.Server, *slack.Client) {
	t.Helper()
	fake := slackfake.New(botToken)
	t.Cleanup(fake.Close)
	return fake, slack.New(botToken, slack.OptionAPIURL(fake.APIURL()))
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func wantSlackError(t *testing.T, err error, code string) {
	t.Helper()
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) || se.Err != code {
		t.Fatalf("error = %v (%T), want slack.SlackErrorResponse %q", err, err, code)
	}
}

func TestAuthTest(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)

	resp, err := api.AuthTest()
	if err != nil {
		t.Fatalf("AuthTest: %v", err)
	}
	if resp.TeamID != slackfake.TeamID || resp.UserID != slackfake.BotUserID || resp.BotID != slackfake.BotID {
		t.Errorf("AuthTest = %+v, want team %s user %s bot %s", resp, slackfake.TeamID, slackfake.BotUserID, slackfake.BotID)
	}

	wrong := slack.New("xoxb-wrong", slack.OptionAPIURL(fake.APIURL()))
	_, err = wrong.AuthTest()
	wantSlackError(t, err, "invalid_auth")

	app := slack.New(appToken, slack.OptionAPIURL(fake.APIURL()))
	fake.SetAppToken(appToken)
	_, err = app.AuthTest()
	wantSlackError(t, err, "not_allowed_token_type")

	fake.InvalidateToken()
	_, err = api.AuthTest()
	wantSlackError(t, err, "invalid_auth")
	if got := fake.Calls("auth.test"); got != 4 {
		t.Errorf("Calls(auth.test) = %d, want 4", got)
	}
}

func TestPostMessage(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	fake.AddChannel("C0OUT", false)

	tsRE := regexp.MustCompile(`^\d{10}\.\d{6}$`)
	ch, ts1, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("first", false))
	if err != nil {
		t.Fatalf("PostMessage: %v", err)
	}
	if ch != slackfake.DefaultChannel || !tsRE.MatchString(ts1) {
		t.Fatalf("PostMessage = (%q, %q), want channel %s and a Slack ts", ch, ts1, slackfake.DefaultChannel)
	}
	_, ts2, err := api.PostMessage(slackfake.DefaultChannel,
		slack.MsgOptionText("reply", false), slack.MsgOptionTS(ts1), slack.MsgOptionBroadcast())
	if err != nil {
		t.Fatalf("PostMessage reply: %v", err)
	}
	if ts2 <= ts1 {
		t.Errorf("second ts %q not after first %q", ts2, ts1)
	}

	msgs := fake.Messages(slackfake.DefaultChannel)
	if len(msgs) != 2 {
		t.Fatalf("Messages = %d, want 2", len(msgs))
	}
	if msgs[0].Text != "first" || msgs[0].TS != ts1 || msgs[0].ThreadTS != "" || msgs[0].User != slackfake.BotUserID {
		t.Errorf("first message = %+v", msgs[0])
	}
	if msgs[1].ThreadTS != ts1 || !msgs[1].ReplyBroadcast {
		t.Errorf("reply thread_ts=%q broadcast=%v, want %q true", msgs[1].ThreadTS, msgs[1].ReplyBroadcast, ts1)
	}

	tests := []struct {
		name    string
		channel string
		opts    []slack.MsgOption
		want    string
	}{
		{"unknown channel", "C0NOPE", []slack.MsgOption{slack.MsgOptionText("x", false)}, "channel_not_found"},
		{"bot not in channel", "C0OUT", []slack.MsgOption{slack.MsgOptionText("x", false)}, "not_in_channel"},
		{"no text or blocks", slackfake.DefaultChannel, []slack.MsgOption{slack.MsgOptionText("", false)}, "no_text"},
		{"text too long", slackfake.DefaultChannel, []slack.MsgOption{slack.MsgOptionText(strings.Repeat("a", 40001), false)}, "msg_too_long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := api.PostMessage(tt.channel, tt.opts...)
			wantSlackError(t, err, tt.want)
		})
	}
	if got := len(fake.Messages(slackfake.DefaultChannel)); got != 2 {
		t.Errorf("after rejected posts Messages = %d, want 2", got)
	}
}

func TestPostMessageToUserOpensDM(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	ch, _, err := api.PostMessage("U0ANA", slack.MsgOptionText("hi", false))
	if err != nil {
		t.Fatalf("PostMessage: %v", err)
	}
	if !strings.HasPrefix(ch, "D") || fake.DMChannel("U0ANA") != ch {
		t.Errorf("channel = %q, DMChannel = %q, want the same D… id", ch, fake.DMChannel("U0ANA"))
	}
	if got := fake.Messages("U0ANA"); len(got) != 1 || got[0].Text != "hi" {
		t.Errorf("Messages(U0ANA) = %+v", got)
	}
}

func TestUpdateMessage(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	section := slack.NewSectionBlock(mrkdwn("request *#1*"), nil, nil)
	_, ts, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("request #1", false), slack.MsgOptionBlocks(section))
	if err != nil {
		t.Fatalf("PostMessage: %v", err)
	}

	_, _, _, err = api.UpdateMessage(slackfake.DefaultChannel, ts, slack.MsgOptionText("request #1 approved", false))
	if err != nil {
		t.Fatalf("UpdateMessage: %v", err)
	}
	m, ok := fake.Message(slackfake.DefaultChannel, ts)
	if !ok {
		t.Fatal("message gone after update")
	}
	if m.Text != "request #1 approved" || m.Updates != 1 || len(m.History) != 2 {
		t.Errorf("after update: text %q updates %d history %d", m.Text, m.Updates, len(m.History))
	}
	if len(m.Blocks) != 1 || m.Blocks[0]["type"] != "section" {
		t.Errorf("blocks not kept by a text-only update: %s", m.BlocksJSON)
	}
	if m.History[0].Text != "request #1" || m.History[1].Source != "chat.update" {
		t.Errorf("history = %+v", m.History)
	}

	_, _, _, err = api.UpdateMessage(slackfake.DefaultChannel, ts, slack.MsgOptionText("decided", false), slack.MsgOptionBlocks())
	if err != nil {
		t.Fatalf("UpdateMessage clearing blocks: %v", err)
	}
	if m, _ := fake.Message(slackfake.DefaultChannel, ts); m.BlocksJSON != nil || m.Updates != 2 {
		t.Errorf("after blocks=[]: blocks %s updates %d", m.BlocksJSON, m.Updates)
	}

	_, _, _, err = api.UpdateMessage(slackfake.DefaultChannel, "1.000000", slack.MsgOptionText("x", false))
	wantSlackError(t, err, "message_not_found")
	_, _, _, err = api.UpdateMessage("C0NOPE", ts, slack.MsgOptionText("x", false))
	wantSlackError(t, err, "channel_not_found")
}

func TestPostEphemeral(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	ts, err := api.PostEphemeral(slackfake.DefaultChannel, "U0BOB", slack.MsgOptionText("only approvers can decide", false))
	if err != nil {
		t.Fatalf("PostEphemeral: %v", err)
	}
	got := fake.Ephemerals()
	if len(got) != 1 {
		t.Fatalf("Ephemerals = %d, want 1", len(got))
	}
	e := got[0]
	if e.Channel != slackfake.DefaultChannel || e.User != "U0BOB" || e.MessageTS != ts || e.Text != "only approvers can decide" {
		t.Errorf("ephemeral = %+v (ts %q)", e, ts)
	}
	if len(fake.Messages(slackfake.DefaultChannel)) != 0 {
		t.Error("ephemeral showed up as a channel message")
	}
}

func TestUserGroupMembers(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	fake.AddUserGroup("S0APPROVERS", "U0ANA", "U0BOB")

	got, err := api.GetUserGroupMembers("S0APPROVERS")
	if err != nil {
		t.Fatalf("GetUserGroupMembers: %v", err)
	}
	if strings.Join(got, ",") != "U0ANA,U0BOB" {
		t.Errorf("members = %v", got)
	}
	_, err = api.GetUserGroupMembers("S0NOPE")
	wantSlackError(t, err, "no_such_subteam")
}

func TestUnknownMethod(t *testing.T) {
	t.Parallel()
	_, api := newFake(t)
	_, err := api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: slackfake.DefaultChannel})
	wantSlackError(t, err, "unknown_method")
}

func TestFaults(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	post := func(ctx context.Context) error {
		_, _, err := api.PostMessageContext(ctx, slackfake.DefaultChannel, slack.MsgOptionText("x", false))
		return err
	}

	fake.RateLimitNext("chat.postMessage", 1, 1500*time.Millisecond)
	err := post(t.Context())
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Fatalf("after RateLimitNext: %v (%T), want *slack.RateLimitedError retry 2s", err, err)
	}

	fake.ServerErrorNext("chat.postMessage", 1, http.StatusServiceUnavailable)
	err = post(t.Context())
	var sc slack.StatusCodeError
	if !errors.As(err, &sc) || sc.Code != http.StatusServiceUnavailable || !sc.Retryable() {
		t.Fatalf("after ServerErrorNext: %v (%T), want slack.StatusCodeError 503", err, err)
	}

	fake.FailNext(slackfake.AnyMethod, 1, "fatal_error")
	wantSlackError(t, post(t.Context()), "fatal_error")

	if err := post(t.Context()); err != nil {
		t.Fatalf("faults not used up: %v", err)
	}
	if got := fake.Calls("chat.postMessage"); got != 4 {
		t.Errorf("Calls = %d, want 4 (faulted calls count)", got)
	}
	if got := len(fake.Messages(slackfake.DefaultChannel)); got != 1 {
		t.Errorf("Messages = %d, want 1 (faulted calls post nothing)", got)
	}

	fake.SetDelay("chat.postMessage", time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := post(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with delay: %v, want context.DeadlineExceeded", err)
	}
	fake.SetDelay("chat.postMessage", 0)
}

func TestSetRateLimit(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	fake.AddChannel("C0OTHER", true)
	fake.SetRateLimit("chat.postMessage", time.Hour, 2)
	for i := range 2 {
		if _, _, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("x", false)); err != nil {
			t.Fatalf("post %d within burst: %v", i, err)
		}
	}
	_, _, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != time.Hour {
		t.Fatalf("third post: %v, want *slack.RateLimitedError retry 1h", err)
	}
	if _, _, err := api.PostMessage("C0OTHER", slack.MsgOptionText("x", false)); err != nil {
		t.Errorf("other channel limited too (limit must be per channel): %v", err)
	}
}

func TestBlockKitLimits(t *testing.T) {
	t.Parallel()
	_, api := newFake(t)
	button := func(actionID, value, text string) *slack.ButtonBlockElement {
		return slack.NewButtonBlockElement(actionID, value, plain(text))
	}
	confirm := func(title, text string) *slack.ConfirmationBlockObject {
		return slack.NewConfirmationBlockObject(plain(title), mrkdwn(text), plain("Yes"), plain("No"))
	}
	many := make([]slack.Block, 51)
	for i := range many {
		many[i] = slack.NewDividerBlock()
	}
	tests := []struct {
		name   string
		blocks []slack.Block
		ok     bool
	}{
		{"section text at 3000", []slack.Block{slack.NewSectionBlock(mrkdwn(strings.Repeat("a", 3000)), nil, nil)}, true},
		{"section text over 3000", []slack.Block{slack.NewSectionBlock(mrkdwn(strings.Repeat("a", 3001)), nil, nil)}, false},
		{"field over 2000", []slack.Block{slack.NewSectionBlock(nil, []*slack.TextBlockObject{mrkdwn(strings.Repeat("a", 2001))}, nil)}, false},
		{"51 blocks", many, false},
		{"50 blocks", many[:50], true},
		{"button text over 75", []slack.Block{slack.NewActionBlock("a", button("ok", "1", strings.Repeat("b", 76)))}, false},
		{"action_id over 255", []slack.Block{slack.NewActionBlock("a", button(strings.Repeat("i", 256), "1", "Approve"))}, false},
		{"value over 2000", []slack.Block{slack.NewActionBlock("a", button("ok", strings.Repeat("v", 2001), "Approve"))}, false},
		{"confirm title over 100", []slack.Block{slack.NewActionBlock("a", button("ok", "1", "Approve").WithConfirm(confirm(strings.Repeat("t", 101), "sure?")))}, false},
		{"confirm text over 300", []slack.Block{slack.NewActionBlock("a", button("ok", "1", "Approve").WithConfirm(confirm("Approve?", strings.Repeat("t", 301))))}, false},
		{"two primary buttons", []slack.Block{slack.NewActionBlock("a",
			button("approve", "1", "Approve").WithStyle(slack.StylePrimary),
			button("deny", "1", "Deny").WithStyle(slack.StylePrimary))}, false},
		{"approve primary, deny danger", []slack.Block{slack.NewActionBlock("a",
			button("approve", "1", "Approve").WithStyle(slack.StylePrimary).WithConfirm(confirm("Approve?", "sure?")),
			button("deny", "1", "Deny").WithStyle(slack.StyleDanger))}, true},
		{"duplicate block_id", []slack.Block{slack.NewActionBlock("a", button("x", "1", "X")), slack.NewActionBlock("a", button("y", "1", "Y"))}, false},
		{"empty section", []slack.Block{slack.NewSectionBlock(nil, nil, nil)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("fallback", false), slack.MsgOptionBlocks(tt.blocks...))
			if tt.ok {
				if err != nil {
					t.Fatalf("PostMessage: %v", err)
				}
				return
			}
			wantSlackError(t, err, "invalid_blocks")
			var se slack.SlackErrorResponse
			errors.As(err, &se)
			if len(se.ResponseMetadata.Messages) == 0 || len(se.Errors) == 0 {
				t.Errorf("invalid_blocks without details: %+v", se)
			}
		})
	}

	// Updates and ephemerals are held to the same limits.
	_, ts, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("x", false))
	if err != nil {
		t.Fatal(err)
	}
	long := slack.MsgOptionBlocks(slack.NewSectionBlock(mrkdwn(strings.Repeat("a", 3001)), nil, nil))
	_, _, _, err = api.UpdateMessage(slackfake.DefaultChannel, ts, long)
	wantSlackError(t, err, "invalid_blocks")
	_, err = api.PostEphemeral(slackfake.DefaultChannel, "U0ANA", long)
	wantSlackError(t, err, "invalid_blocks")
}

func TestVisibleText(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain("Role request #7")),
		slack.NewSectionBlock(mrkdwn("*Reason:* incident &lt;42&gt;"), []*slack.TextBlockObject{mrkdwn("*Project* proj_abc")},
			slack.NewAccessory(slack.NewButtonBlockElement("details", "7", plain("Details")))),
		slack.NewContextBlock("ctx", mrkdwn("requested by <@U0ANA>")),
		slack.NewActionBlock("decide",
			slack.NewButtonBlockElement("approve", "7", plain("Approve")),
			slack.NewButtonBlockElement("deny", "7", plain("Deny"))),
	}
	if _, _, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("fallback", false), slack.MsgOptionBlocks(blocks...)); err != nil {
		t.Fatal(err)
	}
	got := fake.Messages(slackfake.DefaultChannel)[0].VisibleText()
	for _, want := range []string{"fallback", "Role request #7", "incident &lt;42&gt;", "proj_abc", "Details", "requested by <@U0ANA>", "Approve", "Deny"} {
		if !strings.Contains(got, want) {
			t.Errorf("VisibleText lacks %q:\n%s", want, got)
		}
	}
}

func TestResponseURL(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)

	t.Run("five uses", func(t *testing.T) {
		u := fake.NewResponseURLFor(slackfake.DefaultChannel, "U0ANA", "")
		for i := range slackfake.ResponseURLMaxUses {
			_, _, err := api.PostMessage("", slack.MsgOptionResponseURL(u, slack.ResponseTypeEphemeral), slack.MsgOptionText("private", false))
			if err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
		_, _, err := api.PostMessage("", slack.MsgOptionResponseURL(u, slack.ResponseTypeEphemeral), slack.MsgOptionText("private", false))
		var sc slack.StatusCodeError
		if !errors.As(err, &sc) || sc.Code != http.StatusNotFound {
			t.Fatalf("sixth use: %v (%T), want slack.StatusCodeError 404", err, err)
		}
		rs := fake.Responses(u)
		if len(rs) != 6 || rs[0].ResponseType != "ephemeral" || rs[5].Error != "used_url" {
			t.Errorf("Responses = %+v", rs)
		}
		if n := len(fake.Ephemerals()); n != 5 {
			t.Errorf("Ephemerals = %d, want 5", n)
		}
	})

	t.Run("replace original", func(t *testing.T) {
		_, ts, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("pending", false))
		if err != nil {
			t.Fatal(err)
		}
		u := fake.NewResponseURLFor(slackfake.DefaultChannel, "U0ANA", ts)
		if _, _, err := api.PostMessage("", slack.MsgOptionReplaceOriginal(u), slack.MsgOptionText("approved", false)); err != nil {
			t.Fatalf("replace_original: %v", err)
		}
		m, _ := fake.Message(slackfake.DefaultChannel, ts)
		if m.Text != "approved" || m.Updates != 1 || m.History[1].Source != "response_url" {
			t.Errorf("message after replace_original = %+v", m)
		}
	})

	t.Run("in channel", func(t *testing.T) {
		fake.AddChannel("C0PUB", false)
		u := fake.NewResponseURLFor("C0PUB", "U0ANA", "")
		if _, _, err := api.PostMessage("", slack.MsgOptionResponseURL(u, slack.ResponseTypeInChannel), slack.MsgOptionText("for all", false)); err != nil {
			t.Fatal(err)
		}
		if got := fake.Messages("C0PUB"); len(got) != 1 || got[0].Text != "for all" {
			t.Errorf("Messages(C0PUB) = %+v", got)
		}
	})

	t.Run("expired", func(t *testing.T) {
		u := fake.NewResponseURL()
		fake.ExpireResponseURL(u)
		_, _, err := api.PostMessage("", slack.MsgOptionResponseURL(u, slack.ResponseTypeEphemeral), slack.MsgOptionText("late", false))
		var sc slack.StatusCodeError
		if !errors.As(err, &sc) || sc.Code != http.StatusNotFound {
			t.Fatalf("expired: %v, want 404", err)
		}
		if rs := fake.Responses(u); len(rs) != 1 || rs[0].Error != "expired_url" {
			t.Errorf("Responses = %+v", rs)
		}
	})
}

func TestWaitForHonoursContext(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	err := fake.WaitFor(ctx, func(s *slackfake.Server) bool { return len(s.Messages(slackfake.DefaultChannel)) > 0 })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor = %v, want context.DeadlineExceeded", err)
	}
}

// socketClient runs slack-go's socketmode client against the fake and relays
// its events.
type socketClient struct {
	*socketmode.Client
	events chan socketmode.Event
	errc   chan error
}

func startSocketClient(t *testing.T, fake *slackfake.Server, token string, opts ...socketmode.Option) *socketClient {
	t.Helper()
	api := slack.New(botToken, slack.OptionAppLevelToken(token), slack.OptionAPIURL(fake.APIURL()))
	c := &socketClient{Client: socketmode.New(api, opts...), events: make(chan socketmode.Event, 100), errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.errc <- c.RunContext(ctx) }()
	go func() {
		for {
			select {
			case evt := <-c.Client.Events:
				select {
				case c.events <- evt:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.errc:
		case <-time.After(5 * time.Second):
			t.Error("socketmode client did not stop")
		}
	})
	return c
}

// next returns the next event of type typ, skipping others.
func (c *socketClient) next(t *testing.T, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case evt := <-c.events:
			if evt.Type == typ {
				return evt
			}
		case <-timeout:
			t.Fatalf("no %s event within 5s", typ)
		}
	}
}

func TestSocketModeRoundTrip(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	fake.SetAppToken(appToken)
	client := startSocketClient(t, fake, appToken)
	hello := client.next(t, socketmode.EventTypeHello)
	if hello.Request.NumConnections != 1 || hello.Request.ConnectionInfo.AppID != slackfake.AppID {
		t.Errorf("hello = %+v", hello.Request)
	}

	form := url.Values{
		"command":      {"/assign-role"},
		"text":         {"proj_abc group_01 role_01 incident 42"},
		"user_id":      {"U0ANA"},
		"user_name":    {"ana"},
		"channel_id":   {slackfake.DefaultChannel},
		"channel_name": {"general"},
	}
	id, err := fake.SendSlashCommand(form)
	if err != nil {
		t.Fatalf("SendSlashCommand: %v", err)
	}
	evt := client.next(t, socketmode.EventTypeSlashCommand)
	cmd, ok := evt.Data.(slack.SlashCommand)
	if !ok {
		t.Fatalf("event data is %T, want slack.SlashCommand", evt.Data)
	}
	if cmd.Command != "/assign-role" || cmd.Text != "proj_abc group_01 role_01 incident 42" || cmd.UserID != "U0ANA" ||
		cmd.UserName != "ana" || cmd.ChannelID != slackfake.DefaultChannel || cmd.TeamID != slackfake.TeamID ||
		cmd.APIAppID != slackfake.AppID || cmd.TriggerID == "" || !strings.HasPrefix(cmd.ResponseURL, fake.URL()+"/response/") {
		t.Errorf("slash command = %+v", cmd)
	}
	if evt.Request.EnvelopeID != id || !evt.Request.AcceptsResponsePayload || evt.Request.RetryAttempt != 0 {
		t.Errorf("request = %+v, want envelope %s accepting a payload", evt.Request, id)
	}

	if err := client.Ack(*evt.Request, map[string]any{"text": "request #1 is waiting for approval"}); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	payload, err := fake.WaitAck(waitCtx(t), id)
	if err != nil {
		t.Fatalf("WaitAck: %v", err)
	}
	if !strings.Contains(string(payload), "waiting for approval") {
		t.Errorf("ack payload = %s", payload)
	}
	if got := fake.Acks()[id]; got != 1 {
		t.Errorf("acks = %d, want 1", got)
	}

	// A network drop: the client reconnects and gets later envelopes.
	start := time.Now()
	fake.DropConnections()
	if n := fake.Connected(); n != 0 {
		t.Fatalf("Connected after drop = %d", n)
	}
	client.next(t, socketmode.EventTypeHello)
	t.Logf("reconnected in %v", time.Since(start))
	if fake.ConnectionsOpened() != 2 || fake.Connected() != 1 {
		t.Errorf("opened %d, connected %d; want 2, 1", fake.ConnectionsOpened(), fake.Connected())
	}
	id2, err := fake.SendSlashCommand(form)
	if err != nil {
		t.Fatal(err)
	}
	evt = client.next(t, socketmode.EventTypeSlashCommand)
	if evt.Request.EnvelopeID != id2 {
		t.Errorf("after reconnect got envelope %s, want %s", evt.Request.EnvelopeID, id2)
	}
	if err := client.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}
	if payload, err := fake.WaitAck(waitCtx(t), id2); err != nil || payload != nil {
		t.Errorf("WaitAck = %s, %v; want no payload", payload, err)
	}
}

func TestSocketModeRedeliversUnacked(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	fake.SetAppToken(appToken)

	// Sent before any connection: queued until the client connects.
	id, err := fake.SendInteraction(slack.InteractionCallback{
		Type:    slack.InteractionTypeBlockActions,
		User:    slack.User{ID: "U0BOB"},
		Channel: slack.Channel{GroupConversation: slack.GroupConversation{Conversation: slack.Conversation{ID: slackfake.DefaultChannel}}},
		ActionCallback: slack.ActionCallbacks{BlockActions: []*slack.BlockAction{
			{ActionID: "approve", BlockID: "decide", Value: "7"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if env := fake.Envelopes(); len(env) != 1 || !env[0].Queued {
		t.Fatalf("Envelopes = %+v, want one queued", env)
	}

	client := startSocketClient(t, fake, appToken)
	evt := client.next(t, socketmode.EventTypeInteractive)
	cb, ok := evt.Data.(slack.InteractionCallback)
	if !ok || cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 ||
		cb.ActionCallback.BlockActions[0].ActionID != "approve" || cb.User.ID != "U0BOB" {
		t.Fatalf("interaction = %#v", evt.Data)
	}
	if evt.Request.EnvelopeID != id || evt.Request.AcceptsResponsePayload {
		t.Errorf("request = %+v, want envelope %s, accepts_response_payload false", evt.Request, id)
	}

	// Not acked, then the link drops: Slack sends it again.
	fake.DropConnections()
	evt = client.next(t, socketmode.EventTypeInteractive)
	if evt.Request.EnvelopeID != id || evt.Request.RetryAttempt != 1 || evt.Request.RetryReason != "timeout" {
		t.Fatalf("redelivery = %+v, want envelope %s retry 1", evt.Request, id)
	}
	if err := client.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.WaitAck(waitCtx(t), id); err != nil {
		t.Fatal(err)
	}
	env := fake.Envelopes()[0]
	if env.Deliveries != 2 || env.Acks != 1 || env.Queued || env.Lost {
		t.Errorf("envelope = %+v", env)
	}
}

// TestSocketModeRedeliverReachesAnotherConnection: Redeliver sends one
// envelope to a second connection while the first has not answered, as
// Slack does to another replica when an ack is late; both acks are kept.
func TestSocketModeRedeliverReachesAnotherConnection(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	fake.SetAppToken(appToken)
	clients := []*socketClient{startSocketClient(t, fake, appToken), startSocketClient(t, fake, appToken)}
	for _, c := range clients {
		c.next(t, socketmode.EventTypeHello)
	}
	if err := fake.Redeliver("no-such-envelope"); err == nil {
		t.Error("Redeliver of an unknown envelope succeeded")
	}

	id, err := fake.SendInteraction(json.RawMessage(`{"type":"view_submission","user":{"id":"U0ANA"},"view":{"id":"V1","callback_id":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Redeliver(id); err != nil {
		t.Fatal(err)
	}
	var attempts []int
	for i, c := range clients {
		evt := c.next(t, socketmode.EventTypeInteractive)
		if evt.Request.EnvelopeID != id {
			t.Fatalf("connection %d got envelope %s, want %s", i, evt.Request.EnvelopeID, id)
		}
		attempts = append(attempts, evt.Request.RetryAttempt)
		if err := c.Ack(*evt.Request, map[string]string{"from": strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if slices.Sort(attempts); !slices.Equal(attempts, []int{0, 1}) {
		t.Errorf("retry attempts %v, want the first delivery and one retry", attempts)
	}
	if err := fake.WaitFor(waitCtx(t), func(s *slackfake.Server) bool { return s.Envelopes()[0].Acks == 2 }); err != nil {
		t.Fatal(err)
	}
	env := fake.Envelopes()[0]
	if env.Deliveries != 2 || len(env.AckPayloads) != 2 || string(env.AckPayload) != string(env.AckPayloads[0]) {
		t.Fatalf("envelope = %+v, want 2 deliveries and both acks' payloads", env)
	}
	got := []string{string(env.AckPayloads[0]), string(env.AckPayloads[1])}
	slices.Sort(got)
	if !slices.Equal(got, []string{`{"from":"0"}`, `{"from":"1"}`}) {
		t.Errorf("ack payloads %q, want one from each connection", got)
	}

	fake.Close()
	if err := fake.Redeliver(id); !errors.Is(err, slackfake.ErrClosed) {
		t.Errorf("Redeliver after Close = %v, want ErrClosed", err)
	}
}

func TestSocketModeDisconnectAndPingTimeout(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	fake.SetAppToken(appToken)
	client := startSocketClient(t, fake, appToken, socketmode.OptionPingInterval(500*time.Millisecond))
	client.next(t, socketmode.EventTypeHello)

	fake.SendDisconnect("refresh_requested")
	client.next(t, socketmode.EventTypeHello)
	ctx := waitCtx(t)
	if err := fake.WaitFor(ctx, func(s *slackfake.Server) bool { return s.Connected() == 1 }); err != nil {
		t.Fatalf("old connection not closed by the client: %v", err)
	}
	if n := fake.ConnectionsOpened(); n != 2 {
		t.Errorf("ConnectionsOpened = %d, want 2", n)
	}

	// Without pings the client gives up on the link after its ping interval.
	fake.SetPingInterval(0)
	start := time.Now()
	client.next(t, socketmode.EventTypeHello)
	t.Logf("client reconnected %v after pings stopped", time.Since(start))
	if fake.ConnectionsOpened() < 3 {
		t.Errorf("ConnectionsOpened = %d, want >= 3", fake.ConnectionsOpened())
	}
}

func TestSocketModeWrongAppToken(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	fake.SetAppToken(appToken)
	api := slack.New(botToken, slack.OptionAppLevelToken("xapp-1-wrong"), slack.OptionAPIURL(fake.APIURL()))
	client := socketmode.New(api) // Events' buffer (50) holds the few events of one failed attempt
	err := client.RunContext(waitCtx(t))
	wantSlackError(t, err, "invalid_auth")
	if n := fake.Calls("apps.connections.open"); n != 1 {
		t.Errorf("apps.connections.open calls = %d, want 1 (invalid_auth is fatal)", n)
	}
}

func TestSendAfterClose(t *testing.T) {
	t.Parallel()
	fake := slackfake.New(botToken)
	fake.Close()
	if _, err := fake.SendInteraction(json.RawMessage(`{"type":"block_actions"}`)); !errors.Is(err, slackfake.ErrClosed) {
		t.Errorf("SendInteraction after Close = %v, want ErrClosed", err)
	}
}

// TestSocketModeWireShapes pins the JSON the fake writes, read with a bare
// WebSocket client, and that a double ack is counted.
func TestSocketModeWireShapes(t *testing.T) {
	t.Parallel()
	fake, _ := newFake(t)
	fake.SetAppToken(appToken)
	api := slack.New(botToken, slack.OptionAppLevelToken(appToken), slack.OptionAPIURL(fake.APIURL()))
	_, wsURL, err := api.StartSocketModeContext(t.Context())
	if err != nil {
		t.Fatalf("apps.connections.open: %v", err)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(t.Context(), wsURL, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if _, _, err := websocket.DefaultDialer.DialContext(t.Context(), wsURL, nil); err == nil {
		t.Error("second dial with the same ticket succeeded")
	}

	read := func() map[string]any {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var m map[string]any
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("read: %v", err)
		}
		return m
	}
	hello := read()
	if hello["type"] != "hello" || hello["num_connections"] != float64(1) {
		t.Errorf("hello = %v", hello)
	}

	id, err := fake.SendSlashCommand(url.Values{"command": {"/assign-role"}, "text": {"help"}, "user_id": {"U0ANA"}, "channel_id": {slackfake.DefaultChannel}})
	if err != nil {
		t.Fatal(err)
	}
	env := read()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if got := strings.Join(keys, ","); got != "accepts_response_payload,envelope_id,payload,retry_attempt,retry_reason,type" {
		t.Errorf("envelope keys = %s", got)
	}
	payload, _ := env["payload"].(map[string]any)
	if env["envelope_id"] != id || env["type"] != "slash_commands" || env["accepts_response_payload"] != true ||
		payload["command"] != "/assign-role" || payload["is_enterprise_install"] != "false" {
		t.Errorf("envelope = %v", env)
	}

	for range 2 {
		if err := conn.WriteJSON(map[string]any{"envelope_id": id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fake.WaitFor(waitCtx(t), func(s *slackfake.Server) bool { return s.Acks()[id] == 2 }); err != nil {
		t.Fatalf("double ack not counted: %v (acks %v)", err, fake.Acks())
	}

	fake.SendDisconnect("refresh_requested")
	if m := read(); m["type"] != "disconnect" || m["reason"] != "refresh_requested" {
		t.Errorf("disconnect = %v", m)
	}
}
