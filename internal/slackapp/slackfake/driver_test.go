package slackfake

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

func TestSignatureIsSlacksExample(t *testing.T) {
	// Slack's published example from "Verifying requests from Slack".
	const body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	got := Signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", []byte(body))
	if want := "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"; got != want {
		t.Fatalf("Signature = %s, want Slack's %s", got, want)
	}
}

// received is what an app built on slack-go makes of what the Driver sent.
type received struct {
	verified bool
	command  slack.SlashCommand
	cb       slack.InteractionCallback
	parseErr error
}

// slackGoApp verifies with slack-go's own verifier (not rolegate's) and
// parses with slack-go, as an app would.
func slackGoApp(t *testing.T, secret string, got *received) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			v.Write(body)
			err = v.Ensure()
		}
		got.verified = err == nil
		r.Body = io.NopCloser(bytes.NewReader(body))
		switch r.URL.Path {
		case CommandsPath:
			got.command, got.parseErr = slack.SlashCommandParse(r)
		case InteractionsPath:
			got.cb, got.parseErr = slack.InteractionCallbackParse(r)
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDriverSendsWhatSlackGoAccepts(t *testing.T) {
	const secret = "driver-secret"
	var got received
	srv := slackGoApp(t, secret, &got)
	d := &Driver{BaseURL: srv.URL, Secret: secret}

	reply, err := d.Command(t.Context(), CommandForm(Command{Channel: "C1", User: "U1", Text: `"Support Team" x`, TriggerID: "1.2.3"}))
	if err != nil || reply.Status != 200 || string(reply.Body) != `{"ok":true}` {
		t.Fatalf("Command = %+v, %v", reply, err)
	}
	if !got.verified || got.parseErr != nil || got.command.UserID != "U1" || got.command.ChannelID != "C1" || got.command.Text != `"Support Team" x` {
		t.Fatalf("slack-go received %+v", got)
	}

	// A click without a block_id named still reaches block actions.
	if _, err := d.Interaction(t.Context(), ClickPayload(Click{User: "U2", Channel: "C1", ActionID: "approve", Value: "7"})); err != nil {
		t.Fatal(err)
	}
	acts := got.cb.ActionCallback.BlockActions
	if !got.verified || got.cb.Type != slack.InteractionTypeBlockActions || len(acts) != 1 || acts[0].BlockID == "" ||
		acts[0].ActionID != "approve" || acts[0].Value != "7" || len(got.cb.ActionCallback.AttachmentActions) != 0 {
		t.Fatalf("click received as %+v", got.cb)
	}

	view := View{CallbackID: "request", PrivateMetadata: `{"channel":"C1"}`, Values: map[string]map[string]slack.BlockAction{
		"project": {"project_select": {Type: "external_select", SelectedOption: slack.OptionBlockObject{Value: "proj_abc"}}},
		"reason":  {"reason_input": {Type: "plain_text_input", Value: "rotating keys"}},
	}}
	if _, err := d.Interaction(t.Context(), SuggestionPayload(Suggestion{User: "U3", ActionID: "role_select", BlockID: "role", Value: "Key", View: view})); err != nil {
		t.Fatal(err)
	}
	cb := got.cb
	if cb.Type != slack.InteractionTypeBlockSuggestion || cb.User.ID != "U3" || cb.ActionID != "role_select" || cb.BlockID != "role" || cb.Value != "Key" ||
		cb.View.PrivateMetadata != `{"channel":"C1"}` || cb.View.State == nil || cb.View.State.Values["project"]["project_select"].SelectedOption.Value != "proj_abc" {
		t.Fatalf("suggestion received as %+v", cb)
	}

	if _, err := d.Interaction(t.Context(), SubmissionPayload(Submission{User: "U4", View: view})); err != nil {
		t.Fatal(err)
	}
	cb = got.cb
	if cb.Type != slack.InteractionTypeViewSubmission || cb.User.ID != "U4" || cb.View.CallbackID != "request" ||
		cb.View.PrivateMetadata != `{"channel":"C1"}` || cb.View.State.Values["reason"]["reason_input"].Value != "rotating keys" {
		t.Fatalf("submission received as %+v", cb)
	}
}

func TestDriverSignsAtItsClock(t *testing.T) {
	var got received
	srv := slackGoApp(t, "s", &got)
	d := &Driver{BaseURL: srv.URL, Secret: "s", Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }}
	if _, err := d.Post(t.Context(), CommandsPath, "user_id=U1"); err != nil {
		t.Fatal(err)
	}
	if got.verified {
		t.Fatal("a request signed 10 minutes ago passed slack-go's verifier")
	}
	d.Now, d.Secret = nil, "wrong"
	if _, err := d.Post(t.Context(), CommandsPath, "user_id=U1"); err != nil {
		t.Fatal(err)
	}
	if got.verified {
		t.Fatal("a request signed with the wrong secret passed")
	}
}
