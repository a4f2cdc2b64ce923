package slackapp

import (
	"context"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// This file holds what reaches people rather than the channel at large:
// the requester's direct messages, the denial and the reminder in the
// approval message's thread, and the mentions that make Slack notify
// approvers.

// mention is the markup that notifies id: <@U…> for a person, or
// <!subteam^S…> for a user group (which must be mentionable in Slack).
// Ids come from the configuration and the policy, never from user text.
func mention(id string) string {
	if IsUserGroup(id) {
		return "<!subteam^" + Escape(id) + ">"
	}
	return "<@" + Escape(id) + ">"
}

// awaited lists the approvers of r who have not acted, as mentions: the
// user ids that have not voted (the requester cannot decide, so is left
// out) and every user group (one member's vote does not speak for the
// group).
func awaited(r approvals.Request) []string {
	var out []string
	for _, id := range r.Approvers {
		if id == r.Requester || (!IsUserGroup(id) && r.Approved(id)) {
			continue
		}
		out = append(out, mention(id))
	}
	return out
}

// approversLine names the rule r matched and mentions its approvers, so
// that Slack notifies them of a new request.
func approversLine(r approvals.Request) string {
	s := fmt.Sprintf(":bust_in_silhouette: Needs %d approval(s)", r.Required)
	if r.Rule != "" {
		s += " under rule " + code(r.Rule)
	}
	if who := awaited(r); len(who) > 0 {
		s += " from " + strings.Join(who, ", ")
	}
	return s + "."
}

// DMRequester sends the requester a direct message saying r reached state
// (see approvals.Notifier). The pending message links to the approval
// message; when Slack cannot give its permalink, the message names the
// channel instead.
func (n *Notifier) DMRequester(ctx context.Context, r approvals.Request, state approvals.State) error {
	link := ""
	if state == approvals.StatePending && r.MessageTS != "" {
		if l, err := n.Client.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: r.ChannelID, Ts: r.MessageTS}); err == nil {
			link = l
		} else {
			n.metrics().SlackError("chat.getPermalink", errorCode(err))
		}
	}
	text := DMText(r, state, link)
	_, _, err := n.Client.PostMessageContext(ctx, r.Requester,
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(section(text)))
	return n.classify("chat.postMessage", err)
}

// DMText is the direct message that tells the requester r reached state.
// link is the approval message's permalink, or "" when unknown.
func DMText(r approvals.Request, state approvals.State, link string) string {
	what := previewText(r)
	switch state {
	case approvals.StatePending:
		where := "in <#" + Escape(r.ChannelID) + ">"
		if strings.HasPrefix(link, "https://") {
			where = fmt.Sprintf("<%s|in the approval message> in <#%s>", strings.NewReplacer("|", "%7C", ">", "%3E", "<", "%3C").Replace(link), Escape(r.ChannelID))
		}
		return fmt.Sprintf(":hourglass_flowing_sand: Your request #%d is waiting for approval: %s. %d approval(s) needed; approvers decide %s. Expires %s.",
			r.ID, what, r.Required, where, date(r.ExpiresAt))
	case approvals.StateApproved:
		return fmt.Sprintf(":white_check_mark: Your request #%d was approved by %s: %s. rolegate is assigning the role now.", r.ID, user(r.Decider), what)
	case approvals.StateApplied:
		if r.Extends != 0 {
			return fmt.Sprintf(":white_check_mark: Your extension #%d is approved: %s.", r.ID, extensionNote(r))
		}
		return fmt.Sprintf(":white_check_mark: Your request #%d is applied, %s. %s", r.ID, durationText(r), appliedSummary(r))
	case approvals.StateRevoked:
		return fmt.Sprintf("Your grant #%d has ended: %s. %s", r.ID, what, endedText(r))
	case approvals.StateDenied:
		s := fmt.Sprintf(":no_entry: Your request #%d was denied by %s %s: %s.", r.ID, user(r.Decider), date(r.DecidedAt), what)
		if r.DenyReason != "" {
			s += "\n*Reason*\n" + quote(Escape(r.DenyReason))
		}
		return s
	case approvals.StateFailed:
		if r.Extends != 0 {
			return fmt.Sprintf(":x: Your extension #%d was approved but refused: %s", r.ID, Escape(r.Note))
		}
		s := fmt.Sprintf(":x: Your request #%d was approved, but OpenAI did not assign the role: %s.", r.ID, what)
		if f := r.Failure; f != nil {
			s += "\n*Error*\n" + quote(Escape(orNone(f.Message)))
			var facts []string
			for _, kv := range [][2]string{{"type", f.Type}, {"code", f.Code}, {"x-request-id", f.RequestID}} {
				if kv[1] != "" {
					facts = append(facts, kv[0]+" "+code(kv[1]))
				}
			}
			if f.Status != 0 {
				facts = append(facts, fmt.Sprintf("HTTP status %d", f.Status))
			}
			if len(facts) > 0 {
				s += "\n" + strings.Join(facts, ", ")
			}
		}
		return s
	case approvals.StateExpired:
		return fmt.Sprintf(":alarm_clock: Your request #%d expired %s without a decision (%s): %s. Ask again if it is still needed.",
			r.ID, date(r.FinishedAt), votes(r), what)
	case approvals.StateCancelled:
		if r.Decider == r.Requester {
			return fmt.Sprintf(":heavy_multiplication_x: Your request #%d is cancelled, as you asked: %s. Nothing was assigned.", r.ID, what)
		}
		return fmt.Sprintf(":heavy_multiplication_x: Your request #%d was cancelled: %s. Nothing was assigned.", r.ID, Escape(r.Note))
	}
	return fmt.Sprintf("Your request #%d: %s", r.ID, status(r))
}

// appliedSummary says what OpenAI reported after the assignment.
func appliedSummary(r approvals.Request) string {
	a := r.Assignment
	if a == nil {
		return fmt.Sprintf("Group %s has role %s in project %s.", code(r.GroupID), code(r.RoleID), code(r.ProjectID))
	}
	name := func(n, id string) string {
		if n == "" {
			return code(id)
		}
		return fmt.Sprintf("*%s* (%s)", Escape(n), code(id))
	}
	project := code(r.ProjectID)
	if r.Preview != nil && r.Preview.Project.Name != "" {
		project = name(r.Preview.Project.Name, r.ProjectID)
	}
	s := fmt.Sprintf("Group %s now has role %s in project %s.", name(a.Group.Name, a.Group.ID), name(a.Role.Name, a.Role.ID), project)
	if a.AlreadyAssigned {
		s = fmt.Sprintf("Group %s has role %s in project %s: it was already assigned when rolegate checked, so it was not assigned again.",
			name(a.Group.Name, a.Group.ID), name(a.Role.Name, a.Role.ID), project)
	}
	if len(a.Role.Permissions) > 0 {
		perms := make([]string, len(a.Role.Permissions))
		for i, p := range a.Role.Permissions {
			perms[i] = code(p)
		}
		s += fmt.Sprintf("\n*Permissions* (%d): %s", len(perms), truncate(strings.Join(perms, ", "), 2000))
	}
	return s
}

// PostDenial replies in the approval message's thread who denied r, when,
// and why.
func (n *Notifier) PostDenial(ctx context.Context, r approvals.Request, p approvals.Posting) error {
	if r.MessageTS == "" {
		return nil // a deny needs a click on the message, so this does not happen
	}
	if done, err := n.inThread(ctx, r, p, DenialEventType); done || err != nil {
		return err
	}
	text := fmt.Sprintf(":no_entry: Request #%d was denied by %s %s.", r.ID, user(r.Decider), date(r.DecidedAt))
	if r.DenyReason != "" {
		text += "\n*Reason*\n" + quote(Escape(r.DenyReason))
	}
	_, _, err := n.Client.PostMessageContext(ctx, r.ChannelID,
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(section(text)), slack.MsgOptionTS(r.MessageTS),
		slack.MsgOptionMetadata(RequestMetadata(DenialEventType, r.ID)))
	return n.classify("chat.postMessage", err)
}

// Remind replies in the approval message's thread, mentioning the
// approvers of r who have not acted yet; with p.MayHavePosted, only when
// it cannot find the reminder an earlier attempt posted.
func (n *Notifier) Remind(ctx context.Context, r approvals.Request, p approvals.Posting) error {
	if done, err := n.inThread(ctx, r, p, ReminderEventType); done || err != nil {
		return err
	}
	text := RemindText(r)
	_, _, err := n.Client.PostMessageContext(ctx, r.ChannelID,
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(section(text)), slack.MsgOptionTS(r.MessageTS),
		slack.MsgOptionMetadata(RequestMetadata(ReminderEventType, r.ID)))
	return n.classify("chat.postMessage", err)
}

// RemindText is the reminder in the thread of r's approval message.
func RemindText(r approvals.Request) string {
	who := awaited(r)
	ask := "an approver"
	if len(who) > 0 {
		ask = strings.Join(who, ", ")
	}
	left := max(r.Required-len(r.Approvals), 1)
	return fmt.Sprintf(":bell: Reminder: request #%d from %s is still waiting for %d more approval(s) (%s). %s, please approve or deny it above before it expires %s.",
		r.ID, user(r.Requester), left, votes(r), ask, date(r.ExpiresAt))
}
