package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// TestManyRequestsAndClicksAtOnce fires 50 requests, then every approver's
// clicks on all of them at once (some double-clicked, some denied while
// others approve), with a quorum of 2. Whatever the interleaving, each
// request gets one decision, each approved request exactly one POST, and
// its message the final state.
func TestManyRequestsAndClicksAtOnce(t *testing.T) {
	t.Parallel()
	const n = 50
	approvers := []string{approverAna, approverBob, "U0CAT", "U0DAN"}
	b := newBot(t, map[string]string{
		"ROLEGATE_APPROVERS":          strings.Join(approvers, ","),
		"ROLEGATE_APPROVALS_REQUIRED": "2",
	})
	group := func(i int) string { return fmt.Sprintf("group_c%02d", i) }
	for i := range n {
		b.openai.AddGroup(group(i), "Concurrency "+strconv.Itoa(i), false)
	}

	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, reply := b.command(requester, fmt.Sprintf("proj_abc %s role_01 burst %d", group(i), i))
			if _, err := fmt.Sscanf(reply.Text, "Request #%d is being checked", &ids[i]); status != http.StatusOK || err != nil {
				t.Errorf("command %d answered %d %q", i, status, reply.Text)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	b.waitFor("50 approval messages", func() bool { return len(b.slack.Messages(testChannel)) >= n })

	// Every approver clicks on every request at once. On every fifth
	// request the last approver clicks Deny; on every third, each click is
	// a double-click.
	type click struct {
		user, action string
		id           uint64
	}
	var clicks []click
	for i, id := range ids {
		for j, who := range approvers {
			action := slackapp.ActionApprove
			if i%5 == 0 && j == len(approvers)-1 {
				action = slackapp.ActionDeny
			}
			clicks = append(clicks, click{who, action, id})
			if i%3 == 0 {
				clicks = append(clicks, click{who, action, id})
			}
		}
	}
	start := make(chan struct{})
	var inline atomic.Int64
	for _, c := range clicks {
		wg.Go(func() {
			<-start
			cb := clickPayload(c.user, testChannel, c.action, strconv.FormatUint(c.id, 10), "1700000000.000100", "")
			if c.action == slackapp.ActionDeny {
				// The deny modal's submission, where a Deny is decided.
				cb = denySubmissionPayload(c.user, testChannel, c.id, "concurrent deny")
			}
			resp, err := b.driver().Interaction(t.Context(), cb)
			if err != nil || resp.Status != http.StatusOK {
				t.Errorf("click answered %d, %v", resp.Status, err)
			}
			if strings.Contains(string(resp.Body), `"response_action":"errors"`) {
				inline.Add(1) // refused in the modal, not by a private notice
			}
		})
	}
	close(start)
	wg.Wait()

	final := map[uint64]approvals.Request{}
	for _, id := range ids {
		final[id] = b.waitSettled(id)
	}
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}

	posts := map[string]int{}
	for _, rec := range openaiCalls(b.openai, openaitest.OpAssign) {
		posts[targetOfPath(rec.Path).GroupID]++
	}
	recorded, applied, denied := 0, 0, 0
	for i, id := range ids {
		r := final[id]
		events, err := s.Audit(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		count := map[approvals.Action]int{}
		voters := map[string]int{}
		for _, e := range events {
			count[e.Action]++
			if e.Action == approvals.ActionApprove {
				voters[e.Actor]++
			}
		}
		recorded += count[approvals.ActionApprove] + count[approvals.ActionDeny]
		for who, k := range voters {
			if k != 1 {
				t.Errorf("request #%d: %s's approval recorded %d times", id, who, k)
			}
		}
		switch r.State {
		case approvals.StateApplied:
			applied++
			if len(r.Approvals) != 2 || count[approvals.ActionApprove] != 2 || count[approvals.ActionDeny] != 0 || count[approvals.ActionApply] != 1 {
				t.Errorf("request #%d applied with %d approvals, events %v", id, len(r.Approvals), count)
			}
			if r.Decider != r.Approvals[1].User {
				t.Errorf("request #%d: decider %s is not the second approver", id, r.Decider)
			}
			if posts[group(i)] != 1 {
				t.Errorf("request #%d: %d POSTs, want exactly 1", id, posts[group(i)])
			}
		case approvals.StateDenied:
			denied++
			if i%5 != 0 || count[approvals.ActionDeny] != 1 || count[approvals.ActionApprove] != len(r.Approvals) || len(r.Approvals) > 1 {
				t.Errorf("request #%d denied with %d approvals, events %v", id, len(r.Approvals), count)
			}
			if posts[group(i)] != 0 {
				t.Errorf("denied request #%d: %d POSTs", id, posts[group(i)])
			}
		default:
			t.Errorf("request #%d ended %s", id, r.State)
		}
		// No lost update: the message shows the final state and votes.
		m, ok := b.slack.Message(testChannel, r.MessageTS)
		text := m.VisibleText()
		if !ok || hasButtons(m) {
			t.Errorf("request #%d: message missing or still has buttons", id)
		}
		for _, v := range r.Approvals {
			if !strings.Contains(text, "<@"+v.User+">") {
				t.Errorf("request #%d: message does not name approver %s:\n%s", id, v.User, text)
			}
		}
		if want := map[approvals.State]string{approvals.StateApplied: "*Role assigned*", approvals.StateDenied: "*Denied*"}[r.State]; !strings.Contains(text, want) {
			t.Errorf("request #%d (%s): message shows:\n%s", id, r.State, text)
		}
	}
	if total := len(openaiCalls(b.openai, openaitest.OpAssign)); total != applied {
		t.Errorf("%d POSTs for %d applied requests", total, applied)
	}
	// Every click that was not recorded was answered privately.
	refused := len(clicks) - recorded - int(inline.Load())
	b.waitFor(fmt.Sprintf("%d private notices for refused clicks", refused), func() bool { return len(b.notices()) >= refused })
	if got := len(b.notices()); got != refused {
		t.Errorf("%d notices for %d refused clicks", got, refused)
	}
	t.Logf("%d requests, %d clicks: %d applied, %d denied, %d decisions recorded, %d refused", n, len(clicks), applied, denied, recorded, refused)
}
