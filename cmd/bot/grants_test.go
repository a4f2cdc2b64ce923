package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// Time-bound grants end to end (issue 11): the real wiring against the
// fakes, a policy file with a break-glass rule, a rule with a default and
// a maximum duration, and a rule for everything else. Waits are on events
// (a state stored, a message posted); no assertion depends on how long
// anything took.

// grantsPolicy: group_oncall may be taken break-glass by the requester
// (at most 2h, reviewed by Ana, Bob or the platform group); group_timed
// lasts 3h unless asked otherwise and at most 8h; anything else needs one
// approval from Ana or Bob and may be permanent.
const grantsPolicy = `rules:
  - name: oncall
    groups: [group_oncall]
    requesters: [U0REQ]
    approvers: [U0ANA, U0BOB, S0PLATFORM]
    max_duration: 2h
    break_glass: true
  - name: timed
    groups: [group_timed]
    approvers: [U0ANA, U0BOB]
    default_duration: 3h
    max_duration: 8h
  - name: anything
    approvers: [U0ANA, U0BOB]
`

// newGrantsBot runs the bot over HTTP with grantsPolicy, the platform
// group holding Cy, and the groups the rules name.
func newGrantsBot(t *testing.T) *bot {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yml")
	if err := os.WriteFile(path, []byte(grantsPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBot(t, map[string]string{"ROLEGATE_POLICY": path, "ROLEGATE_APPROVERS": ""})
	b.slack.AddUserGroup(platform, approverAna, approverCy)
	for _, g := range []string{"group_oncall", "group_timed", "group_r2", "group_r3"} {
		b.openai.AddGroup(g, "Team "+g, false)
	}
	return b
}

// messageWith waits for the top-level message in the channel whose text
// contains header (a line of its own).
func (b *bot) messageWith(header string) slackfake.Message {
	b.t.Helper()
	var found slackfake.Message
	b.waitFor(fmt.Sprintf("a message saying %q", header), func() bool {
		for _, m := range b.slack.Messages(testChannel) {
			if m.ThreadTS == "" && strings.Contains(m.VisibleText(), header+"\n") {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// clickOn presses the button actionID (in block blockID) of msg, for
// request id, as user.
func (b *bot) clickOn(msg slackfake.Message, user, blockID, actionID string, id uint64) {
	b.t.Helper()
	cb := slackfake.ClickPayload(slackfake.Click{
		User: user, Channel: testChannel, ActionID: actionID, BlockID: blockID,
		Value: strconv.FormatUint(id, 10), MessageTS: msg.TS,
		ResponseURL: b.slack.NewResponseURLFor(testChannel, user, msg.TS),
	})
	resp, err := b.driver().Interaction(context.Background(), cb)
	if err != nil || resp.Status != http.StatusOK {
		b.t.Fatalf("%s click answered %d, %v", actionID, resp.Status, err)
	}
}

// grantClick presses a button of applied grant id's message (Revoke now,
// Mark reviewed) as user.
func (b *bot) grantClick(user, actionID string, id uint64) {
	b.t.Helper()
	b.clickOn(b.approvalMessage(id), user, "rolegate_grant", actionID, id)
}

// hasAction reports whether msg currently carries the button actionID.
func hasAction(m slackfake.Message, actionID string) bool {
	return strings.Contains(string(m.BlocksJSON), `"action_id":"`+actionID+`"`)
}

// waitNotice waits for a private notice to user containing every one of
// want, and returns it.
func (b *bot) waitNotice(user string, want ...string) string {
	b.t.Helper()
	var found string
	b.waitFor(fmt.Sprintf("a private notice to %s saying %q", user, want), func() bool {
		for _, e := range b.ephemeralsTo(user) {
			if all(e.VisibleText(), want) {
				found = e.VisibleText()
				return true
			}
		}
		return false
	})
	return found
}

func all(text string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

// say runs a slash command as user and returns its private answer.
func (b *bot) say(user, text string) string {
	b.t.Helper()
	status, reply := b.command(user, text)
	if status != http.StatusOK || reply.ResponseType != "ephemeral" {
		b.t.Fatalf("%q answered %d %+v", text, status, reply)
	}
	return reply.Text
}

// audit returns request id's audit events.
func (b *bot) audit(id uint64) []approvals.Event {
	b.t.Helper()
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		b.t.Fatal(err)
	}
	defer cleanup()
	evs, err := s.Audit(context.Background(), id)
	if err != nil {
		b.t.Fatal(err)
	}
	return evs
}

// grantApplied asks for text as the requester, has Ana approve it and
// waits for it to be applied.
func (b *bot) grantApplied(text string) approvals.Request {
	b.t.Helper()
	id := b.approve(text)
	return b.waitState(id, approvals.StateApplied)
}

// TestTimedGrantEndsWithOneDELETE: a 2s grant is applied with its end,
// and at the end the worker DELETEs it once; the approval message, the
// thread and the requester's DM say so.
func TestTimedGrantEndsWithOneDELETE(t *testing.T) {
	t.Parallel()
	b := newGrantsBot(t)
	r := b.grantApplied(defaultTarget + " for 2s rotate keys")
	if r.Duration != 2*time.Second || r.EndsAt.IsZero() || !r.EndsAt.Equal(r.FinishedAt.Add(2*time.Second)) {
		t.Fatalf("applied for %s, ends %v (applied %v): want the end 2s after the assignment", r.Duration, r.EndsAt, r.FinishedAt)
	}
	r = b.waitState(r.ID, approvals.StateRevoked)
	if r.EndedBy != approvals.SystemActor || r.Revocation == nil || !r.Revocation.Deleted || r.EndedAt.Before(r.EndsAt) {
		t.Errorf("revoked by %q at %v (end %v), outcome %+v", r.EndedBy, r.EndedAt, r.EndsAt, r.Revocation)
	}
	b.waitSettled(r.ID)
	if n := b.openai.RevokeDELETEs(); n != 1 {
		t.Errorf("%d DELETEs, want 1", n)
	}
	if got := b.openai.Assignments("proj_abc", "group_01"); len(got) != 0 {
		t.Errorf("the group still holds %v", got)
	}
	b.waitFor("the approval message to say the grant ended", func() bool {
		m := b.approvalMessage(r.ID)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "Grant ended") && strings.Contains(m.VisibleText(), "its time ran out")
	})
	b.waitFor("the thread to say the grant ended", func() bool {
		return slices.ContainsFunc(b.threadReplies(r.ID), func(s string) bool {
			return strings.Contains(s, fmt.Sprintf("Request #%d: :lock: *Grant ended*", r.ID)) && strings.Contains(s, "DELETEd at OpenAI")
		})
	})
	b.waitDM(requester, fmt.Sprintf("Your grant #%d has ended", r.ID), "its time ran out")
	if n := b.openai.RevokeDELETEs(); n != 1 {
		t.Errorf("%d DELETEs after everything settled, want 1", n)
	}
}

// TestRevokeNow: Revoke now and /assign-role revoke work for the requester
// and the rule's approvers, on time-bound and permanent grants; a stranger
// is told privately and nothing changes; a replayed click changes nothing.
func TestRevokeNow(t *testing.T) {
	t.Parallel()
	b := newGrantsBot(t)
	g1 := b.grantApplied(defaultTarget + " for 4h by the requester's click")
	b.waitFor("Revoke now on the applied grant", func() bool { return hasAction(b.approvalMessage(g1.ID), slackapp.ActionRevoke) })

	// A stranger: by button and by command, refused privately.
	b.grantClick(stranger, slackapp.ActionRevoke, g1.ID)
	b.waitNotice(stranger, fmt.Sprintf("Only the person who asked for grant #%d or an approver of its rule", g1.ID))
	if got := b.say(stranger, fmt.Sprintf("revoke %d", g1.ID)); !strings.Contains(got, "Only the person who asked") {
		t.Errorf("the stranger's revoke command was answered %q", got)
	}
	if r := b.stored(g1.ID); r.State != approvals.StateApplied || r.Ending || b.openai.RevokeDELETEs() != 0 {
		t.Fatalf("a stranger's revoke changed the grant: %s, ending %v, %d DELETEs", r.State, r.Ending, b.openai.RevokeDELETEs())
	}

	// The requester's click ends it.
	b.grantClick(requester, slackapp.ActionRevoke, g1.ID)
	r := b.waitState(g1.ID, approvals.StateRevoked)
	if r.EndedBy != requester || r.Revocation == nil || !r.Revocation.Deleted {
		t.Errorf("revoked by %q with %+v", r.EndedBy, r.Revocation)
	}
	b.waitFor("the message to say who revoked it", func() bool {
		m := b.approvalMessage(g1.ID)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "revoked by <@"+requester+">")
	})
	b.waitSettled(g1.ID)
	// Replayed: refused, nothing more DELETEd.
	b.clickOn(b.approvalMessage(g1.ID), requester, "rolegate_grant", slackapp.ActionRevoke, g1.ID)
	b.waitNotice(requester, fmt.Sprintf("Request #%d is not an active grant", g1.ID))
	if n := b.openai.RevokeDELETEs(); n != 1 {
		t.Errorf("%d DELETEs after the replayed click, want 1", n)
	}

	// An approver of the rule, by command.
	g2 := b.grantApplied("proj_abc group_r2 role_01 for 4h ended by an approver")
	if got := b.say(approverBob, fmt.Sprintf("revoke %d", g2.ID)); !strings.Contains(got, fmt.Sprintf("Grant #%d", g2.ID)) {
		t.Errorf("Bob's revoke was answered %q", got)
	}
	if r := b.waitState(g2.ID, approvals.StateRevoked); r.EndedBy != approverBob {
		t.Errorf("revoked by %q, want Bob", r.EndedBy)
	}

	// A permanent grant has no button but the command ends it.
	g3 := b.grantApplied("proj_abc group_r3 role_01 for good")
	if !g3.EndsAt.IsZero() {
		t.Fatalf("a grant without a duration under a rule without a default ends %v", g3.EndsAt)
	}
	b.waitFor("the permanent grant's message to be final", func() bool {
		return strings.Contains(b.approvalMessage(g3.ID).VisibleText(), "Permanent.")
	})
	if hasAction(b.approvalMessage(g3.ID), slackapp.ActionRevoke) {
		t.Error("a permanent grant shows Revoke now")
	}
	b.say(requester, fmt.Sprintf("revoke %d", g3.ID))
	if r := b.waitState(g3.ID, approvals.StateRevoked); r.EndedBy != requester || r.Revocation == nil || !r.Revocation.Deleted {
		t.Errorf("the permanent grant was revoked by %q with %+v", r.EndedBy, r.Revocation)
	}
	b.waitSettled(g3.ID)
	if n := b.openai.RevokeDELETEs(); n != 3 {
		t.Errorf("%d DELETEs for three revoked grants", n)
	}
	if got := b.openai.Assignments("proj_abc", "group_r3"); len(got) != 0 {
		t.Errorf("group_r3 still holds %v", got)
	}
}

// TestBreakGlass: applied at once without approval, within the rule's
// maximum, loudly, with every approver told and Mark reviewed until an
// approver reviews it; refused under a rule without it, above its
// maximum, and for someone who is not among the rule's requesters.
func TestBreakGlass(t *testing.T) {
	t.Parallel()
	b := newGrantsBot(t)

	// Refused: by a stranger (the oncall rule is not theirs), under a
	// rule without break-glass, and longer than the rule allows.
	refused := []struct {
		user, text string
		want       []string
	}{
		{stranger, "break-glass proj_abc group_oncall role_01 for 30m not mine", []string{"does not allow break-glass"}},
		{requester, "break-glass proj_abc group_timed role_01 for 30m no such rule", []string{"rule timed does not allow break-glass"}},
		{requester, "break-glass proj_abc group_oncall role_01 for 3h too long", []string{"lasts at most 2h"}},
	}
	for _, tt := range refused {
		id := b.request(tt.user, tt.text)
		b.waitState(id, approvals.StateRejected)
		b.waitNotice(tt.user, append([]string{fmt.Sprintf("Request #%d", id)}, tt.want...)...)
	}
	if n := b.openai.AssignPOSTs(); n != 0 {
		t.Fatalf("refused break-glass requests made %d POSTs", n)
	}

	id := b.request(requester, "break-glass proj_abc group_oncall role_01 outage INC-7")
	r := b.waitState(id, approvals.StateApplied)
	if !r.BreakGlass || len(r.Approvals) != 0 || r.Rule != "oncall" {
		t.Errorf("applied break-glass %v under %q with %d approvals", r.BreakGlass, r.Rule, len(r.Approvals))
	}
	if r.Duration != 2*time.Hour || !r.EndsAt.Equal(r.FinishedAt.Add(2*time.Hour)) {
		t.Errorf("a break-glass grant without a duration lasts %s (ends %v, applied %v), want the rule's 2h", r.Duration, r.EndsAt, r.FinishedAt)
	}
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
	msg := b.approvalMessage(id)
	if !strings.HasPrefix(msg.Text, "<!here> :rotating_light: Break-glass") || !strings.HasPrefix(msg.VisibleText(), "<!here> :rotating_light: Break-glass") {
		t.Errorf("the message does not start loudly:\n%s", msg.VisibleText())
	}
	for _, u := range []string{approverAna, approverBob, approverCy} {
		b.waitDM(u, ":rotating_light: Break-glass: <@"+requester+">", "Mark reviewed")
	}
	// Ana is an approver by name and through the platform group: told once.
	b.waitSettled(id)
	for _, u := range []string{approverAna, approverBob, approverCy} {
		n := 0
		for _, text := range b.dms(u) {
			if strings.Contains(text, "Break-glass: <@"+requester+">") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s got %d break-glass DMs, want 1", u, n)
		}
	}
	if dms := b.dms(stranger); len(dms) != 0 {
		t.Errorf("a stranger was told: %v", dms)
	}
	b.waitFor("Mark reviewed on the message", func() bool { return hasAction(b.approvalMessage(id), slackapp.ActionReview) })

	b.grantClick(stranger, slackapp.ActionReview, id)
	b.waitNotice(stranger, fmt.Sprintf("Only an approver of request #%d's rule can review it", id))
	if r := b.stored(id); r.ReviewedBy != "" {
		t.Fatalf("a stranger's review was recorded: %q", r.ReviewedBy)
	}

	b.grantClick(approverBob, slackapp.ActionReview, id)
	b.waitFor("Bob's review", func() bool { return b.stored(id).ReviewedBy == approverBob })
	if !slices.ContainsFunc(b.audit(id), func(e approvals.Event) bool { return e.Action == approvals.ActionReview && e.Actor == approverBob }) {
		t.Errorf("no review event by Bob in %+v", b.audit(id))
	}
	b.waitFor("Mark reviewed to go, Revoke now to stay", func() bool {
		m := b.approvalMessage(id)
		return !hasAction(m, slackapp.ActionReview) && hasAction(m, slackapp.ActionRevoke) && strings.Contains(m.VisibleText(), "Reviewed by <@"+approverBob+">")
	})
}

// TestExtension: an extension request goes to approvers and, approved,
// moves the grant's end; one approved after the grant ended is refused
// with the reason and grants nothing again.
func TestExtension(t *testing.T) {
	t.Parallel()
	b := newGrantsBot(t)
	g := b.grantApplied(defaultTarget + " for 1h first grant")
	before := b.storedCount()
	if got := b.say(stranger, fmt.Sprintf("extend %d 1h mine now", g.ID)); !strings.Contains(got, "Only the person who asked") {
		t.Errorf("a stranger's extension was answered %q", got)
	}
	perm := b.grantApplied("proj_abc group_r3 role_01 for good")
	if got := b.say(requester, fmt.Sprintf("extend %d 1h longer", perm.ID)); !strings.Contains(got, "is permanent") {
		t.Errorf("extending a permanent grant was answered %q", got)
	}
	if n := b.storedCount(); n != before+1 {
		t.Fatalf("refused extensions created %d requests", n-before-1)
	}
	// The warning DM's Extend button explains the command, privately, in
	// the DM it was clicked in.
	b.waitDM(requester, fmt.Sprintf("request #%d is applied", g.ID))
	dm := b.slack.Messages(requester)[0]
	cb := slackfake.ClickPayload(slackfake.Click{User: requester, Channel: dm.Channel, ActionID: slackapp.ActionExtend, BlockID: "rolegate_grant",
		Value: strconv.FormatUint(g.ID, 10), MessageTS: dm.TS, ResponseURL: b.slack.NewResponseURLFor(dm.Channel, requester, dm.TS)})
	if resp, err := b.driver().Interaction(context.Background(), cb); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("Extend click answered %d, %v", resp.Status, err)
	}
	b.waitNotice(requester, fmt.Sprintf("/assign-role extend %d <duration> <reason…>", g.ID))
	x := b.request(requester, fmt.Sprintf("extend %d 1h still rotating INC-9", g.ID))
	msg := b.messageWith(fmt.Sprintf("Extension request #%d for grant #%d", x, g.ID))
	if !hasAction(msg, slackapp.ActionApprove) {
		t.Fatalf("the extension request has no Approve button:\n%s", msg.VisibleText())
	}
	b.clickOn(msg, approverAna, "rolegate_decision", slackapp.ActionApprove, x)
	b.waitState(x, approvals.StateApplied)
	if r := b.stored(g.ID); !r.EndsAt.Equal(g.EndsAt.Add(time.Hour)) || !slices.Contains(r.Extensions, x) || !r.Active() {
		t.Errorf("after the extension the grant ends %v (was %v), extensions %v, active %v", r.EndsAt, g.EndsAt, r.Extensions, r.Active())
	}
	b.waitDM(requester, fmt.Sprintf("Your extension #%d is approved", x))

	// Too late: the grant ends (revoked here) before the approval.
	g2 := b.grantApplied("proj_abc group_r2 role_01 for 1h second grant")
	x2 := b.request(requester, fmt.Sprintf("extend %d 2h a bit longer", g2.ID))
	msg2 := b.messageWith(fmt.Sprintf("Extension request #%d for grant #%d", x2, g2.ID))
	b.say(requester, fmt.Sprintf("revoke %d", g2.ID))
	b.waitState(g2.ID, approvals.StateRevoked)
	posts := b.openai.AssignPOSTs()
	b.clickOn(msg2, approverAna, "rolegate_decision", slackapp.ActionApprove, x2)
	r := b.waitState(x2, approvals.StateFailed)
	if !strings.Contains(r.Note, "already ended") {
		t.Errorf("the late extension failed with %q", r.Note)
	}
	b.waitDM(requester, fmt.Sprintf("Your extension #%d was approved but refused", x2), "already ended")
	b.waitSettled(x2)
	if got := b.stored(g2.ID); got.State != approvals.StateRevoked || len(got.Extensions) != 0 {
		t.Errorf("the ended grant is %s with extensions %v", got.State, got.Extensions)
	}
	if n := b.openai.AssignPOSTs(); n != posts {
		t.Errorf("the late extension made %d POSTs", n-posts)
	}
	if got := b.openai.Assignments("proj_abc", "group_r2"); len(got) != 0 {
		t.Errorf("the group holds %v again", got)
	}
}

// TestDurationLimits: a duration over the rule's maximum is refused
// privately naming it; without a duration the rule's default applies.
func TestDurationLimits(t *testing.T) {
	t.Parallel()
	b := newGrantsBot(t)
	id := b.request(requester, "proj_abc group_timed role_01 for 9h long one")
	b.waitState(id, approvals.StateRejected)
	b.waitNotice(requester, fmt.Sprintf("Request #%d", id), "9h is longer than rule timed allows: at most 8h")
	if b.hasApprovalMessage(id) {
		t.Error("the refused request reached the channel")
	}
	r := b.grantApplied("proj_abc group_timed role_01 the default")
	if r.Duration != 3*time.Hour || !r.EndsAt.Equal(r.FinishedAt.Add(3*time.Hour)) {
		t.Errorf("without a duration: %s, ends %v (applied %v); want the rule's default 3h", r.Duration, r.EndsAt, r.FinishedAt)
	}
	b.waitFor("the message to show the end", func() bool {
		return strings.Contains(b.approvalMessage(r.ID).VisibleText(), "for 3h, until")
	})
}
