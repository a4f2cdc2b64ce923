package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// Slack faults, end to end: state changes are stored with the messages they
// owe (the outbox), so a failing Slack delays messages but never loses one,
// and never reorders one request's messages.

// slackCalls records when each Web API call reached the fake, by method, and
// the channel it named.
type slackCalls struct {
	mu    sync.Mutex
	times map[string][]time.Time
	chans map[string][]string
}

func recordSlackCalls(sl *slackfake.Server) *slackCalls {
	c := &slackCalls{times: map[string][]time.Time{}, chans: map[string][]string{}}
	sl.OnCall(func(method string, p url.Values) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.times[method] = append(c.times[method], time.Now())
		c.chans[method] = append(c.chans[method], p.Get("channel"))
	})
	return c
}

func (c *slackCalls) at(method string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.times[method]...)
}

func (c *slackCalls) to(method, channel string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ch := range c.chans[method] {
		if ch == channel {
			n++
		}
	}
	return n
}

// requestIn runs the slash command in channel and returns the request id.
func (b *bot) requestIn(channel, text string) uint64 {
	b.t.Helper()
	status, reply := b.commandForm2(b.commandForm(requester, channel, text))
	var id uint64
	if _, err := fmt.Sscanf(reply.Text, "Request #%d is being checked", &id); status != http.StatusOK || err != nil {
		b.t.Fatalf("command in %s answered %d %q", channel, status, reply.Text)
	}
	return id
}

func TestSlackTemporaryFaultsLoseNothing(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	calls := recordSlackCalls(b.slack)
	const retryAfter = time.Second
	const slow = 200 * time.Millisecond
	b.slack.SetDelay("chat.postMessage", slow) // the 429 answer takes this long
	b.slack.RateLimitNext("chat.postMessage", 1, retryAfter)

	id := b.request(requester, defaultTarget+" through a flaky Slack")
	b.approvalMessage(id)
	// The first two posts are the approval message's 429 and its retry;
	// the requester's pending DM may follow at once.
	posts := calls.at("chat.postMessage")
	if len(posts) < 2 {
		t.Fatalf("%d chat.postMessage calls for the approval message, want a 429 and a retry", len(posts))
	}
	if gap, floor := posts[1].Sub(posts[0]), slow+retryAfter-20*time.Millisecond; gap < floor {
		t.Errorf("chat.postMessage retried %s after the 429 arrived, before Retry-After (at least %s)", gap, floor)
	}

	b.slack.SetDelay("chat.postMessage", 0)
	b.waitFor("the requester's pending DM", func() bool { return len(b.slack.Messages(requester)) == 1 })
	b.slack.ServerErrorNext("chat.update", 1, http.StatusServiceUnavailable)
	b.slack.DropNext("chat.update", 1)
	b.slack.DropNext("chat.postMessage", 1) // the result's first try
	b.click(approverAna, slackapp.ActionApprove, id)
	r := b.waitSettled(id)
	if r.State != approvals.StateApplied {
		t.Fatalf("state %s, want applied", r.State)
	}

	if n := b.slack.Calls("chat.update"); n != 4 {
		t.Errorf("%d chat.update calls, want 4 (503, dropped, approved, applied)", n)
	}
	// The dropped post is the result or one of the requester's DMs,
	// whichever came first; either is retried.
	if n := b.slack.Calls("chat.postMessage"); n != 7 {
		t.Errorf("%d chat.postMessage calls, want 7 (429, approval, one dropped, result, and the requester's DMs: pending, approved, applied)", n)
	}
	if n := len(b.slack.Messages(requester)); n != 3 {
		t.Errorf("the requester got %d DMs, want 3 (pending, approved, applied)", n)
	}
	if n := strings.Count(b.logs.String(), "Slack delivery failed; retrying"); n != 4 {
		t.Errorf("%d delivery retries logged, want one per injected fault (4)", n)
	}

	// Every state change reached the channel, in order.
	msg := b.approvalMessage(id)
	var got []string
	for _, v := range msg.History {
		got = append(got, v.Source)
	}
	// The OpenAI call does not wait for Slack (its own lane), so while
	// Slack failed the role may already have been assigned: the update
	// queued at the approval then shows the outcome, as rendered on delivery.
	wantSteps := []string{"Waiting for approval", "Assigning the role", "Role assigned"}
	if len(msg.History) == len(wantSteps) && strings.Contains(msg.History[1].VisibleText(), "Role assigned") {
		wantSteps[1] = "Role assigned"
	}
	if len(msg.History) != len(wantSteps) {
		t.Fatalf("approval message went through %d versions (%v), want %d", len(msg.History), got, len(wantSteps))
	}
	for i, want := range wantSteps {
		if v := msg.History[i]; !strings.Contains(v.VisibleText(), want) {
			t.Errorf("version %d (%s) lacks %q:\n%s", i, v.Source, want, v.VisibleText())
		}
		if i > 0 && msg.History[i].At.Before(msg.History[i-1].At) {
			t.Errorf("version %d recorded before version %d", i, i-1)
		}
	}
	var results []slackfake.Message
	for _, m := range b.slack.Messages(testChannel) {
		if m.ThreadTS == msg.TS {
			results = append(results, m)
		}
	}
	if len(results) != 1 {
		t.Fatalf("%d result messages, want 1", len(results))
	}
	if results[0].History[0].At.Before(msg.History[2].At) {
		t.Error("the result was posted before the approval message showed the outcome")
	}
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
}

func TestSlackPermanentErrorsDoNotBlockOthers(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	calls := recordSlackCalls(b.slack)
	b.slack.AddChannel("C0NOTIN", false) // exists, the bot is not a member
	const gone = "C0GONE"                // does not exist

	notIn := b.requestIn("C0NOTIN", defaultTarget+" from a channel without the bot")
	missing := b.requestIn(gone, defaultTarget+" from a channel that is gone")
	b.slack.FailNext("chat.update", 1, "invalid_auth")
	ok := b.approve(defaultTarget + " in a good channel")

	r := b.waitSettled(ok)
	if r.State != approvals.StateApplied {
		t.Fatalf("the good request is %s, want applied", r.State)
	}
	msg := b.approvalMessage(ok)
	if last := msg.VisibleText(); hasButtons(msg) || !strings.Contains(last, "Role assigned") {
		t.Errorf("the good request's message does not show the outcome:\n%s", last)
	}
	b.resultMessage(ok)

	for _, tt := range []struct {
		id   uint64
		code string
		hint string
	}{
		{notIn, "not_in_channel", "invite the bot to the channel"},
		{missing, "channel_not_found", "the channel is private or gone"},
	} {
		r := b.waitSettled(tt.id)
		if r.State != approvals.StateCancelled || !strings.Contains(r.Note, tt.code) {
			t.Errorf("request %d: %s %q, want cancelled naming %s", tt.id, r.State, r.Note, tt.code)
		}
		if !strings.Contains(b.logs.String(), tt.hint) {
			t.Errorf("no hint %q logged for %s", tt.hint, tt.code)
		}
		b.waitFor("a private explanation of "+tt.code, func() bool {
			for _, e := range b.ephemeralsTo(requester) {
				if strings.Contains(e.Text, fmt.Sprintf("request #%d", tt.id)) && strings.Contains(e.Text, tt.code) {
					return true
				}
			}
			return false
		})
	}
	if !strings.Contains(b.logs.String(), "SLACK_BOT_TOKEN is wrong or revoked") {
		t.Error("no hint logged for invalid_auth")
	}
	// Permanent errors are not retried.
	if n := calls.to("chat.postMessage", "C0NOTIN"); n != 1 {
		t.Errorf("%d posts to C0NOTIN, want 1", n)
	}
	if n := calls.to("chat.postMessage", gone); n != 1 {
		t.Errorf("%d posts to %s, want 1", n, gone)
	}
	if n := b.slack.Calls("chat.update"); n != 2 {
		t.Errorf("%d chat.update calls, want 2 (refused with invalid_auth, then applied)", n)
	}
	if n := strings.Count(b.logs.String(), "Slack refused a message; not retrying"); n != 3 {
		t.Errorf("%d permanent refusals logged, want 3", n)
	}
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Errorf("%d POSTs, want 1 (only the good request was approved)", n)
	}
}
