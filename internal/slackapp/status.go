package slackapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Bounds of the private answers to `status` and `list`: Slack shows a
// message's text up to 40,000 characters but folds anything past about
// 4,000 behind "Show more", so the answers stay under that.
const (
	maxAnswerText = 3800
	// maxListText is more: 20 requests with their links need it.
	maxListText = 7000
	maxListed   = 20
	// lookupBudget bounds the approver look-ups and permalink calls made
	// before the ack, which Slack wants within 3 s.
	lookupBudget = 1500 * time.Millisecond
)

// mayRead reports whether user may see request r: its requester, or
// someone who may decide it under its rule (the approvers as they are
// now). Anyone else is told there is no such request they can see, the
// same answer as for an id that does not exist, so a stranger learns
// nothing of other people's requests: not who asked, not for what, not
// why. (Ids are sequential, so that some request #N exists is no secret.)
func (a *App) mayRead(ctx context.Context, r approvals.Request, user string) (bool, error) {
	if user == r.Requester {
		return true, nil
	}
	return a.Service.CanDecide(ctx, r, user)
}

// statusText is the private answer to `status <id>`: where the request
// stands, what it grants, and its history.
func (a *App) statusText(ctx context.Context, log *slog.Logger, id uint64, user string) string {
	none := fmt.Sprintf("There is no request #%d you can see. Only its requester and the approvers of its rule can.", id)
	r, events, err := a.Service.Get(ctx, id)
	if errors.Is(err, approvals.ErrNotFound) {
		return none
	}
	if err != nil {
		log.ErrorContext(ctx, "Reading a request failed", "request_id", id, "err", err)
		return fmt.Sprintf(":warning: rolegate could not read request #%d. Please try again in a moment.", id)
	}
	lctx, cancel := context.WithTimeout(ctx, lookupBudget)
	defer cancel()
	ok, err := a.mayRead(lctx, r, user)
	if err != nil {
		log.WarnContext(ctx, "Checking who may read a request failed", "request_id", id, "err", err)
		return fmt.Sprintf(":warning: rolegate could not check whether you approve request #%d (the user-group look-up failed). Please try again in a moment.", id)
	}
	if !ok {
		return none
	}
	links := a.permalinks(lctx, []approvals.Request{r})
	return StatusText(r, events, links[r.ID])
}

// StatusText renders request r and its audit trail for someone allowed to
// see it; link is its approval message's permalink, or "".
func StatusText(r approvals.Request, events []approvals.Event, link string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*Request #%d* (%s)\n%s\n", r.ID, r.State, stateLine(r))
	fmt.Fprintf(&b, "*Asks for* %s\n", previewText(r))
	if p := r.Preview; p != nil {
		fmt.Fprintf(&b, "*Group SCIM-managed* %s · *Role permissions* %d\n", yesNo(p.Group.SCIMManaged), len(p.Role.Permissions))
	}
	rule := r.Rule
	if rule == "" {
		rule = "(not matched yet)"
	}
	fmt.Fprintf(&b, "*Rule* %s · *Approvals* %s\n", Escape(rule), votes(r))
	fmt.Fprintf(&b, "*Requested by* %s %s in <#%s>", user(r.Requester), date(r.CreatedAt), Escape(r.ChannelID))
	if link != "" {
		fmt.Fprintf(&b, " · <%s|approval message>", Escape(link))
	}
	b.WriteString("\n*Reason*\n" + quote(Escape(truncate(r.Reason, 1200))) + "\n")
	head := b.String()

	lines := make([]string, len(events))
	for i, ev := range events {
		l := fmt.Sprintf("• %s %s *%s*", date(ev.At), user(ev.Actor), ev.Action)
		if ev.Detail != "" {
			l += ": " + Escape(truncate(ev.Detail, 300))
		}
		lines[i] = l
	}
	// Keep the most recent events that fit; say how many earlier ones are
	// left out.
	room := maxAnswerText - len(head) - 180 // and the latest event's hash
	first := len(lines)
	for first > 0 && room-len(lines[first-1])-1 >= 0 {
		room -= len(lines[first-1]) + 1
		first--
	}
	b.WriteString(fmt.Sprintf("*History* (%d events)\n", len(events)))
	if first > 0 {
		fmt.Fprintf(&b, "…%d earlier events not shown\n", first)
	}
	b.WriteString(strings.Join(lines[first:], "\n"))
	if n := len(events); n > 0 && events[n-1].Hash != "" {
		// The full hash of the latest event: compare it with the short one
		// in the thread, or with `bot audit export`.
		fmt.Fprintf(&b, "\nLatest audit event: `%s`", Escape(events[n-1].Hash))
	}
	return truncate(b.String(), maxAnswerText+300)
}

// stateLine says where r stands, including the states status leaves bare.
func stateLine(r approvals.Request) string {
	switch r.State {
	case approvals.StateChecking:
		return fmt.Sprintf(":mag: *Being checked* at OpenAI since %s: approvers see it once the project, group and role are found.", date(r.CreatedAt))
	case approvals.StateRejected:
		s := ":no_entry_sign: *Not put to approvers*"
		if !r.FinishedAt.IsZero() {
			s += " " + date(r.FinishedAt)
		}
		return s + ": " + Escape(orNone(r.Note))
	case approvals.StateDenied:
		s := status(r)
		if r.DenyReason != "" {
			s += " Reason: " + Escape(r.DenyReason)
		}
		return s
	case approvals.StateFailed:
		s := status(r)
		if r.Failure != nil {
			s += " OpenAI said: " + Escape(orNone(r.Failure.Message))
		}
		return s
	}
	return status(r)
}

// listText is the private answer to `list`: the caller's open requests,
// and the pending requests of others the caller may decide.
func (a *App) listText(ctx context.Context, log *slog.Logger, user string) string {
	open, err := a.Service.Open(ctx)
	if err != nil {
		log.ErrorContext(ctx, "Listing open requests failed", "err", err)
		return ":warning: rolegate could not read the open requests. Please try again in a moment."
	}
	lctx, cancel := context.WithTimeout(ctx, lookupBudget)
	defer cancel()
	var mine, theirs []approvals.Request
	lookupFailed := false
	for _, r := range open {
		switch {
		case r.Requester == user:
			mine = append(mine, r)
		case r.State == approvals.StatePending:
			ok, err := a.Service.CanDecide(lctx, r, user)
			if err != nil {
				lookupFailed = true
			}
			if ok {
				theirs = append(theirs, r)
			}
		}
	}
	if len(mine) == 0 && len(theirs) == 0 {
		s := "You have no open requests, and none is waiting for your decision."
		if lookupFailed {
			s += " (A user-group look-up failed, so requests you approve through a group may be missing: try again in a moment.)"
		}
		return s
	}
	shownMine := mine[:min(len(mine), maxListed)]
	shownTheirs := theirs[:min(len(theirs), maxListed-len(shownMine))]
	links := a.permalinks(lctx, append(append([]approvals.Request(nil), shownMine...), shownTheirs...))
	return ListText(mine, theirs, links, lookupFailed)
}

// ListText renders the caller's open requests (mine) and those waiting for
// the caller's decision (theirs), at most maxListed in all; links maps
// request ids to their approval messages' permalinks.
func ListText(mine, theirs []approvals.Request, links map[uint64]string, lookupFailed bool) string {
	var b strings.Builder
	shown := 0
	item := func(r approvals.Request, from bool) {
		// One short line each: the id links to the approval message, where
		// (or in `status`) the ids, permissions and expiry are.
		ref := fmt.Sprintf("*#%d*", r.ID)
		if link := links[r.ID]; link != "" {
			ref = fmt.Sprintf("<%s|#%d>", Escape(link), r.ID)
		}
		l := fmt.Sprintf("• %s %s: %s", ref, r.State, shortPreview(r))
		if from {
			l += " · from " + user(r.Requester)
		}
		if links[r.ID] == "" && r.ChannelID != "" {
			l += " · in <#" + Escape(r.ChannelID) + ">"
		}
		b.WriteString(l + "\n")
		shown++
	}
	section := func(title string, rs []approvals.Request, from bool) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(&b, "*%s* (%d)\n", title, len(rs))
		var left []string
		for _, r := range rs {
			if shown < maxListed && b.Len() < maxListText-500 {
				item(r, from)
				continue
			}
			left = append(left, fmt.Sprintf("#%d", r.ID))
		}
		if len(left) > 0 {
			fmt.Fprintf(&b, "…and %d more: %s\n", len(left), truncate(strings.Join(left, ", "), 300))
		}
	}
	section("Your open requests", mine, false)
	section("Waiting for your decision", theirs, true)
	b.WriteString("`/assign-role status <id>` shows one request and its history.")
	if lookupFailed {
		b.WriteString(" (A user-group look-up failed, so requests you approve through a group may be missing: try again in a moment.)")
	}
	return b.String()
}

// permalinks asks Slack for the approval messages' links (chat.getPermalink
// needs no scope beyond the bot token, and gives the right link on any
// workspace, Enterprise Grid and GovSlack included, which a URL built from
// the team domain would not). The calls run at once, bounded by ctx:
// whatever has not answered is left out and the answer names the channel
// instead.
func (a *App) permalinks(ctx context.Context, rs []approvals.Request) map[uint64]string {
	out := map[uint64]string{}
	if a.Slack == nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range rs {
		if r.MessageTS == "" || r.ChannelID == "" {
			continue
		}
		wg.Go(func() {
			link, err := a.Slack.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: r.ChannelID, Ts: r.MessageTS})
			if err != nil {
				a.metrics().SlackError("chat.getPermalink", errorCode(err))
				return
			}
			if strings.HasPrefix(link, "https://") {
				mu.Lock()
				out[r.ID] = link
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// shortPreview names what r grants in a line of a list: names (cut to 40
// characters) once checked, what was typed before.
func shortPreview(r approvals.Request) string {
	cut := func(s string) string {
		if rs := []rune(s); len(rs) > 40 {
			return string(rs[:39]) + "…"
		}
		return s
	}
	role, group, project := r.Ask.Role, r.Ask.Group, r.Ask.Project
	if p := r.Preview; p != nil {
		role, group, project = orNone(p.Role.Name), orNone(p.Group.Name), orNone(p.Project.Name)
	}
	return fmt.Sprintf("role *%s* for group *%s* in project *%s*", Escape(cut(role)), Escape(cut(group)), Escape(cut(project)))
}
