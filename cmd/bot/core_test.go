package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// TestOpenRequestsPerRequesterAreBounded: with
// ROLEGATE_MAX_OPEN_PER_REQUESTER=2 a third open request is refused
// privately, naming the limit and the open requests; nothing is stored or
// posted for it.
func TestOpenRequestsPerRequesterAreBounded(t *testing.T) {
	t.Parallel()
	b := newBot(t, map[string]string{"ROLEGATE_MAX_OPEN_PER_REQUESTER": "2"})
	first := b.request(requester, defaultTarget+" one")
	b.request(requester, defaultTarget+" two")
	_, reply := b.command(requester, defaultTarget+" three")
	if !strings.Contains(reply.Text, "2 open requests (#1, #2)") || !strings.Contains(reply.Text, "allows 2 at a time") || !strings.Contains(reply.Text, "nothing was requested") {
		t.Fatalf("third request answered %q, want a refusal naming the limit and the open requests", reply.Text)
	}
	if n := b.storedCount(); n != 2 {
		t.Errorf("%d requests stored, want 2", n)
	}
	b.approvalMessage(first)
	b.click(requester, slackapp.ActionDeny, first) // the requester withdraws one
	b.waitState(first, approvals.StateCancelled)
	if _, reply := b.command(requester, defaultTarget+" three again"); !strings.Contains(reply.Text, "is being checked") {
		t.Errorf("after withdrawing one: %q", reply.Text)
	}
}

// TestRequesterDenyCancelsEndToEnd: the requester's own Deny click
// withdraws the request: recorded as a cancel, the message says so.
func TestRequesterDenyCancelsEndToEnd(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" changed my mind")
	b.approvalMessage(id)
	b.click(requester, slackapp.ActionDeny, id)
	r := b.waitState(id, approvals.StateCancelled)
	if r.Decider != requester {
		t.Errorf("decider %q, want the requester", r.Decider)
	}
	b.waitFor("the message to show the cancel", func() bool {
		return strings.Contains(b.approvalMessage(id).VisibleText(), "Cancelled* by the requester")
	})
}

// TestRemovedApproverVoteIsNotCounted: an approver's vote cast before a
// restart that removed them from ROLEGATE_APPROVERS no longer counts when
// the quorum is reached.
func TestRemovedApproverVoteIsNotCounted(t *testing.T) {
	t.Parallel()
	b := newBot(t, map[string]string{"ROLEGATE_APPROVALS_REQUIRED": "2", "ROLEGATE_APPROVERS": approverAna + "," + approverBob + ",U0CAT"})
	id := b.request(requester, defaultTarget+" two approvals")
	b.approvalMessage(id)
	b.click(approverAna, slackapp.ActionApprove, id)
	b.waitFor("Ana's vote", func() bool { return len(b.stored(id).Approvals) == 1 })
	b.stop()
	b.env["ROLEGATE_APPROVERS"] = approverBob + ",U0CAT" // Ana is no longer an approver
	b.start()
	b.click(approverBob, slackapp.ActionApprove, id)
	b.waitFor("Bob's vote", func() bool { r := b.stored(id); return r.Approved(approverBob) })
	r := b.stored(id)
	if r.State != approvals.StatePending || len(r.Approvals) != 1 {
		t.Fatalf("after a removed approver's vote and one valid vote: %s with %d votes, want pending with 1", r.State, len(r.Approvals))
	}
	b.waitFor("the message to show the corrected count", func() bool {
		return strings.Contains(b.approvalMessage(id).VisibleText(), "1 of 2")
	})
	b.click("U0CAT", slackapp.ActionApprove, id)
	b.waitState(id, approvals.StateApplied)
}

// TestStatusShowsTheFullAuditHash: the thread's result message shows the
// short hash of the request's latest audit event and status shows it in
// full, so the channel anchors the chain `bot audit verify` checks.
func TestStatusShowsTheFullAuditHash(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" anchored")
	b.approvalMessage(id)
	b.click(approverAna, slackapp.ActionApprove, id)
	b.waitState(id, approvals.StateApplied)
	result := b.resultMessage(id).VisibleText()
	_, reply := b.command(requester, fmt.Sprintf("status %d", id))
	full := regexp.MustCompile("Latest audit event: `(sha256:[0-9a-f]{64})`").FindStringSubmatch(reply.Text)
	if full == nil {
		t.Fatalf("status does not show the full hash of the latest event:\n%s", reply.Text)
	}
	if !strings.Contains(result, full[1][:len("sha256:")+12]) {
		t.Errorf("the result message does not show the short form of %s:\n%s", full[1], result)
	}
}
