package approvals

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// A policy is an ordered list of rules; the first rule that matches a
// request decides who approves it, how many approvals it needs, how long it
// may wait and how long the grant may last. This file is pure: it knows
// nothing of Slack's id shapes (whether an id names a person or a user
// group is passed in as a func) nor of the policy file's syntax.

// ErrNoRule means no rule of the policy matches a request. Policy.Match
// returns it wrapped in a *NoRuleError that says why the closest rules did
// not match.
var ErrNoRule = errors.New("no rule allows this request")

// Any, as the only entry of a rule's list, matches every value. An empty
// list matches every value too, except Approvers, which is required.
const Any = "*"

// Defaults and bounds of a rule's settings.
const (
	DefaultApprovalsRequired = 1
	MaxApprovalsRequired     = 20
	DefaultRequestTTL        = 24 * time.Hour
	MinRequestTTL            = time.Minute
	MaxRequestTTL            = 720 * time.Hour
	// DefaultBreakGlassMax bounds a break-glass grant under a rule without
	// MaxDuration: break-glass skips approval, so it is never permanent.
	DefaultBreakGlassMax = time.Hour
	maxRuleNameLen       = 80
)

// Rule is one entry of the policy: which requests it matches and how they
// are decided. It is a plain value with exported fields only, so a request
// can keep the rule it was decided under (a later policy change does not
// rewrite history). The policy file's key for each field is given in
// brackets.
type Rule struct {
	Name string // [name] unique in the policy; shown in the approval message

	// Which requests the rule matches. Each list holds ids or names
	// (names compared case-insensitively); empty or ["*"] matches any.
	Projects []string // [projects]
	Groups   []string // [groups]
	Roles    []string // [roles]
	Channels []string // [channels] channel ids where requests may be made
	// Requesters lists who may ask: user ids and user-group ids; empty or
	// ["*"] means anyone.
	Requesters []string // [requesters]

	// Approvers lists who decides: user ids and user-group ids. Required.
	Approvers         []string // [approvers]
	ApprovalsRequired int      // [approvals_required] distinct approvals needed; >= 1 (the file's default is 1)

	RequestTTL      time.Duration // [request_ttl] a pending request expires after this; 1m..720h (the file's default is 24h)
	DefaultDuration time.Duration // [default_duration] 0: permanent unless the request names a duration
	MaxDuration     time.Duration // [max_duration] 0: permanent grants allowed
	// ReasonPattern is a regular expression (RE2 syntax) the reason must
	// contain a match of; "" accepts any reason. See Pattern.
	ReasonPattern string        // [reason_pattern]
	RemindAfter   time.Duration // [remind_after] 0: no reminder
	BreakGlass    bool          // [break_glass] allow break-glass requests under this rule
}

// Policy is the ordered list of rules. The zero Policy matches nothing.
type Policy struct {
	Rules []Rule
}

// DefaultPolicy is the policy of a configuration without a policy file: one
// rule, "default", that matches every request, decided by approvers with
// required approvals (0: 1) and expiring after ttl (0: 24h). Grants are
// permanent unless the request names a duration, as before policies
// existed.
func DefaultPolicy(approvers []string, required int, ttl time.Duration) Policy {
	if required == 0 {
		required = DefaultApprovalsRequired
	}
	if ttl == 0 {
		ttl = DefaultRequestTTL
	}
	return Policy{Rules: []Rule{{
		Name:              "default",
		Approvers:         slices.Clone(approvers),
		ApprovalsRequired: required,
		RequestTTL:        ttl,
	}}}
}

// patterns caches compiled reason patterns by their source. It grows only
// with the distinct patterns ever configured (rules stored with old
// requests included): a handful per deployment.
var patterns sync.Map // string → *regexp.Regexp

// Pattern returns ReasonPattern compiled, or nil when it is "" or does not
// compile (Validate reports that; CheckReason then refuses every reason).
// Rule keeps no compiled state, so that it stays a plain value of exported
// fields that a store can encode; the compiled form is cached process-wide
// by source instead, so calling Pattern on every request costs a map lookup.
func (r Rule) Pattern() *regexp.Regexp {
	if r.ReasonPattern == "" {
		return nil
	}
	if re, ok := patterns.Load(r.ReasonPattern); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile(r.ReasonPattern)
	if err != nil {
		return nil
	}
	patterns.Store(r.ReasonPattern, re)
	return re
}

// CheckReason returns an error wrapping ErrInvalid when the rule has a
// reason_pattern and reason contains no match of it. The message shows the
// pattern, so the requester can see what is expected.
func (r Rule) CheckReason(reason string) error {
	if r.ReasonPattern == "" {
		return nil
	}
	re := r.Pattern()
	if re == nil {
		return fmt.Errorf("%w: rule %s has a reason_pattern that is not a valid regular expression; ask an admin to fix the policy", ErrInvalid, r.Name)
	}
	if !re.MatchString(reason) {
		return fmt.Errorf("%w: rule %s needs a reason that contains a match for the pattern %s", ErrInvalid, r.Name, r.ReasonPattern)
	}
	return nil
}

// GrantDuration is the duration of a grant asked for asked (0: none named)
// under the rule; 0 means permanent. An unnamed duration takes the rule's
// DefaultDuration. The error wraps ErrInvalid and states the rule's maximum
// when the result would be longer than MaxDuration or permanent while
// MaxDuration is set.
func (r Rule) GrantDuration(asked time.Duration) (time.Duration, error) {
	switch {
	case asked < 0:
		return 0, fmt.Errorf("%w: a duration must be longer than zero", ErrInvalid)
	case asked > MaxDuration:
		return 0, fmt.Errorf("%w: %s is longer than the longest grant rolegate makes (366d)", ErrInvalid, FormatDuration(asked))
	}
	d := asked
	if d == 0 {
		d = r.DefaultDuration
	}
	if r.MaxDuration > 0 {
		if d == 0 {
			return 0, fmt.Errorf("%w: rule %s does not allow permanent grants: ask for at most %s", ErrInvalid, r.Name, FormatDuration(r.MaxDuration))
		}
		if d > r.MaxDuration {
			return 0, fmt.Errorf("%w: %s is longer than rule %s allows: at most %s", ErrInvalid, FormatDuration(d), r.Name, FormatDuration(r.MaxDuration))
		}
	}
	return d, nil
}

// BreakGlassMax is the longest a break-glass grant under the rule may last:
// MaxDuration, or DefaultBreakGlassMax (1h) when the rule has none.
func (r Rule) BreakGlassMax() time.Duration {
	if r.MaxDuration > 0 {
		return r.MaxDuration
	}
	return DefaultBreakGlassMax
}

// Problem is one thing wrong with a policy.
type Problem struct {
	Rule    int    // index into Policy.Rules; -1 for the policy as a whole
	Name    string // the rule's name, if it has one
	Field   string // the policy file's key (e.g. "approvals_required"); "" for the rule as a whole
	Line    int    // line in the policy file; 0 when unknown (set by the file loader)
	Message string
}

// String renders the problem as a line an admin can act on:
// `line 12: rule 2 "readers", approvals_required: must be at least 1`.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Rule >= 0 {
		fmt.Fprintf(&b, "rule %d", p.Rule+1)
		if p.Name != "" {
			fmt.Fprintf(&b, " %q", p.Name)
		}
		if p.Field != "" {
			b.WriteString(", " + p.Field)
		}
		b.WriteString(": ")
	} else if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// PolicyError lists every problem found in a policy, so an admin can fix
// them all in one pass.
type PolicyError struct {
	Problems []Problem
}

func (e *PolicyError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Validate checks every rule and returns a *PolicyError listing all
// problems, each naming its rule and field, or nil. isGroup tells a
// user-group id from a person's (Slack's convention, which the domain does
// not know); it is needed only to check that approvals_required does not
// exceed the people listed, and that check is skipped when isGroup is nil.
// Validate does not check the shape of ids; the policy file loader does.
func (p Policy) Validate(isGroup func(id string) bool) error {
	var problems []Problem
	if len(p.Rules) == 0 {
		problems = append(problems, Problem{Rule: -1, Field: "rules", Message: "the policy has no rules: it would refuse every request"})
	}
	seen := map[string]int{}
	for i, r := range p.Rules {
		bad := func(field, format string, args ...any) {
			problems = append(problems, Problem{Rule: i, Name: r.Name, Field: field, Message: fmt.Sprintf(format, args...)})
		}
		r.validate(bad, isGroup)
		key := strings.ToLower(strings.TrimSpace(r.Name))
		if j, dup := seen[key]; dup && key != "" {
			bad("name", "%q is also the name of rule %d: names must be unique", r.Name, j+1)
		} else if key != "" {
			seen[key] = i
		}
	}
	if len(problems) > 0 {
		return &PolicyError{Problems: problems}
	}
	return nil
}

func (r Rule) validate(bad func(field, format string, args ...any), isGroup func(string) bool) {
	switch {
	case strings.TrimSpace(r.Name) == "":
		bad("name", "is missing: every rule needs a name, shown in the approval message")
	case !utf8.ValidString(r.Name) || strings.ContainsFunc(r.Name, unicode.IsControl):
		bad("name", "contains characters that cannot be shown")
	case utf8.RuneCountInString(r.Name) > maxRuleNameLen:
		bad("name", "is longer than %d characters", maxRuleNameLen)
	}
	for _, l := range []struct {
		field string
		list  []string
	}{{"projects", r.Projects}, {"groups", r.Groups}, {"roles", r.Roles}, {"channels", r.Channels}, {"requesters", r.Requesters}} {
		checkList(bad, l.field, l.list)
	}
	switch {
	case len(r.Approvers) == 0:
		bad("approvers", "is required: list the people or user groups who may approve")
	case slices.Contains(r.Approvers, Any):
		bad("approvers", "cannot be %q: list the people or user groups who may approve", Any)
	default:
		checkList(bad, "approvers", r.Approvers)
	}

	switch {
	case r.ApprovalsRequired < 1:
		bad("approvals_required", "must be at least 1")
	case r.ApprovalsRequired > MaxApprovalsRequired:
		bad("approvals_required", "must be at most %d", MaxApprovalsRequired)
	case isGroup != nil && len(r.Approvers) > 0 && !slices.ContainsFunc(r.Approvers, isGroup):
		if people := len(uniq(r.Approvers)); r.ApprovalsRequired > people {
			bad("approvals_required", "is %d but approvers lists only %d people", r.ApprovalsRequired, people)
		}
	}

	if r.RequestTTL < MinRequestTTL || r.RequestTTL > MaxRequestTTL {
		bad("request_ttl", "must be between 1m and 720h, like 24h")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"default_duration", r.DefaultDuration}, {"max_duration", r.MaxDuration}} {
		switch {
		case d.v < 0:
			bad(d.field, "must not be negative")
		case d.v > MaxDuration:
			bad(d.field, "is longer than the longest grant rolegate makes (366d)")
		}
	}
	if r.MaxDuration > 0 && r.DefaultDuration > r.MaxDuration {
		bad("default_duration", "is %s, longer than max_duration (%s)", FormatDuration(r.DefaultDuration), FormatDuration(r.MaxDuration))
	}
	switch {
	case r.RemindAfter < 0:
		bad("remind_after", "must not be negative")
	case r.RemindAfter > 0 && r.RequestTTL > 0 && r.RemindAfter >= r.RequestTTL:
		bad("remind_after", "is %s, not shorter than request_ttl (%s): the request would expire before the reminder", FormatDuration(r.RemindAfter), FormatDuration(r.RequestTTL))
	}
	if r.ReasonPattern != "" {
		re, err := regexp.Compile(r.ReasonPattern)
		switch {
		case err != nil:
			bad("reason_pattern", "is not a valid regular expression: %v", err)
		case re.MatchString(""):
			bad("reason_pattern", "%s matches an empty reason, so it requires nothing", r.ReasonPattern)
		}
	}
}

// checkList reports entries that cannot mean what the admin wanted: an
// empty entry, a duplicate, or "*" next to other entries (it already
// matches everything).
func checkList(bad func(field, format string, args ...any), field string, list []string) {
	seen := map[string]bool{}
	for _, e := range list {
		switch {
		case strings.TrimSpace(e) == "":
			bad(field, "has an empty entry")
		case e == Any && len(list) > 1:
			bad(field, "has %q next to other entries: %q alone matches anything; remove it or the others", Any, Any)
		case seen[e]:
			bad(field, "lists %q twice", e)
		}
		seen[e] = true
	}
}

func uniq(list []string) []string {
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}

// MatchQuery is the request a rule must match, as the checks resolved it.
type MatchQuery struct {
	Project   Project
	Group     Group
	Role      Role
	Channel   string // channel id the request was made in
	Requester string // the requester's user id
	// MemberOf reports whether the requester belongs to the user group
	// id. It is called with listed requester ids other than the
	// requester's own, and must answer false, nil for an id that is not a
	// user group. nil means the requester belongs to no group (fine when
	// no rule lists groups among its requesters).
	MemberOf func(id string) (bool, error)
}

// Match returns the first rule that matches q: project, group and role
// each by id or name, channel, and requester (directly or through a user
// group). When none does, the error is a *NoRuleError wrapping ErrNoRule.
//
// A rule's requesters are checked only once everything else about it
// matches, so user groups are looked up only for a rule that could decide
// the request. A failed lookup does not refuse a requester listed directly
// or confirmed by another group; when nothing confirms them and a lookup
// failed, Match returns that error (a temporary failure: retry later)
// rather than falling through to a later rule the first-match order would
// not have chosen.
func (p Policy) Match(q MatchQuery) (Rule, error) {
	var closest []RuleMiss
	best := -1
	for _, r := range p.Rules {
		misses := r.clauseMisses(q)
		// Closeness is the number of the five clauses matched. The
		// requesters of a rule that failed elsewhere are not looked up: they
		// count as matched only when they admit the requester directly.
		score := 4 - len(misses)
		if len(misses) == 0 {
			ok, err := r.allowsRequester(q)
			if err != nil {
				return Rule{}, fmt.Errorf("match rule %s: %w", r.Name, err)
			}
			if ok {
				return r, nil
			}
			misses = []string{"you are not among its requesters"}
		} else if r.admitsDirectly(q.Requester) {
			score++
		}
		switch {
		case score > best:
			best, closest = score, []RuleMiss{{Rule: r.Name, Reasons: misses}}
		case score == best:
			closest = append(closest, RuleMiss{Rule: r.Name, Reasons: misses})
		}
	}
	return Rule{}, &NoRuleError{
		Project: displayName(q.Project.Name, q.Project.ID),
		Group:   displayName(q.Group.Name, q.Group.ID),
		Role:    displayName(q.Role.Name, q.Role.ID),
		Closest: closest,
	}
}

// clauseMisses lists the clauses other than requesters that q fails, in
// words for the requester.
func (r Rule) clauseMisses(q MatchQuery) []string {
	var misses []string
	if !matchesEntity(r.Projects, q.Project.ID, q.Project.Name) {
		misses = append(misses, fmt.Sprintf("project %s is not among its projects", displayName(q.Project.Name, q.Project.ID)))
	}
	if !matchesEntity(r.Groups, q.Group.ID, q.Group.Name) {
		misses = append(misses, fmt.Sprintf("group %s is not among its groups", displayName(q.Group.Name, q.Group.ID)))
	}
	if !matchesEntity(r.Roles, q.Role.ID, q.Role.Name) {
		misses = append(misses, fmt.Sprintf("role %s is not among its roles", displayName(q.Role.Name, q.Role.ID)))
	}
	if !matchesAny(r.Channels) && !slices.Contains(r.Channels, q.Channel) {
		misses = append(misses, "requests are not allowed in this channel")
	}
	return misses
}

// admitsDirectly reports whether the rule lets user ask without looking
// up any user group.
func (r Rule) admitsDirectly(user string) bool {
	return matchesAny(r.Requesters) || slices.Contains(r.Requesters, user)
}

func (r Rule) allowsRequester(q MatchQuery) (bool, error) {
	if r.admitsDirectly(q.Requester) {
		return true, nil
	}
	if q.MemberOf == nil {
		return false, nil
	}
	var lookupErr error
	for _, id := range r.Requesters {
		ok, err := q.MemberOf(id)
		if err != nil {
			if lookupErr == nil {
				lookupErr = err
			}
			continue
		}
		if ok {
			return true, nil
		}
	}
	return false, lookupErr
}

func matchesAny(list []string) bool { return len(list) == 0 || slices.Contains(list, Any) }

// matchesEntity reports whether list admits the project, group or role
// with this id and name: ids exactly, names case-insensitively.
func matchesEntity(list []string, id, name string) bool {
	if matchesAny(list) {
		return true
	}
	for _, e := range list {
		if e == id || name != "" && strings.EqualFold(e, name) {
			return true
		}
	}
	return false
}

func displayName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// RuleMiss is why one rule did not match a request.
type RuleMiss struct {
	Rule    string   // the rule's name
	Reasons []string // each failed clause, in words for the requester
}

// NoRuleError is returned by Policy.Match when no rule matches. It says
// what was asked and, for the rules that came closest (matched the most
// clauses), which clauses failed. It wraps ErrNoRule.
type NoRuleError struct {
	Project, Group, Role string     // as asked: names, or ids when nameless
	Closest              []RuleMiss // in policy order; empty when the policy has no rules
}

func (e *NoRuleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no rule allows role %s for group %s in project %s", e.Role, e.Group, e.Project)
	for i, m := range e.Closest {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "rule %s: %s", m.Rule, strings.Join(m.Reasons, ", "))
	}
	return b.String()
}

func (e *NoRuleError) Unwrap() error { return ErrNoRule }
