package approvals

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeDirectory resolves Slack user groups from a map, counting lookups.
type fakeDirectory struct {
	mu      sync.Mutex
	members map[string][]string
	err     error
	calls   int
	hang    bool
}

func (d *fakeDirectory) GroupMembers(ctx context.Context, groupID string) ([]string, error) {
	if d.hang {
		<-ctx.Done() // Slack not answering
		return nil, ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.err != nil {
		return nil, d.err
	}
	return d.members[groupID], nil
}

func (d *fakeDirectory) lookups() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

func (d *fakeDirectory) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

func TestApproversAllows(t *testing.T) {
	t.Parallel()
	dir := &fakeDirectory{members: map[string][]string{"SOPS": {"UGRP", "WGRP"}, "SEMPTY": nil}}
	tests := []struct {
		user        string
		want        bool
		wantLookups int // directory calls so far, across cases (cached)
	}{
		{"UDIRECT", true, 0}, // listed directly: no lookup at all
		{"WDIRECT", true, 0},
		{"UGRP", true, 2}, // both groups looked up once
		{"WGRP", true, 2},
		{"UNOBODY", false, 2},
		{"", false, 2},
	}
	a := NewApprovers([]string{"UDIRECT", "WDIRECT", "SEMPTY", "SOPS"}, isGroup, dir)
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got, err := a.Allows(t.Context(), tt.user)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Allows(%q) = %v, want %v", tt.user, got, tt.want)
			}
			if n := dir.lookups(); n != tt.wantLookups {
				t.Errorf("directory looked up %d times, want %d", n, tt.wantLookups)
			}
		})
	}
}

func TestApproversCache(t *testing.T) {
	t.Parallel()
	dir := &fakeDirectory{members: map[string][]string{"SOPS": {"UGRP"}}}
	a := NewApprovers([]string{"SOPS"}, isGroup, dir)
	now := t0
	a.now = func() time.Time { return now }
	for range 2 {
		if ok, err := a.Allows(t.Context(), "UGRP"); err != nil || !ok {
			t.Fatalf("Allows(UGRP) = %v, %v", ok, err)
		}
	}
	if n := dir.lookups(); n != 1 {
		t.Errorf("two checks looked the group up %d times, want 1", n)
	}

	// Membership changes are seen once the cache ages out.
	dir.mu.Lock()
	dir.members["SOPS"] = []string{"UNEW"}
	dir.mu.Unlock()
	if ok, _ := a.Allows(t.Context(), "UNEW"); ok {
		t.Errorf("a fresh member was allowed from a cached list")
	}
	now = now.Add(2 * time.Minute)
	if ok, err := a.Allows(t.Context(), "UNEW"); err != nil || !ok {
		t.Errorf("after the cache aged out, Allows(UNEW) = %v, %v; want true", ok, err)
	}
	if ok, _ := a.Allows(t.Context(), "UGRP"); ok {
		t.Errorf("a removed member is still allowed after the cache aged out")
	}
	if n := dir.lookups(); n != 2 {
		t.Errorf("directory looked up %d times, want 2", n)
	}
}

func TestApproversDirectoryErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("usergroups.users.list: ratelimited")
	t.Run("lookup fails", func(t *testing.T) {
		a := NewApprovers([]string{"UDIRECT", "SOPS"}, isGroup, &fakeDirectory{err: boom})
		if ok, err := a.Allows(t.Context(), "UDIRECT"); err != nil || !ok {
			t.Errorf("a directly listed approver depends on the directory: %v, %v", ok, err)
		}
		if ok, err := a.Allows(t.Context(), "UOTHER"); !errors.Is(err, boom) || ok {
			t.Errorf("Allows with the directory down = %v, %v; want the lookup error", ok, err)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		a := NewApprovers([]string{"SOPS"}, isGroup, nil)
		if ok, err := a.Allows(t.Context(), "UOTHER"); err == nil || ok {
			t.Errorf("Allows without a directory = %v, %v; want an error", ok, err)
		}
	})
	t.Run("errors are not cached", func(t *testing.T) {
		dir := &fakeDirectory{err: boom, members: map[string][]string{"SOPS": {"UGRP"}}}
		a := NewApprovers([]string{"SOPS"}, isGroup, dir)
		if _, err := a.Allows(t.Context(), "UGRP"); err == nil {
			t.Fatal("want an error")
		}
		dir.setErr(nil)
		if ok, err := a.Allows(t.Context(), "UGRP"); err != nil || !ok {
			t.Errorf("after the directory recovered, Allows = %v, %v", ok, err)
		}
	})
}

func newService(t *testing.T, dir Directory, ids ...string) *Service {
	t.Helper()
	return &Service{
		Store:     newStore(t),
		Policy:    DefaultPolicy(ids, 1, ttl),
		IsGroup:   isGroup,
		Directory: dir,
		Now:       func() time.Time { return t0 },
	}
}

// createPending creates n through svc and passes its checks under svc's
// first rule, with required approvals, as the Worker would.
func createPending(t *testing.T, svc *Service, n NewRequest, required int) Request {
	t.Helper()
	r, _, err := svc.Create(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	rule := svc.Policy.Rules[0]
	rule.ApprovalsRequired = required
	v := Verdict{Rule: rule, Preview: Preview{Project: Project{ID: r.ProjectID}, Group: Group{ID: r.GroupID}, Role: Role{ID: r.RoleID}}}
	r, err = svc.Store.Update(t.Context(), r.ID, 0, func(r *Request) (Transition, error) { return Pass(r, v, t0) })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServiceCreate(t *testing.T) {
	t.Parallel()
	svc := newService(t, nil, "UANA")
	r, created, err := svc.Create(t.Context(), newRequest(func(n *NewRequest) { n.Reason = "  rotate keys \n" }))
	if err != nil || !created {
		t.Fatalf("Create = %v, created %v", err, created)
	}
	if r.Reason != "rotate keys" || r.State != StateChecking || !r.CreatedAt.Equal(t0) {
		t.Errorf("created %+v; want the reason trimmed, checking", r)
	}
	if jobs := drainJobs(t, svc.Store, r.ID); !slices.Equal(jobs, []JobKind{JobCheck}) {
		t.Errorf("jobs = %v, want the check first (nothing reaches approvers before it)", jobs)
	}
	if _, _, err := svc.Create(t.Context(), newRequest(func(n *NewRequest) { n.GroupID = "a b" })); !errors.Is(err, ErrInvalid) {
		t.Errorf("Create with a bad group id = %v, want ErrInvalid", err)
	}
}

func TestServiceDecide(t *testing.T) {
	t.Parallel()
	boom := errors.New("usergroups.users.list: internal_error")
	tests := []struct {
		name      string
		dirErr    error
		actor     string
		action    Action
		wantErr   error // errors.Is target; boom for the directory's error
		wantState State
	}{
		{"direct approver approves", nil, "UANA", ActionApprove, nil, StateApproved},
		{"group member approves", nil, "UGRP", ActionApprove, nil, StateApproved},
		{"group member denies", nil, "UGRP", ActionDeny, nil, StateDenied},
		{"outsider approves", nil, "UEVE", ActionApprove, ErrNotApprover, StatePending},
		{"outsider denies", nil, "UEVE", ActionDeny, ErrNotApprover, StatePending},
		{"requester in the group approves", nil, "UREQ", ActionApprove, ErrSelfApproval, StatePending},
		{"directory down on approve", boom, "UGRP", ActionApprove, boom, StatePending},
		{"directory down on deny", boom, "UEVE", ActionDeny, boom, StatePending},
		{"directory down does not stop a direct approver", boom, "UANA", ActionApprove, nil, StateApproved},
		{"directory down does not stop a cancel", boom, "UREQ", ActionCancel, nil, StateCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := &fakeDirectory{err: tt.dirErr, members: map[string][]string{"SOPS": {"UGRP", "UREQ"}}}
			svc := newService(t, dir, "UANA", "SOPS")
			r := createPending(t, svc, newRequest(), 1)
			drainJobs(t, svc.Store, r.ID)
			svc.Now = func() time.Time { return t0.Add(time.Minute) }
			_, err := svc.Decide(t.Context(), Decision{RequestID: r.ID, Actor: tt.actor, Action: tt.action, ChannelID: "C1"})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decide = %v, want %v", err, tt.wantErr)
			}
			got := mustGet(t, svc.Store, r.ID)
			if got.State != tt.wantState {
				t.Errorf("state = %s, want %s", got.State, tt.wantState)
			}
			wantAudit := []string{"UREQ create", "rolegate check"}
			if tt.wantState != StatePending {
				wantAudit = append(wantAudit, tt.actor+" "+string(tt.action))
			}
			if a := auditLines(t, svc.Store, r.ID); !slices.Equal(a, wantAudit) {
				t.Errorf("audit = %q, want %q", a, wantAudit)
			}
			if tt.wantState == StatePending && mustPendingJobs(t, svc.Store) != 0 {
				t.Errorf("a refused decision queued work: %d jobs", mustPendingJobs(t, svc.Store))
			}
		})
	}
}

func TestServiceDecideCachesLookups(t *testing.T) {
	t.Parallel()
	dir := &fakeDirectory{members: map[string][]string{"SOPS": {"UGRP", "UBEN"}}}
	svc := newService(t, dir, "SOPS")
	r := createPending(t, svc, newRequest(), 2)
	if _, err := svc.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UGRP", Action: ActionApprove, ChannelID: "C1"}); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UBEN", Action: ActionApprove, ChannelID: "C1"})
	if err != nil || got.State != StateApproved {
		t.Fatalf("second approval: %s, %v", got.State, err)
	}
	if n := dir.lookups(); n != 1 {
		t.Errorf("two decisions looked the group up %d times, want 1", n)
	}
}

func TestServiceDecideBoundsTheLookup(t *testing.T) {
	t.Parallel()
	svc := newService(t, &fakeDirectory{hang: true}, "SOPS")
	svc.LookupTimeout = 10 * time.Millisecond
	r := mustCreate(t, svc.Store, newRequest(), 1)
	_, err := svc.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UGRP", Action: ActionApprove, ChannelID: r.ChannelID})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Decide with Slack not answering = %v, want the lookup's deadline", err)
	}
	if got := mustGet(t, svc.Store, r.ID); got.State != StatePending || len(got.Approvals) != 0 {
		t.Fatalf("a failed lookup changed the request: %+v", got)
	}
}

func (d *fakeDirectory) setMembers(group string, users []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members[group] = users
}
