package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
)

// memCatalog is an in-memory Catalog: projects (archived ones included),
// groups, and roles per project. fail, when set, is returned by every call.
type memCatalog struct {
	projects []approvals.Project
	groups   []approvals.Group
	roles    map[string][]approvals.Role
	fail     error
	mu       sync.Mutex // Resolve lists groups beside the project
	calls    []string
}

func (m *memCatalog) called(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, name)
}

func (m *memCatalog) Projects(context.Context) ([]approvals.Project, error) {
	m.called("Projects")
	if m.fail != nil {
		return nil, m.fail
	}
	var out []approvals.Project
	for _, p := range m.projects {
		if !p.Archived {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *memCatalog) Project(_ context.Context, id string) (approvals.Project, error) {
	m.called("Project")
	if m.fail != nil {
		return approvals.Project{}, m.fail
	}
	for _, p := range m.projects {
		if p.ID == id {
			return p, nil
		}
	}
	return approvals.Project{}, fmt.Errorf("get project: %w", approvals.ErrUnknown)
}

func (m *memCatalog) Groups(context.Context) ([]approvals.Group, error) {
	m.called("Groups")
	return m.groups, m.fail
}

func (m *memCatalog) ProjectRoles(_ context.Context, projectID string) ([]approvals.Role, error) {
	m.called("ProjectRoles")
	if m.fail != nil {
		return nil, m.fail
	}
	rs, ok := m.roles[projectID]
	if !ok {
		return nil, fmt.Errorf("list project roles: %w", approvals.ErrUnknown)
	}
	return rs, nil
}

func (m *memCatalog) GroupRoles(context.Context, string, string) ([]approvals.Role, error) {
	panic("Resolve must not read a group's roles")
}

func catalog() *memCatalog {
	return &memCatalog{
		projects: []approvals.Project{
			{ID: "proj_sup", Name: "Support Project"},
			{ID: "proj_sales", Name: "Sales"},
			{ID: "proj_dup1", Name: "Shared"},
			{ID: "proj_dup2", Name: "shared"},
			{ID: "proj_old", Name: "Legacy", Archived: true},
			{ID: "proj_oldsup", Name: "Support Project Old", Archived: true},
		},
		groups: []approvals.Group{
			{ID: "group_sup", Name: "Support Team"},
			{ID: "group_ops1", Name: "Ops"},
			{ID: "group_ops2", Name: "OPS"},
			{ID: "group_fin", Name: "Finance"},
		},
		roles: map[string][]approvals.Role{
			"proj_sup": {
				{ID: "role_km", Name: "Key Manager", Permissions: []string{"keys.write"}},
				{ID: "role_view", Name: "Viewer"},
			},
			"proj_sales": {
				{ID: "role_km_sales", Name: "Key Manager"},
				{ID: "role_billing", Name: "Billing Admin"},
			},
			"proj_dup1": {}, "proj_dup2": {},
		},
	}
}

func TestResolve(t *testing.T) {
	ids := func(cs []approvals.Candidate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	tests := []struct {
		name string
		ask  approvals.Ask
		// want is the resolved ids; empty when a ResolveError is expected.
		want approvals.Target
		// On failure: which part, words the message must contain, and the
		// candidates offered, in order.
		wantWhat  string
		wantWords []string
		wantCands []string
	}{
		{name: "ids", ask: approvals.Ask{Project: "proj_sup", Group: "group_sup", Role: "role_km"},
			want: approvals.Target{ProjectID: "proj_sup", GroupID: "group_sup", RoleID: "role_km"}},
		{name: "names", ask: approvals.Ask{Project: "Support Project", Group: "Support Team", Role: "Key Manager"},
			want: approvals.Target{ProjectID: "proj_sup", GroupID: "group_sup", RoleID: "role_km"}},
		{name: "names in another case, padded", ask: approvals.Ask{Project: "  support PROJECT ", Group: "support team", Role: " key manager"},
			want: approvals.Target{ProjectID: "proj_sup", GroupID: "group_sup", RoleID: "role_km"}},
		{name: "same role name resolves in the chosen project", ask: approvals.Ask{Project: "Sales", Group: "Finance", Role: "key manager"},
			want: approvals.Target{ProjectID: "proj_sales", GroupID: "group_fin", RoleID: "role_km_sales"}},
		{name: "ambiguous project name", ask: approvals.Ask{Project: "SHARED", Group: "Finance", Role: "x"},
			wantWhat: "project", wantWords: []string{"several projects", "proj_dup1", "proj_dup2"}, wantCands: []string{"proj_dup1", "proj_dup2"}},
		{name: "an id of one of the same-named projects", ask: approvals.Ask{Project: "proj_dup2", Group: "Finance", Role: "x"},
			wantWhat: "role", wantWords: []string{`"x" is not a role of project "shared" (proj_dup2)`}},
		{name: "ambiguous group name", ask: approvals.Ask{Project: "proj_sup", Group: "ops", Role: "Viewer"},
			wantWhat: "group", wantWords: []string{"several groups"}, wantCands: []string{"group_ops1", "group_ops2"}},
		{name: "missing project with nearest candidates", ask: approvals.Ask{Project: "Suport Project", Group: "Finance", Role: "Viewer"},
			wantWhat: "project", wantWords: []string{`No project has the name or id "Suport Project"`, `"Support Project" (proj_sup)`},
			wantCands: []string{"proj_sup", "proj_sales", "proj_dup1", "proj_dup2"}},
		{name: "missing project: prefix first, then by edit distance", ask: approvals.Ask{Project: "Sup", Group: "Finance", Role: "Viewer"},
			wantWhat: "project", wantCands: []string{"proj_sup", "proj_sales", "proj_dup1", "proj_dup2"}},
		{name: "archived project by id", ask: approvals.Ask{Project: "proj_old", Group: "Finance", Role: "Viewer"},
			wantWhat: "project", wantWords: []string{`Project "Legacy" (proj_old) is archived`}},
		{name: "archived project by name never matches", ask: approvals.Ask{Project: "Legacy", Group: "Finance", Role: "Viewer"},
			wantWhat: "project", wantWords: []string{`No project has the name or id "Legacy"`}},
		{name: "archived project's name near an active one", ask: approvals.Ask{Project: "support project old", Group: "Finance", Role: "Viewer"},
			wantWhat: "project", wantWords: []string{"No project"}, wantCands: []string{"proj_sup", "proj_sales", "proj_dup1", "proj_dup2"}},
		{name: "role of another project by id", ask: approvals.Ask{Project: "Support Project", Group: "Finance", Role: "role_billing"},
			wantWhat: "role", wantWords: []string{`"role_billing" is not a role of project "Support Project" (proj_sup)`}},
		{name: "role of another project by name", ask: approvals.Ask{Project: "Support Project", Group: "Finance", Role: "Billing Admin"},
			wantWhat: "role", wantWords: []string{"is not a role of project"}, wantCands: []string{"role_km", "role_view"}},
		{name: "group missing", ask: approvals.Ask{Project: "proj_sup", Group: "Finanse", Role: "Viewer"},
			wantWhat: "group", wantWords: []string{`No group has the name or id "Finanse"`, `"Finance" (group_fin)`}, wantCands: []string{"group_fin", "group_ops1", "group_ops2", "group_sup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := approvals.Resolve(t.Context(), catalog(), tt.ask)
			if tt.wantWhat == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if g := (approvals.Target{ProjectID: got.Project.ID, GroupID: got.Group.ID, RoleID: got.Role.ID}); g != tt.want {
					t.Fatalf("Resolve = %+v, want %+v", g, tt.want)
				}
				if got.Project.Name == "" || got.Group.Name == "" || got.Role.Name == "" {
					t.Errorf("Resolve = %+v, want names filled in", got)
				}
				return
			}
			re, ok := errors.AsType[*approvals.ResolveError](err)
			if !ok {
				t.Fatalf("Resolve = %+v, %v; want a *ResolveError", got, err)
			}
			if !errors.Is(err, approvals.ErrInvalid) {
				t.Error("ResolveError does not wrap ErrInvalid")
			}
			if re.What != tt.wantWhat {
				t.Errorf("What = %q, want %q (%v)", re.What, tt.wantWhat, err)
			}
			for _, w := range tt.wantWords {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if tt.wantCands != nil && !reflect.DeepEqual(ids(re.Candidates), tt.wantCands) {
				t.Errorf("candidates = %v, want %v", ids(re.Candidates), tt.wantCands)
			}
			if len(re.Candidates) > approvals.MaxCandidates && !strings.Contains(re.Problem, "several") {
				t.Errorf("%d candidates offered, want at most %d", len(re.Candidates), approvals.MaxCandidates)
			}
		})
	}
}

func TestResolveNearestCandidatesAreBounded(t *testing.T) {
	cat := catalog()
	for i := range 20 {
		cat.groups = append(cat.groups, approvals.Group{ID: fmt.Sprintf("group_x%02d", i), Name: fmt.Sprintf("Team %02d", i)})
	}
	_, err := approvals.Resolve(t.Context(), cat, approvals.Ask{Project: "proj_sup", Group: "team", Role: "Viewer"})
	re, ok := errors.AsType[*approvals.ResolveError](err)
	if !ok {
		t.Fatalf("Resolve error = %v, want a *ResolveError", err)
	}
	if len(re.Candidates) != approvals.MaxCandidates || re.Candidates[0].ID != "group_x00" {
		t.Errorf("candidates = %+v, want the %d teams starting with \"Team\"", re.Candidates, approvals.MaxCandidates)
	}
}

func TestResolvePassesCatalogFailuresThrough(t *testing.T) {
	boom := &approvals.GrantError{Temporary: true, Failure: approvals.Failure{Status: 503, Message: "Service Unavailable"}}
	cat := catalog()
	cat.fail = boom
	_, err := approvals.Resolve(t.Context(), cat, approvals.Ask{Project: "proj_sup", Group: "group_sup", Role: "role_km"})
	if !errors.Is(err, boom) || !approvals.IsTemporary(err) {
		t.Fatalf("Resolve = %v, want the temporary catalog failure as is", err)
	}
	if errors.Is(err, approvals.ErrInvalid) {
		t.Error("an OpenAI outage was reported as bad input")
	}
}

func TestResolveArchivedLookupFailureIsNotBadInput(t *testing.T) {
	// The project list works, the look-up of the typed id does not: the
	// requester must not be told the project does not exist.
	boom := &approvals.GrantError{Temporary: true, Failure: approvals.Failure{Status: 429}}
	cat := &failingProject{memCatalog: catalog(), err: boom}
	_, err := approvals.Resolve(t.Context(), cat, approvals.Ask{Project: "proj_old", Group: "group_sup", Role: "role_km"})
	if !errors.Is(err, boom) {
		t.Fatalf("Resolve = %v, want the look-up failure", err)
	}
}

type failingProject struct {
	*memCatalog
	err error
}

func (f *failingProject) Project(context.Context, string) (approvals.Project, error) {
	return approvals.Project{}, f.err
}

func TestResolveRefusesMalformedInputWithoutCalls(t *testing.T) {
	cat := catalog()
	_, err := approvals.Resolve(t.Context(), cat, approvals.Ask{Project: " ", Group: "g", Role: "r"})
	if !errors.Is(err, approvals.ErrInvalid) {
		t.Fatalf("Resolve = %v, want ErrInvalid", err)
	}
	if len(cat.calls) != 0 {
		t.Errorf("calls = %v, want none", cat.calls)
	}
}

func TestMatching(t *testing.T) {
	items := []approvals.Candidate{
		{ID: "g1", Name: "Platform Ops"}, {ID: "g2", Name: "Ops"}, {ID: "ops_g3", Name: "Zeta"}, {ID: "g4", Name: "Finance"},
	}
	got := approvals.Matching("OPS", items, 10)
	want := []approvals.Candidate{{ID: "g2", Name: "Ops"}, {ID: "ops_g3", Name: "Zeta"}, {ID: "g1", Name: "Platform Ops"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Matching = %v, want prefix matches (name or id) before substring ones: %v", got, want)
	}
	if got := approvals.Matching("ops", items, 1); len(got) != 1 {
		t.Errorf("Matching with limit 1 = %v", got)
	}
	if got := approvals.Matching("", items, 10); len(got) != 4 || got[0].Name != "Finance" {
		t.Errorf("empty query = %v, want everything by name", got)
	}
}
