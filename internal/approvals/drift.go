package approvals

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
)

// GroupRoleLister lists the roles a group holds in a project now: the one
// Catalog method drift needs (*openai.Client implements it). GroupRoles
// must return every page or an error, never part of the list, since drift
// would report the rest as missing; it wraps ErrUnknown when OpenAI answers
// that the project or group does not exist.
type GroupRoleLister interface {
	GroupRoles(ctx context.Context, projectID, groupID string) ([]Role, error)
}

// Finding is one difference between the group-role assignments OpenAI
// reports and those rolegate's records say should exist.
type Finding struct {
	Target
	// ProjectName, GroupName and RoleName are the names OpenAI or
	// rolegate's records give them; empty when neither knows.
	ProjectName, GroupName, RoleName string
	// Requests are the ids of every rolegate request for this exact
	// target, whatever its state, ascending. A missing role has at least
	// the applied one; a held role has none, or only requests that did not
	// grant it (revoked, denied, a dry run…).
	Requests []uint64
	// Gone is true when OpenAI answered that the project or group no longer
	// exists: every role rolegate granted in it is then missing.
	Gone bool
}

// Report is what Drift found. Held and Missing are sorted by project,
// group and role id.
type Report struct {
	// Projects and Groups count what was checked: every project rolegate
	// has a request for, and every (project, group) pair in them.
	Projects, Groups int
	// Held are roles OpenAI lists for a group rolegate touched that no
	// applied rolegate request grants.
	Held []Finding
	// Missing are roles an applied rolegate request granted that OpenAI
	// does not list.
	Missing []Finding
}

// Differences is how many findings r holds.
func (r Report) Differences() int { return len(r.Held) + len(r.Missing) }

// Drift compares the group-role assignments OpenAI reports with what
// rolegate's records say should exist, for every project and group that
// any of reqs names in its Target (a request still without a Target touched
// nothing). What should exist is the set of targets of applied requests,
// except dry-run ones: a dry run granted nothing. A role held while a
// request for it is approved (its assignment may be landing right now) is
// not reported.
//
// It calls roles.GroupRoles once per touched (project, group), in order,
// and no more: the cost is bounded by what rolegate has touched, not by
// the organization's size. A project or group OpenAI says does not exist
// holds nothing (its applied grants are missing, with Gone set). Any other
// failure, or ctx ending, stops the check and returns the error wrapped
// with the project and group: a partial answer would pass for a clean one.
func Drift(ctx context.Context, reqs []Request, roles GroupRoleLister) (Report, error) {
	rec := recordsOf(reqs)
	var rep Report
	lastProject := ""
	for _, pg := range rec.pairs {
		if err := ctx.Err(); err != nil {
			return Report{}, fmt.Errorf("drift: %w", err)
		}
		held, err := roles.GroupRoles(ctx, pg.ProjectID, pg.GroupID)
		gone := errors.Is(err, ErrUnknown)
		if err != nil && !gone {
			return Report{}, fmt.Errorf("drift: group %s in project %s: %w", pg.GroupID, pg.ProjectID, err)
		}
		if pg.ProjectID != lastProject {
			rep.Projects++
			lastProject = pg.ProjectID
		}
		rep.Groups++
		h, m := rec.compare(pg, held, gone)
		rep.Held = append(rep.Held, h...)
		rep.Missing = append(rep.Missing, m...)
	}
	return rep, nil
}

// projectGroup is one group in one project.
type projectGroup struct{ ProjectID, GroupID string }

// driftRecords is what rolegate's requests say, indexed for comparison.
type driftRecords struct {
	pairs    []projectGroup            // touched, sorted
	expected map[projectGroup][]string // role ids of applied requests, not dry runs
	landing  map[Target]bool           // approved: the assignment may be in flight
	requests map[Target][]uint64       // every request per target, ascending
	projects map[string]string         // project id → name
	groups   map[string]string         // group id → name
	roles    map[[2]string]string      // (project id, role id) → name
}

// recordsOf indexes reqs. Names come from the newest request that has one.
func recordsOf(reqs []Request) driftRecords {
	rec := driftRecords{expected: map[projectGroup][]string{}, landing: map[Target]bool{}, requests: map[Target][]uint64{},
		projects: map[string]string{}, groups: map[string]string{}, roles: map[[2]string]string{}}
	sorted := slices.Clone(reqs)
	slices.SortFunc(sorted, func(a, b Request) int { return cmp.Compare(a.ID, b.ID) })
	seen := map[projectGroup]bool{}
	for _, r := range sorted {
		t := r.Target
		if t.ProjectID == "" || t.GroupID == "" {
			continue
		}
		pg := projectGroup{t.ProjectID, t.GroupID}
		if !seen[pg] {
			seen[pg] = true
			rec.pairs = append(rec.pairs, pg)
		}
		if t.RoleID == "" {
			continue
		}
		rec.requests[t] = append(rec.requests[t], r.ID)
		switch {
		case r.State == StateApplied && (r.Assignment == nil || !r.Assignment.DryRun):
			if !slices.Contains(rec.expected[pg], t.RoleID) {
				rec.expected[pg] = append(rec.expected[pg], t.RoleID)
			}
		case r.State == StateApproved:
			rec.landing[t] = true
		}
		// Newer requests come later and overwrite older names.
		if p := r.Preview; p != nil {
			setName(rec.projects, t.ProjectID, p.Project.Name)
			setName(rec.groups, t.GroupID, p.Group.Name)
			setName(rec.roles, [2]string{t.ProjectID, t.RoleID}, p.Role.Name)
		}
		if a := r.Assignment; a != nil {
			setName(rec.groups, t.GroupID, a.Group.Name)
			setName(rec.roles, [2]string{t.ProjectID, t.RoleID}, a.Role.Name)
		}
	}
	slices.SortFunc(rec.pairs, func(a, b projectGroup) int {
		return cmp.Or(cmp.Compare(a.ProjectID, b.ProjectID), cmp.Compare(a.GroupID, b.GroupID))
	})
	return rec
}

func setName[K comparable](m map[K]string, k K, name string) {
	if name != "" {
		m[k] = name
	}
}

// compare finds the differences in one (project, group), given the roles
// OpenAI lists for it (none when gone). Findings come sorted by role id.
func (rec driftRecords) compare(pg projectGroup, held []Role, gone bool) (heldOnly, missing []Finding) {
	finding := func(roleID, roleName string) Finding {
		t := Target{ProjectID: pg.ProjectID, GroupID: pg.GroupID, RoleID: roleID}
		if roleName == "" {
			roleName = rec.roles[[2]string{pg.ProjectID, roleID}]
		}
		return Finding{Target: t, ProjectName: rec.projects[pg.ProjectID], GroupName: rec.groups[pg.GroupID],
			RoleName: roleName, Requests: slices.Clone(rec.requests[t])}
	}
	listed := map[string]bool{}
	for _, r := range held {
		if listed[r.ID] {
			continue
		}
		listed[r.ID] = true
		t := Target{ProjectID: pg.ProjectID, GroupID: pg.GroupID, RoleID: r.ID}
		if !slices.Contains(rec.expected[pg], r.ID) && !rec.landing[t] {
			heldOnly = append(heldOnly, finding(r.ID, r.Name))
		}
	}
	for _, roleID := range rec.expected[pg] {
		if !listed[roleID] {
			f := finding(roleID, "")
			f.Gone = gone
			missing = append(missing, f)
		}
	}
	byRole := func(a, b Finding) int { return cmp.Compare(a.RoleID, b.RoleID) }
	slices.SortFunc(heldOnly, byRole)
	slices.SortFunc(missing, byRole)
	return heldOnly, missing
}
