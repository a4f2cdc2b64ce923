package openai_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

func TestRevokeHeldRoleSendsOneDELETE(t *testing.T) {
	s := newFake(t)
	s.AddAssignment(target.ProjectID, target.GroupID, target.RoleID)
	s.AddAssignment(target.ProjectID, target.GroupID, openaitest.PredefinedRoleID)
	r, err := newClient(t, s, 0).Revoke(t.Context(), target)
	if err != nil || r != (approvals.Revocation{}) {
		t.Fatalf("Revoke = %+v, %v; want a plain success", r, err)
	}
	if n := s.RevokeDELETEs(); n != 1 {
		t.Errorf("DELETEs = %d, want 1", n)
	}
	if got := s.Assignments(target.ProjectID, target.GroupID); len(got) != 1 || got[0] != openaitest.PredefinedRoleID {
		t.Errorf("assignments after Revoke = %v, want only the other role left", got)
	}
}

func TestRevokeAbsentRoleSendsNoDELETE(t *testing.T) {
	s := newFake(t)
	r, err := newClient(t, s, 0).Revoke(t.Context(), target)
	if err != nil || r != (approvals.Revocation{Absent: true}) {
		t.Fatalf("Revoke = %+v, %v; want Absent", r, err)
	}
	if n := s.RevokeDELETEs(); n != 0 {
		t.Errorf("DELETEs = %d, want none", n)
	}
}

func TestRevokeFailures(t *testing.T) {
	tests := []struct {
		name          string
		fault         func(s *openaitest.Server)
		wantTemporary bool
		wantStatus    int
		wantRetry     time.Duration
		// On success: the role ended up gone and Revoke said Absent.
		wantAbsent bool
		wantLists  int
	}{
		{name: "429 with Retry-After", fault: func(s *openaitest.Server) { s.RateLimitNextOp(openaitest.OpUnassign, 1, 7*time.Second) },
			wantTemporary: true, wantStatus: 429, wantRetry: 7 * time.Second, wantLists: 1},
		{name: "500", fault: func(s *openaitest.Server) { s.FailNextOp(openaitest.OpUnassign, 1, 500) },
			wantTemporary: true, wantStatus: 500, wantLists: 2},
		{name: "502 after acting", fault: func(s *openaitest.Server) {
			s.Inject(1, openaitest.Fault{Op: openaitest.OpUnassign, Status: 502, AfterActing: true})
		}, wantAbsent: true, wantLists: 2},
		{name: "4xx and the role is gone", fault: func(s *openaitest.Server) {
			// As when someone else removed it between our list and DELETE.
			s.Inject(1, openaitest.Fault{Op: openaitest.OpUnassign, Status: 404, AfterActing: true})
		}, wantAbsent: true, wantLists: 2},
		{name: "4xx and the role is still there", fault: func(s *openaitest.Server) { s.FailNextOp(openaitest.OpUnassign, 1, 403) },
			wantTemporary: false, wantStatus: 403, wantLists: 2},
		{name: "dropped before acting", fault: func(s *openaitest.Server) { s.DropBeforeActingOp(openaitest.OpUnassign, 1) },
			wantTemporary: true, wantLists: 2},
		{name: "dropped after acting", fault: func(s *openaitest.Server) { s.DropAfterActingOp(openaitest.OpUnassign, 1) },
			wantAbsent: true, wantLists: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFake(t)
			s.AddAssignment(target.ProjectID, target.GroupID, target.RoleID)
			tt.fault(s)
			r, err := newClient(t, s, 0).Revoke(t.Context(), target)
			if n := s.RevokeDELETEs(); n != 1 {
				t.Errorf("DELETEs = %d, want exactly one attempt", n)
			}
			if n := s.Calls(openaitest.OpListGroupRoles); n != tt.wantLists {
				t.Errorf("group role lists = %d, want %d", n, tt.wantLists)
			}
			if tt.wantAbsent {
				if err != nil || r != (approvals.Revocation{Absent: true}) {
					t.Fatalf("Revoke = %+v, %v; want Absent after the check", r, err)
				}
				return
			}
			ge := grantError(t, err)
			if ge.Temporary != tt.wantTemporary || (tt.wantStatus != 0 && ge.Failure.Status != tt.wantStatus) || ge.RetryAfter != tt.wantRetry {
				t.Errorf("Revoke error = %+v, want temporary=%v status %d retry-after %v", ge, tt.wantTemporary, tt.wantStatus, tt.wantRetry)
			}
			if got := s.Assignments(target.ProjectID, target.GroupID); len(got) != 1 {
				t.Errorf("assignments = %v; the test expects the role still held", got)
			}
		})
	}
}

func TestRevokeRecheckFailureAfter4xxIsTemporary(t *testing.T) {
	s := newFake(t)
	s.AddAssignment(target.ProjectID, target.GroupID, target.RoleID)
	s.FailNextOp(openaitest.OpUnassign, 1, http.StatusBadRequest)
	s.OnServed(func(rec openaitest.Recorded) {
		if rec.Op == openaitest.OpUnassign {
			s.FailNextOp(openaitest.OpListGroupRoles, 1, 503)
		}
	})
	_, err := newClient(t, s, 0).Revoke(t.Context(), target)
	if ge := grantError(t, err); !ge.Temporary {
		t.Errorf("Revoke = %+v; a 400 whose recheck failed must stay retryable", ge)
	}
}

func TestRevokeRejectsPathChangingIDs(t *testing.T) {
	s := newFake(t)
	bad := target
	bad.RoleID = "../../organization/groups"
	_, err := newClient(t, s, 0).Revoke(t.Context(), bad)
	if ge := grantError(t, err); ge.Temporary {
		t.Errorf("Revoke of a bad id = %+v, want permanent", ge)
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests sent for a bad id, want none", n)
	}
}
