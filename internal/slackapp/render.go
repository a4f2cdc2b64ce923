package slackapp

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Action ids of the approval message's buttons. The button value is the
// request id in decimal.
const (
	ActionApprove  = "rolegate_approve"
	ActionDeny     = "rolegate_deny"
	decisionBlock  = "rolegate_decision"
	maxSectionText = 3000
	maxFieldText   = 2000
	maxBlocks      = 50
)

// ActionCancel is the approval message's Cancel button: it withdraws the
// request, and only its requester may use it.
const ActionCancel = "rolegate_cancel"

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Escape makes user-provided text safe for mrkdwn: no mention, channel
// broadcast or link can be formed from it.
func Escape(s string) string { return escaper.Replace(s) }

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// mrkdwn is a text object of rolegate's own markup around escaped user and
// OpenAI text. verbatim keeps Slack from turning bare URLs, #channel or
// @words in that text into links and mentions; the explicit <@U…> and
// <!date…> markup rolegate writes itself still renders.
func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, true)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func section(s string) slack.Block {
	return slack.NewSectionBlock(mrkdwn(truncate(s, maxSectionText)), nil, nil)
}

func fields(fs ...string) slack.Block {
	objs := make([]*slack.TextBlockObject, 0, len(fs))
	for _, f := range fs {
		objs = append(objs, mrkdwn(truncate(f, maxFieldText)))
	}
	return slack.NewSectionBlock(nil, objs, nil)
}

func user(id string) string {
	if id == approvals.SystemActor || id == "" {
		return "rolegate"
	}
	return "<@" + Escape(id) + ">"
}

func code(s string) string { return "`" + Escape(strings.ReplaceAll(s, "`", "'")) + "`" }

// shortID keeps at most n characters of an id, cutting in the middle so
// both its prefix and its distinctive end stay readable.
func shortID(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := (n - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// date renders t in each reader's own time zone, with a UTC fallback.
func date(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

func votes(r approvals.Request) string {
	s := fmt.Sprintf("%d of %d", len(r.Approvals), r.Required)
	if len(r.Approvals) > 0 {
		names := make([]string, len(r.Approvals))
		for i, v := range r.Approvals {
			names[i] = user(v.User)
		}
		s += ", by " + strings.Join(names, ", ")
	}
	return s
}

// Summary is the one-line text of a request, used as the message's
// notification text and in private answers.
func Summary(r approvals.Request) string {
	if r.BreakGlass {
		return truncate(fmt.Sprintf("<!here> :rotating_light: Break-glass request #%d: %s took %s (%s)", r.ID, user(r.Requester), previewText(r), durationText(r)), 3000)
	}
	return truncate(fmt.Sprintf("Request #%d: %s asks for %s (%s)", r.ID, user(r.Requester), previewText(r), durationText(r)), 3000)
}

// endingText says when an applied grant ends, or that it is ending.
func endingText(r approvals.Request) string {
	switch {
	case r.Ending && r.RevokeFailure != nil:
		return " :rotating_light: *Revocation failing*, retried every hour: see the thread."
	case r.Ending:
		return " *Ending*: rolegate is removing the role…"
	case !r.EndsAt.IsZero():
		return " Ends " + date(r.EndsAt) + "."
	}
	return " Permanent."
}

func reviewText(r approvals.Request) string {
	if r.ReviewedBy != "" {
		return fmt.Sprintf(" Reviewed by %s %s.", user(r.ReviewedBy), date(r.ReviewedAt))
	}
	return " *Not reviewed yet.*"
}

func extensionNote(r approvals.Request) string {
	if !r.EndsAt.IsZero() {
		return fmt.Sprintf("grant #%d now ends %s", r.Extends, date(r.EndsAt))
	}
	return Escape(r.Note)
}

// status says where the request stands, who decided and when.
func status(r approvals.Request) string {
	switch r.State {
	case approvals.StatePending:
		return fmt.Sprintf(":hourglass_flowing_sand: *Waiting for approval* (%s). Expires %s.", votes(r), date(r.ExpiresAt))
	case approvals.StateApproved:
		return fmt.Sprintf(":white_check_mark: *Approved* by %s %s (%s). Assigning the role…", user(r.Decider), date(r.DecidedAt), votes(r))
	case approvals.StateApplied:
		if r.Extends != 0 {
			return fmt.Sprintf(":white_check_mark: *Extension approved* by %s %s (%s): %s.", user(r.Decider), date(r.DecidedAt), votes(r), extensionNote(r))
		}
		if r.BreakGlass {
			return fmt.Sprintf(":rotating_light: *Applied break-glass* by %s %s, without approval.%s%s", user(r.Requester), date(r.FinishedAt), reviewText(r), endingText(r))
		}
		s := fmt.Sprintf(":white_check_mark: *Approved* by %s %s (%s). *Role assigned* %s.", user(r.Decider), date(r.DecidedAt), votes(r), date(r.FinishedAt))
		if r.Assignment != nil && r.Assignment.AlreadyAssigned {
			// Found by a check, which also happens after rolegate's own POST
			// whose answer was lost (a timeout, a crash): say only what is known.
			s = fmt.Sprintf(":white_check_mark: *Approved* by %s %s (%s). *Role in place* %s: it was already assigned when rolegate checked, so it was not assigned again.", user(r.Decider), date(r.DecidedAt), votes(r), date(r.FinishedAt))
		}
		return s + endingText(r)
	case approvals.StateRevoked:
		s := fmt.Sprintf(":white_check_mark: *Approved* by %s %s (%s). *Role assigned* %s.\n", user(r.Decider), date(r.DecidedAt), votes(r), date(r.FinishedAt))
		if r.BreakGlass {
			s = fmt.Sprintf(":rotating_light: *Applied break-glass* by %s, without approval.%s\n", user(r.Requester), reviewText(r))
		}
		return s + endedText(r)
	case approvals.StateFailed:
		if r.Extends != 0 {
			return fmt.Sprintf(":x: *Extension approved* by %s %s, but *refused*: %s", user(r.Decider), date(r.DecidedAt), Escape(r.Note))
		}
		return fmt.Sprintf(":x: *Approved* by %s %s (%s), but *the assignment failed* %s. See the thread.", user(r.Decider), date(r.DecidedAt), votes(r), date(r.FinishedAt))
	case approvals.StateDenied:
		s := fmt.Sprintf(":no_entry: *Denied* by %s %s.", user(r.Decider), date(r.DecidedAt))
		if r.DenyReason != "" {
			s += " Reason:\n" + quote(Escape(r.DenyReason))
		}
		return s
	case approvals.StateExpired:
		return fmt.Sprintf(":alarm_clock: *Expired* %s without a decision (%s).", date(r.FinishedAt), votes(r))
	case approvals.StateCancelled:
		if r.Decider == r.Requester {
			return fmt.Sprintf(":heavy_multiplication_x: *Cancelled* by the requester %s.", date(r.FinishedAt))
		}
		return fmt.Sprintf(":heavy_multiplication_x: *Cancelled* %s: %s", date(r.FinishedAt), Escape(r.Note))
	}
	return string(r.State)
}

// ApprovalBlocks renders the approval message for r's current state: who
// asks, and what Approve grants: the project, group and role by name and
// id as the checks found them (r.Preview), the group's SCIM flag, the
// role's description and every one of its permissions (as many sections
// as the 50-block limit leaves, and an honest "…and N more" only past
// that), the rule, the reason, the approvals and the expiry. The buttons
// are there only while r is pending.
func ApprovalBlocks(r approvals.Request) []slack.Block {
	facts := []string{
		"*Requester*\n" + user(r.Requester),
		"*Approvals*\n" + votes(r),
		"*Duration*\n" + durationText(r),
	}
	if r.Extends != 0 {
		facts[2] = fmt.Sprintf("*Extends*\ngrant #%d, by %s", r.Extends, approvals.FormatDuration(r.Duration))
	}
	if r.Rule != "" {
		facts = append(facts, "*Rule*\n"+Escape(r.Rule))
	}
	if r.State == approvals.StatePending {
		facts = append(facts, "*Expires*\n"+date(r.ExpiresAt))
	}
	title := fmt.Sprintf("Role assignment request #%d", r.ID)
	if r.Extends != 0 {
		title = fmt.Sprintf("Extension request #%d for grant #%d", r.ID, r.Extends)
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(title)),
		fields(targetFacts(r)...),
		fields(facts...),
		section("*Reason*\n" + quote(Escape(r.Reason))),
		section(status(r)),
	}
	var actions slack.Block
	if r.State == approvals.StatePending {
		blocks = append(blocks, section(approversLine(r)))
		id := strconv.FormatUint(r.ID, 10)
		approve := slack.NewButtonBlockElement(ActionApprove, id, plain("Approve")).WithStyle(slack.StylePrimary)
		approve.Confirm = slack.NewConfirmationBlockObject(
			plain("Approve this role assignment?"),
			mrkdwn(confirmText(r)),
			plain("Approve"), plain("Cancel"))
		deny := slack.NewButtonBlockElement(ActionDeny, id, plain("Deny")).WithStyle(slack.StyleDanger)
		cancel := slack.NewButtonBlockElement(ActionCancel, id, plain("Cancel request"))
		actions = slack.NewActionBlock(decisionBlock, approve, deny, cancel)
	} else if b := grantButtons(r); b != nil {
		actions = b
	}
	if r.BreakGlass {
		blocks = append([]slack.Block{section("<!here> :rotating_light: Break-glass: " + user(r.Requester) + " applied this without approval. An approver should review it.")}, blocks...)
	}
	if p := r.Preview; p != nil {
		// The role's description and permissions go between the facts and
		// the buttons, so an approver reads them before reaching Approve.
		room := maxBlocks - len(blocks) - 1
		if actions != nil {
			room--
		}
		role := []slack.Block{section("*Role description*\n" + Escape(orNone(p.Role.Description)))}
		role = append(role, permissionBlocks(p.Role.Permissions, room)...)
		at := 2
		if r.BreakGlass {
			at = 3
		}
		blocks = append(blocks[:at], append(role, blocks[at:]...)...)
	}
	if actions != nil {
		blocks = append(blocks, actions)
	}
	return blocks
}

// targetFacts names the project, group and role: by name and id once the
// checks found them, else by what was typed (and the ids, when known).
func targetFacts(r approvals.Request) []string {
	if p := r.Preview; p != nil {
		return []string{
			"*Project*\n" + named(p.Project.Name, p.Project.ID),
			"*Group*\n" + named(p.Group.Name, p.Group.ID) + "\nSCIM-managed: " + yesNo(p.Group.SCIMManaged),
			"*Role*\n" + named(p.Role.Name, p.Role.ID),
		}
	}
	part := func(id, typed string) string {
		if id != "" {
			return code(id)
		}
		return code(typed) + " (not looked up yet)"
	}
	return []string{
		"*Project*\n" + part(r.ProjectID, r.Ask.Project),
		"*Group*\n" + part(r.GroupID, r.Ask.Group),
		"*Role*\n" + part(r.RoleID, r.Ask.Role),
	}
}

// named renders an OpenAI object as "*Name* `id`", or just the id when it
// has no name.
func named(name, id string) string {
	if strings.TrimSpace(name) == "" {
		return code(id)
	}
	return "*" + Escape(name) + "* " + code(id)
}

// confirmText is the Approve confirm dialog's text (at most 300
// characters): it names the role and the group, by name once checked, and
// the project. Names are cut and ids shortened in the middle, step by
// step, rather than the sentence cut, so nothing is ever cut away whole.
func confirmText(r approvals.Request) string {
	groupName, roleName, projectName := r.Ask.Group, r.Ask.Role, r.Ask.Project
	if p := r.Preview; p != nil {
		groupName, roleName, projectName = p.Group.Name, p.Role.Name, p.Project.Name
	}
	groupID, roleID, projectID := r.GroupID, r.RoleID, r.ProjectID
	name := func(n string, max int) string {
		n = strings.TrimSpace(n)
		if n == "" {
			return ""
		}
		if rs := []rune(n); len(rs) > max {
			n = string(rs[:max-1]) + "…"
		}
		return "*" + Escape(n) + "* "
	}
	id := func(s string, max int) string {
		if s == "" {
			return "" // not resolved yet: the name as typed says it
		}
		return code(shortID(s, max))
	}
	for _, n := range []int{64, 40, 24, 16, 10} {
		s := fmt.Sprintf("Group %s%s will get role %s%s in project %s%s as soon as the approvals are complete.",
			name(groupName, n), id(groupID, n), name(roleName, n), id(roleID, n),
			name(projectName, n), id(projectID, n))
		if utf8.RuneCountInString(s) <= 300 {
			return s
		}
	}
	return truncate(fmt.Sprintf("Group %s%s gets role %s%s.", name(groupName, 8), id(groupID, 10), name(roleName, 8), id(roleID, 10)), 300)
}

func quote(s string) string {
	return "> " + strings.ReplaceAll(s, "\n", "\n> ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ResultBlocks renders the outcome of an approved request: the group and
// role summary the API returned, or the API's error.
func ResultBlocks(r approvals.Request) []slack.Block {
	switch {
	case r.Extends != 0 && r.State == approvals.StateApplied:
		return []slack.Block{section(fmt.Sprintf(":white_check_mark: *Extension #%d applied:* %s.", r.ID, extensionNote(r)))}
	case r.Extends != 0 && r.State == approvals.StateFailed:
		return []slack.Block{section(fmt.Sprintf(":x: *Extension #%d refused:* %s", r.ID, Escape(r.Note)))}
	case r.State == approvals.StateApplied && r.Assignment != nil:
		a := r.Assignment
		groupName, roleName := "*"+Escape(a.Group.Name)+"*", "*"+Escape(a.Role.Name)+"*"
		if a.Group.Name == "" {
			groupName = code(a.Group.ID)
		}
		if a.Role.Name == "" {
			roleName = code(a.Role.ID)
		}
		head := fmt.Sprintf(":white_check_mark: *Request #%d applied.* Group %s now has role %s in project %s, %s.",
			r.ID, groupName, roleName, code(r.ProjectID), durationText(r))
		if a.DryRun {
			head = fmt.Sprintf(":test_tube: *Request #%d approved (dry run).* rolegate would have given group %s role %s in project %s, %s; nothing was changed at OpenAI.",
				r.ID, groupName, roleName, code(r.ProjectID), durationText(r))
		}
		if a.AlreadyAssigned {
			head = fmt.Sprintf(":white_check_mark: *Request #%d applied: role in place.* Group %s has role %s in project %s. "+
				"It was already assigned when rolegate checked (by an earlier attempt whose answer was lost, or by someone else), so it was not assigned again.",
				r.ID, groupName, roleName, code(r.ProjectID))
			if r.HeldBefore {
				head += " The group held it before this request, so its end will not remove it."
			}
		}
		desc := a.Role.Description
		if desc == "" {
			desc = "(none)"
		}
		// What a failed look-up left unknown is left out, never shown as an
		// empty name or a year-1 date.
		group := []string{"*Group ID*\n" + code(a.Group.ID)}
		if a.Group.Name != "" {
			group = append([]string{"*Group*\n" + Escape(a.Group.Name)}, group...)
		}
		if !a.Group.CreatedAt.IsZero() {
			group = append(group, "*Group created*\n"+date(a.Group.CreatedAt))
		}
		if a.Group.Name != "" {
			group = append(group, "*SCIM-managed*\n"+yesNo(a.Group.SCIMManaged))
		}
		blocks := []slack.Block{
			section(head),
			fields(group...),
			fields(
				"*Role*\n"+Escape(a.Role.Name),
				"*Role ID*\n"+code(a.Role.ID),
				"*Resource type*\n"+code(a.Role.ResourceType),
				"*Predefined*\n"+yesNo(a.Role.Predefined),
			),
			section("*Description*\n" + Escape(desc)),
		}
		return append(blocks, permissionBlocks(a.Role.Permissions, maxBlocks-len(blocks))...)
	case r.State == approvals.StateFailed && r.Failure != nil:
		f := r.Failure
		fs := []string{"*Message*\n" + Escape(orNone(f.Message))}
		if f.Type != "" {
			fs = append(fs, "*Type*\n"+code(f.Type))
		}
		if f.Code != "" {
			fs = append(fs, "*Code*\n"+code(f.Code))
		}
		if f.Status != 0 {
			fs = append(fs, "*HTTP status*\n"+strconv.Itoa(f.Status))
		}
		if f.RequestID != "" {
			fs = append(fs, "*x-request-id*\n"+code(f.RequestID))
		}
		return []slack.Block{
			section(fmt.Sprintf(":x: *Request #%d failed.* OpenAI did not assign role %s to group %s in project %s.",
				r.ID, code(r.RoleID), code(r.GroupID), code(r.ProjectID))),
			fields(fs...),
		}
	}
	return []slack.Block{section(status(r))}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// permissionBlocks lists every permission, packed into as few sections as
// Slack's 3,000-character limit allows and at most room blocks; if even that
// is not enough, the last block says how many were left out.
func permissionBlocks(perms []string, room int) []slack.Block {
	if len(perms) == 0 {
		return []slack.Block{section("*Permissions*\n(none)")}
	}
	var blocks []slack.Block
	var cur strings.Builder
	fmt.Fprintf(&cur, "*Permissions* (%d)\n", len(perms))
	for i, p := range perms {
		line := "• " + code(p) + "\n"
		if cur.Len()+len(line) > maxSectionText-40 {
			if len(blocks) == room-1 {
				fmt.Fprintf(&cur, "…and %d more", len(perms)-i)
				break
			}
			blocks = append(blocks, section(cur.String()))
			cur.Reset()
		}
		cur.WriteString(line)
	}
	return append(blocks, section(cur.String()))
}

// ResultText is the notification text of the result message.
func ResultText(r approvals.Request) string {
	if r.State == approvals.StateApplied && r.Extends != 0 {
		return fmt.Sprintf("Request #%d applied: %s", r.ID, extensionNote(r))
	}
	if r.State == approvals.StateApplied {
		return fmt.Sprintf("Request #%d applied: group %s has role %s in project %s", r.ID, code(r.GroupID), code(r.RoleID), code(r.ProjectID))
	}
	msg := ""
	if r.Failure != nil {
		msg = ": " + Escape(r.Failure.Message)
	}
	return truncate(fmt.Sprintf("Request #%d failed%s", r.ID, msg), 3000)
}

// askText names what r asks for as typed: role R for group G in project P.
func askText(r approvals.Request) string {
	return fmt.Sprintf("role %s for group %s in project %s", code(r.Ask.Role), code(r.Ask.Group), code(r.Ask.Project))
}

// Acknowledgement is the private answer to a request: it names the request
// and says where it stands.
func Acknowledgement(r approvals.Request) string {
	switch r.State {
	case approvals.StateChecking:
		return fmt.Sprintf("Request #%d is being checked: %s. rolegate looks them up at OpenAI now and tells you here when it is waiting for approval, or why not.", r.ID, askText(r))
	case approvals.StatePending:
		return fmt.Sprintf("Request #%d is waiting for approval: %s. Approvers will decide in this channel.", r.ID, askText(r))
	}
	return fmt.Sprintf("Request #%d: %s", r.ID, status(r))
}
