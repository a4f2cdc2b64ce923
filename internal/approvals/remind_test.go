package approvals

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// pendingAt is a request that became pending at t0 with a 2h TTL, its
// approval message posted, and a reminder scheduled remind after t0 (none
// when 0).
func pendingAt(remind time.Duration) Request {
	r := Request{ID: 7, State: StatePending, Requester: "UREQ", ChannelID: "C1", MessageTS: "1700000000.000007",
		Approvers: []string{"UANA", "SPLATFORM"}, Required: 2, CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}
	ScheduleReminder(&r, remind, t0)
	return r
}

func TestTickRemindsOnceAndExpires(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		r         func() Request
		at        time.Duration // since t0
		wantState State
		wantEvent Action // "" for no change
		wantJobs  []JobKind
		wantWake  time.Duration // NextWake after the tick, since t0; -1 for none
	}{
		{"before the reminder nothing happens", func() Request { return pendingAt(30 * time.Minute) }, 29 * time.Minute,
			StatePending, "", nil, 30 * time.Minute},
		{"the reminder falls due", func() Request { return pendingAt(30 * time.Minute) }, 30 * time.Minute,
			StatePending, ActionRemind, []JobKind{JobRemind}, 2 * time.Hour},
		{"a reminder missed while the bot was down is sent late", func() Request { return pendingAt(30 * time.Minute) }, 90 * time.Minute,
			StatePending, ActionRemind, []JobKind{JobRemind}, 2 * time.Hour},
		{"a sent reminder is not sent again", func() Request { r := pendingAt(30 * time.Minute); r.Reminded = true; return r }, 90 * time.Minute,
			StatePending, "", nil, 2 * time.Hour},
		{"no remind_after, no reminder", func() Request { return pendingAt(0) }, 90 * time.Minute,
			StatePending, "", nil, 2 * time.Hour},
		{"past both: expired, not reminded", func() Request { return pendingAt(30 * time.Minute) }, 3 * time.Hour,
			StateExpired, ActionExpire, []JobKind{JobUpdateApproval, NotifyRequester(StateExpired)}, -1},
		{"a reminder at or after the expiry never comes", func() Request { return pendingAt(2 * time.Hour) }, 119 * time.Minute,
			StatePending, "", nil, 2 * time.Hour},
		{"a decided request is not reminded", func() Request { r := pendingAt(30 * time.Minute); r.State = StateApproved; return r }, time.Hour,
			StateApproved, "", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tt.r()
			tr := Tick(&r, t0.Add(tt.at))
			if r.State != tt.wantState || tr.Event.Action != tt.wantEvent || !slices.Equal(tr.Jobs, tt.wantJobs) {
				t.Errorf("Tick at +%s: state %s, event %q, jobs %v; want %s, %q, %v", tt.at, r.State, tr.Event.Action, tr.Jobs, tt.wantState, tt.wantEvent, tt.wantJobs)
			}
			if tt.wantEvent == ActionRemind && (!r.Reminded || tr.Event.Actor != SystemActor || tr.Event.Detail != "0 of 2 approvals") {
				t.Errorf("reminder recorded as %+v, Reminded %v", tr.Event, r.Reminded)
			}
			want := time.Time{}
			if tt.wantWake >= 0 {
				want = t0.Add(tt.wantWake)
			}
			if got := r.NextWake(); !got.Equal(want) {
				t.Errorf("NextWake after the tick = %v, want %v", got, want)
			}
		})
	}
}

func TestPassSchedulesTheRulesReminder(t *testing.T) {
	t.Parallel()
	for _, after := range []time.Duration{0, 2 * time.Hour} {
		r := Request{ID: 1, State: StateChecking, Requester: "UREQ", ChannelID: "C1"}
		v := Verdict{Rule: Rule{Name: "owners", Approvers: []string{"SPLATFORM"}, ApprovalsRequired: 2, RequestTTL: 24 * time.Hour, RemindAfter: after}}
		if _, err := Pass(&r, v, t0); err != nil {
			t.Fatal(err)
		}
		want := time.Time{}
		if after > 0 {
			want = t0.Add(after)
		}
		if r.State != StatePending || !r.RemindAt.Equal(want) || r.Reminded {
			t.Errorf("remind_after %s: state %s, RemindAt %v, Reminded %v; want pending, %v, false", after, r.State, r.RemindAt, r.Reminded, want)
		}
	}
}

func TestNotifyRequesterCarriesItsState(t *testing.T) {
	t.Parallel()
	for _, s := range States {
		k := NotifyRequester(s)
		if got, ok := k.Reports(); !ok || got != s || k.Family() != JobNotifyRequester || k.Calls() {
			t.Errorf("NotifyRequester(%s) = %q reports %q %v, family %q", s, k, got, ok, k.Family())
		}
	}
	for _, k := range []JobKind{JobNotifyRequester, JobTellRequester, JobRemind, "notify_requester:bogus", "notify_requester:"} {
		if s, ok := k.Reports(); ok {
			t.Errorf("%q reports %q", k, s)
		}
	}
}

// fixedClock is a clock the test moves by hand.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// TestWorkerRemindsOnceAlsoAfterADowntime runs three worker lives over one
// store: before the reminder is due, after it fell due while no worker ran,
// and later again. The approvers are reminded exactly once.
func TestWorkerRemindsOnceAlsoAfterADowntime(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	s := openStore(t, path)
	r, _, err := s.Create(t.Context(), newRequest(), t0, 0, func(r *Request) Transition {
		tr := pendingStart(t0, 2*time.Hour, 2)(r)
		ScheduleReminder(r, 30*time.Minute, t0)
		return tr
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNotifier{}
	life := func(at time.Duration, settled func() bool) {
		t.Helper()
		w := newWorker(s, &fakeGranter{}, n)
		w.Now = (&fixedClock{now: t0.Add(at)}).Now
		stop := startWorker(t, w)
		waitFor(t, "the worker to settle at +"+at.String(), func() bool { return mustPendingJobs(t, s) == 0 && settled() })
		stop()
	}
	reminded := func() int { return n.attemptsOf(r.ID, JobRemind) }

	life(10*time.Minute, func() bool { return mustGet(t, s, r.ID).MessageTS != "" })
	if reminded() != 0 {
		t.Fatalf("reminded %d times before the reminder was due", reminded())
	}
	life(80*time.Minute, func() bool { return reminded() == 1 }) // the bot was down at +30m
	life(100*time.Minute, func() bool { return true })
	if got := mustGet(t, s, r.ID); got.State != StatePending || !got.Reminded {
		t.Errorf("after the reminder: state %s, Reminded %v", got.State, got.Reminded)
	}
	if reminded() != 1 {
		t.Errorf("reminded %d times, want once", reminded())
	}
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create", "rolegate posted", "rolegate remind"}) {
		t.Errorf("audit = %q", got)
	}
	if got := n.dms(r.ID); !slices.Equal(got, []State{StatePending}) {
		t.Errorf("direct messages = %v, want only pending", got)
	}
}

// TestWorkerExpiresWhatExpiredWhileDown: a request whose TTL (and reminder)
// passed while no worker ran is expired as soon as one starts, its message
// repainted (as expired: without buttons) and its requester told; it is
// not reminded after the fact.
func TestWorkerExpiresWhatExpiredWhileDown(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r, _, err := s.Create(t.Context(), newRequest(), t0, 0, func(r *Request) Transition {
		tr := pendingStart(t0, time.Hour, 1)(r)
		ScheduleReminder(r, 30*time.Minute, t0)
		return tr
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(t.Context(), r.ID, 0, func(r *Request) (Transition, error) { return RecordPosted(r, "1700000000.000001", t0) }); err != nil {
		t.Fatal(err)
	}
	drainJobs(t, s, r.ID) // the post and the pending DM went out before the stop

	n := &fakeNotifier{}
	w := newWorker(s, &fakeGranter{}, n)
	now := t0.Add(3 * time.Hour)
	w.Now = (&fixedClock{now: now}).Now
	startWorker(t, w)
	got := waitSettled(t, s, r.ID)
	if got.State != StateExpired || !got.FinishedAt.Equal(now) || got.Decider != SystemActor {
		t.Errorf("after start: state %s finished %v by %q; want expired at %v by rolegate", got.State, got.FinishedAt, got.Decider, now)
	}
	wantDeliveries(t, n, r.ID, []delivery{{JobUpdateApproval, StateExpired}})
	if got := n.dms(r.ID); !slices.Equal(got, []State{StateExpired}) {
		t.Errorf("direct messages = %v, want expired", got)
	}
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create", "rolegate posted", "rolegate expire"}) {
		t.Errorf("audit = %q, want no reminder", got)
	}
}
