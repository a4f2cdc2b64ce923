package openai_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

// pagedClient returns a client that lists two items per call, so a handful
// of fake objects spans several pages.
func pagedClient(t *testing.T, s *openaitest.Server, dryRun bool) *openai.Client {
	t.Helper()
	return openai.New(openai.Config{BaseURL: s.URL(), AdminKey: adminKey, PageSize: 2, DryRun: dryRun})
}

func TestCatalogListsEveryPage(t *testing.T) {
	s := newFake(t)
	for i := range 5 {
		s.AddProject(fmt.Sprintf("proj_%02d", i), fmt.Sprintf("Project %02d", i))
		s.AddGroup(fmt.Sprintf("group_x%02d", i), "Ops", false) // same name five times
		s.AddRole(openaitest.DefaultProjectID, openaitest.Role{ID: fmt.Sprintf("role_x%02d", i), Name: "Reader"})
		s.AddAssignment(openaitest.DefaultProjectID, openaitest.DefaultGroupID, fmt.Sprintf("role_x%02d", i))
	}
	s.AddRole("proj_03", openaitest.Role{ID: "role_other", Name: "Reader"}) // same name, another project
	s.ArchiveProject("proj_02")
	c := pagedClient(t, s, false)
	ctx := t.Context()

	projects, err := c.Projects(ctx)
	if err != nil {
		t.Fatalf("Projects: %v", err)
	}
	var pids []string
	for _, p := range projects {
		pids = append(pids, p.ID)
	}
	if want := []string{"proj_abc", "proj_00", "proj_01", "proj_03", "proj_04"}; !slices.Equal(pids, want) {
		t.Errorf("Projects = %v, want %v (every page, archived left out)", pids, want)
	}
	if n := s.Calls(openaitest.OpListProjects); n != 3 {
		t.Errorf("project list calls = %d, want 3 pages of 2", n)
	}
	for _, r := range s.Requests() {
		if r.Op == openaitest.OpListProjects && !strings.Contains(r.Query, "include_archived=false") {
			t.Errorf("project list query %q does not exclude archived projects", r.Query)
		}
	}

	groups, err := c.Groups(ctx)
	if err != nil {
		t.Fatalf("Groups: %v", err)
	}
	if len(groups) != 7 || groups[6].ID != "group_x04" || groups[6].Name != "Ops" || groups[1].SCIMManaged != true {
		t.Errorf("Groups = %+v, want the 2 seeded and 5 added", groups)
	}

	roles, err := c.ProjectRoles(ctx, openaitest.DefaultProjectID)
	if err != nil {
		t.Fatalf("ProjectRoles: %v", err)
	}
	if len(roles) != 7 || roles[0].Name != "API Project Key Manager" || len(roles[0].Permissions) != 2 || roles[6].ID != "role_x04" {
		t.Errorf("ProjectRoles = %+v, want 7 roles with permissions", roles)
	}
	other, err := c.ProjectRoles(ctx, "proj_03")
	if err != nil || len(other) != 1 || other[0].ID != "role_other" {
		t.Errorf("ProjectRoles(proj_03) = %+v, %v; want only its own role", other, err)
	}

	held, err := c.GroupRoles(ctx, openaitest.DefaultProjectID, openaitest.DefaultGroupID)
	if err != nil {
		t.Fatalf("GroupRoles: %v", err)
	}
	if len(held) != 5 || held[4].ID != "role_x04" {
		t.Errorf("GroupRoles = %+v, want the 5 assigned", held)
	}

	archived, err := c.Project(ctx, "proj_02")
	if err != nil || !archived.Archived || archived.Name != "Project 02" {
		t.Errorf("Project(proj_02) = %+v, %v; want it, archived", archived, err)
	}
	active, err := c.Project(ctx, openaitest.DefaultProjectID)
	if err != nil || active.Archived || active.Name != "Project example" {
		t.Errorf("Project(proj_abc) = %+v, %v; want it, active", active, err)
	}
}

func TestCatalogUnknownIDs(t *testing.T) {
	s := newFake(t)
	c := newClient(t, s, 0)
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"Project":      func() error { _, err := c.Project(ctx, "proj_nope"); return err },
		"ProjectRoles": func() error { _, err := c.ProjectRoles(ctx, "proj_nope"); return err },
		"GroupRoles":   func() error { _, err := c.GroupRoles(ctx, "proj_abc", "group_nope"); return err },
	} {
		err := call()
		if !errors.Is(err, approvals.ErrUnknown) {
			t.Errorf("%s of an unknown id = %v, want ErrUnknown", name, err)
		}
		if ge := grantError(t, err); ge.Temporary || ge.Failure.Status != 404 {
			t.Errorf("%s: %+v, want a permanent 404", name, ge)
		}
	}
}

func TestCatalogFailuresAreClassified(t *testing.T) {
	s := newFake(t)
	c := pagedClient(t, s, false)
	s.AddGroup("group_03", "Finance", false) // 3 groups: 2 pages of 2
	s.RateLimitNextOp(openaitest.OpListGroups, 1, 0)
	if _, err := c.Groups(t.Context()); !approvals.IsTemporary(err) || grantError(t, err).Failure.Status != 429 {
		t.Errorf("Groups under 429 = %v, want a temporary 429", err)
	}

	// The second page fails: no partial list may come back as complete.
	before := s.Calls(openaitest.OpListGroups)
	s.OnServed(func(rec openaitest.Recorded) {
		if rec.Op == openaitest.OpListGroups && rec.Status == 200 {
			s.FailNextOp(openaitest.OpListGroups, 1, 503)
		}
	})
	g, err := c.Groups(t.Context())
	s.OnServed(nil)
	if err == nil || !approvals.IsTemporary(err) || g != nil {
		t.Errorf("Groups with a failing second page = %+v, %v; want a temporary error and no list", g, err)
	}
	if n := s.Calls(openaitest.OpListGroups) - before; n != 2 {
		t.Errorf("list calls = %d, want 2 (first page, failing second)", n)
	}
	s.ClearFaults()

	for _, id := range []string{"../x", "a%2Fb", ""} {
		if _, err := c.Project(t.Context(), id); err == nil || approvals.IsTemporary(err) {
			t.Errorf("Project(%q) = %v, want a permanent refusal", id, err)
		}
		if _, err := c.ProjectRoles(t.Context(), id); err == nil || approvals.IsTemporary(err) {
			t.Errorf("ProjectRoles(%q) = %v, want a permanent refusal", id, err)
		}
	}
	if n := s.Calls(openaitest.OpGetProject) + s.Calls(openaitest.OpListProjectRoles) + s.Calls(openaitest.AnyOp); n != 0 {
		t.Errorf("bad ids made %d calls, want none", n)
	}
}

func TestCatalogRepeatedCursorStops(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"id":"group_01","name":"A","created_at":0,"is_scim_managed":false,"group_type":"group"}],"has_more":true,"next":"group_01"}`)
	}))
	t.Cleanup(ts.Close)
	c := openai.New(openai.Config{BaseURL: ts.URL + "/v1", AdminKey: adminKey})
	_, err := c.Groups(t.Context())
	if ge := grantError(t, err); !ge.Temporary || !strings.Contains(ge.Failure.Message, "same page cursor") {
		t.Errorf("Groups = %v, want a temporary error about the repeated cursor", err)
	}
}

func TestGroupWithoutCreatedAtStaysZero(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"id":"group_01","name":"A","created_at":0,"is_scim_managed":false,"group_type":"group"}],"has_more":false,"next":null}`)
	}))
	t.Cleanup(ts.Close)
	c := openai.New(openai.Config{BaseURL: ts.URL + "/v1", AdminKey: adminKey})
	groups, err := c.Groups(t.Context())
	if err != nil || len(groups) != 1 {
		t.Fatalf("Groups = %+v, %v", groups, err)
	}
	if !groups[0].CreatedAt.IsZero() {
		t.Errorf("created_at 0 became %v; want the zero time, not 1970", groups[0].CreatedAt)
	}
}

func TestAssignMismatchedAnswerIsNotSuccess(t *testing.T) {
	s := newFake(t)
	s.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 200, AnswerGroupID: openaitest.SCIMGroupID, AnswerRoleID: openaitest.PredefinedRoleID})
	_, err := newClient(t, s, 0).Assign(t.Context(), target)
	ge := grantError(t, err)
	if ge.Temporary {
		t.Errorf("mismatched answer is temporary: %+v", ge)
	}
	for _, w := range []string{`group "group_02"`, `role "role_02"`, `group "group_01"`, `role "role_01"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
	if got := s.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 0 {
		t.Errorf("fake holds %v; the test expects no assignment", got)
	}
	if n := s.Calls(openaitest.OpListGroupRoles); n != 2 {
		t.Errorf("group role lists = %d, want 2 (before the POST, and the check after the odd answer)", n)
	}
}

func TestAssignMismatchedAnswerButRoleHeldIsReportedFromTheList(t *testing.T) {
	s := newFake(t)
	s.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 200, AnswerRoleID: openaitest.PredefinedRoleID, AfterActing: true})
	got, err := newClient(t, s, 0).Assign(t.Context(), target)
	if err != nil {
		t.Fatalf("Assign: %v", err)
	}
	if !got.AlreadyAssigned || got.Role.ID != openaitest.DefaultRoleID || got.Group.Name != "Support Team" {
		t.Errorf("Assign = %+v, want the asked role, reported from the list", got)
	}
}

func TestAlreadyAssignedGroupLookupFailureInventsNothing(t *testing.T) {
	s := newFake(t)
	s.AddAssignment(openaitest.DefaultProjectID, openaitest.DefaultGroupID, openaitest.DefaultRoleID)
	s.FailNextOp(openaitest.OpGetGroup, 1, 403)
	got, err := newClient(t, s, 0).Assign(t.Context(), target)
	if err != nil {
		t.Fatalf("Assign: %v", err)
	}
	if got.Group != (approvals.Group{ID: openaitest.DefaultGroupID}) {
		t.Errorf("group = %+v, want only the id: no name or date made up", got.Group)
	}
}

func TestDryRunNeverWrites(t *testing.T) {
	s := newFake(t)
	s.AddAssignment(openaitest.DefaultProjectID, openaitest.SCIMGroupID, openaitest.DefaultRoleID)
	c := pagedClient(t, s, true)
	ctx := t.Context()

	a, err := c.Assign(ctx, target)
	if err != nil {
		t.Fatalf("dry-run Assign: %v", err)
	}
	if !a.DryRun || a.AlreadyAssigned || a.Role.Name != "API Project Key Manager" || len(a.Role.Permissions) != 2 ||
		a.Group.Name != "Support Team" || a.Group.CreatedAt != time.Date(2024, 3, 26, 16, 45, 33, 0, time.UTC) {
		t.Errorf("dry-run Assign = %+v, want the would-be assignment flagged DryRun", a)
	}
	held := target
	held.GroupID = openaitest.SCIMGroupID
	if a, err := c.Assign(ctx, held); err != nil || !a.DryRun || !a.AlreadyAssigned {
		t.Errorf("dry-run Assign of a held role = %+v, %v; want AlreadyAssigned and DryRun", a, err)
	}
	bad := target
	bad.RoleID = "role_nope"
	if _, err := c.Assign(ctx, bad); err == nil || approvals.IsTemporary(err) {
		t.Errorf("dry-run Assign of a role not in the project = %v, want a permanent failure", err)
	}

	r, err := c.Revoke(ctx, held)
	if err != nil || r != (approvals.Revocation{DryRun: true}) {
		t.Errorf("dry-run Revoke of a held role = %+v, %v; want DryRun, not Absent", r, err)
	}
	r, err = c.Revoke(ctx, target)
	if err != nil || r != (approvals.Revocation{DryRun: true, Absent: true}) {
		t.Errorf("dry-run Revoke of a role not held = %+v, %v; want DryRun and Absent", r, err)
	}

	if s.AssignPOSTs() != 0 || s.RevokeDELETEs() != 0 {
		t.Errorf("dry run sent %d POSTs and %d DELETEs, want none", s.AssignPOSTs(), s.RevokeDELETEs())
	}
	if got := s.Assignments(openaitest.DefaultProjectID, openaitest.SCIMGroupID); len(got) != 1 {
		t.Errorf("dry run changed assignments: %v", got)
	}
}
