package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
)

// heldRoles is a GroupRoleLister over a fixed map, keyed "project/group",
// that records each call. A key in fail answers that error instead.
type heldRoles struct {
	roles map[string][]approvals.Role
	fail  map[string]error
	calls []string
}

func (h *heldRoles) GroupRoles(_ context.Context, projectID, groupID string) ([]approvals.Role, error) {
	k := projectID + "/" + groupID
	h.calls = append(h.calls, k)
	if err := h.fail[k]; err != nil {
		return nil, err
	}
	return h.roles[k], nil
}

var _ approvals.GroupRoleLister = (*heldRoles)(nil)

func role(id string) approvals.Role { return approvals.Role{ID: id, Name: "OpenAI " + id} }

// req is request id for project/group/role p, g, r in state s.
func req(id uint64, s approvals.State, p, g, r string) approvals.Request {
	return approvals.Request{ID: id, State: s, Target: approvals.Target{ProjectID: p, GroupID: g, RoleID: r}}
}

// named gives r the names the checks found, as a Preview.
func named(r approvals.Request, project, group, role string) approvals.Request {
	r.Preview = &approvals.Preview{Project: approvals.Project{ID: r.ProjectID, Name: project},
		Group: approvals.Group{ID: r.GroupID, Name: group}, Role: approvals.Role{ID: r.RoleID, Name: role}}
	return r
}

// dryRun marks an applied r as applied in dry-run mode.
func dryRun(r approvals.Request) approvals.Request {
	r.Assignment = &approvals.Assignment{DryRun: true}
	return r
}

func finding(p, g, r string, ids ...uint64) approvals.Finding {
	return approvals.Finding{Target: approvals.Target{ProjectID: p, GroupID: g, RoleID: r}, Requests: ids}
}

func withRoleName(f approvals.Finding, name string) approvals.Finding {
	f.RoleName = name
	return f
}

const (
	applied  = approvals.StateApplied
	revoked  = approvals.StateRevoked
	approved = approvals.StateApproved
	denied   = approvals.StateDenied
)

func TestDriftFindsEachKindOfDifference(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reqs      []approvals.Request
		held      map[string][]approvals.Role
		want      approvals.Report
		wantCalls []string
	}{
		{
			name:      "clean: what rolegate applied is what OpenAI lists",
			reqs:      []approvals.Request{req(1, applied, "proj_a", "group_1", "role_x")},
			held:      map[string][]approvals.Role{"proj_a/group_1": {role("role_x")}},
			want:      approvals.Report{Projects: 1, Groups: 1},
			wantCalls: []string{"proj_a/group_1"},
		},
		{
			name:      "granted by rolegate but missing: removed at OpenAI behind rolegate's back",
			reqs:      []approvals.Request{req(1, applied, "proj_a", "group_1", "role_x")},
			want:      approvals.Report{Projects: 1, Groups: 1, Missing: []approvals.Finding{finding("proj_a", "group_1", "role_x", 1)}},
			wantCalls: []string{"proj_a/group_1"},
		},
		{
			name: "held but not granted by rolegate: added outside rolegate, named as OpenAI names it",
			reqs: []approvals.Request{req(1, applied, "proj_a", "group_1", "role_x")},
			held: map[string][]approvals.Role{"proj_a/group_1": {role("role_y"), role("role_x")}},
			want: approvals.Report{Projects: 1, Groups: 1,
				Held: []approvals.Finding{withRoleName(finding("proj_a", "group_1", "role_y"), "OpenAI role_y")}},
			wantCalls: []string{"proj_a/group_1"},
		},
		{
			name: "held after rolegate revoked it: the revoked request is named",
			reqs: []approvals.Request{req(2, revoked, "proj_a", "group_1", "role_x")},
			held: map[string][]approvals.Role{"proj_a/group_1": {role("role_x")}},
			want: approvals.Report{Projects: 1, Groups: 1,
				Held: []approvals.Finding{withRoleName(finding("proj_a", "group_1", "role_x", 2), "OpenAI role_x")}},
			wantCalls: []string{"proj_a/group_1"},
		},
		{
			name:      "revoked and gone: clean",
			reqs:      []approvals.Request{req(2, revoked, "proj_a", "group_1", "role_x")},
			want:      approvals.Report{Projects: 1, Groups: 1},
			wantCalls: []string{"proj_a/group_1"},
		},
		{
			name: "revoked but another applied grant of the same role still stands: clean",
			reqs: []approvals.Request{req(1, revoked, "proj_a", "group_1", "role_x"), req(2, applied, "proj_a", "group_1", "role_x")},
			held: map[string][]approvals.Role{"proj_a/group_1": {role("role_x")}},
			want: approvals.Report{Projects: 1, Groups: 1},
		},
		{
			name: "overlapping grants missing: every request for the target is named, ascending",
			reqs: []approvals.Request{req(7, applied, "proj_a", "group_1", "role_x"), req(3, revoked, "proj_a", "group_1", "role_x"),
				req(5, applied, "proj_a", "group_1", "role_x")},
			want: approvals.Report{Projects: 1, Groups: 1, Missing: []approvals.Finding{finding("proj_a", "group_1", "role_x", 3, 5, 7)}},
		},
		{
			name: "a dry run granted nothing: absent is clean, present is held",
			reqs: []approvals.Request{dryRun(req(1, applied, "proj_a", "group_1", "role_x")), dryRun(req(2, applied, "proj_a", "group_2", "role_x"))},
			held: map[string][]approvals.Role{"proj_a/group_2": {role("role_x")}},
			want: approvals.Report{Projects: 1, Groups: 2,
				Held: []approvals.Finding{withRoleName(finding("proj_a", "group_2", "role_x", 2), "OpenAI role_x")}},
		},
		{
			name: "an approved request's role may be landing: not reported as held",
			reqs: []approvals.Request{req(4, approved, "proj_a", "group_1", "role_x")},
			held: map[string][]approvals.Role{"proj_a/group_1": {role("role_x")}},
			want: approvals.Report{Projects: 1, Groups: 1},
		},
		{
			name: "a denied request touched the group: what it holds outside rolegate is reported",
			reqs: []approvals.Request{req(1, denied, "proj_a", "group_1", "role_x")},
			held: map[string][]approvals.Role{"proj_a/group_1": {role("role_z")}},
			want: approvals.Report{Projects: 1, Groups: 1,
				Held: []approvals.Finding{withRoleName(finding("proj_a", "group_1", "role_z"), "OpenAI role_z")}},
		},
		{
			name: "a request still without a target touched nothing: no call",
			reqs: []approvals.Request{{ID: 1, State: approvals.StateChecking, Ask: approvals.Ask{Project: "Support", Group: "Team", Role: "Reader"}}},
			want: approvals.Report{},
		},
		{
			name: "several projects and groups: one call per pair, in order; findings sorted",
			reqs: []approvals.Request{
				req(1, applied, "proj_b", "group_2", "role_x"),
				req(2, applied, "proj_a", "group_2", "role_y"),
				req(3, applied, "proj_a", "group_1", "role_x"),
				req(4, applied, "proj_a", "group_1", "role_w"),
				req(5, denied, "proj_b", "group_2", "role_q"),
				req(6, applied, "proj_a", "group_1", "role_v"),
			},
			held: map[string][]approvals.Role{
				"proj_a/group_1": {role("role_x"), role("role_u"), role("role_t")},
				"proj_a/group_2": {role("role_y")},
				"proj_b/group_2": {role("role_q"), role("role_x"), role("role_x")},
			},
			want: approvals.Report{Projects: 2, Groups: 3,
				Held: []approvals.Finding{
					withRoleName(finding("proj_a", "group_1", "role_t"), "OpenAI role_t"),
					withRoleName(finding("proj_a", "group_1", "role_u"), "OpenAI role_u"),
					withRoleName(finding("proj_b", "group_2", "role_q", 5), "OpenAI role_q"),
				},
				Missing: []approvals.Finding{finding("proj_a", "group_1", "role_v", 6), finding("proj_a", "group_1", "role_w", 4)},
			},
			wantCalls: []string{"proj_a/group_1", "proj_a/group_2", "proj_b/group_2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lister := &heldRoles{roles: tc.held}
			got, err := approvals.Drift(t.Context(), tc.reqs, lister)
			if err != nil {
				t.Fatalf("Drift: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Drift =\n%+v\nwant\n%+v", got, tc.want)
			}
			if got.Differences() != len(tc.want.Held)+len(tc.want.Missing) {
				t.Errorf("Differences = %d", got.Differences())
			}
			if tc.wantCalls != nil && !reflect.DeepEqual(lister.calls, tc.wantCalls) {
				t.Errorf("calls = %v, want %v", lister.calls, tc.wantCalls)
			}
			if len(lister.calls) != got.Groups {
				t.Errorf("%d calls for %d groups", len(lister.calls), got.Groups)
			}
		})
	}
}

// Names come from the newest request that knows them; OpenAI's name of a
// held role wins over the records'.
func TestDriftNamesWhatItReports(t *testing.T) {
	old := named(req(1, revoked, "proj_a", "group_1", "role_x"), "Old Project", "Old Team", "Old Role")
	newer := named(req(2, applied, "proj_a", "group_1", "role_y"), "Support", "Support Team", "Key Manager")
	newer.Assignment = &approvals.Assignment{Group: approvals.Group{ID: "group_1", Name: "Support Team (renamed)"},
		Role: approvals.Role{ID: "role_y", Name: "Key Manager"}}
	lister := &heldRoles{roles: map[string][]approvals.Role{"proj_a/group_1": {{ID: "role_x", Name: "Reader"}}}}
	got, err := approvals.Drift(t.Context(), []approvals.Request{newer, old}, lister)
	if err != nil {
		t.Fatal(err)
	}
	want := approvals.Report{Projects: 1, Groups: 1,
		Held: []approvals.Finding{{Target: old.Target, ProjectName: "Support", GroupName: "Support Team (renamed)", RoleName: "Reader", Requests: []uint64{1}}},
		Missing: []approvals.Finding{{Target: newer.Target, ProjectName: "Support", GroupName: "Support Team (renamed)", RoleName: "Key Manager",
			Requests: []uint64{2}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Drift =\n%+v\nwant\n%+v", got, want)
	}
}

// A project or group OpenAI no longer knows holds nothing: rolegate's grants
// in it are missing and marked Gone; the check goes on with the others.
func TestDriftReportsGrantsInAGoneGroupAsMissing(t *testing.T) {
	lister := &heldRoles{
		roles: map[string][]approvals.Role{"proj_b/group_1": {role("role_x")}},
		fail:  map[string]error{"proj_a/group_1": fmt.Errorf("list group roles: %w", approvals.ErrUnknown)},
	}
	got, err := approvals.Drift(t.Context(), []approvals.Request{
		req(1, applied, "proj_a", "group_1", "role_x"), req(2, applied, "proj_b", "group_1", "role_x"),
	}, lister)
	if err != nil {
		t.Fatal(err)
	}
	gone := finding("proj_a", "group_1", "role_x", 1)
	gone.Gone = true
	want := approvals.Report{Projects: 2, Groups: 2, Missing: []approvals.Finding{gone}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Drift =\n%+v\nwant\n%+v", got, want)
	}
}

// Any other failure stops the check: a partial report would pass for a
// clean one. The error names the group and project and keeps OpenAI's.
func TestDriftStopsOnAFailureOrAnEndedContext(t *testing.T) {
	reqs := []approvals.Request{
		req(1, applied, "proj_a", "group_1", "role_x"),
		req(2, applied, "proj_a", "group_2", "role_x"),
		req(3, applied, "proj_a", "group_3", "role_x"),
	}
	outage := &approvals.GrantError{Temporary: true, Failure: approvals.Failure{Status: 503, Message: "Service Unavailable"}}
	lister := &heldRoles{fail: map[string]error{"proj_a/group_2": fmt.Errorf("list group roles: %w", outage)}}
	_, err := approvals.Drift(t.Context(), reqs, lister)
	var ge *approvals.GrantError
	if !errors.As(err, &ge) || ge.Failure.Status != 503 {
		t.Fatalf("err = %v, want the 503 wrapped", err)
	}
	for _, w := range []string{"group_2", "proj_a", "503"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if want := []string{"proj_a/group_1", "proj_a/group_2"}; !reflect.DeepEqual(lister.calls, want) {
		t.Errorf("calls = %v, want %v: no call after the failure", lister.calls, want)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	lister = &heldRoles{}
	if _, err := approvals.Drift(ctx, reqs, lister); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	if len(lister.calls) != 0 {
		t.Errorf("cancelled: %d calls", len(lister.calls))
	}
}
