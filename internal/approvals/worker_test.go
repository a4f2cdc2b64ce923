package approvals

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// createNow stores a request made now (wall clock), as the worker sees time.
func createNow(t *testing.T, s *BoltStore, required int) Request {
	t.Helper()
	return mustCreateAt(t, s, newRequest(), time.Now().UTC(), required)
}

// approveWhenPosted waits for the worker to post request id's approval
// message, then approves it as UANA, as a click on the message would.
func approveWhenPosted(t *testing.T, s *BoltStore, id uint64) {
	t.Helper()
	waitFor(t, "the approval message to be posted", func() bool { return mustGet(t, s, id).MessageTS != "" })
	if _, err := storeDecide(s, t.Context(), id, "UANA", ActionApprove, "C1", true, time.Now().UTC()); err != nil {
		t.Fatalf("approve: %v", err)
	}
}

// A request's messages and its OpenAI call run in separate lanes, so the
// update queued when the request was approved may be delivered after the
// call finished, rendering the outcome instead: a wanted
// update_approval(approved) matches an update_approval of any later state.
func wantDeliveries(t *testing.T, n *fakeNotifier, id uint64, want []delivery) {
	t.Helper()
	got := n.deliveries(id)
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		w, g := want[i], got[i]
		same = g == w || (w == delivery{JobUpdateApproval, StateApproved} && g.Kind == JobUpdateApproval && g.State != StatePending)
	}
	if !same {
		t.Errorf("request %d messages = %s, want %s", id, formatDeliveries(got), formatDeliveries(want))
	}
}

func TestWorkerAppliesApprovedRequest(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	g := &fakeGranter{}
	n := &fakeNotifier{}
	obs := &countingObserver{}
	r := createNow(t, s, 1)
	w := newWorker(s, g, n)
	w.Observer = obs
	startWorker(t, w)
	approveWhenPosted(t, s, r.ID)

	got := waitSettled(t, s, r.ID)
	if got.State != StateApplied {
		t.Fatalf("state = %s, want applied (failure %+v)", got.State, got.Failure)
	}
	if got.Assignment == nil || !reflect.DeepEqual(*got.Assignment, assignmentFor(r.Target, false)) {
		t.Errorf("stored assignment = %+v, want the granter's %+v", got.Assignment, assignmentFor(r.Target, false))
	}
	if got.Failure != nil {
		t.Errorf("applied request carries a failure: %+v", got.Failure)
	}
	if got.FinishedAt.IsZero() || got.MessageTS != "1700000000.000001" {
		t.Errorf("FinishedAt %v, MessageTS %q", got.FinishedAt, got.MessageTS)
	}
	if calls, posts := g.counts(); calls != 1 || posts != 1 {
		t.Errorf("granter called %d times, %d assignments; want 1 and 1", calls, posts)
	}
	if obs.grant("applied") != 1 {
		t.Errorf("observer saw %v, want one applied grant", obs.grants)
	}
	wantDeliveries(t, n, r.ID, []delivery{
		{JobPostApproval, StatePending},
		{JobUpdateApproval, StateApproved},
		{JobUpdateApproval, StateApplied},
		{JobPostResult, StateApplied},
	})
	if got, want := n.dms(r.ID), []State{StatePending, StateApproved, StateApplied}; !slices.Equal(got, want) {
		t.Errorf("the requester was told %v by direct message, want %v", got, want)
	}
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create", "rolegate posted", "UANA approve", "rolegate apply"}) {
		t.Errorf("audit = %q", got)
	}
}

func TestWorkerGrantOutcomes(t *testing.T) {
	t.Parallel()
	overloaded := Failure{Status: 503, Message: "The server is overloaded", Type: "server_error", RequestID: "req_503"}
	notFound := Failure{Status: 404, Message: "Group not found", Type: "invalid_request_error", Code: "group_not_found", Param: "group_id", RequestID: "req_404"}
	temporary := func(ambiguous bool) error {
		return &GrantError{Failure: overloaded, Temporary: true, Ambiguous: ambiguous}
	}
	tests := []struct {
		name        string
		maxAttempts int
		hook        func(ctx context.Context, call int, t Target) error
		wantState   State
		wantCalls   int
		wantFailure *Failure // exact failure stored, when set
		wantMessage []string // substrings of the stored failure message
	}{
		{
			name:        "permanent error",
			hook:        func(context.Context, int, Target) error { return &GrantError{Failure: notFound} },
			wantState:   StateFailed,
			wantCalls:   1,
			wantFailure: &notFound,
		},
		{
			name: "temporary twice, then success",
			hook: func(_ context.Context, call int, _ Target) error {
				if call <= 2 {
					return temporary(false)
				}
				return nil
			},
			wantState: StateApplied,
			wantCalls: 3,
		},
		{
			name: "connection error counts as temporary",
			hook: func(_ context.Context, call int, _ Target) error {
				if call == 1 {
					return errors.New("read tcp: connection reset by peer")
				}
				return nil
			},
			wantState: StateApplied,
			wantCalls: 2,
		},
		{
			name:        "temporary forever",
			maxAttempts: 3,
			hook:        func(context.Context, int, Target) error { return temporary(false) },
			wantState:   StateFailed,
			wantCalls:   3,
			wantMessage: []string{"gave up after 3 attempts", "The server is overloaded"},
		},
		{
			name:        "ambiguous timeouts forever",
			maxAttempts: 2,
			hook:        func(context.Context, int, Target) error { return temporary(true) },
			wantState:   StateFailed,
			wantCalls:   2,
			wantMessage: []string{"gave up after 2 attempts", "may have reached OpenAI"},
		},
		{
			name: "permanent error after a temporary one",
			hook: func(_ context.Context, call int, _ Target) error {
				if call == 1 {
					return temporary(false)
				}
				return &GrantError{Failure: notFound}
			},
			wantState:   StateFailed,
			wantCalls:   2,
			wantFailure: &notFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			g := &fakeGranter{hook: tt.hook}
			n := &fakeNotifier{}
			r := createNow(t, s, 1)
			w := newWorker(s, g, n)
			w.MaxAttempts = tt.maxAttempts
			startWorker(t, w)
			approveWhenPosted(t, s, r.ID)

			got := waitSettled(t, s, r.ID)
			if got.State != tt.wantState {
				t.Fatalf("state = %s, want %s (failure %+v)", got.State, tt.wantState, got.Failure)
			}
			if calls, _ := g.counts(); calls != tt.wantCalls {
				t.Errorf("Assign called %d times, want %d", calls, tt.wantCalls)
			}
			if tt.wantState == StateApplied {
				if got.Assignment == nil || got.Failure != nil {
					t.Errorf("applied request: assignment %+v, failure %+v", got.Assignment, got.Failure)
				}
			} else {
				if got.Failure == nil || got.Assignment != nil {
					t.Fatalf("failed request: failure %+v, assignment %+v", got.Failure, got.Assignment)
				}
				if tt.wantFailure != nil && !reflect.DeepEqual(*got.Failure, *tt.wantFailure) {
					t.Errorf("stored failure = %+v, want the API's %+v", *got.Failure, *tt.wantFailure)
				}
				for _, sub := range tt.wantMessage {
					if !strings.Contains(got.Failure.Message, sub) {
						t.Errorf("failure message %q does not mention %q", got.Failure.Message, sub)
					}
				}
				if tt.wantMessage != nil && (got.Failure.Status != overloaded.Status || got.Failure.RequestID != overloaded.RequestID) {
					t.Errorf("failure lost the API's status or request id: %+v", *got.Failure)
				}
				if a := auditLines(t, s, r.ID); a[len(a)-1] != "rolegate fail" {
					t.Errorf("audit = %q, want it to end with the failure", a)
				}
			}
			wantDeliveries(t, n, r.ID, []delivery{
				{JobPostApproval, StatePending},
				{JobUpdateApproval, StateApproved},
				{JobUpdateApproval, tt.wantState},
				{JobPostResult, tt.wantState},
			})
			if got, want := n.dms(r.ID), []State{StatePending, StateApproved, tt.wantState}; !slices.Equal(got, want) {
				t.Errorf("the requester was told %v by direct message, want %v", got, want)
			}
		})
	}
}

func TestWorkerHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	g := &fakeGranter{hook: func(context.Context, int, Target) error {
		return &GrantError{Failure: Failure{Status: 429, Message: "Rate limit reached"}, Temporary: true, RetryAfter: time.Hour}
	}}
	r := createNow(t, s, 1)
	w := newWorker(s, g, &fakeNotifier{})
	w.Deadline = 2 * time.Hour // the Retry-After fits inside it
	startWorker(t, w)
	waitFor(t, "the approval message to be posted", func() bool { return mustGet(t, s, r.ID).MessageTS != "" })
	approvedAt := time.Now()
	if _, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionApprove, "C1", true, approvedAt.UTC()); err != nil {
		t.Fatal(err)
	}

	var j Job
	waitFor(t, "the first attempt to be recorded", func() bool {
		var ok bool
		j, ok = firstJob(t, s, r.ID)
		return ok && j.Kind == JobAssign && j.Attempts == 1
	})
	if j.NotBefore.Before(approvedAt.Add(time.Hour)) {
		t.Errorf("retry scheduled at %v, before the server's Retry-After (%v)", j.NotBefore, approvedAt.Add(time.Hour))
	}
	if j.NotBefore.After(time.Now().Add(time.Hour + time.Minute)) {
		t.Errorf("retry scheduled at %v, far beyond the Retry-After", j.NotBefore)
	}
	if !strings.Contains(j.LastError, "Rate limit reached") || j.FirstTry.IsZero() {
		t.Errorf("job LastError %q FirstTry %v", j.LastError, j.FirstTry)
	}
	// Slack messages (the requester's DM) may still be due in their own
	// lane; the OpenAI call is not.
	waitFor(t, "the messages to go out", func() bool { return mustPendingJobs(t, s) == 1 })
	jobs, next, err := s.DueJobs(t.Context(), time.Now(), nil, Each(10))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 || !next.Equal(j.NotBefore) {
		t.Errorf("DueJobs now = %+v, next %v; want nothing due until %v", jobs, next, j.NotBefore)
	}
	if calls, _ := g.counts(); calls != 1 {
		t.Errorf("Assign called %d times, want 1", calls)
	}
	if got := mustGet(t, s, r.ID); got.State != StateApproved {
		t.Errorf("state = %s while waiting to retry, want approved", got.State)
	}
}

func TestWorkerHonoursDeliveryRetryAfter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	n := &fakeNotifier{fail: func(JobKind, Request, int) error {
		return &DeliveryError{Code: "ratelimited", Temporary: true, RetryAfter: time.Hour}
	}}
	before := time.Now()
	r := createNow(t, s, 1)
	startWorker(t, newWorker(s, &fakeGranter{}, n))
	var j Job
	waitFor(t, "the first delivery attempt to be recorded", func() bool {
		var ok bool
		j, ok = firstJob(t, s, r.ID)
		return ok && j.Attempts == 1
	})
	if j.Kind != JobPostApproval || j.NotBefore.Before(before.Add(time.Hour)) {
		t.Errorf("job %s retries at %v, want post_approval not before Slack's Retry-After (%v)", j.Kind, j.NotBefore, before.Add(time.Hour))
	}
	if !strings.Contains(j.LastError, "ratelimited") {
		t.Errorf("job LastError = %q, want the Slack error", j.LastError)
	}
	if got := n.attemptsOf(r.ID, JobPostApproval); got != 1 {
		t.Errorf("message attempted %d times, want 1 before the Retry-After", got)
	}
}

func TestWorkerDeliveryRetryDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{"rate limited", &DeliveryError{Code: "ratelimited", Temporary: true, RetryAfter: 200 * time.Millisecond}},
		{"network error", errors.New("dial tcp: i/o timeout")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			a := createNow(t, s, 1) // older: its job comes first
			b := createNow(t, s, 1)
			n := &fakeNotifier{}
			// a's approval message fails until b's is delivered: were a's
			// retries to hold up b, neither would ever be posted.
			n.fail = func(kind JobKind, r Request, _ int) error {
				if r.ID == a.ID && !n.delivery(b.ID, JobPostApproval) {
					return tt.err
				}
				return nil
			}
			w := newWorker(s, &fakeGranter{}, n)
			w.Concurrency = 1
			// Backoffs long enough that b's turn comes while a waits,
			// however loaded the machine.
			w.BaseBackoff, w.MaxBackoff = 200*time.Millisecond, 200*time.Millisecond
			startWorker(t, w)
			waitFor(t, "both approval messages", func() bool {
				return mustGet(t, s, a.ID).MessageTS != "" && mustGet(t, s, b.ID).MessageTS != ""
			})
			if got := n.attemptsOf(a.ID, JobPostApproval); got < 2 {
				t.Errorf("request %d's message was attempted %d times, want a retry", a.ID, got)
			}
			if got := n.attemptsOf(b.ID, JobPostApproval); got != 1 {
				t.Errorf("request %d's message was attempted %d times, want 1", b.ID, got)
			}
			wantDeliveries(t, n, a.ID, []delivery{{JobPostApproval, StatePending}})
			if st := mustGet(t, s, a.ID).State; st != StatePending {
				t.Errorf("request %d is %s after temporary failures, want pending", a.ID, st)
			}
		})
	}
}

func TestWorkerUnpostableApprovalCancels(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	n := &fakeNotifier{fail: func(kind JobKind, _ Request, _ int) error {
		if kind == JobPostApproval {
			return &DeliveryError{Code: "channel_not_found", Hint: "invite the bot to the channel"}
		}
		return nil
	}}
	r := createNow(t, s, 1)
	startWorker(t, newWorker(s, &fakeGranter{}, n))

	got := waitSettled(t, s, r.ID)
	if got.State != StateCancelled {
		t.Fatalf("state = %s, want cancelled", got.State)
	}
	if !strings.Contains(got.Note, "channel_not_found") || got.Decider != SystemActor {
		t.Errorf("Note %q, Decider %q; want the Slack code and rolegate", got.Note, got.Decider)
	}
	if got := n.attemptsOf(r.ID, JobPostApproval); got != 1 {
		t.Errorf("a permanent error was retried: %d attempts", got)
	}
	n.mu.Lock()
	told := slices.Clone(n.told[r.ID])
	n.mu.Unlock()
	if len(told) != 1 || told[0] != got.Note {
		t.Errorf("requester was told %q, want once %q", told, got.Note)
	}
	wantDeliveries(t, n, r.ID, []delivery{{JobTellRequester, StateCancelled}})
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create", "rolegate cancel"}) {
		t.Errorf("audit = %q", got)
	}
	// Nobody can approve it any more.
	_, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionApprove, "C1", true, time.Now().UTC())
	var np *NotPendingError
	if !errors.As(err, &np) {
		t.Errorf("approving the cancelled request: %v, want *NotPendingError", err)
	}
}

func TestWorkerSkipsUpdateOfUnpostedMessage(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r := createNow(t, s, 1)
	// Denied before the worker got to post: the approval message is then
	// refused for good, so there is nothing to update afterwards.
	if _, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionDeny, "C1", true, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	n := &fakeNotifier{fail: func(kind JobKind, _ Request, _ int) error {
		if kind == JobPostApproval {
			return &DeliveryError{Code: "is_archived"}
		}
		return nil
	}}
	startWorker(t, newWorker(s, &fakeGranter{}, n))
	got := waitSettled(t, s, r.ID)
	if got.State != StateDenied || got.Note != "" {
		t.Errorf("state %s note %q; a decided request must stay as decided", got.State, got.Note)
	}
	if a := n.attemptsOf(r.ID, JobUpdateApproval); a != 0 {
		t.Errorf("tried to update a message that was never posted (%d attempts)", a)
	}
	if n.delivery(r.ID, JobTellRequester) {
		t.Errorf("requester told about an unposted message of a request already decided")
	}
}

func TestWorkerDroppedUpdateDoesNotStall(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	n := &fakeNotifier{fail: func(kind JobKind, r Request, _ int) error {
		if kind == JobUpdateApproval && r.State == StateApproved {
			return &DeliveryError{Code: "message_not_found"}
		}
		return nil
	}}
	g := &fakeGranter{}
	r := createNow(t, s, 1)
	startWorker(t, newWorker(s, g, n))
	approveWhenPosted(t, s, r.ID)

	got := waitSettled(t, s, r.ID)
	if got.State != StateApplied {
		t.Fatalf("state = %s, want applied", got.State)
	}
	// The "approved" update fails for good only if delivered before the
	// call finished; rendered after, it shows the outcome and goes out.
	deliveries := []delivery{{JobPostApproval, StatePending}, {JobUpdateApproval, StateApplied}, {JobPostResult, StateApplied}}
	if got := n.deliveries(r.ID); len(got) == 4 {
		deliveries = slices.Insert(deliveries, 1, delivery{JobUpdateApproval, StateApplied})
	}
	wantDeliveries(t, n, r.ID, deliveries)
}

func TestWorkerRestartAssignsOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		postFirst   bool // the first attempt's POST reached OpenAI before the stop
		wantAlready bool
	}{
		{"stopped before the POST", false, false},
		{"stopped after the POST, before its answer", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "rolegate.db")
			s1 := openStore(t, path)
			r := createNow(t, s1, 1)
			if _, err := storeDecide(s1, t.Context(), r.ID, "UANA", ActionApprove, "C1", true, time.Now().UTC()); err != nil {
				t.Fatal(err)
			}
			called := make(chan struct{})
			g := &fakeGranter{}
			g.hook = func(ctx context.Context, call int, target Target) error {
				if call != 1 {
					return nil
				}
				if tt.postFirst {
					g.post(target)
				}
				close(called)
				<-ctx.Done() // the process is stopping
				return ctx.Err()
			}
			n1 := &fakeNotifier{}
			stop := startWorker(t, newWorker(s1, g, n1))
			select {
			case <-called:
			case <-time.After(10 * time.Second):
				t.Fatal("the first worker never called Assign")
			}
			stop()
			if st := mustGet(t, s1, r.ID).State; st != StateApproved {
				t.Fatalf("after the stop the request is %s, want still approved", st)
			}
			closeStore(t, s1)

			s2 := openStore(t, path)
			n2 := &fakeNotifier{}
			startWorker(t, newWorker(s2, g, n2))
			got := waitSettled(t, s2, r.ID)
			if got.State != StateApplied {
				t.Fatalf("state = %s, want applied", got.State)
			}
			calls, posts := g.counts()
			if posts != 1 {
				t.Errorf("the role was assigned %d times, want exactly once", posts)
			}
			if calls != 2 {
				t.Errorf("Assign called %d times, want 2 (one per process)", calls)
			}
			if got.Assignment == nil || got.Assignment.AlreadyAssigned != tt.wantAlready {
				t.Errorf("assignment = %+v, want AlreadyAssigned %v", got.Assignment, tt.wantAlready)
			}
			if n1.delivery(r.ID, JobPostResult) {
				t.Errorf("the stopped worker posted a result")
			}
			// Messages run in their own lane, beside the OpenAI call: the
			// "approved" update may or may not have gone out before the
			// stop, but the outcome's update and the result come last.
			got2 := n2.deliveries(r.ID)
			if len(got2) == 3 && got2[0].Kind == JobUpdateApproval {
				got2 = got2[1:] // the "approved" update, rendered as of its delivery
			}
			if want := []delivery{{JobUpdateApproval, StateApplied}, {JobPostResult, StateApplied}}; !slices.Equal(got2, want) {
				t.Errorf("request %d messages after the restart = %s, want %s", r.ID, formatDeliveries(n2.deliveries(r.ID)), formatDeliveries(want))
			}
		})
	}
}

func TestWorkerNeverReassignsFinishedRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		finish func(ctx context.Context, s *BoltStore, r Request) (Request, error)
		want   State
	}{
		{"applied", func(ctx context.Context, s *BoltStore, r Request) (Request, error) {
			return s.Update(ctx, r.ID, 0, func(r *Request) (Transition, error) {
				return RecordAssignment(r, assignmentFor(r.Target, false), time.Now().UTC())
			})
		}, StateApplied},
		{"failed", func(ctx context.Context, s *BoltStore, r Request) (Request, error) {
			return s.Update(ctx, r.ID, 0, func(r *Request) (Transition, error) {
				return RecordFailure(r, Failure{Status: 403, Message: "forbidden"}, time.Now().UTC())
			})
		}, StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			r := createNow(t, s, 1)
			if _, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionApprove, "C1", true, time.Now().UTC()); err != nil {
				t.Fatal(err)
			}
			// Finished without completing the assign job (job id 0 does
			// not exist): the job stays behind in the outbox.
			if _, err := tt.finish(t.Context(), s, r); err != nil {
				t.Fatal(err)
			}
			if n := mustPendingJobs(t, s); n != 7 {
				t.Fatalf("outbox has %d jobs, want 7 (post, update, assign, DM approved, update, result, DM outcome)", n)
			}
			g := &fakeGranter{}
			startWorker(t, newWorker(s, g, &fakeNotifier{}))
			got := waitSettled(t, s, r.ID)
			if calls, _ := g.counts(); calls != 0 {
				t.Errorf("Assign called %d times for a %s request", calls, tt.want)
			}
			if got.State != tt.want {
				t.Errorf("state = %s, want %s", got.State, tt.want)
			}
		})
	}
}

func TestWorkerExpiresPendingRequests(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	stale := mustCreateAt(t, s, newRequest(), time.Now().UTC().Add(-ttl-time.Minute), 1)
	fresh := createNow(t, s, 1)
	n := &fakeNotifier{}
	startWorker(t, newWorker(s, &fakeGranter{}, n))
	got := waitSettled(t, s, stale.ID)
	if got.State != StateExpired {
		t.Fatalf("state = %s, want expired", got.State)
	}
	if ds := n.deliveries(stale.ID); len(ds) == 0 || ds[len(ds)-1] != (delivery{JobUpdateApproval, StateExpired}) {
		t.Errorf("stale request messages = %s, want the last to show it expired", formatDeliveries(ds))
	}
	waitFor(t, "the fresh request's message", func() bool { return mustGet(t, s, fresh.ID).MessageTS != "" })
	if st := mustGet(t, s, fresh.ID).State; st != StatePending {
		t.Errorf("fresh request is %s, want pending", st)
	}
}

// gatedClock is a wall clock whose next reading, once armed, waits until
// released: it holds the worker's loop still at a chosen point.
type gatedClock struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (c *gatedClock) Now() time.Time {
	c.mu.Lock()
	armed, entered, release := c.armed, c.entered, c.release
	c.armed = false
	c.mu.Unlock()
	if armed {
		close(entered)
		<-release
	}
	return time.Now()
}

// arm makes the next Now wait: entered is closed when it starts waiting,
// and closing release lets it return.
func (c *gatedClock) arm() (entered, release chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.entered, c.release = true, make(chan struct{}), make(chan struct{})
	return c.entered, c.release
}

// TestWorkerStopsCallingOutAfterCancel stops a worker while its loop is
// between iterations and an assignment is under way. The abandoned job's
// goroutine finishes first; the loop, resuming, must not hand that job to
// the Granter again once its context is cancelled.
func TestWorkerStopsCallingOutAfterCancel(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for round := range 5 {
		r := createNow(t, s, 1)
		if _, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionApprove, "C1", true, time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		clock := &gatedClock{}
		g := &fakeGranter{hook: func(hctx context.Context, call int, _ Target) error {
			if call != 1 {
				return nil
			}
			entered, release := clock.arm()
			s.notify() // wake the loop; it stops in its next clock reading
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Error("the worker's loop did not read the clock")
			}
			cancel() // the process is told to stop while OpenAI is being asked
			// Let this job's goroutine wind up before the loop resumes. The
			// delay only widens the window: correct code passes whatever it is.
			time.AfterFunc(20*time.Millisecond, func() { close(release) })
			return hctx.Err()
		}}
		w := newWorker(s, g, &fakeNotifier{})
		w.Now = clock.Now
		errc := make(chan error, 1)
		go func() { errc <- w.Run(ctx) }()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
		if calls, _ := g.counts(); calls != 1 {
			t.Fatalf("round %d: Assign called %d times; the stopping worker called again after cancel", round, calls)
		}
		if st := mustGet(t, s, r.ID).State; st != StateApproved {
			t.Fatalf("round %d: state %s, want approved (the assignment is still owed)", round, st)
		}
		// Leave the request out of the next round's way.
		if _, err := s.Update(t.Context(), r.ID, 0, func(r *Request) (Transition, error) {
			return RecordFailure(r, Failure{Message: "test round over"}, time.Now().UTC())
		}); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if j, ok := firstJob(t, s, r.ID); ok {
				if err := s.CompleteJob(t.Context(), j.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestWorkerTellsTheNotifierOnlyOfTakenOverPosts: a post that was queued
// when the last process stopped (it may have reached Slack just before)
// is posted with MayHavePosted, so the Notifier looks for it first; one
// queued by this process is posted straight away, with no look-up.
func TestWorkerTellsTheNotifierOnlyOfTakenOverPosts(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	s1 := openStore(t, path)
	inherited := createNow(t, s1, 1) // its post is queued when the process stops
	closeStore(t, s1)

	s2 := openStore(t, path)
	fresh := createNow(t, s2, 1)
	n := &fakeNotifier{}
	startWorker(t, newWorker(s2, &fakeGranter{}, n))
	for _, r := range []Request{inherited, fresh} {
		approveWhenPosted(t, s2, r.ID)
		if got := waitSettled(t, s2, r.ID); got.State != StateApplied {
			t.Fatalf("request %d is %s, want applied", r.ID, got.State)
		}
	}
	for _, tt := range []struct {
		id   uint64
		kind JobKind
		want []Posting
	}{
		{inherited.ID, JobPostApproval, []Posting{{MayHavePosted: true}}},
		{fresh.ID, JobPostApproval, []Posting{{MayHavePosted: false}}},
		// Queued by this process (at the approval): nobody ran them before.
		{inherited.ID, JobPostResult, []Posting{{MayHavePosted: false}}},
		{fresh.ID, JobPostResult, []Posting{{MayHavePosted: false}}},
	} {
		if got := n.postingsOf(tt.id, tt.kind); !slices.Equal(got, tt.want) {
			t.Errorf("request %d %s: the notifier was told %+v, want %+v", tt.id, tt.kind, got, tt.want)
		}
	}
}

// TestWorkerTellsTheNotifierOfARetriedPost: an attempt that failed may
// have reached Slack (a timeout after Slack accepted the message), so the
// retry looks for the message first, and so does a retried result.
func TestWorkerTellsTheNotifierOfARetriedPost(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	n := &fakeNotifier{fail: func(kind JobKind, _ Request, attempt int) error {
		if (kind == JobPostApproval || kind == JobPostResult) && attempt == 1 {
			return &DeliveryError{Code: "timeout", Temporary: true}
		}
		return nil
	}}
	r := createNow(t, s, 1)
	startWorker(t, newWorker(s, &fakeGranter{}, n))
	approveWhenPosted(t, s, r.ID)
	if got := waitSettled(t, s, r.ID); got.State != StateApplied {
		t.Fatalf("request is %s, want applied", got.State)
	}
	want := []Posting{{MayHavePosted: false}, {MayHavePosted: true}}
	for _, kind := range []JobKind{JobPostApproval, JobPostResult} {
		waitFor(t, "the retried "+string(kind), func() bool { return len(n.postingsOf(r.ID, kind)) == 2 })
		if got := n.postingsOf(r.ID, kind); !slices.Equal(got, want) {
			t.Errorf("%s: the notifier was told %+v, want %+v", kind, got, want)
		}
	}
}
