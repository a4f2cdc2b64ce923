package slackapp

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Action ids of the buttons of applied grants: Revoke now (requester or
// approvers), Extend (in the requester's warning DM) and Mark reviewed (a
// break-glass grant, approvers only). The value is the request id.
const (
	ActionRevoke = "rolegate_revoke"
	ActionExtend = "rolegate_extend"
	ActionReview = "rolegate_review"
	grantBlock   = "rolegate_grant"
)

// durationText says how long r's grant lasts: "for 4h, until <date>"
// once its end is fixed, "for 4h" before, or "permanent".
func durationText(r approvals.Request) string {
	switch {
	case r.Duration <= 0:
		return "permanent"
	case !r.EndsAt.IsZero():
		return fmt.Sprintf("for %s, until %s", approvals.FormatDuration(r.Duration), date(r.EndsAt))
	}
	return "for " + approvals.FormatDuration(r.Duration)
}

// endedText says how r's grant ended: who or what ended it, when, and what
// became of the assignment.
func endedText(r approvals.Request) string {
	by := "its time ran out"
	if r.EndedBy != approvals.SystemActor && r.EndedBy != "" {
		by = "revoked by " + user(r.EndedBy)
	}
	when := r.EndedAt
	if when.IsZero() {
		when = r.FinishedAt
	}
	s := fmt.Sprintf(":lock: *Grant ended* %s (%s).", date(when), by)
	if v := r.Revocation; v != nil {
		s += " " + revocationOutcome(*v)
	}
	return s
}

func revocationOutcome(v approvals.RevokeOutcome) string {
	switch {
	case v.Kept:
		return "The role was " + Escape(v.Note) + ", so nothing was DELETEd."
	case v.DryRun:
		return Escape(v.Note) + "."
	case v.Absent:
		return "The group no longer held the role, so there was nothing to DELETE."
	}
	return "The assignment was DELETEd at OpenAI."
}

// grantButtons are the buttons an applied grant keeps: Revoke now while
// it is active and time-bound, Mark reviewed while a break-glass grant
// awaits review. nil when there are none.
func grantButtons(r approvals.Request) slack.Block {
	id := strconv.FormatUint(r.ID, 10)
	var els []slack.BlockElement
	if r.Active() && !r.EndsAt.IsZero() {
		b := slack.NewButtonBlockElement(ActionRevoke, id, plain("Revoke now")).WithStyle(slack.StyleDanger)
		b.Confirm = slack.NewConfirmationBlockObject(plain("Revoke this grant now?"),
			mrkdwn(truncate(fmt.Sprintf("Request #%d's role is taken away from the group now, before its end.", r.ID), 300)),
			plain("Revoke now"), plain("Keep it"))
		els = append(els, b)
	}
	if r.BreakGlass && r.ReviewedBy == "" && (r.State == approvals.StateApplied || r.State == approvals.StateRevoked || r.State == approvals.StateApproved) {
		els = append(els, slack.NewButtonBlockElement(ActionReview, id, plain("Mark reviewed")).WithStyle(slack.StylePrimary))
	}
	if len(els) == 0 {
		return nil
	}
	return slack.NewActionBlock(grantBlock, els...)
}

// PostRevocation replies in the approval message's thread how r's grant
// ended, or, while it is still applied, that its revocation failed and is
// retried. The reply that it ended is posted once: with p.MayHavePosted it
// is looked for first, as PostResult does.
func (n *Notifier) PostRevocation(ctx context.Context, r approvals.Request, p approvals.Posting) error {
	ended := r.State == approvals.StateRevoked && r.MessageTS != ""
	if ended {
		if done, err := n.inThread(ctx, r, p, RevokedEventType); done || err != nil {
			return err
		}
	}
	text := RevocationText(r)
	opts := []slack.MsgOption{slack.MsgOptionText(n.text(text), false), slack.MsgOptionBlocks(n.blocks([]slack.Block{section(text)})...)}
	if r.MessageTS != "" {
		opts = append(opts, slack.MsgOptionTS(r.MessageTS), slack.MsgOptionBroadcast())
	}
	if ended {
		opts = append(opts, slack.MsgOptionMetadata(RequestMetadata(RevokedEventType, r.ID)))
	}
	_, _, err := n.Client.PostMessageContext(ctx, r.ChannelID, opts...)
	return n.classify("chat.postMessage", err)
}

// RevocationText is the thread reply about r's end.
func RevocationText(r approvals.Request) string {
	if r.State == approvals.StateRevoked {
		return fmt.Sprintf("Request #%d: %s", r.ID, endedText(r))
	}
	s := fmt.Sprintf(":rotating_light: *Request #%d could not be revoked.* Group %s still has role %s in project %s. rolegate keeps trying every hour; "+
		"to end it by hand, remove the role at OpenAI (the next try records it) or fix the cause.", r.ID, code(r.GroupID), code(r.RoleID), code(r.ProjectID))
	if f := r.RevokeFailure; f != nil {
		s += "\n*Error*\n" + quote(Escape(orNone(f.Message)))
		if f.Status != 0 {
			s += fmt.Sprintf("\nHTTP status %d", f.Status)
		}
		if f.RequestID != "" {
			s += ", x-request-id " + code(f.RequestID)
		}
	}
	return s
}

// WarnRequester tells the requester that r's grant ends soon, with an
// Extend button.
func (n *Notifier) WarnRequester(ctx context.Context, r approvals.Request) error {
	text := WarnText(r)
	id := strconv.FormatUint(r.ID, 10)
	blocks := []slack.Block{section(text), slack.NewActionBlock(grantBlock,
		slack.NewButtonBlockElement(ActionExtend, id, plain("Extend")).WithStyle(slack.StylePrimary))}
	_, _, err := n.Client.PostMessageContext(ctx, r.Requester, slack.MsgOptionText(n.text(text), false), slack.MsgOptionBlocks(n.blocks(blocks)...))
	return n.classify("chat.postMessage", err)
}

// WarnText is the warning before a grant's end.
func WarnText(r approvals.Request) string {
	return fmt.Sprintf(":hourglass: Your grant #%d ends %s: %s. To keep it longer, click *Extend* or type `/assign-role extend %d <duration> <reason…>`; an approver decides.",
		r.ID, date(r.EndsAt), previewText(r), r.ID)
}

// NotifyApprovers tells every approver of r's rule (user ids directly,
// user groups through their members) that r was applied break-glass: each
// person once, however many of the rule's entries name them, and never
// the requester. Every group is resolved before the first DM, so a failed
// look-up (retried) sends nothing twice; a DM that fails part-way is
// retried with the others (at least once, like every message).
func (n *Notifier) NotifyApprovers(ctx context.Context, r approvals.Request) error {
	var users []string
	add := func(u string) {
		if u != r.Requester && !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	for _, id := range r.Approvers {
		if len(id) == 0 || id[0] != 'S' {
			add(id)
			continue
		}
		if n.Directory == nil {
			continue
		}
		members, err := n.Directory.GroupMembers(ctx, id)
		if err != nil {
			return &approvals.DeliveryError{Code: "usergroups.users.list", Temporary: true, Err: err}
		}
		for _, u := range members {
			add(u)
		}
	}
	text := BreakGlassDMText(r)
	for _, u := range users {
		if _, _, err := n.Client.PostMessageContext(ctx, u, slack.MsgOptionText(n.text(text), false)); err != nil {
			return n.classify("chat.postMessage", err)
		}
	}
	return nil
}

// BreakGlassDMText is the approvers' DM about a break-glass grant.
func BreakGlassDMText(r approvals.Request) string {
	return fmt.Sprintf(":rotating_light: Break-glass: %s gave themselves %s (%s) without approval under rule %s, in <#%s>. Reason:\n%s\nPlease review it: click *Mark reviewed* on the message.",
		user(r.Requester), previewText(r), durationText(r), Escape(r.Rule), Escape(r.ChannelID), quote(Escape(r.Reason)))
}
