package approvals

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnknown means OpenAI answered that a specific project, group or role
// id does not exist (404). Catalog methods that look up one id wrap it, so
// the caller can tell "no such thing" from "OpenAI is unreachable".
var ErrUnknown = errors.New("does not exist at OpenAI")

// Catalog reads what exists at OpenAI: projects, groups and roles. Every
// method is read-only and idempotent, makes its own bounded calls (each
// HTTP call has a timeout, and paging stops after a fixed number of pages),
// and returns every page of what it lists. Failures from OpenAI are
// *GrantError (Temporary for 408, 409, 429, 5xx and transport errors, as
// for Granter); a specific id OpenAI answers 404 for also wraps ErrUnknown.
// When ctx ends they return ctx.Err() wrapped. Returned slices belong to
// the caller but may share Permissions with other results: do not modify
// those.
type Catalog interface {
	// Projects lists the active (not archived) projects.
	Projects(ctx context.Context) ([]Project, error)
	// Project fetches one project by id, whatever its status: an archived
	// project comes back with Archived set.
	Project(ctx context.Context, id string) (Project, error)
	// Groups lists the organization's groups.
	Groups(ctx context.Context) ([]Group, error)
	// ProjectRoles lists the roles that can be assigned in the project.
	ProjectRoles(ctx context.Context, projectID string) ([]Role, error)
	// GroupRoles lists the roles the group holds in the project now.
	GroupRoles(ctx context.Context, projectID, groupID string) ([]Role, error)
}

// Revocation is what a successful Revoke found or did.
type Revocation struct {
	// Absent is true when the group turned out not to hold the role (found
	// by a check before any DELETE, or after a DELETE that failed): this
	// call did not see its own DELETE succeed.
	Absent bool
	// DryRun is true when the Revoker runs in dry-run mode: nothing was
	// DELETEd; Absent still says whether the role was held.
	DryRun bool
}

// Revoker ends an assignment. Revoke must be safe to call again after any
// failure: it first lists the group's roles in the project and returns
// Absent without a DELETE when the group does not hold the role. After a
// permanent (4xx) or ambiguous (5xx, dropped connection) DELETE failure it
// lists once more and reports Absent when the role is gone. Revoke makes
// exactly one attempt: the Worker owns retries. Failures are *GrantError,
// classified as for Granter.
type Revoker interface {
	Revoke(ctx context.Context, t Target) (Revocation, error)
}

// Candidate is a project, group or role offered to someone whose input
// matched several or none.
type Candidate struct {
	ID   string
	Name string
}

// MaxCandidates is how many near matches a ResolveError offers when
// nothing matched.
const MaxCandidates = 5

// ResolveError says why a project, group or role as typed names nothing
// rolegate can use: no match, several matches, an archived project, or a
// role that belongs to no role of the chosen project. It wraps ErrInvalid.
type ResolveError struct {
	What    string // "project", "group" or "role"
	Typed   string // what the requester typed, trimmed
	Problem string // a sentence for the requester
	// Candidates are all the matches when several matched, or up to
	// MaxCandidates nearest names when none did.
	Candidates []Candidate

	ambiguous bool // several matched: Candidates are all of them
}

func (e *ResolveError) Error() string {
	if len(e.Candidates) == 0 {
		return e.Problem
	}
	parts := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		parts[i] = fmt.Sprintf("%q (%s)", c.Name, c.ID)
	}
	lead := "Closest"
	if e.ambiguous {
		lead = "Matches"
	}
	return e.Problem + " " + lead + ": " + strings.Join(parts, ", ") + "."
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ResolveError) Unwrap() error { return ErrInvalid }

// Resolve turns what a requester typed into the project, group and role it
// names. Each part may be an id (matched exactly) or a name (trimmed,
// matched exactly but case-insensitively). Projects match among the active
// ones; an id of an archived project is refused as archived. The role must
// be one of the resolved project's roles. Anything that names nothing, or
// several things, is a *ResolveError (wrapping ErrInvalid) with
// candidates. Catalog failures come back as they are, so a temporary one
// can be retried. Resolve makes no calls but the Catalog's.
func Resolve(ctx context.Context, cat Catalog, ask Ask) (Preview, error) {
	if err := ask.Validate(); err != nil {
		return Preview{}, err
	}
	// The group list does not depend on the project: fetch it meanwhile,
	// so a cold catalog costs two round trips before the role list, not three.
	type listed struct {
		groups []Group
		err    error
	}
	groupsc := make(chan listed, 1)
	go func() {
		g, err := cat.Groups(ctx)
		groupsc <- listed{g, err}
	}()
	project, err := resolveProject(ctx, cat, strings.TrimSpace(ask.Project))
	gl := <-groupsc
	if err != nil {
		return Preview{}, err
	}
	groups, err := gl.groups, gl.err
	if err != nil {
		return Preview{}, err
	}
	group, err := pick("group", strings.TrimSpace(ask.Group), groups, func(g Group) Candidate { return Candidate{g.ID, g.Name} })
	if err != nil {
		return Preview{}, err
	}
	roles, err := cat.ProjectRoles(ctx, project.ID)
	if err != nil {
		return Preview{}, err
	}
	role, err := pick("role", strings.TrimSpace(ask.Role), roles, func(r Role) Candidate { return Candidate{r.ID, r.Name} })
	if re, ok := errors.AsType[*ResolveError](err); ok && !re.ambiguous {
		re.Problem = fmt.Sprintf("%q is not a role of project %q (%s).", re.Typed, project.Name, project.ID)
	}
	if err != nil {
		return Preview{}, err
	}
	return Preview{Project: project, Group: group, Role: role}, nil
}

func resolveProject(ctx context.Context, cat Catalog, typed string) (Project, error) {
	projects, err := cat.Projects(ctx)
	if err != nil {
		return Project{}, err
	}
	p, err := pick("project", typed, projects, func(p Project) Candidate { return Candidate{p.ID, p.Name} })
	re, ok := errors.AsType[*ResolveError](err)
	if !ok || re.ambiguous || !ValidID(typed) {
		return p, err
	}
	// Not among the active projects: say "archived" rather than "no such
	// project" when it is an archived project's id.
	got, lookErr := cat.Project(ctx, typed)
	switch {
	case errors.Is(lookErr, ErrUnknown):
		return Project{}, re
	case lookErr != nil:
		return Project{}, lookErr
	case got.Archived:
		return Project{}, &ResolveError{What: "project", Typed: typed,
			Problem: fmt.Sprintf("Project %q (%s) is archived; roles cannot be granted in it.", got.Name, got.ID)}
	}
	// Active, though the list did not show it yet (created a moment ago).
	return got, nil
}

// pick finds the one item typed names: by id first, then by name.
func pick[T any](what, typed string, items []T, cand func(T) Candidate) (T, error) {
	var zero T
	for _, it := range items {
		if cand(it).ID == typed {
			return it, nil
		}
	}
	var named []T
	for _, it := range items {
		if strings.EqualFold(strings.TrimSpace(cand(it).Name), typed) {
			named = append(named, it)
		}
	}
	switch len(named) {
	case 1:
		return named[0], nil
	case 0:
		all := make([]Candidate, len(items))
		for i, it := range items {
			all[i] = cand(it)
		}
		return zero, &ResolveError{What: what, Typed: typed,
			Problem:    fmt.Sprintf("No %s has the name or id %q.", what, typed),
			Candidates: Closest(typed, all, MaxCandidates)}
	}
	cs := make([]Candidate, len(named))
	for i, it := range named {
		cs[i] = cand(it)
	}
	return zero, &ResolveError{What: what, Typed: typed,
		Problem:    fmt.Sprintf("%q names several %ss; use the id of the one you mean.", typed, what),
		Candidates: cs, ambiguous: true}
}

// Matching returns up to limit items whose name or id contains query,
// case-insensitively: those starting with it first, then the rest, each
// group by name. An empty query matches everything. It is the type-ahead
// rule; Closest adds the near misses.
func Matching(query string, items []Candidate, limit int) []Candidate {
	q := strings.ToLower(strings.TrimSpace(query))
	type scored struct {
		c    Candidate
		rank int
	}
	var hits []scored
	for _, c := range items {
		name, id := strings.ToLower(c.Name), strings.ToLower(c.ID)
		switch {
		case strings.HasPrefix(name, q) || strings.HasPrefix(id, q):
			hits = append(hits, scored{c, 0})
		case strings.Contains(name, q) || strings.Contains(id, q):
			hits = append(hits, scored{c, 1})
		}
	}
	slices.SortStableFunc(hits, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), compareCandidates(a.c, b.c))
	})
	out := make([]Candidate, 0, min(limit, len(hits)))
	for _, h := range hits[:min(limit, len(hits))] {
		out = append(out, h.c)
	}
	return out
}

// Closest returns up to limit items nearest to query: the Matching ones
// first, then the others by edit distance between query and name (or id,
// whichever is nearer), case-insensitively.
func Closest(query string, items []Candidate, limit int) []Candidate {
	out := Matching(query, items, limit)
	if len(out) >= limit {
		return out
	}
	q := strings.ToLower(strings.TrimSpace(query))
	type scored struct {
		c    Candidate
		dist int
	}
	var rest []scored
	for _, c := range items {
		if slices.Contains(out, c) {
			continue
		}
		d := min(editDistance(q, strings.ToLower(c.Name)), editDistance(q, strings.ToLower(c.ID)))
		rest = append(rest, scored{c, d})
	}
	slices.SortStableFunc(rest, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.dist, b.dist), compareCandidates(a.c, b.c))
	})
	for _, r := range rest[:min(limit-len(out), len(rest))] {
		out = append(out, r.c)
	}
	return out
}

func compareCandidates(a, b Candidate) int {
	return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.ID, b.ID))
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
