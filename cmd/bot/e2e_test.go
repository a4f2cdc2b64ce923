package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

func TestApproveAssignsOnceAndPostsTheSummary(t *testing.T) {
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" need key rotation for incident 42")

	msg := b.approvalMessage(id)
	text := msg.VisibleText()
	for _, want := range []string{"<@" + requester + ">", "proj_abc", "group_01", "role_01", "need key rotation for incident 42", "0 of 1", "Expires", "Approve", "Deny"} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	if r := b.stored(id); r.State != approvals.StatePending {
		t.Fatalf("request stored as %s before any decision", r.State)
	}

	if status := b.click(approverAna, slackapp.ActionApprove, id); status != http.StatusOK {
		t.Fatalf("click answered %d", status)
	}
	r := b.waitState(id, approvals.StateApplied)
	if r.Decider != approverAna || r.Assignment == nil {
		t.Fatalf("applied request = %+v", r)
	}
	result := b.resultMessage(id)
	if !result.ReplyBroadcast {
		t.Error("the result is not shown in the channel (reply_broadcast)")
	}
	rt := result.VisibleText()
	for _, want := range []string{"group_01", "role_01", r.Assignment.Group.Name, r.Assignment.Role.Name, "SCIM-managed", "Predefined", "Resource type", "Group created"} {
		if !strings.Contains(rt, want) {
			t.Errorf("result lacks %q:\n%s", want, rt)
		}
	}
	for _, p := range r.Assignment.Role.Permissions {
		if !strings.Contains(rt, p) {
			t.Errorf("result lacks permission %q", p)
		}
	}
	if got := b.openai.AssignPOSTs(); got != 1 {
		t.Fatalf("%d assignment POSTs, want 1", got)
	}
	if got := b.openai.Assignments("proj_abc", "group_01"); len(got) != 1 || got[0] != "role_01" {
		t.Fatalf("assignments = %v", got)
	}
	b.waitFor("the approval message to show the outcome without buttons", func() bool {
		m := b.approvalMessage(id)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "Role assigned") && strings.Contains(m.VisibleText(), "<@"+approverAna+">")
	})

	// A second click after the fact changes nothing and tells the clicker.
	b.click(approverBob, slackapp.ActionApprove, id)
	b.waitFor("a notice to the late approver", func() bool { return len(b.ephemeralsTo(approverBob)) == 1 })
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Fatalf("late click caused %d POSTs", n)
	}
}

func TestDenyEndsTheRequest(t *testing.T) {
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" please")
	b.deny(approverBob, id, "not now")
	r := b.waitState(id, approvals.StateDenied)
	if r.Decider != approverBob {
		t.Fatalf("decider = %q", r.Decider)
	}
	b.waitFor("the approval message to say who denied", func() bool {
		m := b.approvalMessage(id)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "Denied") && strings.Contains(m.VisibleText(), "<@"+approverBob+">")
	})
	b.click(approverAna, slackapp.ActionApprove, id)
	b.waitFor("a notice that the request was denied", func() bool { return len(b.ephemeralsTo(approverAna)) == 1 })
	if strings.Contains(b.ephemeralsTo(approverAna)[0].Text, "Denied") == false {
		t.Errorf("notice = %q", b.ephemeralsTo(approverAna)[0].Text)
	}
	if n := b.openai.AssignPOSTs(); n != 0 {
		t.Fatalf("denied request caused %d POSTs", n)
	}
}

func TestOnlyApproversOtherThanTheRequesterDecide(t *testing.T) {
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" mine")
	b.approvalMessage(id)

	b.click(requester, slackapp.ActionApprove, id) // the requester is an approver too
	b.click(stranger, slackapp.ActionApprove, id)
	b.click(stranger, slackapp.ActionDeny, id)
	b.waitFor("three private notices", func() bool {
		return len(b.ephemeralsTo(requester)) == 1 && len(b.ephemeralsTo(stranger)) == 2
	})
	if got := b.ephemeralsTo(requester)[0].Text; !strings.Contains(got, "cannot approve") {
		t.Errorf("requester's notice = %q", got)
	}
	if got := b.ephemeralsTo(stranger)[0].Text; !strings.Contains(got, "approvers") {
		t.Errorf("stranger's notice = %q", got)
	}
	r := b.stored(id)
	if r.State != approvals.StatePending || len(r.Approvals) != 0 {
		t.Fatalf("refused clicks changed the request: %+v", r)
	}
	if n := b.openai.AssignPOSTs(); n != 0 {
		t.Fatalf("%d POSTs", n)
	}
	if m := b.approvalMessage(id); !hasButtons(m) || m.Updates != 0 {
		t.Fatalf("refused clicks touched the approval message (updates=%d)", m.Updates)
	}
}

func TestQuorumOfTwo(t *testing.T) {
	b := newBot(t, map[string]string{"ROLEGATE_APPROVALS_REQUIRED": "2"})
	id := b.request(requester, defaultTarget+" two keys")
	b.click(approverAna, slackapp.ActionApprove, id)
	b.waitFor("the message to show 1 of 2", func() bool {
		m := b.approvalMessage(id)
		return strings.Contains(m.VisibleText(), "1 of 2, by <@"+approverAna+">") && hasButtons(m)
	})
	b.click(approverAna, slackapp.ActionApprove, id) // counted once
	b.waitFor("a notice that ana already approved", func() bool { return len(b.ephemeralsTo(approverAna)) == 1 })
	if r := b.stored(id); r.State != approvals.StatePending || len(r.Approvals) != 1 {
		t.Fatalf("after a repeated approval: %+v", r)
	}
	b.click(approverBob, slackapp.ActionApprove, id)
	b.waitState(id, approvals.StateApplied)
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Fatalf("%d POSTs", n)
	}
}

func TestConcurrentClicksAssignOnce(t *testing.T) {
	approvers := make([]string, 20)
	for i := range approvers {
		approvers[i] = fmt.Sprintf("U0APP%02d", i)
	}
	b := newBot(t, map[string]string{"ROLEGATE_APPROVERS": strings.Join(approvers, ",")})
	id := b.request(requester, defaultTarget+" race")
	b.approvalMessage(id)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, a := range approvers {
		wg.Go(func() {
			<-start
			if s := b.click(a, slackapp.ActionApprove, id); s != http.StatusOK {
				t.Errorf("click answered %d", s)
			}
		})
	}
	close(start)
	wg.Wait()
	r := b.waitState(id, approvals.StateApplied)
	b.resultMessage(id)
	if len(r.Approvals) != 1 {
		t.Fatalf("%d approvals recorded, want exactly one decision", len(r.Approvals))
	}
	b.waitFor("19 notices to the others", func() bool { return len(b.notices()) == 19 })
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
}

func TestRestartKeepsPendingAndApprovedRequests(t *testing.T) {
	b := newBot(t, map[string]string{"ROLEGATE_OPENAI_MAX_ATTEMPTS": "100"})
	pending := b.request(requester, defaultTarget+" survives a restart")
	approved := b.request(requester, "proj_abc group_01 role_02 approved before restart")
	b.approvalMessage(pending)
	b.approvalMessage(approved)

	b.openai.FailNext(1000, http.StatusServiceUnavailable) // OpenAI down: the approved one waits
	b.click(approverAna, slackapp.ActionApprove, approved)
	b.waitState(approved, approvals.StateApproved)
	b.stop()

	b.openai.ClearFaults()
	b.start()
	b.waitState(approved, approvals.StateApplied)
	b.click(approverBob, slackapp.ActionApprove, pending)
	b.waitState(pending, approvals.StateApplied)
	if n := b.openai.AssignPOSTs(); n != 2 {
		t.Fatalf("%d POSTs for two approved requests", n)
	}

	b.waitFor("the outbox to drain", func() bool { return b.outboxLen() == 0 })
	b.restart() // finished requests are never executed again: nothing is left to run
	if n := b.outboxLen(); n != 0 {
		t.Fatalf("%d jobs in the outbox after a restart with only finished requests", n)
	}
	for _, id := range []uint64{pending, approved} {
		if r := b.stored(id); r.State != approvals.StateApplied {
			t.Fatalf("request %d is %s after the restart", id, r.State)
		}
	}
	if n := b.openai.AssignPOSTs(); n != 2 {
		t.Fatalf("%d POSTs after a restart with only finished requests", n)
	}
}

func TestCommandAnswers(t *testing.T) {
	b := newBot(t, nil)
	tests := []struct {
		text string
		want string
	}{
		{"help", "<project> <group> <role> [for <duration>] <reason…>"},
		{"proj_abc", "the group is missing"},
		{"proj_abc group_01 role_01", "a reason is required"},
		{`proj_abc "Support Team`, "is not closed"},
		{"proj_abc group_01 role_01 for 400d why", "longer than the longest grant"},
		{"cancel 999", "no request #999"},
		// The empty command (which opens the modal) and names that are not
		// ids (which the worker resolves) are answered by what app.go does
		// with Command.Kind and Command.Ask; their rows belong with that.
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			status, reply := b.command(requester, tt.text)
			if status != http.StatusOK || reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, tt.want) {
				t.Fatalf("%q answered %d %+v, want private text containing %q", tt.text, status, reply, tt.want)
			}
		})
	}
	if n := b.storedCount(); n != 0 {
		t.Fatalf("%d requests stored by help and malformed commands", n)
	}
	if n := b.slack.Calls("chat.postMessage"); n != 0 {
		t.Fatalf("%d messages posted by help and malformed commands", n)
	}
}

func TestReplayedCommandCreatesOneRequest(t *testing.T) {
	b := newBot(t, nil)
	form := b.commandForm(requester, testChannel, defaultTarget+" once")
	_, first := b.commandForm2(form)
	_, again := b.commandForm2(form)
	// The replay names the same request (its state may have moved on).
	if !strings.HasPrefix(first.Text, "Request #1 ") || !strings.HasPrefix(again.Text, "Request #1 ") {
		t.Fatalf("answers differ: %q vs %q", first.Text, again.Text)
	}
	b.approvalMessage(1)
	if n := b.storedCount(); n != 1 {
		t.Fatalf("%d requests for one replayed command", n)
	}
}

func TestCancelByRequester(t *testing.T) {
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" oops")
	b.approvalMessage(id)
	if _, reply := b.command(stranger, fmt.Sprintf("cancel %d", id)); !strings.Contains(reply.Text, "Only the person who asked") {
		t.Fatalf("stranger cancel: %q", reply.Text)
	}
	if _, reply := b.command(requester, fmt.Sprintf("cancel %d", id)); !strings.Contains(reply.Text, "cancelled") {
		t.Fatalf("cancel: %q", reply.Text)
	}
	b.waitState(id, approvals.StateCancelled)
	b.waitFor("the message to show the cancellation", func() bool {
		m := b.approvalMessage(id)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "Cancelled")
	})
}

func TestUnpostableApprovalTellsTheRequester(t *testing.T) {
	b := newBot(t, nil)
	b.slack.AddChannel("C0SECRET", false)
	form := b.commandForm(requester, "C0SECRET", defaultTarget+" from a channel without the bot")
	_, reply := b.commandForm2(form)
	if !strings.Contains(reply.Text, "Request #1 ") {
		t.Fatalf("answer: %q", reply.Text)
	}
	r := b.waitState(1, approvals.StateCancelled)
	if !strings.Contains(r.Note, "not_in_channel") {
		t.Fatalf("note = %q", r.Note)
	}
	b.waitFor("a private explanation to the requester", func() bool {
		for _, e := range b.ephemeralsTo(requester) {
			if strings.Contains(e.Text, "/invite") && strings.Contains(e.Text, "not_in_channel") {
				return true
			}
		}
		return false
	})
}

func TestForgedOrStaleRequestsChangeNothing(t *testing.T) {
	b := newBot(t, nil)
	body := b.commandForm(requester, testChannel, defaultTarget+" forged").Encode()
	send := func(name string, edit func(*http.Request)) int {
		d := b.driver()
		req, err := d.NewRequest(t.Context(), slackfake.CommandsPath, body)
		if err != nil {
			t.Fatal(err)
		}
		edit(req)
		resp, err := d.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	tests := []struct {
		name string
		edit func(*http.Request)
		want int
	}{
		{"unsigned", func(r *http.Request) { r.Header.Del("X-Slack-Signature") }, 401},
		{"wrong secret", func(r *http.Request) {
			r.Header.Set("X-Slack-Signature", slackfake.Signature("guess", r.Header.Get("X-Slack-Request-Timestamp"), []byte(body)))
		}, 401},
		{"stale", func(r *http.Request) {
			ts := fmt.Sprint(time.Now().Add(-6 * time.Minute).Unix())
			r.Header.Set("X-Slack-Request-Timestamp", ts)
			r.Header.Set("X-Slack-Signature", slackfake.Signature(testSecret, ts, []byte(body)))
		}, 401},
		{"forged user", func(r *http.Request) {
			forged := strings.Replace(body, "user_id="+requester, "user_id="+approverAna, 1)
			r.Body = http.NoBody
			r.Body, r.ContentLength = ioNopCloser(forged), int64(len(forged))
		}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := send(tt.name, tt.edit); got != tt.want {
				t.Fatalf("answered %d, want %d", got, tt.want)
			}
		})
	}
	big := strings.Repeat("x", slackapp.MaxBody+1)
	if resp := b.post("/slack/commands", big, time.Now()); resp.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body answered %d", resp.Status)
	}
	if n := b.storedCount(); n != 0 {
		t.Fatalf("%d requests stored from refused requests", n)
	}
}

func TestHealthEndpointsAndHealthcheck(t *testing.T) {
	b := newBot(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + b.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s answered %d", path, resp.StatusCode)
		}
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"healthcheck"}, envFrom(map[string]string{"ROLEGATE_ADDR": b.addr}), &out, &out); err != nil || !strings.Contains(out.String(), "healthy") {
		t.Fatalf("healthcheck: %v %q", err, out.String())
	}
	b.stop()
	out.Reset()
	if err := run(t.Context(), []string{"healthcheck"}, envFrom(map[string]string{"ROLEGATE_ADDR": b.addr}), &out, &out); err == nil || !strings.Contains(out.String(), "unhealthy") {
		t.Fatalf("healthcheck of a stopped bot: %v %q", err, out.String())
	}
}

func TestMetricsAfterAFlow(t *testing.T) {
	b := newBot(t, nil)
	b.slack.FailNext("chat.update", 1, "internal_error") // retried, and counted
	id := b.request(requester, defaultTarget+" measured")
	b.command(requester, "nonsense")
	b.click(stranger, slackapp.ActionApprove, id)
	b.click(approverAna, slackapp.ActionApprove, id)
	b.resultMessage(id)
	resp, err := http.Get("http://" + b.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	body := string(raw)
	for _, want := range []string{
		`rolegate_commands_total{outcome="created"} 1`,
		`rolegate_commands_total{outcome="invalid"} 1`,
		`rolegate_decisions_total{action="approve",outcome="recorded"} 1`,
		`rolegate_decisions_total{action="approve",outcome="refused_not_approver"} 1`,
		`rolegate_openai_calls_total{outcome="applied",status="200"} 1`,
		`rolegate_ack_seconds_count{kind="command"} 2`,
		`rolegate_ack_seconds_count{kind="interaction"} 2`,
		`rolegate_requests_pending 0`,
		`rolegate_slack_deliveries_total{kind="post_approval",outcome="ok"} 1`,
		`rolegate_slack_api_errors_total{code="internal_error",method="chat.update"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
