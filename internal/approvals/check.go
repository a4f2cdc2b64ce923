package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Checker runs the checks a new request passes before anyone is asked to
// approve it: the project, group and role it names exist (names resolved,
// archived projects refused, the role one of the project's), a policy rule
// allows it, its reason satisfies the rule, and the group does not already
// hold the role.
type Checker struct {
	Catalog Catalog
	// Fresh, when set, is asked again (uncached) when Catalog finds no
	// match: a project, group or role created a moment ago is not yet in
	// a cached list.
	Fresh  Catalog
	Policy Policy
	// MemberOf reports whether user belongs to the user group id, for rules
	// that name groups among their requesters (see MatchQuery.MemberOf).
	MemberOf func(ctx context.Context, user, id string) (bool, error)
}

// Verdict is what the checks found. A non-empty Rejection refuses the
// request with that sentence, written for the requester.
type Verdict struct {
	Preview   Preview
	Rule      Rule
	Rejection string
	// Duration is how long the grant lasts (0: permanent), as the rule
	// decides from what was asked.
	Duration time.Duration
}

// Check checks r. Its error is a failure to check (OpenAI or Slack
// unreachable: temporary, retry); a refusal is a Verdict with a Rejection.
func (c *Checker) Check(ctx context.Context, r Request) (Verdict, error) {
	preview, err := Resolve(ctx, c.Catalog, r.Ask)
	var re *ResolveError
	if errors.As(err, &re) && c.Fresh != nil {
		preview, err = Resolve(ctx, c.Fresh, r.Ask)
	}
	switch {
	case errors.As(err, &re):
		return Verdict{Rejection: re.Error()}, nil
	case errors.Is(err, ErrInvalid):
		return Verdict{Rejection: err.Error()}, nil
	case err != nil:
		return Verdict{}, err
	}
	q := MatchQuery{Project: preview.Project, Group: preview.Group, Role: preview.Role, Channel: r.ChannelID, Requester: r.Requester}
	if c.MemberOf != nil {
		q.MemberOf = func(id string) (bool, error) { return c.MemberOf(ctx, r.Requester, id) }
	}
	rule, err := c.Policy.Match(q)
	if errors.Is(err, ErrNoRule) {
		return Verdict{Preview: preview, Rejection: err.Error()}, nil
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("match the policy: %w", err)
	}
	if err := rule.CheckReason(r.Reason); err != nil {
		return Verdict{Preview: preview, Rule: rule, Rejection: err.Error()}, nil
	}
	d, why := grantDuration(r, rule)
	if why != "" {
		return Verdict{Preview: preview, Rule: rule, Rejection: why}, nil
	}
	if r.Extends != 0 {
		// An extension moves the end of a grant the group holds: the role
		// being held is the point, not a reason to refuse.
		return Verdict{Preview: preview, Rule: rule, Duration: d}, nil
	}
	held, err := c.Catalog.GroupRoles(ctx, preview.Project.ID, preview.Group.ID)
	if err != nil {
		return Verdict{}, fmt.Errorf("list the group's roles: %w", err)
	}
	if slices.ContainsFunc(held, func(x Role) bool { return x.ID == preview.Role.ID }) {
		return Verdict{Preview: preview, Rule: rule, Rejection: fmt.Sprintf("group %s already has role %s in project %s, so there is nothing to approve",
			displayName(preview.Group.Name, preview.Group.ID), displayName(preview.Role.Name, preview.Role.ID), displayName(preview.Project.Name, preview.Project.ID))}, nil
	}
	return Verdict{Preview: preview, Rule: rule, Duration: d}, nil
}

// grantDuration is how long r's grant lasts under rule, or why it cannot
// be granted: a break-glass grant needs a rule that allows it and lasts at
// most the rule's BreakGlassMax (that, when none was asked); an extension
// must name a duration; anything else follows Rule.GrantDuration.
func grantDuration(r Request, rule Rule) (time.Duration, string) {
	switch {
	case r.BreakGlass && !rule.BreakGlass:
		return 0, fmt.Sprintf("rule %s does not allow break-glass: ask with a normal request so an approver can decide", rule.Name)
	case r.BreakGlass && r.Duration > rule.BreakGlassMax():
		return 0, fmt.Sprintf("a break-glass grant under rule %s lasts at most %s", rule.Name, FormatDuration(rule.BreakGlassMax()))
	case r.BreakGlass && r.Duration == 0:
		return rule.BreakGlassMax(), ""
	case r.BreakGlass:
		return r.Duration, ""
	case r.Extends != 0 && r.Duration <= 0:
		return 0, "an extension must say for how long"
	}
	d, err := rule.GrantDuration(r.Duration)
	if err != nil {
		return 0, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
	}
	return d, ""
}

// Pass moves a checked request to pending under v's rule: its ids, preview,
// approvers, quorum and expiry come from the checks. The approval message
// is posted and the requester told it waits.
func Pass(r *Request, v Verdict, now time.Time) (Transition, error) {
	if r.State != StateChecking {
		return Transition{}, &NotPendingError{Request: *r}
	}
	p := v.Preview
	r.State = StatePending
	r.Target = Target{ProjectID: p.Project.ID, GroupID: p.Group.ID, RoleID: p.Role.ID}
	r.Preview = &p
	r.Rule, r.Approvers, r.Required = v.Rule.Name, slices.Clone(v.Rule.Approvers), max(v.Rule.ApprovalsRequired, 1)
	ttl := v.Rule.RequestTTL
	if ttl <= 0 {
		ttl = DefaultRequestTTL
	}
	r.ExpiresAt = now.Add(ttl)
	r.Duration = v.Duration
	if r.BreakGlass {
		// Applied at once without approval: the approvers review it after.
		r.State, r.Decider, r.DecidedAt = StateApproved, r.Requester, now
		return Transition{
			Event: Event{Actor: r.Requester, Action: ActionBreakGlass, At: now, Detail: "break-glass under rule " + v.Rule.Name + " for " + FormatDuration(r.Duration)},
			Jobs:  []JobKind{JobPostApproval, JobAssign, JobNotifyApprovers},
		}, nil
	}
	ScheduleReminder(r, v.Rule.RemindAfter, now)
	return Transition{
		Event: Event{Actor: SystemActor, Action: ActionCheck, At: now, Detail: "checks passed; rule " + v.Rule.Name},
		Jobs:  []JobKind{JobPostApproval, JobTellRequester},
	}, nil
}

// Reject ends a request that failed its checks; the requester is told why,
// privately. Nothing reaches approvers.
func Reject(r *Request, why string, now time.Time) (Transition, error) {
	if r.State != StateChecking {
		return Transition{}, &NotPendingError{Request: *r}
	}
	finish(r, StateRejected, SystemActor, now)
	r.Note = why
	return Transition{Event: Event{Actor: SystemActor, Action: ActionReject, At: now, Detail: why}, Jobs: []JobKind{JobTellRequester}}, nil
}
