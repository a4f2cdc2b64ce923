package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// denySubmissionPayload is the view_submission Slack sends when user
// submits the deny modal rolegate opened for request id from a click in
// channel, with reason typed in.
func denySubmissionPayload(user, channel string, id uint64, reason string) *slack.InteractionCallback {
	return slackfake.SubmissionPayload(slackfake.Submission{User: user, View: slackfake.View{
		CallbackID:      slackapp.DenyModalID,
		PrivateMetadata: strconv.FormatUint(id, 10) + ":" + channel,
		Values: map[string]map[string]slack.BlockAction{
			"rolegate_deny_reason": {"reason": {Type: "plain_text_input", Value: reason}},
		},
	}})
}

// deny denies request id as user the way Slack does it: the Deny click,
// the modal it opens, and its submission with reason. It returns the
// submission's answer (empty when the modal closes).
func (b *bot) deny(user string, id uint64, reason string) slackfake.Reply {
	b.t.Helper()
	before := len(b.slack.OpenedViews())
	trigger := fmt.Sprintf("%d.%d.deny%d", 3000+b.seq.Add(1), id, b.seq.Load())
	msg := b.approvalMessage(id)
	cb := slackfake.ClickPayload(slackfake.Click{
		User: user, Channel: testChannel, ActionID: slackapp.ActionDeny, BlockID: "rolegate_decision",
		Value: strconv.FormatUint(id, 10), MessageTS: msg.TS, TriggerID: trigger,
		ResponseURL: b.slack.NewResponseURLFor(testChannel, user, msg.TS),
	})
	if resp, err := b.driver().Interaction(context.Background(), cb); err != nil || resp.Status != http.StatusOK {
		b.t.Fatalf("Deny click answered %d, %v", resp.Status, err)
	}
	var view slackfake.OpenedView
	b.waitFor("the deny modal", func() bool {
		views := b.slack.OpenedViews()
		if len(views) > before {
			view = views[len(views)-1]
		}
		return len(views) > before
	})
	if view.TriggerID != trigger || view.CallbackID != slackapp.DenyModalID || view.PrivateMetadata != fmt.Sprintf("%d:%s", id, testChannel) {
		b.t.Fatalf("the Deny click opened %+v", view)
	}
	sub := denySubmissionPayload(user, testChannel, id, reason)
	resp, err := b.driver().Interaction(context.Background(), sub)
	if err != nil || resp.Status != http.StatusOK {
		b.t.Fatalf("deny submission answered %d, %v", resp.Status, err)
	}
	return resp
}

// dms returns the text of every direct message user got, oldest first.
func (b *bot) dms(user string) []string {
	var out []string
	for _, m := range b.slack.Messages(user) {
		out = append(out, m.VisibleText())
	}
	return out
}

// waitDM waits for a direct message to user that contains every one of
// want, and returns it.
func (b *bot) waitDM(user string, want ...string) string {
	b.t.Helper()
	var found string
	b.waitFor(fmt.Sprintf("a DM to %s saying %q", user, want), func() bool {
		for _, text := range b.dms(user) {
			all := true
			for _, w := range want {
				all = all && strings.Contains(text, w)
			}
			if all {
				found = text
				return true
			}
		}
		return false
	})
	return found
}

// threadReplies returns the replies in the thread of request id's
// approval message.
func (b *bot) threadReplies(id uint64) []string {
	parent := b.approvalMessage(id)
	var out []string
	for _, m := range b.slack.Messages(testChannel) {
		if m.ThreadTS == parent.TS {
			out = append(out, m.VisibleText())
		}
	}
	return out
}

func TestDenyAsksForAReasonAndTellsEveryone(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" for the audit")
	b.waitDM(requester, fmt.Sprintf("request #%d is waiting for approval", id), "https://"+slackfake.TeamDomain+".slack.com/archives/"+testChannel+"/p")

	// The click alone opens the modal and changes nothing.
	msg := b.approvalMessage(id)
	b.driver().Interaction(t.Context(), slackfake.ClickPayload(slackfake.Click{
		User: approverBob, Channel: testChannel, ActionID: slackapp.ActionDeny, BlockID: "rolegate_decision",
		Value: strconv.FormatUint(id, 10), MessageTS: msg.TS, TriggerID: "1.2.first-click",
	}))
	b.waitFor("the deny modal", func() bool { return len(b.slack.OpenedViews()) == 1 })
	if r := b.stored(id); r.State != approvals.StatePending {
		t.Fatalf("the Deny click alone moved the request to %s", r.State)
	}

	// A blank reason is refused inline; the request stays pending.
	reply, err := b.driver().Interaction(t.Context(), denySubmissionPayload(approverBob, testChannel, id, "  \n "))
	if err != nil || !strings.Contains(string(reply.Body), `"response_action":"errors"`) || !strings.Contains(string(reply.Body), "rolegate_deny_reason") {
		t.Fatalf("blank reason answered %s, %v", reply.Body, err)
	}
	// A stranger's submission is refused inline the same way a click is.
	reply, _ = b.driver().Interaction(t.Context(), denySubmissionPayload(stranger, testChannel, id, "I say no"))
	if !strings.Contains(string(reply.Body), "approvers") {
		t.Fatalf("a stranger's deny answered %s", reply.Body)
	}
	if r := b.stored(id); r.State != approvals.StatePending {
		t.Fatalf("refused submissions moved the request to %s", r.State)
	}

	reply = b.deny(approverBob, id, "Not during the <!here> freeze, see CHG-7")
	if len(strings.TrimSpace(string(reply.Body))) != 0 {
		t.Fatalf("a good deny answered %q, want an empty 200 to close the modal", reply.Body)
	}
	r := b.waitState(id, approvals.StateDenied)
	if r.Decider != approverBob || r.DenyReason != "Not during the <!here> freeze, see CHG-7" {
		t.Fatalf("denied by %q because %q", r.Decider, r.DenyReason)
	}
	escaped := "Not during the &lt;!here&gt; freeze, see CHG-7"
	b.waitFor("the approval message to show the reason without buttons", func() bool {
		m := b.approvalMessage(id)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "Denied") && strings.Contains(m.VisibleText(), escaped)
	})
	b.waitFor("the reason in the thread", func() bool {
		for _, text := range b.threadReplies(id) {
			if strings.Contains(text, "denied by <@"+approverBob+">") && strings.Contains(text, escaped) {
				return true
			}
		}
		return false
	})
	b.waitDM(requester, fmt.Sprintf("request #%d was denied by <@%s>", id, approverBob), escaped)

	// The same submission again (a replay) changes nothing and says why.
	reply, _ = b.driver().Interaction(t.Context(), denySubmissionPayload(approverBob, testChannel, id, "again"))
	if !strings.Contains(string(reply.Body), "no longer waiting") {
		t.Errorf("a second deny answered %s", reply.Body)
	}
	if n := b.openai.AssignPOSTs(); n != 0 {
		t.Fatalf("denied request caused %d POSTs", n)
	}
}

// TestForgedDenyViewIsRefused: a view submission whose metadata names a
// request of another channel, or a channel the request does not live in,
// is refused as a click from there would be.
func TestForgedDenyViewIsRefused(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	b.slack.AddChannel("C0OTHER", true)
	id := b.request(requester, defaultTarget+" mine")
	b.approvalMessage(id)
	for _, channel := range []string{"C0OTHER", "C0NOSUCH"} {
		reply, err := b.driver().Interaction(t.Context(), denySubmissionPayload(approverBob, channel, id, "forged"))
		if err != nil || !strings.Contains(string(reply.Body), "no request") {
			t.Errorf("forged view for %s answered %s, %v", channel, reply.Body, err)
		}
	}
	for _, meta := range []string{"", "x:C0001", "0:C0001", fmt.Sprintf("%d", id), fmt.Sprintf("%d:", id), fmt.Sprintf("%d:c0001", id)} {
		sub := denySubmissionPayload(approverBob, testChannel, id, "forged")
		sub.View.PrivateMetadata = meta
		reply, _ := b.driver().Interaction(t.Context(), sub)
		if !strings.Contains(string(reply.Body), `"response_action":"errors"`) {
			t.Errorf("metadata %q answered %s", meta, reply.Body)
		}
	}
	if r := b.stored(id); r.State != approvals.StatePending {
		t.Fatalf("a forged view moved the request to %s", r.State)
	}
}

func TestCancelButtonIsTheRequesters(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" cancel me")
	b.approvalMessage(id)
	if !strings.Contains(string(b.approvalMessage(id).BlocksJSON), `"action_id":"`+slackapp.ActionCancel+`"`) {
		t.Fatalf("the approval message has no Cancel button:\n%s", b.approvalMessage(id).BlocksJSON)
	}
	b.click(approverAna, slackapp.ActionCancel, id)
	b.waitFor("a notice to the approver", func() bool { return len(b.ephemeralsTo(approverAna)) == 1 })
	if got := b.ephemeralsTo(approverAna)[0].Text; !strings.Contains(got, "Only the person who asked") {
		t.Errorf("notice = %q", got)
	}
	if r := b.stored(id); r.State != approvals.StatePending {
		t.Fatalf("an approver's Cancel moved the request to %s", r.State)
	}
	b.click(requester, slackapp.ActionCancel, id)
	r := b.waitState(id, approvals.StateCancelled)
	if r.Decider != requester {
		t.Errorf("cancelled by %q", r.Decider)
	}
	b.waitFor("the message to say cancelled, without buttons", func() bool {
		m := b.approvalMessage(id)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "Cancelled")
	})
	b.waitDM(requester, fmt.Sprintf("request #%d is cancelled, as you asked", id))

	// A requester's own Deny withdraws at once, without a modal.
	second := b.request(requester, defaultTarget+" deny my own")
	b.click(requester, slackapp.ActionDeny, second)
	b.waitState(second, approvals.StateCancelled)
	if n := len(b.slack.OpenedViews()); n != 0 {
		t.Errorf("%d modals opened for the requester's own Deny", n)
	}
}

func TestApprovedAndAppliedAreTold(t *testing.T) {
	t.Parallel()
	b := newBot(t, nil)
	id := b.request(requester, defaultTarget+" tell me")
	msg := b.approvalMessage(id)
	// The approvers other than the requester are mentioned so Slack notifies them.
	for _, who := range []string{approverAna, approverBob} {
		if !strings.Contains(msg.VisibleText(), "<@"+who+">") {
			t.Errorf("approval message does not mention %s:\n%s", who, msg.VisibleText())
		}
	}
	// (The pending DM is queued once the message's ts is stored; a click
	// before that would leave it out, the approved DM saying enough.)
	b.waitDM(requester, fmt.Sprintf("request #%d is waiting for approval", id))
	b.click(approverAna, slackapp.ActionApprove, id)
	b.waitState(id, approvals.StateApplied)
	b.waitDM(requester, fmt.Sprintf("request #%d was approved by <@%s>", id, approverAna))
	b.waitDM(requester, fmt.Sprintf("request #%d is applied", id), "now has role")
	if got := b.dms(requester); len(got) != 3 {
		t.Errorf("the requester got %d DMs, want pending, approved, applied:\n%s", len(got), strings.Join(got, "\n---\n"))
	}
}

// TestSocketModeDenyThroughTheModal: in Socket Mode the click opens the
// same modal, and the submission's inline errors travel in the envelope's
// ack.
func TestSocketModeDenyThroughTheModal(t *testing.T) {
	t.Parallel()
	b := newSocketBot(t)
	reply := b.socketCommand(requester, defaultTarget+" over a socket")
	var id uint64
	if _, err := fmt.Sscanf(reply.Text, "Request #%d is being checked", &id); err != nil {
		t.Fatalf("command answered %q", reply.Text)
	}
	b.socketClick(approverBob, slackapp.ActionDeny, id)
	b.waitFor("the deny modal", func() bool { return len(b.slack.OpenedViews()) == 1 })
	if v := b.slack.OpenedViews()[0]; v.PrivateMetadata != fmt.Sprintf("%d:%s", id, testChannel) {
		t.Fatalf("modal metadata %q", v.PrivateMetadata)
	}
	submit := func(reason string) string {
		t.Helper()
		env, err := b.slack.SendInteraction(denySubmissionPayload(approverBob, testChannel, id, reason))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		payload, err := b.slack.WaitAck(ctx, env)
		if err != nil {
			t.Fatalf("no ack for the submission: %v", err)
		}
		return string(payload)
	}
	if ack := submit(" "); !strings.Contains(ack, `"response_action":"errors"`) {
		t.Fatalf("a blank reason was acked with %s", ack)
	}
	if ack := submit("Use the reader role, see OPS-9"); strings.Contains(ack, "errors") {
		t.Fatalf("the deny was acked with %s", ack)
	}
	r := b.waitState(id, approvals.StateDenied)
	if r.DenyReason != "Use the reader role, see OPS-9" {
		t.Errorf("reason %q", r.DenyReason)
	}
	b.waitDM(requester, "was denied by <@"+approverBob+">", "Use the reader role, see OPS-9")
}
