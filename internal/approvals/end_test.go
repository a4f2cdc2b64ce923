package approvals

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOpenAI holds assignments and counts the POSTs and DELETEs that
// change them; deleteHook may fail a DELETE before or after it happens.
type fakeOpenAI struct {
	mu         sync.Mutex
	held       map[Target]bool
	posts      int
	deletes    int
	deleteHook func(call int) (before, after error)
	calls      int
}

func (f *fakeOpenAI) Assign(ctx context.Context, t Target) (Assignment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = map[Target]bool{}
	}
	if f.held[t] {
		return assignmentFor(t, true), nil
	}
	f.held[t] = true
	f.posts++
	return assignmentFor(t, false), nil
}

func (f *fakeOpenAI) Revoke(ctx context.Context, t Target) (Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.held[t] {
		return Revocation{Absent: true}, nil // lists first
	}
	var before, after error
	if f.deleteHook != nil {
		before, after = f.deleteHook(f.calls)
	}
	if before != nil {
		return Revocation{}, before
	}
	delete(f.held, t)
	f.deletes++
	return Revocation{}, after
}

func (f *fakeOpenAI) counts() (posts, deletes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts, f.deletes
}

func (f *fakeOpenAI) holds(t Target) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[t]
}

// stepWorker drives a Worker synchronously at an injected time: settle
// runs what is due at now (wakes, then jobs, until none is left), so tests
// move time by hand and never sleep.
type stepWorker struct {
	*Worker
	now time.Time
}

func newStepWorker(t *testing.T, s Store, o *fakeOpenAI, n Notifier) *stepWorker {
	t.Helper()
	sw := &stepWorker{now: t0}
	sw.Worker = &Worker{Store: s, Granter: o, Revoker: o, Notifier: n, BaseBackoff: time.Second, MaxBackoff: 10 * time.Second,
		Now: func() time.Time { return sw.now }, Observer: &countingObserver{}}
	sw.defaults()
	return sw
}

func (sw *stepWorker) settle(t *testing.T, at time.Time) {
	t.Helper()
	sw.now = at
	for range 100 {
		if _, err := sw.wake(t.Context(), at); err != nil {
			t.Fatalf("wake: %v", err)
		}
		jobs, _, err := sw.Store.DueJobs(t.Context(), at, nil, Each(100))
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			return
		}
		if _, err := sw.dispatch(t.Context(), at); err != nil {
			t.Fatal(err)
		}
		sw.wg.Wait()
		sw.mu.Lock()
		held := len(sw.held)
		sw.mu.Unlock()
		if held > 0 {
			return // a store failure holds the job in memory: its back-off runs
		}
	}
	t.Fatalf("the worker did not settle at %s", at)
}

// grant creates a pending request for target asking for d and approves it
// at at.
func grant(t *testing.T, s Store, target Target, d time.Duration, at time.Time) Request {
	t.Helper()
	r := mustCreateAt(t, s, newRequest(func(n *NewRequest) { n.Target, n.Duration = target, d }), at, 1)
	if _, err := s.Update(t.Context(), r.ID, 0, func(r *Request) (Transition, error) { return RecordPosted(r, "1.1", at) }); err != nil {
		t.Fatal(err)
	}
	return mustDecide(t, s, r.ID, "UANA", ActionApprove, at)
}

var target1 = Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"}

func revokedEvents(t *testing.T, s Store, id uint64) int {
	t.Helper()
	n := 0
	for _, l := range auditLines(t, s, id) {
		if strings.HasSuffix(l, " "+string(ActionRevoked)) {
			n++
		}
	}
	return n
}

func TestGrantEndsWithOneDELETE(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	n := &fakeNotifier{}
	w := newStepWorker(t, s, o, n)
	r := grant(t, s, target1, time.Hour, t0)
	w.settle(t, t0)
	got := mustGet(t, s, r.ID)
	if got.State != StateApplied || !got.EndsAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after approval: state %s, ends %s; want applied, ending %s", got.State, got.EndsAt, t0.Add(time.Hour))
	}
	w.settle(t, t0.Add(time.Hour-WarnBefore))
	if len(n.deliveriesOf(r.ID, JobWarnRequester)) != 1 {
		t.Errorf("the requester was not warned 15 minutes before the end")
	}
	w.settle(t, t0.Add(time.Hour-time.Second))
	if _, d := o.counts(); d != 0 {
		t.Fatalf("DELETEd before the end")
	}
	w.settle(t, t0.Add(time.Hour))
	got = mustGet(t, s, r.ID)
	if _, d := o.counts(); d != 1 || got.State != StateRevoked || got.Revocation == nil || !got.Revocation.Deleted {
		t.Fatalf("after the end: %d DELETEs, state %s, outcome %+v; want 1 DELETE, revoked, deleted", d, got.State, got.Revocation)
	}
	if len(n.deliveriesOf(r.ID, JobPostRevocation)) != 1 || !containsState(n.dms(r.ID), StateRevoked) {
		t.Errorf("the thread or the requester was not told of the end")
	}
	w.settle(t, t0.Add(3*time.Hour))
	if _, d := o.counts(); d != 1 || revokedEvents(t, s, r.ID) != 1 {
		t.Errorf("a second revocation happened")
	}
}

func containsState(ss []State, s State) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestRestartAfterTheEndRevokesOnceAtStart(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	w := newStepWorker(t, s, o, &fakeNotifier{})
	r := grant(t, s, target1, 30*time.Minute, t0)
	w.settle(t, t0)
	// The bot is stopped for two hours; a new process starts.
	w2 := newStepWorker(t, s, o, &fakeNotifier{})
	w2.settle(t, t0.Add(2*time.Hour))
	if _, d := o.counts(); d != 1 || mustGet(t, s, r.ID).State != StateRevoked {
		t.Fatalf("at start after the end: %d DELETEs, state %s; want 1, revoked", d, mustGet(t, s, r.ID).State)
	}
}

// A crash between the DELETE and its record: the record fails (the
// store's disk is full), the process dies (its memory with it), the next
// one lists first and DELETEs nothing.
func TestCrashBetweenDeleteAndRecordDeletesOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	w := newStepWorker(t, s, o, &fakeNotifier{})
	r := grant(t, s, target1, time.Hour, t0)
	w.settle(t, t0)
	f := &faultyStore{BoltStore: s}
	o.deleteHook = func(int) (error, error) { f.failWrites.Store(true); return nil, nil }
	w1 := newStepWorker(t, f, o, &fakeNotifier{})
	w1.settle(t, t0.Add(time.Hour))
	if got := mustGet(t, s, r.ID); got.State != StateApplied || !got.Ending {
		t.Fatalf("the record should have failed: state %s", got.State)
	}
	o.deleteHook = nil
	w2 := newStepWorker(t, s, o, &fakeNotifier{})
	w2.settle(t, t0.Add(time.Hour+time.Minute))
	got := mustGet(t, s, r.ID)
	if _, d := o.counts(); d != 1 || got.State != StateRevoked || !got.Revocation.Absent {
		t.Fatalf("after the restart: %d DELETEs, state %s, outcome %+v; want 1, revoked, absent", d, got.State, got.Revocation)
	}
}

func TestRevocationRetriesTemporaryFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"429", &GrantError{Failure: Failure{Status: 429, Message: "slow down"}, Temporary: true, RetryAfter: 2 * time.Second}},
		{"500", &GrantError{Failure: Failure{Status: 500, Message: "oops"}, Temporary: true, Ambiguous: true}},
		{"timeout", &GrantError{Failure: Failure{Message: "context deadline exceeded"}, Temporary: true, Ambiguous: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			o := &fakeOpenAI{}
			w := newStepWorker(t, s, o, &fakeNotifier{})
			r := grant(t, s, target1, time.Hour, t0)
			w.settle(t, t0)
			o.deleteHook = func(call int) (error, error) {
				if call <= 2 {
					return tc.err, nil
				}
				return nil, nil
			}
			end := t0.Add(time.Hour)
			for i := range 10 {
				w.settle(t, end.Add(time.Duration(i)*15*time.Second))
			}
			got := mustGet(t, s, r.ID)
			if _, d := o.counts(); d != 1 || got.State != StateRevoked || got.RevokeFailure != nil {
				t.Fatalf("%d DELETEs, state %s, failure %+v; want 1, revoked, none", d, got.State, got.RevokeFailure)
			}
		})
	}
}

func TestPermanentRevocationFailureIsShownAndRetriedSlowly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	n := &fakeNotifier{}
	w := newStepWorker(t, s, o, n)
	r := grant(t, s, target1, time.Hour, t0)
	w.settle(t, t0)
	o.deleteHook = func(int) (error, error) {
		return &GrantError{Failure: Failure{Status: 403, Message: "insufficient permissions", RequestID: "req_9"}}, nil
	}
	end := t0.Add(time.Hour)
	w.settle(t, end)
	got := mustGet(t, s, r.ID)
	if got.State != StateApplied || got.RevokeFailure == nil || got.RevokeFailure.Status != 403 {
		t.Fatalf("state %s, failure %+v; want applied with the 403 recorded", got.State, got.RevokeFailure)
	}
	if len(n.deliveriesOf(r.ID, JobPostRevocation)) != 1 {
		t.Errorf("the failure was not shown in the thread")
	}
	if c := w.Observer.(*countingObserver).revoke("failed"); c != 1 {
		t.Errorf("failed revocations counted %d, want 1", c)
	}
	w.settle(t, end.Add(30*time.Minute))
	if o.calls != 1 {
		t.Errorf("retried %d times within the hour, want no retry before it", o.calls-1)
	}
	o.mu.Lock()
	o.deleteHook = nil
	o.mu.Unlock()
	w.settle(t, end.Add(time.Hour+time.Second))
	got = mustGet(t, s, r.ID)
	if _, d := o.counts(); d != 1 || got.State != StateRevoked {
		t.Fatalf("after the slow retry: %d DELETEs, state %s; want 1, revoked", d, got.State)
	}
}

func TestPreexistingAssignmentIsNeverDeleted(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{held: map[Target]bool{target1: true}} // assigned outside rolegate
	n := &fakeNotifier{}
	w := newStepWorker(t, s, o, n)
	r := grant(t, s, target1, time.Hour, t0)
	w.settle(t, t0)
	if !mustGet(t, s, r.ID).HeldBefore {
		t.Fatalf("the grant did not record that the group held the role before")
	}
	w.settle(t, t0.Add(2*time.Hour))
	got := mustGet(t, s, r.ID)
	if _, d := o.counts(); d != 0 || !o.holds(target1) {
		t.Fatalf("the end DELETEd a role rolegate did not give")
	}
	if got.State != StateRevoked || got.Revocation == nil || !got.Revocation.Kept || !strings.Contains(got.Revocation.Note, "held the role before") {
		t.Fatalf("state %s, outcome %+v; want revoked, kept because held before", got.State, got.Revocation)
	}
}

func TestAmbiguousAttemptIsRolegatesOwnAssignment(t *testing.T) {
	t.Parallel()
	o := &fakeOpenAI{held: map[Target]bool{target1: true}}
	r := Request{ID: 1, State: StateApproved, Target: target1, Duration: time.Hour}
	if _, err := RecordGrant(&r, Grant{Assignment: assignmentFor(target1, true), MayHavePosted: true}, t0); err != nil {
		t.Fatal(err)
	}
	if r.HeldBefore {
		t.Fatalf("an assignment found after an attempt that may have POSTed was taken as the group's own")
	}
	_ = o
}

func TestOverlappingGrantsKeepTheRoleUntilTheLastEnds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	w := newStepWorker(t, s, o, &fakeNotifier{})
	a := grant(t, s, target1, time.Hour, t0)
	w.settle(t, t0)
	b := grant(t, s, target1, 2*time.Hour, t0.Add(time.Minute))
	w.settle(t, t0.Add(time.Minute))
	if posts, _ := o.counts(); posts != 1 || mustGet(t, s, b.ID).HeldBefore {
		t.Fatalf("second grant: %d POSTs, held before %v; want 1 POST, not held before", posts, mustGet(t, s, b.ID).HeldBefore)
	}
	w.settle(t, t0.Add(time.Hour))
	ga := mustGet(t, s, a.ID)
	if _, d := o.counts(); d != 0 || !o.holds(target1) || ga.State != StateRevoked || !strings.Contains(ga.Revocation.Note, fmt.Sprintf("request #%d still grants it", b.ID)) {
		t.Fatalf("first end: %d DELETEs, state %s, outcome %+v; want none, revoked, kept for #%d", d, ga.State, ga.Revocation, b.ID)
	}
	w.settle(t, t0.Add(time.Minute+2*time.Hour))
	if _, d := o.counts(); d != 1 || o.holds(target1) || mustGet(t, s, b.ID).State != StateRevoked {
		t.Fatalf("last end: %d DELETEs, still held %v; want 1 DELETE, gone", d, o.holds(target1))
	}
}

// Many short grants over a few targets, ending at random times while
// others are granted: every grant is revoked exactly once, the role is
// never DELETEd while a grant of it is active, and nothing is held at the
// end.
func TestRandomShortGrantsAreEachRevokedOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	w := newStepWorker(t, s, o, &fakeNotifier{})
	rng := rand.New(rand.NewPCG(11, 42))
	targets := []Target{target1, {ProjectID: "proj_abc", GroupID: "group_02", RoleID: "role_01"}, {ProjectID: "proj_xyz", GroupID: "group_01", RoleID: "role_02"}}
	var ids []uint64
	now := t0
	for range 60 {
		now = now.Add(time.Duration(rng.IntN(300)) * time.Second)
		tg := targets[rng.IntN(len(targets))]
		r := grant(t, s, tg, time.Duration(1+rng.IntN(20))*time.Minute, now)
		ids = append(ids, r.ID)
		w.settle(t, now)
		// An active grant's role is always held.
		for _, id := range ids {
			if g := mustGet(t, s, id); g.Active() && !o.holds(g.Target) {
				t.Fatalf("grant #%d is active but its role was taken away", id)
			}
		}
	}
	w.settle(t, now.Add(2*time.Hour))
	for _, id := range ids {
		if g := mustGet(t, s, id); g.State != StateRevoked || revokedEvents(t, s, id) != 1 {
			t.Errorf("grant #%d: state %s with %d revoked events; want revoked once", id, g.State, revokedEvents(t, s, id))
		}
	}
	for _, tg := range targets {
		if o.holds(tg) {
			t.Errorf("%v is still held after every grant ended", tg)
		}
	}
}

func TestExtension(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	o := &fakeOpenAI{}
	w := newStepWorker(t, s, o, &fakeNotifier{})
	orig := grant(t, s, target1, time.Hour, t0)
	w.settle(t, t0)
	extend := func(at time.Time) Request {
		e := mustCreateAt(t, s, newRequest(func(n *NewRequest) { n.Target, n.Duration, n.Extends = target1, 30*time.Minute, orig.ID }), at, 1)
		if _, err := s.Update(t.Context(), e.ID, 0, func(r *Request) (Transition, error) { return RecordPosted(r, "1.2", at) }); err != nil {
			t.Fatal(err)
		}
		return e
	}
	t.Run("approved moves the end once", func(t *testing.T) {
		e := extend(t0.Add(50 * time.Minute))
		mustDecide(t, s, e.ID, "UANA", ActionApprove, t0.Add(50*time.Minute))
		w.settle(t, t0.Add(50*time.Minute))
		if g := mustGet(t, s, orig.ID); !g.EndsAt.Equal(t0.Add(90*time.Minute)) || mustGet(t, s, e.ID).State != StateApplied {
			t.Fatalf("grant ends %s, extension %s; want %s, applied", g.EndsAt, mustGet(t, s, e.ID).State, t0.Add(90*time.Minute))
		}
		w.settle(t, t0.Add(80*time.Minute))
		if mustGet(t, s, orig.ID).State != StateApplied {
			t.Fatalf("the grant ended at its old end")
		}
	})
	t.Run("denied changes nothing", func(t *testing.T) {
		e := extend(t0.Add(81 * time.Minute))
		mustDecide(t, s, e.ID, "UANA", ActionDeny, t0.Add(81*time.Minute))
		w.settle(t, t0.Add(81*time.Minute))
		if g := mustGet(t, s, orig.ID); !g.EndsAt.Equal(t0.Add(90 * time.Minute)) {
			t.Fatalf("a denied extension moved the end to %s", g.EndsAt)
		}
	})
	t.Run("too late is refused", func(t *testing.T) {
		e := extend(t0.Add(85 * time.Minute))
		w.settle(t, t0.Add(95*time.Minute)) // the grant ends meanwhile
		mustDecide(t, s, e.ID, "UANA", ActionApprove, t0.Add(95*time.Minute))
		w.settle(t, t0.Add(95*time.Minute))
		got := mustGet(t, s, e.ID)
		if got.State != StateFailed || !strings.Contains(got.Note, "already ended") {
			t.Fatalf("extension after the end: %s %q; want failed with an explanation", got.State, got.Note)
		}
		if posts, _ := o.counts(); posts != 1 || o.holds(target1) {
			t.Fatalf("a too-late extension granted the role again")
		}
	})
}

func TestRevokeNowEligibility(t *testing.T) {
	t.Parallel()
	r := Request{ID: 1, State: StateApplied, Target: target1, EndsAt: t0.Add(time.Hour), Requester: "UREQ"}
	if _, err := EndGrant(&r, End{Actor: "USTRANGER", Eligible: false, At: t0}, nil); err != ErrCannotRevoke || r.Ending {
		t.Fatalf("a stranger's revoke: %v, ending %v; want ErrCannotRevoke and no change", err, r.Ending)
	}
	tr, err := EndGrant(&r, End{Actor: "UREQ", Eligible: true, At: t0}, nil)
	if err != nil || !r.Ending || len(tr.Jobs) != 1 || tr.Jobs[0] != JobRevoke {
		t.Fatalf("the requester's revoke: %v, jobs %v", err, tr.Jobs)
	}
	if _, err := EndGrant(&r, End{Actor: "UANA", Eligible: true, At: t0}, nil); err == nil {
		t.Fatalf("a replayed revoke changed the grant again")
	}
}

// deliveriesOf returns the deliveries of kind about request id.
func (n *fakeNotifier) deliveriesOf(id uint64, kind JobKind) []delivery {
	var out []delivery
	for _, d := range n.deliveries(id) {
		if d.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}
