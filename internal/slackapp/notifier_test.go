package slackapp

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

const notifierToken = "xoxb-notifier-test"

// newTestNotifier is a Notifier on a fake Slack, logging into the returned
// buffer.
func newTestNotifier(t *testing.T) (*Notifier, *slackfake.Server, *bytes.Buffer) {
	t.Helper()
	fake := slackfake.New(notifierToken)
	t.Cleanup(fake.Close)
	var logs bytes.Buffer
	n := &Notifier{
		Client: slack.New(notifierToken, slack.OptionAPIURL(fake.APIURL())),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	return n, fake, &logs
}

// pendingNow is sampleRequest created now, in the fake's default channel.
func pendingNow() approvals.Request {
	r := sampleRequest()
	r.ChannelID = slackfake.DefaultChannel
	r.CreatedAt = time.Now().UTC()
	r.ExpiresAt = r.CreatedAt.Add(24 * time.Hour)
	return r
}

// approvalMessages returns the top-level messages marked as request id's
// approval message.
func approvalMessages(t *testing.T, fake *slackfake.Server, id string) []slackfake.Message {
	t.Helper()
	var out []slackfake.Message
	for _, m := range fake.Messages(slackfake.DefaultChannel) {
		var md struct {
			EventType    string            `json:"event_type"`
			EventPayload map[string]string `json:"event_payload"`
		}
		if m.ThreadTS == "" && json.Unmarshal(m.Metadata, &md) == nil && md.EventType == ApprovalEventType && md.EventPayload["request_id"] == id {
			out = append(out, m)
		}
	}
	return out
}

// TestPostApprovalAdoptsTheMessageAnEarlierAttemptPosted: a post taken
// over from a process that died after Slack accepted it finds the message
// in the channel and returns its ts instead of posting it again; a fresh
// post posts without looking.
func TestPostApprovalAdoptsTheMessageAnEarlierAttemptPosted(t *testing.T) {
	t.Parallel()
	n, fake, _ := newTestNotifier(t)
	r := pendingNow()
	// Other requests' messages around it, and enough of them to need a
	// second page of history.
	other := r
	other.ID = 41
	if _, err := n.PostApproval(t.Context(), other, approvals.Posting{}); err != nil {
		t.Fatal(err)
	}
	first, err := n.PostApproval(t.Context(), r, approvals.Posting{})
	if err != nil {
		t.Fatal(err)
	}
	for range lookupPage {
		if _, _, err := n.Client.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("chatter", false)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fake.Calls("conversations.history"); got != 0 {
		t.Errorf("a fresh post looked in the history %d times, want none", got)
	}
	again, err := n.PostApproval(t.Context(), r, approvals.Posting{MayHavePosted: true})
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("the taken-over post returned ts %q, want the earlier message's %q", again, first)
	}
	if msgs := approvalMessages(t, fake, "42"); len(msgs) != 1 {
		t.Errorf("request 42 has %d approval messages, want 1", len(msgs))
	}
	if got := fake.Calls("conversations.history"); got != 2 {
		t.Errorf("conversations.history called %d times, want 2 (two pages)", got)
	}

	// Nothing posted before: the taken-over post looks, then posts.
	fresh := pendingNow()
	fresh.ID = 43
	ts, err := n.PostApproval(t.Context(), fresh, approvals.Posting{MayHavePosted: true})
	if err != nil || ts == "" {
		t.Fatalf("PostApproval = %q, %v", ts, err)
	}
	if msgs := approvalMessages(t, fake, "43"); len(msgs) != 1 || msgs[0].TS != ts {
		t.Errorf("request 43's approval messages = %+v, want the one posted (%s)", msgs, ts)
	}
	if got := fake.Calls("auth.test"); got != 1 {
		t.Errorf("auth.test called %d times, want once (the bot id is kept)", got)
	}
}

// TestPostApprovalPostsWhenTheLookupFails: whatever keeps the Notifier from
// looking (a scope missing from an app installed before it was needed,
// the bot not in the channel, Slack limiting or failing), it logs why and
// posts: a message twice is better than none.
func TestPostApprovalPostsWhenTheLookupFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fail     func(fake *slackfake.Server)
		botID    string // set: the earlier message is another app's
		wantLogs []string
	}{
		{"missing scope", func(f *slackfake.Server) { f.FailNext("conversations.history", 1, "missing_scope") }, "", []string{"missing_scope", "channels:history"}},
		{"not in channel", func(f *slackfake.Server) { f.FailNext("conversations.history", 1, "not_in_channel") }, "", []string{"not_in_channel", "/invite"}},
		{"rate limited", func(f *slackfake.Server) { f.RateLimitNext("conversations.history", 1, time.Second) }, "", []string{"rate limit"}},
		{"Slack down", func(f *slackfake.Server) { f.ServerErrorNext("conversations.history", 1, 503) }, "", []string{"503"}},
		{"auth.test fails", func(f *slackfake.Server) { f.ServerErrorNext("auth.test", 1, 500) }, "", []string{"auth.test"}},
		{"another app's message", func(*slackfake.Server) {}, "B0OTHERAPP", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, fake, logs := newTestNotifier(t)
			r := pendingNow()
			first, err := n.PostApproval(t.Context(), r, approvals.Posting{})
			if err != nil {
				t.Fatal(err)
			}
			n.botID = tt.botID
			tt.fail(fake)
			ts, err := n.PostApproval(t.Context(), r, approvals.Posting{MayHavePosted: true})
			if err != nil {
				t.Fatalf("PostApproval = %v, want it posted despite the failed look-up", err)
			}
			if ts == "" || ts == first {
				t.Errorf("PostApproval returned %q (earlier message %q), want a new message", ts, first)
			}
			if msgs := approvalMessages(t, fake, "42"); len(msgs) != 2 {
				t.Errorf("%d approval messages, want the earlier one and the new one", len(msgs))
			}
			for _, want := range tt.wantLogs {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("logs do not say %q:\n%s", want, logs.String())
				}
			}
		})
	}
}

// TestPostResultAdoptsTheReplyAnEarlierAttemptPosted: the result reply
// is looked for in the approval message's thread (conversations.replies).
func TestPostResultAdoptsTheReplyAnEarlierAttemptPosted(t *testing.T) {
	t.Parallel()
	n, fake, _ := newTestNotifier(t)
	r := pendingNow()
	ts, err := n.PostApproval(t.Context(), r, approvals.Posting{})
	if err != nil {
		t.Fatal(err)
	}
	r.MessageTS, r.State = ts, approvals.StateApplied
	r.Assignment = &approvals.Assignment{Group: approvals.Group{ID: "group_01", Name: "Responders"}, Role: approvals.Role{ID: "role_01", Name: "Owner"}}
	results := func() int {
		k := 0
		for _, m := range fake.Messages(slackfake.DefaultChannel) {
			if m.ThreadTS == ts && strings.Contains(string(m.Metadata), ResultEventType) {
				k++
			}
		}
		return k
	}
	if err := n.PostResult(t.Context(), r, approvals.Posting{MayHavePosted: true}); err != nil {
		t.Fatal(err)
	}
	if err := n.PostResult(t.Context(), r, approvals.Posting{MayHavePosted: true}); err != nil {
		t.Fatal(err)
	}
	if got := results(); got != 1 {
		t.Errorf("%d results in the thread, want 1", got)
	}
	if got := fake.Calls("conversations.replies"); got != 2 {
		t.Errorf("conversations.replies called %d times, want 2", got)
	}
	fake.FailNext("conversations.replies", 1, "missing_scope")
	if err := n.PostResult(t.Context(), r, approvals.Posting{MayHavePosted: true}); err != nil {
		t.Fatal(err)
	}
	if got := results(); got != 2 {
		t.Errorf("%d results after a failed look-up, want it posted again (2)", got)
	}
}

// TestThreadRepliesAreAdoptedToo: the denial, the reminder and the reply
// that a grant ended are each posted once when an earlier attempt may have
// posted them; a failed revocation's report is posted again (a later
// failure reports anew), and a reply of one kind is not taken for another.
func TestThreadRepliesAreAdoptedToo(t *testing.T) {
	t.Parallel()
	n, fake, _ := newTestNotifier(t)
	r := pendingNow()
	ts, err := n.PostApproval(t.Context(), r, approvals.Posting{})
	if err != nil {
		t.Fatal(err)
	}
	r.MessageTS = ts
	replies := func(eventType string) int {
		k := 0
		for _, m := range fake.Messages(slackfake.DefaultChannel) {
			if m.ThreadTS == ts && strings.Contains(string(m.Metadata), eventType) {
				k++
			}
		}
		return k
	}
	twice := func(post func(approvals.Posting) error) {
		t.Helper()
		for _, p := range []approvals.Posting{{}, {MayHavePosted: true}} {
			if err := post(p); err != nil {
				t.Fatal(err)
			}
		}
	}

	twice(func(p approvals.Posting) error { return n.Remind(t.Context(), r, p) })
	denied := r
	denied.State, denied.Decider, denied.DenyReason = approvals.StateDenied, "UANA", "not during the freeze"
	twice(func(p approvals.Posting) error { return n.PostDenial(t.Context(), denied, p) })
	failing := r
	failing.State = approvals.StateApplied
	twice(func(p approvals.Posting) error { return n.PostRevocation(t.Context(), failing, p) })
	revoked := r
	revoked.State = approvals.StateRevoked
	twice(func(p approvals.Posting) error { return n.PostRevocation(t.Context(), revoked, p) })

	for eventType, want := range map[string]int{ReminderEventType: 1, DenialEventType: 1, RevokedEventType: 1} {
		if got := replies(eventType); got != want {
			t.Errorf("%d %s replies in the thread, want %d", got, eventType, want)
		}
	}
	failures := 0
	for _, m := range fake.Messages(slackfake.DefaultChannel) {
		if m.ThreadTS == ts && strings.Contains(m.Text, "could not be revoked") {
			failures++
		}
	}
	if failures != 2 {
		t.Errorf("%d failed-revocation reports, want both attempts posted", failures)
	}
}
