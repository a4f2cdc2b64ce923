package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// Hostile input: whatever reaches the Slack endpoints, only a request Slack
// signed, carrying a real click by an eligible approver on a pending request
// in its own channel, changes anything. Every hostile case below is one
// mutation of such a valid click, so a check that stopped working would let
// it through and the test would see the change.

// configuredSecrets are every secret the end-to-end tests configure.
var configuredSecrets = []string{testBotToken, testAppToken, testSecret, testAdminKey}

// checkNoSecrets fails the test if text contains a configured secret.
func checkNoSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range configuredSecrets {
		if strings.Contains(text, s) {
			t.Errorf("a configured secret (%s…) appears in %s", s[:6], where)
		}
	}
}

// sendRaw posts body to path with the given signature headers, unchanged.
func (b *bot) sendRaw(path, body, ts, sig string) int {
	b.t.Helper()
	d := b.driver()
	req, err := d.NewRequest(context.Background(), path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Del("X-Slack-Request-Timestamp")
	req.Header.Del("X-Slack-Signature")
	if ts != "" {
		req.Header.Set("X-Slack-Request-Timestamp", ts)
	}
	if sig != "" {
		req.Header.Set("X-Slack-Signature", sig)
	}
	resp, err := d.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.Status
}

// observed is everything a refused request must leave unchanged.
type observed struct {
	states  map[uint64]string
	audit   int
	updates int
	posts   int
	openai  int
	stored  int
}

func (b *bot) observe(ids ...uint64) observed {
	b.t.Helper()
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		b.t.Fatal(err)
	}
	defer cleanup()
	o := observed{states: map[uint64]string{}, updates: b.slack.Calls("chat.update"), posts: b.slack.Calls("chat.postMessage"), openai: len(b.openai.Requests())}
	rs, err := s.List(context.Background(), approvals.ListOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	o.stored = len(rs)
	for _, id := range ids {
		r, err := s.Get(context.Background(), id)
		if err != nil {
			b.t.Fatal(err)
		}
		o.states[id] = fmt.Sprintf("%s approvals=%d decider=%q", r.State, len(r.Approvals), r.Decider)
		ev, err := s.Audit(context.Background(), id)
		if err != nil {
			b.t.Fatal(err)
		}
		o.audit += len(ev)
	}
	return o
}

func (o observed) String() string {
	return fmt.Sprintf("%v audit=%d chat.update=%d chat.postMessage=%d openai=%d stored=%d", o.states, o.audit, o.updates, o.posts, o.openai, o.stored)
}

// mutate returns the valid click cb as JSON, changed by edit.
func mutate(t *testing.T, cb any, edit func(map[string]any)) string {
	t.Helper()
	raw, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func action0(m map[string]any) map[string]any {
	return m["actions"].([]any)[0].(map[string]any)
}

func TestHostileInteractionsChangeNothing(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	b.slack.AddChannel("C0OTHER", true)
	id := b.request(requester, defaultTarget+" the target")
	b.approvalMessage(id)
	other := b.requestIn("C0OTHER", "proj_abc group_02 role_01 lives in another channel")
	b.waitSettledPosted(id)
	b.waitSettledPosted(other)
	idStr := strconv.FormatUint(id, 10)

	// valid is a real click by an eligible approver on the pending request.
	valid := clickPayload(approverAna, testChannel, slackapp.ActionApprove, idStr, "1700000000.000100", "")
	validBody := url.Values{"payload": {mutate(t, valid, nil)}}.Encode()
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	sign := func(ts, body string) string { return slackfake.Signature(testSecret, ts, []byte(body)) }

	// Let the messages the requests already owe (approval messages, the
	// requester's pending DMs) go out first.
	b.waitFor("the outbox to drain", func() bool { return b.outboxLen() == 0 })
	before := b.observe(id, other)

	t.Run("signature", func(t *testing.T) {
		stale := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
		future := strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10)
		forged := strings.Replace(validBody, approverAna, approverBob, 1)
		big := validBody + "&pad=" + strings.Repeat("x", slackapp.MaxBody)
		tests := []struct {
			name, body, ts, sig string
			want                int
		}{
			{"unsigned", validBody, ts, "", 401},
			{"no timestamp", validBody, "", sign(ts, validBody), 401},
			{"wrong secret", validBody, ts, slackfake.Signature("not-the-secret", ts, []byte(validBody)), 401},
			{"signature of another body", forged, ts, sign(ts, validBody), 401},
			{"timestamp changed after signing", validBody, strconv.FormatInt(now.Unix()+1, 10), sign(ts, validBody), 401},
			{"stale, signed", validBody, stale, sign(stale, validBody), 401},
			{"from the future, signed", validBody, future, sign(future, validBody), 401},
			{"v1 scheme", validBody, ts, "v1=" + strings.TrimPrefix(sign(ts, validBody), "v0="), 401},
			{"uppercase hex", validBody, ts, strings.ToUpper(sign(ts, validBody)), 401},
			{"oversized, signed", big, ts, sign(ts, big), 413},
		}
		for _, tt := range tests {
			if got := b.sendRaw("/slack/interactions", tt.body, tt.ts, tt.sig); got != tt.want {
				t.Errorf("%s: answered %d, want %d", tt.name, got, tt.want)
			}
		}
	})

	t.Run("payload", func(t *testing.T) {
		edits := []struct {
			name string
			edit func(map[string]any)
		}{
			{"unknown type", func(m map[string]any) { m["type"] = "bogus" }},
			{"view submission", func(m map[string]any) { m["type"] = "view_submission" }},
			{"message action", func(m map[string]any) { m["type"] = "message_action" }},
			{"shortcut", func(m map[string]any) { m["type"] = "shortcut" }},
			{"block suggestion", func(m map[string]any) { m["type"] = "block_suggestion" }},
			{"no type", func(m map[string]any) { delete(m, "type") }},
			{"no user", func(m map[string]any) { delete(m, "user") }},
			{"empty user id", func(m map[string]any) { m["user"] = map[string]any{"id": ""} }},
			{"no channel", func(m map[string]any) { delete(m, "channel") }},
			{"no actions", func(m map[string]any) { delete(m, "actions") }},
			{"empty actions", func(m map[string]any) { m["actions"] = []any{} }},
			{"null action", func(m map[string]any) { m["actions"] = []any{nil} }},
			{"action without block_id", func(m map[string]any) { delete(action0(m), "block_id") }},
			{"two actions", func(m map[string]any) { m["actions"] = []any{action0(m), action0(m)} }},
			{"an attachment action riding along", func(m map[string]any) {
				m["actions"] = []any{map[string]any{"action_id": slackapp.ActionApprove, "value": idStr}, action0(m)}
			}},
			{"approve and deny", func(m map[string]any) {
				deny := map[string]any{}
				for k, v := range action0(m) {
					deny[k] = v
				}
				deny["action_id"] = slackapp.ActionDeny
				m["actions"] = []any{action0(m), deny}
			}},
			{"wrong action id", func(m map[string]any) { action0(m)["action_id"] = "rolegate_approve_all" }},
			{"no action id", func(m map[string]any) { delete(action0(m), "action_id") }},
			{"no value", func(m map[string]any) { delete(action0(m), "value") }},
			{"nonexistent request", func(m map[string]any) { action0(m)["value"] = "999" }},
			{"request zero", func(m map[string]any) { action0(m)["value"] = "0" }},
			{"request from another channel", func(m map[string]any) {
				m["channel"] = map[string]any{"id": "C0OTHER"}
			}},
			{"other channel's request here", func(m map[string]any) { action0(m)["value"] = strconv.FormatUint(other, 10) }},
			{"value with SQL", func(m map[string]any) { action0(m)["value"] = idStr + "; DROP TABLE requests" }},
			{"negative value", func(m map[string]any) { action0(m)["value"] = "-" + idStr }},
			{"hex value", func(m map[string]any) { action0(m)["value"] = "0x" + idStr }},
			{"float value", func(m map[string]any) { action0(m)["value"] = idStr + ".0" }},
			{"padded value", func(m map[string]any) { action0(m)["value"] = " " + idStr }},
			{"full-width digits", func(m map[string]any) { action0(m)["value"] = "１" }},
			{"overflowing value", func(m map[string]any) { action0(m)["value"] = "18446744073709551617" }},
			{"value as number", func(m map[string]any) { action0(m)["value"] = id }},
			{"stranger", func(m map[string]any) { m["user"] = map[string]any{"id": stranger} }},
			{"requester approves own", func(m map[string]any) { m["user"] = map[string]any{"id": requester} }},
		}
		for _, tt := range edits {
			body := url.Values{"payload": {mutate(t, valid, tt.edit)}}.Encode()
			if got := b.sendRaw("/slack/interactions", body, ts, sign(ts, body)); got != http.StatusOK && got != http.StatusBadRequest {
				t.Errorf("%s: answered %d", tt.name, got)
			}
		}
		for name, body := range map[string]string{
			"payload not JSON":    url.Values{"payload": {"{not json"}}.Encode(),
			"payload is an array": url.Values{"payload": {"[]"}}.Encode(),
			"no payload":          "token=x",
			"payload in query":    "",
			"JSON body":           mutate(t, valid, nil),
			"not form-encoded":    "%zz",
		} {
			if got := b.sendRaw("/slack/interactions?"+url.Values{"payload": {mutate(t, valid, nil)}}.Encode(), body, ts, sign(ts, body)); got != http.StatusOK && got != http.StatusBadRequest {
				t.Errorf("%s: answered %d", name, got)
			}
		}
	})

	// Let refusals finish (their notices are async), then compare.
	b.waitFor("notices to settle", func() bool { return len(b.slack.Ephemerals()) >= 2 })
	if after := b.observe(id, other); after.String() != before.String() {
		t.Fatalf("hostile requests changed something:\nbefore %s\nafter  %s", before, after)
	}

	// The valid click itself works: none of the above was refused for a
	// reason the test did not intend.
	if got := b.sendRaw("/slack/interactions", validBody, ts, sign(ts, validBody)); got != http.StatusOK {
		t.Fatalf("the valid click answered %d", got)
	}
	b.waitState(id, approvals.StateApplied)
	if r := b.stored(other); r.State != approvals.StatePending {
		t.Errorf("the other channel's request is %s", r.State)
	}
}

func TestHostileIDsNeverReachOpenAI(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	for _, text := range []string{
		"proj_abc ../../organization/admin_api_keys role_01 why",
		"proj_abc ..%2F..%2Forganization role_01 why",
		"proj_abc group%2F01 role_01 why",
		"proj_abc %2e%2e role_01 why",
		"proj_abc group_01 role_01/../../x why",
		"../proj_abc group_01 role_01 why",
		"proj_abc group_01? role_01 why",
		"proj_abc group_01#frag role_01 why",
		"proj_abc group_01 role_01\\..\\x why",
		"proj_abc gröup_01 role_01 why",
		"proj_abc group\u200b01 role_01 why",
		"proj_abc group_01 role_０１ why",
		"proj_abc group_01\x00 role_01 why",
		"proj_abc " + strings.Repeat("g", 129) + " role_01 why",
	} {
		// A project, group or role may be typed as a name, so such text is
		// either refused at once or checked against OpenAI's lists, where
		// it matches nothing: it must never become part of a URL.
		status, reply := b.command(requester, text)
		if status != http.StatusOK || reply.ResponseType != "ephemeral" ||
			!strings.Contains(reply.Text, "Nothing was requested") && !strings.Contains(reply.Text, "is being checked") {
			t.Errorf("%q answered %d %q, want a private refusal or a check", text, status, reply.Text)
		}
	}
	b.waitFor("every request to be rejected by its checks", func() bool {
		n := b.storedCount()
		for id := uint64(1); id <= uint64(n); id++ {
			if b.stored(id).State != approvals.StateRejected {
				return false
			}
		}
		return true
	})
	for _, r := range b.openai.Requests() {
		if r.Op != openaitest.OpListProjects && r.Op != openaitest.OpListGroups && r.Op != openaitest.OpListProjectRoles && r.Op != openaitest.OpGetProject {
			t.Errorf("OpenAI saw %s %s: only the look-up lists may be called for hostile names", r.Method, r.Path)
		}
		if strings.Contains(r.Path, "..") || strings.Contains(r.Path, "%2") || strings.Contains(r.Path, "admin_api_keys") {
			t.Errorf("hostile text reached an OpenAI path: %s", r.Path)
		}
	}
	if n := b.slack.Calls("chat.postMessage"); n != 0 {
		t.Errorf("%d messages posted: a request that fails its checks reaches no approver", n)
	}
}

// TestHostileTextIsEscapedAndFitsSlack posts reasons, API errors and API
// names built to inject mentions and to overflow Block Kit; the fake Slack
// refuses anything over its limits (invalid_blocks), so each message must
// get through, escaped.
func TestHostileTextIsEscapedAndFitsSlack(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	const inject = "<!channel> <!here> <@U0ANA> <#C0001> <!subteam^S0ADMINS> <https://evil.example|click me> & *bold*"
	reasons := map[string]string{
		"mentions":         inject,
		"ampersands":       strings.Repeat("&", approvals.MaxReasonLen),
		"angle brackets":   strings.Repeat("<>", approvals.MaxReasonLen/2),
		"4-byte runes":     strings.Repeat("𝕏", approvals.MaxReasonLen),
		"newlines":         "x" + strings.Repeat("\n&", (approvals.MaxReasonLen-1)/2),
		"mentions, at max": strings.Repeat("<!channel>", approvals.MaxReasonLen/10),
	}
	ids := map[string]uint64{}
	for name, reason := range reasons {
		ids[name] = b.request(requester, defaultTarget+" "+reason)
	}
	if status, reply := b.command(requester, defaultTarget+" "+strings.Repeat("x", approvals.MaxReasonLen+1)); status != http.StatusOK || !strings.Contains(reply.Text, "keep it to") {
		t.Errorf("an over-long reason answered %d %q", status, reply.Text)
	}

	for name, id := range ids {
		r := b.waitSettledPosted(id)
		m, ok := b.slack.Message(testChannel, r.MessageTS)
		if !ok {
			t.Fatalf("%s: the approval message was not posted (Slack refused it?)\n%s", name, b.logs.String())
		}
		checkSectionsFit(t, name, m.Blocks)
		raw := string(m.BlocksJSON)
		for _, bad := range []string{"<!channel>", "<!here>", "<@U0ANA>", "<#C0001>", "<!subteam", "<https://evil"} {
			if strings.Contains(raw, bad) {
				t.Errorf("%s: %q reached the channel unescaped", name, bad)
			}
		}
	}
	if text := b.approvalMessage(ids["mentions"]).VisibleText(); !strings.Contains(text, "&lt;!channel&gt; &lt;!here&gt; &lt;@U0ANA&gt;") || !strings.Contains(text, "&amp; *bold*") {
		t.Errorf("mentions not shown escaped:\n%s", text)
	}
	if n := strings.Count(b.logs.String(), "Slack refused a message"); n != 0 {
		t.Errorf("Slack refused %d messages", n)
	}

	// OpenAI's words are untrusted too: an error message, and names and
	// permissions in the summary, built to inject and to overflow.
	b.openai.RefuseAssign(strings.Repeat(inject, 200), "invalid_request_error", "evil<!channel>", 400)
	failed := b.approve(defaultTarget + " error text from OpenAI")
	b.waitSettled(failed)
	b.openai.RefuseAssign("", "", "", 0)
	b.openai.AddGroup("group_evil", strings.Repeat("<!here> & ", 100), false)
	var perms []string
	for i := range 400 {
		perms = append(perms, fmt.Sprintf("api.<!channel>.%03d.%s", i, strings.Repeat("w", 40)))
	}
	b.openai.AddRole(openaitest.DefaultProjectID, openaitest.Role{ID: "role_evil", Name: strings.Repeat("<@U0ANA>", 50), Description: strings.Repeat("<!channel>&", 500), Permissions: perms})
	applied := b.approve("proj_abc group_evil role_evil summary from OpenAI")
	if r := b.waitSettled(applied); r.State != approvals.StateApplied {
		t.Fatalf("state %s", r.State)
	}
	for _, id := range []uint64{failed, applied} {
		m := b.resultMessage(id)
		checkSectionsFit(t, fmt.Sprintf("result of #%d", id), m.Blocks)
		for _, bad := range []string{"<!channel>", "<!here>", "<@U0ANA>"} {
			if strings.Contains(string(m.BlocksJSON), bad) || strings.Contains(m.Text, bad) {
				t.Errorf("result of #%d: %q reached the channel unescaped", id, bad)
			}
		}
	}
	if n := strings.Count(b.logs.String(), "Slack refused a message"); n != 0 {
		t.Errorf("Slack refused %d messages", n)
	}
}

// waitSettledPosted waits until request id's approval message is posted
// (or refused for good).
func (b *bot) waitSettledPosted(id uint64) approvals.Request {
	b.t.Helper()
	var r approvals.Request
	b.waitFor(fmt.Sprintf("request %d's approval message", id), func() bool {
		r = b.stored(id)
		return r.MessageTS != "" || r.State.Final() || r.State == approvals.StateApplied
	})
	return r
}

// checkSectionsFit re-checks the limits Slack enforces on what was posted.
func checkSectionsFit(t *testing.T, name string, blocks []map[string]any) {
	t.Helper()
	if len(blocks) > slackfake.MaxBlocks {
		t.Errorf("%s: %d blocks", name, len(blocks))
	}
	for i, bl := range blocks {
		if n := utf8.RuneCountInString(textOfBlock(bl["text"])); n > slackfake.MaxSectionText {
			t.Errorf("%s: block %d text is %d characters", name, i, n)
		}
		fields, _ := bl["fields"].([]any)
		for _, f := range fields {
			if n := utf8.RuneCountInString(textOfBlock(f)); n > slackfake.MaxSectionFieldText {
				t.Errorf("%s: block %d field is %d characters", name, i, n)
			}
		}
	}
}

func textOfBlock(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["text"].(string)
	return s
}

// TestNoSecretInAnyOutput drives the paths where a secret could leak (an
// API error echoing the admin key, failures, retries, refusals, private
// answers, `bot check`) and greps everything captured: the bot's logs, every
// version of every Slack message, ephemerals and response_url posts, command
// answers, /metrics, and every request OpenAI received (the Authorization
// header aside, which must carry the key).
func TestNoSecretInAnyOutput(t *testing.T) {
	t.Parallel()
	b := newBot(t, map[string]string{"ROLEGATE_OPENAI_MAX_ATTEMPTS": "2"})
	// The worst OpenAI can do: echo the whole key it was sent (the real API
	// echoes a masked one). It never sees Slack's secrets.
	echo := "Incorrect API key provided: " + testAdminKey + "."
	var captured []string
	add := func(s ...string) { captured = append(captured, s...) }

	b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 503, Message: echo})
	b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 401, Message: echo, Code: "invalid_api_key"})
	failed := b.approve(defaultTarget + " a key-echoing error")
	b.waitSettled(failed)
	if r := b.stored(failed); r.Failure == nil || !strings.Contains(r.Failure.Message, "[redacted]") {
		t.Errorf("the stored failure does not show the key redacted: %+v", r.Failure)
	}
	if !strings.Contains(b.resultMessage(failed).VisibleText(), "Incorrect API key provided: [redacted]") {
		t.Error("the posted error does not show the key redacted")
	}

	b.slack.FailNext("chat.update", 1, "invalid_auth")
	b.slack.RateLimitNext("chat.postMessage", 1, 0)
	ok := b.approve("proj_abc group_01 role_02 a normal one")
	b.waitSettled(ok)
	for _, text := range []string{"help", "nonsense", "proj_abc ../x role_01 why", "cancel 999", fmt.Sprintf("cancel %d", ok)} {
		_, reply := b.command(requester, text)
		add(reply.Text)
	}
	b.click(stranger, slackapp.ActionApprove, ok)
	b.click(approverBob, slackapp.ActionApprove, ok)
	b.requestFromChannelWithoutBot("C0NOPE")
	b.waitFor("notices", func() bool { return len(b.slack.Ephemerals()) >= 3 })

	b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpListProjects, Status: 401, Message: echo})
	var check strings.Builder
	_ = run(t.Context(), []string{"check"}, envFrom(b.env), &check, &check)
	add(check.String())

	resp, err := http.Get("http://" + b.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	add(string(metrics))

	b.stop()
	add(b.logs.String())
	for _, ch := range []string{testChannel, "C0NOPE", requester} {
		for _, m := range b.slack.Messages(ch) {
			for _, v := range m.History {
				add(v.Text, string(v.BlocksJSON), string(v.AttachmentsJSON))
			}
		}
	}
	for _, e := range b.slack.Ephemerals() {
		add(e.Text, string(e.BlocksJSON))
	}
	for _, rec := range b.openai.Requests() {
		h := rec.Header.Clone()
		h.Del("Authorization")
		add(rec.Path, rec.Query, fmt.Sprint(h))
	}
	all := strings.Join(captured, "\n")
	checkNoSecrets(t, "the captured output", all)
	// The test is only as good as what it captured.
	for _, want := range []string{"Incorrect API key provided: [redacted]", "Request #", "rolegate_commands_total", "FAIL", "There is no request #999"} {
		if !strings.Contains(all, want) {
			t.Errorf("captured output lacks %q: the test did not see that path", want)
		}
	}
}

// requestFromChannelWithoutBot makes a request from a channel the bot is not in,
// so the requester is answered privately through response_url.
func (b *bot) requestFromChannelWithoutBot(channel string) {
	b.t.Helper()
	b.slack.AddChannel(channel, false)
	id := b.requestIn(channel, defaultTarget+" from a channel without the bot")
	b.waitSettled(id)
}

// TestCommandWithUnicodeSpaces sends commands whose words are separated by
// spaces other than ASCII ones, as pasted text often is. The parser once
// split such text in two different ways and panicked; in Socket Mode that
// panic killed the process (and Slack redelivers the envelope).
func TestCommandWithUnicodeSpaces(t *testing.T) {
	t.Parallel()
	texts := map[string]string{
		"no-break space": "proj_abc group_01 role_01\u00a0need access",
		"vertical tab":   "proj_abc\vgroup_01 role_01 need access",
		"ideographic":    "proj_abc group_01\u3000role_01\u2003need access",
	}
	t.Run("http", func(t *testing.T) {
		t.Parallel()
		b := newBot(t, nil)
		for name, text := range texts {
			id := b.request(requester, text)
			if r := b.stored(id); r.Reason != "need access" || r.Ask.Role != "role_01" || r.Ask.Group != "group_01" {
				t.Errorf("%s: stored %+v", name, r.Ask)
			}
		}
	})
	t.Run("socket mode", func(t *testing.T) {
		t.Parallel()
		b := newSocketBot(t)
		for name, text := range texts {
			if reply := b.socketCommand(requester, text); !strings.Contains(reply.Text, "is being checked") {
				t.Errorf("%s: answered %q", name, reply.Text)
			}
		}
	})
}
