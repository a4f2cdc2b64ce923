package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// errDiskFull is what a store on a full disk answers to every write.
var errDiskFull = errors.New("write rolegate.db: no space left on device")

// faultyStore is a BoltStore whose writes (and, when asked, reads) fail
// while its switches are on, as a store on a full disk does; it counts the
// calls so a test can tell a back-off from a spin.
type faultyStore struct {
	*BoltStore
	failWrites, failReads atomic.Bool
	writes, reads         atomic.Int64
}

func (f *faultyStore) write() error {
	f.writes.Add(1)
	if f.failWrites.Load() {
		return errDiskFull
	}
	return nil
}

func (f *faultyStore) read() error {
	f.reads.Add(1)
	if f.failReads.Load() {
		return errDiskFull
	}
	return nil
}

func (f *faultyStore) Update(ctx context.Context, id, done uint64, change func(*Request) (Transition, error)) (Request, error) {
	if err := f.write(); err != nil {
		return Request{}, err
	}
	return f.BoltStore.Update(ctx, id, done, change)
}

func (f *faultyStore) RetryJob(ctx context.Context, j Job) error {
	if err := f.write(); err != nil {
		return err
	}
	return f.BoltStore.RetryJob(ctx, j)
}

func (f *faultyStore) CompleteJob(ctx context.Context, id uint64) error {
	if err := f.write(); err != nil {
		return err
	}
	return f.BoltStore.CompleteJob(ctx, id)
}

func (f *faultyStore) Sweep(ctx context.Context, now time.Time) error {
	if err := f.write(); err != nil {
		return err
	}
	return f.BoltStore.Sweep(ctx, now)
}

func (f *faultyStore) DueJobs(ctx context.Context, now time.Time, skip map[uint64]bool, limit JobLimit) ([]Job, time.Time, error) {
	if err := f.read(); err != nil {
		return nil, time.Time{}, err
	}
	return f.BoltStore.DueJobs(ctx, now, skip, limit)
}

func (f *faultyStore) DueWakes(ctx context.Context, now time.Time, limit int) ([]uint64, time.Time, error) {
	if err := f.read(); err != nil {
		return nil, time.Time{}, err
	}
	return f.BoltStore.DueWakes(ctx, now, limit)
}

// TestWorkerDoesNotSpinOnAFullDisk: with every write failing, a delivered
// approval message and a made assignment are not repeated while the worker
// waits for the disk (today's bug: ~10,000 posts and 7,500 assignments a
// second), the store is retried with back-off, and once space comes back
// the work completes with one message and one assignment.
func TestWorkerDoesNotSpinOnAFullDisk(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	posted := mustCreateAt(t, s, newRequest(), time.Now().UTC(), 1)
	approved := mustCreateAt(t, s, newRequest(func(n *NewRequest) { n.GroupID = "group_02" }), time.Now().UTC(), 1)
	if _, err := s.Update(t.Context(), approved.ID, 0, func(r *Request) (Transition, error) { return RecordPosted(r, "1.2", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := storeDecide(s, t.Context(), approved.ID, "UANA", ActionApprove, "C1", true, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	f := &faultyStore{BoltStore: s}
	f.failWrites.Store(true)
	g := &fakeGranter{}
	n := &fakeNotifier{}
	w := newWorker(s, g, n)
	w.Store = f
	w.BaseBackoff, w.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	stop := startWorker(t, w)
	defer stop()

	waitFor(t, "the approval message and the assignment to be attempted", func() bool {
		calls, _ := g.counts()
		return len(n.deliveries(posted.ID)) > 0 && calls > 0
	})
	time.Sleep(500 * time.Millisecond) // a spinning worker makes thousands of calls in this time
	if got := len(n.deliveries(posted.ID)); got != 1 {
		t.Errorf("the approval message was delivered %d times while the disk was full, want once", got)
	}
	if calls, _ := g.counts(); calls != 1 {
		t.Errorf("Assign ran %d times while the disk was full, want once", calls)
	}
	// Capped at 100ms, the back-off allows a handful of writes per job and
	// loop in half a second; a spin makes thousands.
	if writes := f.writes.Load(); writes > 60 {
		t.Errorf("%d store writes in half a second: the worker spins", writes)
	}

	f.failWrites.Store(false) // space comes back
	if r := waitSettled(t, s, approved.ID); r.State != StateApplied {
		t.Errorf("approved request ended %s, want applied", r.State)
	}
	waitFor(t, "the approval message's ts to be recorded", func() bool { return mustGet(t, s, posted.ID).MessageTS != "" })
	if got := len(n.deliveries(posted.ID)); got != 1 {
		t.Errorf("approval message delivered %d times in all, want once", got)
	}
	if _, posts := g.counts(); posts != 1 {
		t.Errorf("%d assignments made, want 1", posts)
	}
}

// TestWorkerBacksOffWhenTheStoreCannotBeRead: a store that cannot even be
// read is retried with back-off, not in a loop, and the worker does not
// exit (today it stopped, and with it the bot).
func TestWorkerBacksOffWhenTheStoreCannotBeRead(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r := mustCreateAt(t, s, newRequest(), time.Now().UTC(), 1)
	f := &faultyStore{BoltStore: s}
	f.failReads.Store(true)
	n := &fakeNotifier{}
	w := newWorker(s, &fakeGranter{}, n)
	w.Store = f
	w.BaseBackoff, w.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("the worker stopped while the store failed: %v", err)
	default:
	}
	if reads := f.reads.Load(); reads > 40 {
		t.Errorf("%d reads in half a second: the worker spins", reads)
	}
	f.failReads.Store(false)
	waitFor(t, "the approval message once the store reads again", func() bool { return mustGet(t, s, r.ID).MessageTS != "" })
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// futureVersion rewrites a stored value as a newer rolegate would have
// written it.
func futureVersion(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["v"] = schemaVersion + 1
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWorkerQuarantinesUnreadableRecords: a request written by a newer
// schema (after a rollback) and a damaged job are moved aside; every other
// request carries on, and the quarantine lists both for an operator.
func TestWorkerQuarantinesUnreadableRecords(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	s := openStore(t, path)
	now := time.Now().UTC()
	newer := mustCreateAt(t, s, newRequest(), now, 1)
	good := mustCreateAt(t, s, newRequest(func(n *NewRequest) { n.GroupID = "group_02" }), now, 1)
	var damagedJob uint64
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		if err := b.Put(itob(newer.ID), futureVersion(t, b.Get(itob(newer.ID)))); err != nil {
			return err
		}
		seq, _ := tx.Bucket(bucketOutbox).NextSequence()
		damagedJob = seq
		return tx.Bucket(bucketOutbox).Put(itob(seq), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	obs := &quarantineObserver{}
	n := &fakeNotifier{}
	w := newWorker(s, &fakeGranter{}, n)
	w.Observer = obs
	stop := startWorker(t, w)
	waitFor(t, "the good request's approval message", func() bool { return mustGet(t, s, good.ID).MessageTS != "" })
	waitFor(t, "both bad records to be moved aside", func() bool { return obs.count() == 2 })
	stop()
	q, err := s.Quarantined(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range q {
		got[fmt.Sprintf("%s %d", r.Kind, r.Key)] = true
		if r.Kind == "request" && !strings.Contains(r.Reason, "schema version") {
			t.Errorf("quarantined request's reason %q does not say why", r.Reason)
		}
	}
	if !got[fmt.Sprintf("request %d", newer.ID)] || !got[fmt.Sprintf("job %d", damagedJob)] {
		t.Errorf("quarantine holds %v, want the newer request %d and the damaged job %d", got, newer.ID, damagedJob)
	}
	if _, err := s.Get(t.Context(), newer.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the unreadable request is still where the worker reads: %v", err)
	}
	if len(n.deliveries(newer.ID)) != 0 {
		t.Errorf("something was delivered for the unreadable request")
	}
	c, err := s.Counts(t.Context())
	if err != nil || c.Quarantined != 2 {
		t.Errorf("Counts = %+v, %v; want 2 quarantined", c, err)
	}
}

type quarantineObserver struct {
	nopObserver
	n atomic.Int64
}

func (o *quarantineObserver) Quarantine(string) { o.n.Add(1) }
func (o *quarantineObserver) count() int64      { return o.n.Load() }

// panickyNotifier panics on request 1's approval message.
type panickyNotifier struct{ *fakeNotifier }

func (p panickyNotifier) PostApproval(ctx context.Context, r Request, posting Posting) (string, error) {
	if r.ID == 1 {
		panic("a bug in rendering")
	}
	return p.fakeNotifier.PostApproval(ctx, r, posting)
}

// TestWorkerQuarantinesAPanickingJob: a job that panics is recovered,
// logged and moved aside; the worker and the other requests carry on.
func TestWorkerQuarantinesAPanickingJob(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	bad := createNow(t, s, 1)
	good := createNow(t, s, 1)
	obs := &quarantineObserver{}
	w := newWorker(s, &fakeGranter{}, panickyNotifier{&fakeNotifier{}})
	w.Observer = obs
	stop := startWorker(t, w)
	defer stop()
	waitFor(t, "the other request's approval message", func() bool { return mustGet(t, s, good.ID).MessageTS != "" })
	waitFor(t, "the panicking job to be moved aside", func() bool { return obs.count() == 1 })
	if mustGet(t, s, bad.ID).MessageTS != "" {
		t.Errorf("the panicking job was recorded as delivered")
	}
}

// TestOpenDamagedFile: a file whose pages are damaged is an error that
// says so, not a panic, and Check finds a damaged data page.
func TestOpenDamagedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "rolegate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		mustCreateAt(t, s, newRequest(func(n *NewRequest) { n.Reason = strings.Repeat("r", 900) }), t0, 1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("meta pages", func(t *testing.T) {
		broken := filepath.Join(dir, "meta.db")
		b := append([]byte(nil), data...)
		for i := 0; i < 2*4096 && i < len(b); i += 7 {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(broken, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(broken)
		if err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("Open of a file with damaged meta pages = %v, want an error saying it is damaged", err)
		}
	})
	t.Run("data pages", func(t *testing.T) {
		broken := filepath.Join(dir, "data.db")
		b := append([]byte(nil), data...)
		for i := 4 * 4096; i < len(b); i += 4096 {
			for j := i; j < i+16 && j < len(b); j++ {
				b[j] = 0xee // page headers: ids, flags, counts
			}
		}
		if err := os.WriteFile(broken, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(broken)
		if err != nil {
			if !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("Open = %v, want it to say the file is damaged", err)
			}
			return
		}
		defer s.Close()
		if err := s.Check(); err == nil {
			t.Fatal("Check found nothing wrong with damaged pages")
		}
	})
}

// TestWorkerGivesUpWhenRetryAfterOutlastsTheDeadline: a Retry-After that
// reaches past FirstTry+Deadline ends the request at once; no attempt is
// made hours later.
func TestWorkerGivesUpWhenRetryAfterOutlastsTheDeadline(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	g := &fakeGranter{hook: func(context.Context, int, Target) error {
		return &GrantError{Failure: Failure{Status: 429, Message: "Rate limit reached"}, Temporary: true, RetryAfter: 6 * time.Hour}
	}}
	r := createNow(t, s, 1)
	w := newWorker(s, g, &fakeNotifier{})
	w.Deadline = 10 * time.Minute
	startWorker(t, w)
	approveWhenPosted(t, s, r.ID)
	got := waitSettled(t, s, r.ID)
	if got.State != StateFailed || got.Failure == nil || !strings.Contains(got.Failure.Message, "Rate limit reached") {
		t.Fatalf("request %s %+v, want failed with the API's message", got.State, got.Failure)
	}
	if calls, _ := g.counts(); calls != 1 {
		t.Errorf("Assign called %d times, want 1: no attempt after the deadline", calls)
	}
}

// roleLister answers GroupRoles with a fixed outcome.
type roleLister struct {
	roles []Role
	err   error
	calls atomic.Int64
}

func (l *roleLister) GroupRoles(context.Context, string, string) ([]Role, error) {
	l.calls.Add(1)
	return l.roles, l.err
}

// TestWorkerLooksOnceMoreAfterAnAmbiguousAttempt: when the attempts run out
// after an attempt that may have reached OpenAI, the group's roles are
// listed once more; a role found there is the request applied, not failed.
func TestWorkerLooksOnceMoreAfterAnAmbiguousAttempt(t *testing.T) {
	t.Parallel()
	ambiguous := func(context.Context, int, Target) error {
		return &GrantError{Failure: Failure{Message: "connection reset"}, Temporary: true, Ambiguous: true}
	}
	for _, tt := range []struct {
		name  string
		roles []Role
		want  State
	}{
		{"role found: applied", []Role{{ID: "role_01", Name: "Key rotator"}}, StateApplied},
		{"role absent: failed", nil, StateFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			r := createNow(t, s, 1)
			lister := &roleLister{roles: tt.roles}
			w := newWorker(s, &fakeGranter{hook: ambiguous}, &fakeNotifier{})
			w.MaxAttempts = 2
			w.Roles = lister
			startWorker(t, w)
			approveWhenPosted(t, s, r.ID)
			got := waitSettled(t, s, r.ID)
			if got.State != tt.want {
				t.Fatalf("state %s, want %s", got.State, tt.want)
			}
			if lister.calls.Load() != 1 {
				t.Errorf("listed %d times after giving up, want once", lister.calls.Load())
			}
			if tt.want == StateApplied && (got.Assignment == nil || !got.Assignment.AlreadyAssigned) {
				t.Errorf("assignment %+v, want found by the last look", got.Assignment)
			}
			if tt.want == StateFailed && !strings.Contains(got.Failure.Message, "may have reached OpenAI") {
				t.Errorf("failure %q does not warn that an attempt may have reached OpenAI", got.Failure.Message)
			}
		})
	}
}

// TestCreateBoundsOpenRequestsPerRequester: with a limit of 2, a third open
// request is refused naming the open ones; once one is decided, a new one
// is accepted. Others are not affected.
func TestCreateBoundsOpenRequestsPerRequester(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	create := func(user string) (Request, error) {
		r, _, err := s.Create(t.Context(), newRequest(func(n *NewRequest) { n.Requester = user }), t0, 2, pendingStart(t0, ttl, 1))
		return r, err
	}
	a, _ := create("UREQ")
	b, _ := create("UREQ")
	_, err := create("UREQ")
	var tm *TooManyOpenError
	if !errors.As(err, &tm) || tm.Limit != 2 || len(tm.Open) != 2 || tm.Open[0] != a.ID || tm.Open[1] != b.ID {
		t.Fatalf("third request = %v, want TooManyOpenError naming #%d and #%d", err, a.ID, b.ID)
	}
	if _, err := create("UOTHER"); err != nil {
		t.Errorf("another requester was refused: %v", err)
	}
	if _, err := storeDecide(s, t.Context(), a.ID, "UANA", ActionDeny, "C1", true, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := create("UREQ"); err != nil {
		t.Errorf("after one was decided, a new request was refused: %v", err)
	}
}

// TestVotesAreRecountedAtQuorum: an approver removed from the
// configuration (by a restart with other approvers) or from their user
// group between the first vote and the quorum no longer counts, and the
// message's count is corrected.
func TestVotesAreRecountedAtQuorum(t *testing.T) {
	t.Parallel()
	t.Run("removed from the configuration", func(t *testing.T) {
		t.Parallel()
		before := newService(t, nil, "UANA", "UBEN", "UCAT")
		r := createPending(t, before, newRequest(), 2)
		if _, err := before.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UANA", Action: ActionApprove, ChannelID: "C1"}); err != nil {
			t.Fatal(err)
		}
		// A restart with ROLEGATE_APPROVERS=UBEN,UCAT.
		after := &Service{Store: before.Store, Policy: DefaultPolicy([]string{"UBEN", "UCAT"}, 2, ttl), IsGroup: isGroup, Now: before.Now}
		got, err := after.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UBEN", Action: ActionApprove, ChannelID: "C1"})
		if err != nil {
			t.Fatal(err)
		}
		if got.State != StatePending || len(got.Approvals) != 1 || got.Approvals[0].User != "UBEN" {
			t.Fatalf("after a removed approver's vote and one valid vote: %s with %v, want pending with UBEN's vote only", got.State, got.Approvals)
		}
		got, err = after.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UCAT", Action: ActionApprove, ChannelID: "C1"})
		if err != nil || got.State != StateApproved {
			t.Fatalf("second valid vote: %s, %v; want approved", got.State, err)
		}
	})
	t.Run("removed from the user group", func(t *testing.T) {
		t.Parallel()
		dir := &fakeDirectory{members: map[string][]string{"SOPS": {"UANA", "UBEN", "UCAT"}}}
		svc := newService(t, dir, "SOPS")
		r := createPending(t, svc, newRequest(), 2)
		if _, err := svc.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UANA", Action: ActionApprove, ChannelID: "C1"}); err != nil {
			t.Fatal(err)
		}
		dir.setMembers("SOPS", []string{"UBEN", "UCAT"})
		svc.approverSet([]string{"SOPS"}).now = func() time.Time { return time.Now().Add(time.Hour) } // the cached membership is stale
		got, err := svc.Decide(t.Context(), Decision{RequestID: r.ID, Actor: "UBEN", Action: ActionApprove, ChannelID: "C1"})
		if err != nil {
			t.Fatal(err)
		}
		if got.State != StatePending || len(got.Approvals) != 1 {
			t.Fatalf("%s with %v, want pending with one counted vote", got.State, got.Approvals)
		}
		evs := auditLines(t, svc.Store, r.ID)
		if len(evs) == 0 {
			t.Fatal("no audit")
		}
		all, _ := svc.Store.Audit(t.Context(), r.ID)
		if last := all[len(all)-1]; !strings.Contains(last.Detail, "UANA") || !strings.Contains(last.Detail, "1 of 2") {
			t.Errorf("the recount is not in the audit trail: %q", last.Detail)
		}
	})
}

// TestOneFailedGroupLookupDoesNotRefuseAnother: a member of a group that
// answers is an approver even while another approver group cannot be
// looked up.
func TestOneFailedGroupLookupDoesNotRefuseAnother(t *testing.T) {
	t.Parallel()
	dir := &splitDirectory{ok: map[string][]string{"SGOOD": {"UANA"}}}
	a := NewApprovers([]string{"SBROKEN", "SGOOD"}, isGroup, dir)
	if ok, err := a.Allows(t.Context(), "UANA"); err != nil || !ok {
		t.Errorf("member of the answering group: %v, %v; want allowed", ok, err)
	}
	if ok, err := a.Allows(t.Context(), "UEVE"); ok || err == nil {
		t.Errorf("someone no group confirms, with a lookup failing: %v, %v; want the lookup error", ok, err)
	}
}

type splitDirectory struct {
	mu sync.Mutex
	ok map[string][]string
}

func (d *splitDirectory) GroupMembers(_ context.Context, id string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.ok[id]; ok {
		return m, nil
	}
	return nil, errors.New("usergroups.users.list: internal_error")
}

// TestRequesterDenyCancels: the requester's own Deny withdraws the request
// (recorded as a cancel), even when the requester is an approver.
func TestRequesterDenyCancels(t *testing.T) {
	t.Parallel()
	r := &Request{ID: 1, State: StatePending, Requester: "UREQ", ChannelID: "C1", ExpiresAt: t0.Add(time.Hour), Required: 1}
	tr, err := Decide(r, Decision{Actor: "UREQ", Action: ActionDeny, ChannelID: "C1", Eligible: true, At: t0})
	if err != nil || r.State != StateCancelled || tr.Event.Action != ActionCancel {
		t.Fatalf("requester's Deny: %v, state %s, event %s; want cancelled, recorded as cancel", err, r.State, tr.Event.Action)
	}
}

// TestDueJobsBudgetsCallsAndMessagesApart: a backlog of OpenAI calls never
// starves Slack messages of their budget, nor the other way round.
func TestDueJobsBudgetsCallsAndMessagesApart(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var calls []uint64
	for i := range 5 {
		r := mustCreate(t, s, newRequest(func(n *NewRequest) { n.GroupID = fmt.Sprintf("group_%02d", i) }), 1)
		if _, err := s.Update(t.Context(), r.ID, 0, func(r *Request) (Transition, error) {
			return Transition{Event: Event{Actor: SystemActor, Action: ActionCheck, At: t0}, Jobs: []JobKind{JobCheck}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, r.ID)
	}
	jobs, _, err := s.DueJobs(t.Context(), t0, nil, JobLimit{Calls: 0, Messages: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Kind.Calls() || jobs[1].Kind.Calls() {
		t.Errorf("with no call budget: %+v, want two messages", jobs)
	}
	jobs, _, _ = s.DueJobs(t.Context(), t0, nil, JobLimit{Calls: 3, Messages: 0})
	if len(jobs) != 3 {
		t.Fatalf("with no message budget: %+v, want three calls", jobs)
	}
	for i, j := range jobs { // the three oldest calls, oldest first
		if !j.Kind.Calls() || j.RequestID != calls[i] {
			t.Errorf("with no message budget, job %d = %s of request %d, want the call of request %d", i, j.Kind, j.RequestID, calls[i])
		}
	}
}

// TestReasonRefusesControlCharacters: a NUL or another control character
// in a reason is refused at once (PostgreSQL's JSON cannot store a NUL);
// newlines and tabs are kept.
func TestReasonRefusesControlCharacters(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"need\x00it", "bell\a", "esc\x1b[31m", "del\x7f"} {
		if _, err := CleanReason(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CleanReason(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if got, err := CleanReason("line one\n\tline two"); err != nil || got != "line one\n\tline two" {
		t.Errorf("a reason with a newline and a tab = %q, %v", got, err)
	}
}
