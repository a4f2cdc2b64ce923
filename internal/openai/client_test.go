package openai_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

const adminKey = "sk-admin-TESTKEY-0123456789abcdef"

var target = approvals.Target{
	ProjectID: openaitest.DefaultProjectID,
	GroupID:   openaitest.DefaultGroupID,
	RoleID:    openaitest.DefaultRoleID,
}

// newFake starts a fake Admin API that is closed when the test ends.
func newFake(t *testing.T) *openaitest.Server {
	t.Helper()
	s := openaitest.NewServer(adminKey)
	t.Cleanup(s.Close)
	return s
}

// newClient returns a client for the fake with the given per-call timeout
// (DefaultTimeout when zero).
func newClient(t *testing.T, s *openaitest.Server, timeout time.Duration) *openai.Client {
	t.Helper()
	return openai.New(openai.Config{BaseURL: s.URL(), AdminKey: adminKey, Timeout: timeout})
}

// grantError extracts the *approvals.GrantError from err, failing the test
// when there is none, and checks the key is nowhere in it.
func grantError(t *testing.T, err error) *approvals.GrantError {
	t.Helper()
	if err == nil {
		t.Fatal("Assign succeeded, want an error")
	}
	assertNoKey(t, err)
	var ge *approvals.GrantError
	if !errors.As(err, &ge) {
		t.Fatalf("error %q (%T) is not a *approvals.GrantError", err, err)
	}
	return ge
}

func assertNoKey(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), adminKey) || strings.Contains(err.Error(), "TESTKEY") {
		t.Errorf("error leaks the admin key: %q", err)
	}
	var ge *approvals.GrantError
	if errors.As(err, &ge) && strings.Contains(ge.Failure.Message+ge.Failure.Param+ge.Failure.Code+ge.Failure.Type, "TESTKEY") {
		t.Errorf("Failure leaks the admin key: %+v", ge.Failure)
	}
}

// lastRequest returns the last request the fake recorded for op.
func lastRequest(t *testing.T, s *openaitest.Server, op openaitest.Op) openaitest.Recorded {
	t.Helper()
	reqs := s.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Op == op {
			return reqs[i]
		}
	}
	t.Fatalf("no %s request recorded; got %+v", op, reqs)
	return openaitest.Recorded{}
}

func TestAssignSuccessReturnsFullSummary(t *testing.T) {
	s := newFake(t)
	c := newClient(t, s, 0)

	got, err := c.Assign(t.Context(), target)
	if err != nil {
		t.Fatalf("Assign: %v", err)
	}
	want := approvals.Assignment{
		Group: approvals.Group{
			ID:          "group_01",
			Name:        "Support Team",
			CreatedAt:   time.Date(2024, 3, 26, 16, 45, 33, 0, time.UTC),
			SCIMManaged: false,
		},
		Role: approvals.Role{
			ID:          "role_01",
			Name:        "API Project Key Manager",
			Description: "Allows managing API keys for the project",
			Permissions: []string{
				"api.organization.projects.api_keys.read",
				"api.organization.projects.api_keys.write",
			},
			ResourceType: "api.project",
			Predefined:   false,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Assign =\n%+v\nwant\n%+v", got, want)
	}
	if got.Group.CreatedAt.Location() != time.UTC {
		t.Errorf("group created date in %v, want UTC", got.Group.CreatedAt.Location())
	}
	if n := s.AssignPOSTs(); n != 1 {
		t.Errorf("assign POSTs = %d, want 1", n)
	}
	if roles := s.Assignments(target.ProjectID, target.GroupID); !reflect.DeepEqual(roles, []string{"role_01"}) {
		t.Errorf("fake holds %v after Assign, want [role_01]", roles)
	}
	// Reconcile first: the list went out before the POST.
	var ops []openaitest.Op
	for _, r := range s.Requests() {
		ops = append(ops, r.Op)
	}
	if want := []openaitest.Op{openaitest.OpListGroupRoles, openaitest.OpAssign}; !reflect.DeepEqual(ops, want) {
		t.Errorf("requests = %v, want %v", ops, want)
	}
}

func TestAssignNullDescriptionAndSCIMGroup(t *testing.T) {
	s := newFake(t)
	c := newClient(t, s, 0)
	tg := approvals.Target{ProjectID: "proj_abc", GroupID: openaitest.SCIMGroupID, RoleID: openaitest.PredefinedRoleID}

	got, err := c.Assign(t.Context(), tg)
	if err != nil {
		t.Fatalf("Assign: %v", err)
	}
	if got.Role.Description != "" || !got.Role.Predefined || got.Role.Name != "Project Viewer" {
		t.Errorf("role = %+v, want predefined Project Viewer with empty description (null in the API)", got.Role)
	}
	if !got.Group.SCIMManaged || got.Group.Name != "Sales" {
		t.Errorf("group = %+v, want SCIM-managed Sales", got.Group)
	}
}

func TestAssignAlreadyAssignedMakesNoPOST(t *testing.T) {
	tests := []struct {
		name      string
		target    approvals.Target
		wantGroup approvals.Group
		wantRole  string
		wantDesc  string
	}{
		{
			name:      "custom role",
			target:    target,
			wantGroup: approvals.Group{ID: "group_01", Name: "Support Team", CreatedAt: time.Unix(1711471533, 0).UTC()},
			wantRole:  "API Project Key Manager",
			wantDesc:  "Allows managing API keys for the project",
		},
		{
			// The list item has null description, created_at, updated_at,
			// created_by, created_by_user_obj, metadata and assignment_sources.
			name:      "predefined role with null fields, SCIM group",
			target:    approvals.Target{ProjectID: "proj_abc", GroupID: openaitest.SCIMGroupID, RoleID: openaitest.PredefinedRoleID},
			wantGroup: approvals.Group{ID: "group_02", Name: "Sales", CreatedAt: time.Unix(1711471534, 0).UTC(), SCIMManaged: true},
			wantRole:  "Project Viewer",
			wantDesc:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			s.AddAssignment(tt.target.ProjectID, tt.target.GroupID, tt.target.RoleID)
			c := newClient(t, s, 0)

			got, err := c.Assign(t.Context(), tt.target)
			if err != nil {
				t.Fatalf("Assign: %v", err)
			}
			if !got.AlreadyAssigned {
				t.Error("AlreadyAssigned = false, want true")
			}
			if n := s.AssignPOSTs(); n != 0 {
				t.Errorf("assign POSTs = %d, want 0 for an existing assignment", n)
			}
			if got.Group != tt.wantGroup {
				t.Errorf("group = %+v, want %+v", got.Group, tt.wantGroup)
			}
			if got.Role.ID != tt.target.RoleID || got.Role.Name != tt.wantRole || got.Role.Description != tt.wantDesc ||
				got.Role.ResourceType != "api.project" || len(got.Role.Permissions) == 0 {
				t.Errorf("role = %+v, want %s %q with permissions", got.Role, tt.wantRole, tt.wantDesc)
			}
		})
	}
}

func TestAssignFindsRoleOnLaterPage(t *testing.T) {
	s := newFake(t)
	for i := range 250 {
		id := fmt.Sprintf("role_x%03d", i)
		s.AddRole("proj_abc", openaitest.Role{ID: id, Name: id, Permissions: []string{"p"}})
		s.AddAssignment("proj_abc", "group_01", id)
	}
	s.AddAssignment("proj_abc", "group_01", "role_01") // 251st: on the third page of 100
	c := newClient(t, s, 0)

	got, err := c.Assign(t.Context(), target)
	if err != nil {
		t.Fatalf("Assign: %v", err)
	}
	if !got.AlreadyAssigned || s.AssignPOSTs() != 0 {
		t.Fatalf("AlreadyAssigned = %v with %d POSTs, want true with none", got.AlreadyAssigned, s.AssignPOSTs())
	}
	var queries []string
	for _, r := range s.Requests() {
		if r.Op == openaitest.OpListGroupRoles {
			queries = append(queries, r.Query)
		}
	}
	want := []string{"limit=100", "after=role_x099&limit=100", "after=role_x199&limit=100"}
	if !reflect.DeepEqual(queries, want) {
		t.Errorf("list queries = %q, want %q", queries, want)
	}
}

func TestAssignAfterDroppedConnection(t *testing.T) {
	s := newFake(t)
	s.DropAfterActing(1)
	c := newClient(t, s, 0)

	_, err := c.Assign(t.Context(), target)
	ge := grantError(t, err)
	if !ge.Temporary || !ge.Ambiguous {
		t.Errorf("dropped POST: Temporary=%v Ambiguous=%v, want both true (%v)", ge.Temporary, ge.Ambiguous, err)
	}
	if ge.Failure.Status != 0 {
		t.Errorf("Status = %d, want 0 (no response)", ge.Failure.Status)
	}
	if !strings.Contains(ge.Failure.Message, "closed before a response arrived") {
		t.Errorf("Message = %q, want it to say the connection closed", ge.Failure.Message)
	}

	// The worker retries: the role is there, so no second POST.
	got, err := c.Assign(t.Context(), target)
	if err != nil {
		t.Fatalf("second Assign: %v", err)
	}
	if !got.AlreadyAssigned || got.Group.Name != "Support Team" || got.Role.Name != "API Project Key Manager" {
		t.Errorf("second Assign = %+v, want AlreadyAssigned with the summary", got)
	}
	if n := s.AssignPOSTs(); n != 1 {
		t.Errorf("assign POSTs = %d, want 1", n)
	}
}

func TestAssignDroppedBeforeActingIsRetriedWithPOST(t *testing.T) {
	s := newFake(t)
	s.DropBeforeActing(1)
	c := newClient(t, s, 0)

	_, err := c.Assign(t.Context(), target)
	if ge := grantError(t, err); !ge.Temporary || !ge.Ambiguous {
		t.Errorf("Temporary=%v Ambiguous=%v, want both true", ge.Temporary, ge.Ambiguous)
	}
	got, err := c.Assign(t.Context(), target)
	if err != nil || got.AlreadyAssigned {
		t.Fatalf("second Assign = %+v, %v; want a fresh assignment", got, err)
	}
	if n := s.AssignPOSTs(); n != 2 {
		t.Errorf("assign POSTs = %d, want 2", n)
	}
}

func TestAssignPOSTErrors(t *testing.T) {
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name           string
		fault          openaitest.Fault
		wantStatus     int
		wantTemporary  bool
		wantAmbiguous  bool
		wantRetryAfter time.Duration // exact unless wantRetryRange
		wantRetryRange bool
		wantType       string
		wantCode       string
	}{
		{"429 with Retry-After seconds", openaitest.Fault{Status: 429, RetryAfter: 7 * time.Second}, 429, true, false, 7 * time.Second, false, "requests", "rate_limit_exceeded"},
		{"429 without Retry-After", openaitest.Fault{Status: 429}, 429, true, false, 0, false, "requests", "rate_limit_exceeded"},
		{"503 with Retry-After date", openaitest.Fault{Status: 503, RetryAfterHeader: httpDate}, 503, true, true, 90 * time.Second, true, "server_error", ""},
		{"500", openaitest.Fault{Status: 500}, 500, true, true, 0, false, "server_error", ""},
		{"502", openaitest.Fault{Status: 502}, 502, true, true, 0, false, "server_error", ""},
		{"408", openaitest.Fault{Status: 408}, 408, true, false, 0, false, "invalid_request_error", ""},
		{"409", openaitest.Fault{Status: 409, Code: "conflict"}, 409, true, false, 0, false, "invalid_request_error", "conflict"},
		{"403", openaitest.Fault{Status: 403}, 403, false, false, 0, false, "invalid_request_error", "insufficient_permissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			f := tt.fault
			f.Op = openaitest.OpAssign
			s.Inject(1, f)
			c := newClient(t, s, 0)

			_, err := c.Assign(t.Context(), target)
			ge := grantError(t, err)
			if ge.Failure.Status != tt.wantStatus || ge.Temporary != tt.wantTemporary || ge.Ambiguous != tt.wantAmbiguous {
				t.Errorf("Status=%d Temporary=%v Ambiguous=%v, want %d %v %v",
					ge.Failure.Status, ge.Temporary, ge.Ambiguous, tt.wantStatus, tt.wantTemporary, tt.wantAmbiguous)
			}
			if tt.wantRetryRange {
				if d := ge.RetryAfter - tt.wantRetryAfter; d < -3*time.Second || d > time.Second {
					t.Errorf("RetryAfter = %v, want about %v", ge.RetryAfter, tt.wantRetryAfter)
				}
			} else if ge.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", ge.RetryAfter, tt.wantRetryAfter)
			}
			if ge.Failure.Type != tt.wantType || ge.Failure.Code != tt.wantCode || ge.Failure.Message == "" {
				t.Errorf("Failure = %+v, want type %q code %q and a message", ge.Failure, tt.wantType, tt.wantCode)
			}
			if want := lastRequest(t, s, openaitest.OpAssign).RequestID; ge.Failure.RequestID != want {
				t.Errorf("RequestID = %q, want the POST's x-request-id %q", ge.Failure.RequestID, want)
			}
			if got := approvals.IsTemporary(err); got != tt.wantTemporary {
				t.Errorf("approvals.IsTemporary = %v, want %v", got, tt.wantTemporary)
			}
			if roles := s.Assignments(target.ProjectID, target.GroupID); len(roles) != 0 {
				t.Errorf("fake holds %v after a failed POST", roles)
			}
		})
	}
}

func TestAssignPermanentErrorsCarryAPIDetails(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(*openaitest.Server)
		target    approvals.Target
		wantOp    openaitest.Op
		want      approvals.Failure // RequestID checked separately
		wantPOSTs int
	}{
		{
			name: "400 group not in project",
			setup: func(s *openaitest.Server) {
				s.RefuseAssign("Group 'group_01' must be added to project 'proj_abc' before it can be assigned a role.",
					"invalid_request_error", "group_not_in_project", 400)
			},
			target: target,
			wantOp: openaitest.OpAssign,
			want: approvals.Failure{Status: 400, Type: "invalid_request_error", Code: "group_not_in_project",
				Message: "Group 'group_01' must be added to project 'proj_abc' before it can be assigned a role."},
			wantPOSTs: 1,
		},
		{
			name:   "404 unknown role",
			target: approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_nope"},
			wantOp: openaitest.OpAssign,
			want: approvals.Failure{Status: 404, Type: "invalid_request_error", Code: "role_not_found", Param: "role_id",
				Message: "No role found with id 'role_nope' in project 'proj_abc'."},
			wantPOSTs: 1,
		},
		{
			name:   "404 unknown project on the first list",
			target: approvals.Target{ProjectID: "proj_nope", GroupID: "group_01", RoleID: "role_01"},
			wantOp: openaitest.OpListGroupRoles,
			want: approvals.Failure{Status: 404, Type: "invalid_request_error", Code: "project_not_found",
				Message: "No project found with id 'proj_nope'."},
		},
		{
			name:   "404 unknown group on the first list",
			target: approvals.Target{ProjectID: "proj_abc", GroupID: "group_nope", RoleID: "role_01"},
			wantOp: openaitest.OpListGroupRoles,
			want: approvals.Failure{Status: 404, Type: "invalid_request_error", Code: "group_not_found",
				Message: "No group found with id 'group_nope'."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			c := newClient(t, s, 0)

			_, err := c.Assign(t.Context(), tt.target)
			ge := grantError(t, err)
			if ge.Temporary || ge.Ambiguous {
				t.Errorf("Temporary=%v Ambiguous=%v, want a permanent, unambiguous error", ge.Temporary, ge.Ambiguous)
			}
			want := tt.want
			want.RequestID = lastRequest(t, s, tt.wantOp).RequestID
			if ge.Failure != want {
				t.Errorf("Failure =\n%+v\nwant\n%+v", ge.Failure, want)
			}
			if !strings.HasPrefix(want.RequestID, "req_") {
				t.Errorf("fake sent request id %q", want.RequestID)
			}
			if !strings.Contains(err.Error(), want.Message) {
				t.Errorf("error %q lacks the API's message", err)
			}
			if n := s.AssignPOSTs(); n != tt.wantPOSTs {
				t.Errorf("assign POSTs = %d, want %d", n, tt.wantPOSTs)
			}
		})
	}
}

func TestAssignPermanentPOSTErrorAfterEarlierAttemptIsSuccess(t *testing.T) {
	t.Run("earlier dropped attempt, stale first list", func(t *testing.T) {
		s := newFake(t)
		c := newClient(t, s, 0)
		s.DropAfterActing(1)
		if _, err := c.Assign(t.Context(), target); grantError(t, err).Ambiguous != true {
			t.Fatalf("first Assign: want an ambiguous error, got %v", err)
		}
		// The next list misses the assignment, so Assign POSTs again and
		// gets 400 role_already_assigned; the recheck sees the role.
		s.StaleListNext(1)
		got, err := c.Assign(t.Context(), target)
		if err != nil {
			t.Fatalf("second Assign: %v", err)
		}
		if !got.AlreadyAssigned || got.Role.Name != "API Project Key Manager" || got.Group.Name != "Support Team" {
			t.Errorf("second Assign = %+v, want AlreadyAssigned with the summary", got)
		}
		if n := s.AssignPOSTs(); n != 2 {
			t.Errorf("assign POSTs = %d, want 2", n)
		}
		if st := lastRequest(t, s, openaitest.OpAssign).Status; st != 400 {
			t.Errorf("second POST answered %d, want the fake's 400", st)
		}
	})
	t.Run("assigned concurrently between list and POST", func(t *testing.T) {
		s := newFake(t)
		s.OnAssign(func(tg approvals.Target, _ time.Time) {
			s.AddAssignment(tg.ProjectID, tg.GroupID, tg.RoleID) // someone else was faster
		})
		c := newClient(t, s, 0)
		got, err := c.Assign(t.Context(), target)
		if err != nil {
			t.Fatalf("Assign: %v", err)
		}
		if !got.AlreadyAssigned {
			t.Errorf("AlreadyAssigned = false, want true")
		}
	})
}

func TestAssignRecheckFailureIsTemporary(t *testing.T) {
	s := newFake(t)
	c := newClient(t, s, 0)
	s.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 400, Code: "role_already_assigned"})
	// The POST answers 400; make the recheck list fail with 503 by
	// injecting the fault when the POST arrives (after the first list).
	s.OnAssign(func(approvals.Target, time.Time) {
		s.Inject(1, openaitest.Fault{Op: openaitest.OpListGroupRoles, Status: 503})
	})

	_, err := c.Assign(t.Context(), target)
	ge := grantError(t, err)
	if !ge.Temporary || ge.Failure.Status != 503 {
		t.Errorf("Failure=%+v Temporary=%v; want the recheck's temporary 503: the role may be there", ge.Failure, ge.Temporary)
	}
	if !strings.Contains(err.Error(), "role_already_assigned") {
		t.Errorf("error %q should still mention the POST's answer", err)
	}
}

func TestAssignBadKey(t *testing.T) {
	s := newFake(t)
	c := openai.New(openai.Config{BaseURL: s.URL(), AdminKey: "sk-admin-WRONGKEY-0000000000"})

	_, err := c.Assign(t.Context(), target)
	ge := grantError(t, err)
	if ge.Temporary || ge.Failure.Status != 401 || ge.Failure.Code != "invalid_api_key" || !strings.Contains(ge.Failure.Message, "Incorrect API key") {
		t.Errorf("Failure=%+v Temporary=%v, want permanent 401 invalid_api_key with the API's message", ge.Failure, ge.Temporary)
	}
	if strings.Contains(err.Error(), "WRONGKEY") {
		t.Errorf("error leaks the key in use: %q", err)
	}
	if n := s.AssignPOSTs(); n != 0 {
		t.Errorf("assign POSTs = %d, want 0", n)
	}
}

func TestAssignRejectsPathChangingIDs(t *testing.T) {
	bad := []string{"../x", "a%2Fb", "a b", "a/b", "", "..", "a?b", "a#b", "é", strings.Repeat("a", 129), "a\nb"}
	for _, id := range bad {
		for _, field := range []string{"project", "group", "role"} {
			t.Run(field+"="+id, func(t *testing.T) {
				s := newFake(t)
				c := newClient(t, s, 0)
				tg := target
				switch field {
				case "project":
					tg.ProjectID = id
				case "group":
					tg.GroupID = id
				case "role":
					tg.RoleID = id
				}
				_, err := c.Assign(t.Context(), tg)
				ge := grantError(t, err)
				if ge.Temporary || !strings.Contains(ge.Failure.Message, "invalid "+field+" id") {
					t.Errorf("got %v (Temporary=%v), want a permanent 'invalid %s id' error", err, ge.Temporary, field)
				}
				if reqs := s.Requests(); len(reqs) != 0 {
					t.Errorf("%d requests reached the server, want none: %+v", len(reqs), reqs)
				}
			})
		}
	}
	// The longest valid id goes through.
	s := newFake(t)
	_, err := newClient(t, s, 0).Assign(t.Context(), approvals.Target{ProjectID: strings.Repeat("p", 128), GroupID: "g-_9", RoleID: "r"})
	if ge := grantError(t, err); ge.Failure.Status != 404 {
		t.Errorf("128-char id: got %v, want the API's 404", err)
	}
}

func TestAssignTimeouts(t *testing.T) {
	tests := []struct {
		name          string
		op            openaitest.Op
		wantAmbiguous bool
		wantPOSTs     int
	}{
		{"slow list", openaitest.OpListGroupRoles, false, 0},
		{"slow POST", openaitest.OpAssign, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			s.SetDelayOp(tt.op, 2*time.Second)
			c := newClient(t, s, 100*time.Millisecond)

			start := time.Now()
			_, err := c.Assign(t.Context(), target)
			ge := grantError(t, err)
			if took := time.Since(start); took > time.Second {
				t.Errorf("Assign took %v with a 100ms timeout", took)
			}
			if !ge.Temporary || ge.Ambiguous != tt.wantAmbiguous || ge.Failure.Status != 0 {
				t.Errorf("Failure=%+v Temporary=%v Ambiguous=%v, want temporary, ambiguous=%v, no status",
					ge.Failure, ge.Temporary, ge.Ambiguous, tt.wantAmbiguous)
			}
			if !strings.Contains(ge.Failure.Message, "no response from OpenAI at 127.0.0.1:") || !strings.Contains(ge.Failure.Message, "100ms") {
				t.Errorf("Message = %q, want it to name the host and the timeout", ge.Failure.Message)
			}
			if n := s.AssignPOSTs(); n != tt.wantPOSTs {
				t.Errorf("assign POSTs = %d, want %d", n, tt.wantPOSTs)
			}
		})
	}
}

func TestAssignCallerCancelIsNotAGrantError(t *testing.T) {
	s := newFake(t)
	s.SetDelay(5 * time.Second)
	c := newClient(t, s, 10*time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)

	_, err := c.Assign(ctx, target)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var ge *approvals.GrantError
	if errors.As(err, &ge) {
		t.Errorf("cancelled Assign returned a GrantError %+v; the caller gave up, nothing was decided", ge)
	}
	if !approvals.IsTemporary(err) {
		t.Error("approvals.IsTemporary(cancelled) = false, want true")
	}

	// A caller deadline shorter than Timeout is the caller's, too.
	ctx, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	_, err = c.Assign(ctx, target)
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ge) {
		t.Errorf("err = %v, want the caller's context.DeadlineExceeded, not a GrantError", err)
	}
}

func TestAssignServerNotListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := openai.New(openai.Config{BaseURL: "http://" + addr + "/v1", AdminKey: adminKey})

	_, err = c.Assign(t.Context(), target)
	ge := grantError(t, err)
	if !ge.Temporary || ge.Ambiguous || ge.Failure.Status != 0 {
		t.Errorf("Temporary=%v Ambiguous=%v Status=%d, want temporary, not ambiguous, no status", ge.Temporary, ge.Ambiguous, ge.Failure.Status)
	}
	if want := "cannot reach OpenAI at " + addr + ": connection refused"; ge.Failure.Message != want {
		t.Errorf("Message = %q, want %q", ge.Failure.Message, want)
	}

	if err := c.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Check = %v, want connection refused", err)
	}
}

func TestAssignGETFailuresAreNotAmbiguous(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*openaitest.Server)
		status int
	}{
		{"list 500", func(s *openaitest.Server) { s.FailNextOp(openaitest.OpListGroupRoles, 1, 500) }, 500},
		{"list 429", func(s *openaitest.Server) { s.RateLimitNextOp(openaitest.OpListGroupRoles, 1, 3*time.Second) }, 429},
		{"group 503", func(s *openaitest.Server) {
			s.AddAssignment("proj_abc", "group_01", "role_01")
			s.FailNextOp(openaitest.OpGetGroup, 1, 503)
		}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			tt.setup(s)
			_, err := newClient(t, s, 0).Assign(t.Context(), target)
			ge := grantError(t, err)
			if !ge.Temporary || ge.Ambiguous || ge.Failure.Status != tt.status {
				t.Errorf("Status=%d Temporary=%v Ambiguous=%v, want %d, temporary, not ambiguous", ge.Failure.Status, ge.Temporary, ge.Ambiguous, tt.status)
			}
			if s.AssignPOSTs() != 0 {
				t.Errorf("a failed look-up was followed by %d POSTs", s.AssignPOSTs())
			}
		})
	}
}

func TestAssignAlreadyAssignedButGroupUnreadable(t *testing.T) {
	s := newFake(t)
	s.AddAssignment("proj_abc", "group_01", "role_01")
	s.FailNextOp(openaitest.OpGetGroup, 1, 404)

	got, err := newClient(t, s, 0).Assign(t.Context(), target)
	if err != nil {
		t.Fatalf("Assign = %v; the grant exists, a group look-up failure must not fail it", err)
	}
	if !got.AlreadyAssigned || got.Group.ID != "group_01" || got.Role.Name != "API Project Key Manager" {
		t.Errorf("Assign = %+v, want AlreadyAssigned with the group id and role", got)
	}
}

func TestEveryRequestCarriesTheAdminKey(t *testing.T) {
	s := newFake(t)
	c := newClient(t, s, 0)
	if _, err := c.Assign(t.Context(), target); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Assign(t.Context(), target); err != nil { // list + group
		t.Fatal(err)
	}
	if err := c.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5 (list, POST, list, group, projects)", len(reqs))
	}
	for _, r := range reqs {
		if r.Authorization != "Bearer "+adminKey {
			t.Errorf("%s %s: Authorization %q, want the admin key as bearer", r.Method, r.Path, r.Authorization)
		}
	}
}

func TestEnvironmentIsIgnored(t *testing.T) {
	// What openai.NewClient would read; none of it may change our requests.
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	t.Setenv("OPENAI_API_KEY", "sk-env-api-key")
	t.Setenv("OPENAI_ADMIN_KEY", "sk-env-admin-key")
	t.Setenv("OPENAI_ORG_ID", "org_env")
	t.Setenv("OPENAI_PROJECT_ID", "proj_env")
	t.Setenv("OPENAI_CUSTOM_HEADERS", "Authorization: Bearer sk-env-header\nX-From-Env: yes")

	s := newFake(t)
	if _, err := newClient(t, s, 0).Assign(t.Context(), target); err != nil {
		t.Fatalf("Assign with OPENAI_* set: %v", err)
	}
	for _, r := range s.Requests() {
		if r.Authorization != "Bearer "+adminKey {
			t.Errorf("Authorization = %q, want the configured key", r.Authorization)
		}
		for _, h := range []string{"OpenAI-Organization", "OpenAI-Project", "X-From-Env"} {
			if v := r.Header.Get(h); v != "" {
				t.Errorf("%s %s carries %s: %q from the environment", r.Method, r.Path, h, v)
			}
		}
	}
}

func TestDefaultBaseURL(t *testing.T) {
	var seen *url.URL
	c := openai.New(openai.Config{AdminKey: adminKey, HTTPClient: &http.Client{
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			seen = r.URL
			return nil, errors.New("stop here")
		}),
	}})
	_ = c.Check(t.Context())
	if seen == nil || seen.Scheme+"://"+seen.Host+seen.Path != "https://api.openai.com/v1/organization/projects" {
		t.Errorf("request went to %v, want https://api.openai.com/v1/organization/projects", seen)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConfigErrorsMakeNoRequest(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		key     string
		wantMsg string
	}{
		{"empty key", "", "", "admin key is empty"},
		{"key with newline", "", adminKey + "\n", "whitespace or control"},
		{"relative base URL", "api.openai.com/v1", adminKey, "invalid OpenAI base URL"},
		{"ftp base URL", "ftp://api.openai.com/v1", adminKey, "invalid OpenAI base URL"},
		{"user info in base URL", "https://user:" + adminKey + "@api.openai.com/v1", adminKey, "must not contain user info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			base := tt.base
			if base == "" {
				base = s.URL()
			}
			c := openai.New(openai.Config{BaseURL: base, AdminKey: tt.key})
			_, err := c.Assign(t.Context(), target)
			ge := grantError(t, err)
			if ge.Temporary || !strings.Contains(ge.Failure.Message, tt.wantMsg) {
				t.Errorf("Assign = %v (Temporary=%v), want permanent %q", err, ge.Temporary, tt.wantMsg)
			}
			cerr := c.Check(t.Context())
			assertNoKey(t, cerr)
			if cerr == nil || !strings.Contains(cerr.Error(), tt.wantMsg) {
				t.Errorf("Check = %v, want %q", cerr, tt.wantMsg)
			}
			if n := len(s.Requests()); n != 0 {
				t.Errorf("%d requests made with a broken config", n)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name          string
		key           string
		setup         func(*openaitest.Server)
		wantStatus    int // 0: success
		wantTemporary bool
	}{
		{"ok", adminKey, nil, 0, false},
		{"bad key", "sk-admin-other-key-000", nil, 401, false},
		{"server error", adminKey, func(s *openaitest.Server) { s.FailNextOp(openaitest.OpListProjects, 1, 500) }, 500, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			err := openai.New(openai.Config{BaseURL: s.URL(), AdminKey: tt.key}).Check(t.Context())
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if r := lastRequest(t, s, openaitest.OpListProjects); r.Method != http.MethodGet || r.Query != "limit=1" {
					t.Errorf("Check sent %s ?%s, want GET ?limit=1", r.Method, r.Query)
				}
				return
			}
			ge := grantError(t, err)
			if ge.Failure.Status != tt.wantStatus || ge.Temporary != tt.wantTemporary || ge.Ambiguous {
				t.Errorf("Check = %+v Temporary=%v Ambiguous=%v, want %d temporary=%v", ge.Failure, ge.Temporary, ge.Ambiguous, tt.wantStatus, tt.wantTemporary)
			}
			if ge.Failure.RequestID == "" {
				t.Error("Check error has no request id")
			}
		})
	}
}

// TestSDKDecodesNullsAndOddBodies pins how openai-go v3.98.0 decodes what
// the spec allows (nulls in list items and in role.description) and what
// proxies send (HTML error pages), using a hand-written server so every
// nullable field is null at once.
func TestSDKDecodesNullsAndOddBodies(t *testing.T) {
	const listBody = `{"object":"list","data":[{"id":"role_01","name":"Viewer","permissions":["a.read"],
		"resource_type":"api.project","predefined_role":true,"description":null,"created_at":null,"updated_at":null,
		"created_by":null,"created_by_user_obj":null,"metadata":null,"assignment_sources":null}],"has_more":false,"next":null}`
	const groupBody = `{"id":"group_01","name":"Support Team","created_at":1711471533,"is_scim_managed":true,"group_type":"group"}`
	const postBody = `{"object":"group.role","group":{"object":"group","id":"group_01","name":"Support Team","created_at":1711471533,"scim_managed":true},
		"role":{"object":"role","id":"role_01","name":"Viewer","description":null,"permissions":["a.read"],"resource_type":"api.project","predefined_role":true}}`
	wantRole := approvals.Role{ID: "role_01", Name: "Viewer", Permissions: []string{"a.read"}, ResourceType: "api.project", Predefined: true}
	wantGroup := approvals.Group{ID: "group_01", Name: "Support Team", CreatedAt: time.Unix(1711471533, 0).UTC(), SCIMManaged: true}

	serve := func(t *testing.T, h http.HandlerFunc) *openai.Client {
		t.Helper()
		ts := httptest.NewServer(h)
		t.Cleanup(ts.Close)
		return openai.New(openai.Config{BaseURL: ts.URL + "/v1", AdminKey: adminKey})
	}
	json := func(w http.ResponseWriter, status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-request-id", "req_test")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}

	t.Run("list item with nulls", func(t *testing.T) {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/organization/groups/") {
				json(w, 200, groupBody)
				return
			}
			json(w, 200, listBody)
		})
		got, err := c.Assign(t.Context(), target)
		if err != nil {
			t.Fatalf("Assign: %v", err)
		}
		if want := (approvals.Assignment{Group: wantGroup, Role: wantRole, AlreadyAssigned: true}); !reflect.DeepEqual(got, want) {
			t.Errorf("Assign =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("POST answer with null description", func(t *testing.T) {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				json(w, 200, postBody)
				return
			}
			json(w, 200, `{"object":"list","data":[],"has_more":false,"next":null}`)
		})
		got, err := c.Assign(t.Context(), target)
		if err != nil {
			t.Fatalf("Assign: %v", err)
		}
		if want := (approvals.Assignment{Group: wantGroup, Role: wantRole}); !reflect.DeepEqual(got, want) {
			t.Errorf("Assign =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("HTML 502 from a proxy", func(t *testing.T) {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			_, _ = w.Write([]byte("<html>Bad Gateway</html>"))
		})
		_, err := c.Assign(t.Context(), target)
		ge := grantError(t, err)
		if ge.Failure.Status != 502 || ge.Failure.Message != "Bad Gateway" || !ge.Temporary || ge.Ambiguous {
			t.Errorf("Failure=%+v Temporary=%v Ambiguous=%v, want temporary 502 'Bad Gateway' on the list", ge.Failure, ge.Temporary, ge.Ambiguous)
		}
	})
	t.Run("API message echoing the key is redacted", func(t *testing.T) {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			json(w, 401, `{"error":{"message":"Incorrect API key provided: `+adminKey+`.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
		})
		_, err := c.Assign(t.Context(), target)
		ge := grantError(t, err) // fails the test if the key is in the message
		if !strings.Contains(ge.Failure.Message, "[redacted]") {
			t.Errorf("Message = %q, want the key replaced by [redacted]", ge.Failure.Message)
		}
	})
	t.Run("garbled 200 to the POST is ambiguous", func(t *testing.T) {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				json(w, 200, `{"object":"group.role",`)
				return
			}
			json(w, 200, `{"object":"list","data":[],"has_more":false,"next":null}`)
		})
		_, err := c.Assign(t.Context(), target)
		ge := grantError(t, err)
		if !ge.Temporary || !ge.Ambiguous || ge.Failure.RequestID != "req_test" {
			t.Errorf("Failure=%+v Temporary=%v Ambiguous=%v, want temporary and ambiguous with the request id", ge.Failure, ge.Temporary, ge.Ambiguous)
		}
	})
}

// TestPOSTTransportErrors pins which connection failures of the POST leave
// the outcome unknown: a connection never made cannot have assigned
// anything; one that broke after the request went out might have.
func TestPOSTTransportErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name          string
		err           error
		wantAmbiguous bool
		wantMsg       string
	}{
		{"refused", refused, false, "connection refused"},
		{"dns", &net.DNSError{Err: "no such host", Name: "api.openai.invalid", IsNotFound: true}, false, "cannot resolve host name"},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true, "was reset"},
		{"eof", io.EOF, true, "closed before a response arrived"},
		{"other", errors.New("something odd"), true, "something odd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			fakeURL, err := url.Parse(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			// GETs reach the fake; the POST fails in the transport.
			tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodPost {
					return nil, tt.err
				}
				r.URL.Host = fakeURL.Host
				return http.DefaultTransport.RoundTrip(r)
			})
			c := openai.New(openai.Config{BaseURL: "http://api.example.test/v1", AdminKey: adminKey, HTTPClient: &http.Client{Transport: tr}})

			_, err = c.Assign(t.Context(), target)
			ge := grantError(t, err)
			if !ge.Temporary || ge.Ambiguous != tt.wantAmbiguous || ge.Failure.Status != 0 {
				t.Errorf("Temporary=%v Ambiguous=%v Status=%d, want temporary, ambiguous=%v, no status",
					ge.Temporary, ge.Ambiguous, ge.Failure.Status, tt.wantAmbiguous)
			}
			if !strings.Contains(ge.Failure.Message, tt.wantMsg) || !strings.Contains(ge.Failure.Message, "api.example.test") {
				t.Errorf("Message = %q, want it to name api.example.test and say %q", ge.Failure.Message, tt.wantMsg)
			}
		})
	}
}
