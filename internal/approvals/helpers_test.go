package approvals

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// t0 is the fixed "now" of store tests: requests are created at t0 and live
// for ttl.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const ttl = 24 * time.Hour

// openStore opens the bbolt file at path and, when the test ends, checks its
// consistency (tx.Check) and closes it.
func openStore(t *testing.T, path string) *BoltStore {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// newStore opens a fresh store in the test's temporary directory.
func newStore(t *testing.T) *BoltStore {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "rolegate.db"))
}

// closeStore checks s with tx.Check and closes it. A store already closed
// is left alone, so tests may close early and still rely on the cleanup.
func closeStore(t *testing.T, s *BoltStore) {
	t.Helper()
	if err := s.Check(); err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return
		}
		t.Errorf("store %s is inconsistent: %v", s.Path(), err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close %s: %v", s.Path(), err)
	}
}

// newRequest is a valid request from UREQ in channel C1; mods adjust it.
func newRequest(mods ...func(*NewRequest)) NewRequest {
	n := NewRequest{
		Target:      Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
		Reason:      "need key rotation for incident 42",
		Requester:   "UREQ",
		TeamID:      "T1",
		ChannelID:   "C1",
		ResponseURL: "https://hooks.slack.test/commands/1",
	}
	for _, m := range mods {
		m(&n)
	}
	return n
}

// mustCreate stores a new request made at t0 with the given quorum.
func mustCreate(t *testing.T, s Store, n NewRequest, required int) Request {
	t.Helper()
	return mustCreateAt(t, s, n, t0, required)
}

func mustCreateAt(t *testing.T, s Store, n NewRequest, now time.Time, required int) Request {
	t.Helper()
	r, created, err := s.Create(t.Context(), n, now, 0, pendingStart(now, ttl, required))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !created {
		t.Fatalf("Create: created = false for a new request")
	}
	return r
}

func mustGet(t *testing.T, s Store, id uint64) Request {
	t.Helper()
	r, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return r
}

func mustDecide(t *testing.T, s Store, id uint64, actor string, action Action, now time.Time) Request {
	t.Helper()
	r, err := storeDecide(s, t.Context(), id, actor, action, "C1", true, now)
	if err != nil {
		t.Fatalf("Decide(%d, %s, %s): %v", id, actor, action, err)
	}
	return r
}

// auditLine renders an event as "actor action", the part a reader of the
// trail relies on.
func auditLine(e Event) string { return e.Actor + " " + string(e.Action) }

func auditLines(t *testing.T, s Store, id uint64) []string {
	t.Helper()
	evs, err := s.Audit(t.Context(), id)
	if err != nil {
		t.Fatalf("Audit(%d): %v", id, err)
	}
	var out []string
	for _, e := range evs {
		if e.RequestID != id {
			t.Errorf("Audit(%d) returned event %d of request %d", id, e.ID, e.RequestID)
		}
		out = append(out, auditLine(e))
	}
	return out
}

func mustPendingJobs(t *testing.T, s Store) int {
	t.Helper()
	n, err := pendingJobs(s, t.Context())
	if err != nil {
		t.Fatalf("PendingJobs: %v", err)
	}
	return n
}

// farFuture is a time at which every job is due.
var farFuture = time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)

// drainJobs takes request id's jobs out of the outbox one by one through
// DueJobs (which hands out only a request's first job) and returns their
// kinds in the order they were handed out.
func drainJobs(t *testing.T, s Store, id uint64) []JobKind {
	t.Helper()
	var kinds []JobKind
	for range 100 {
		j, ok := firstJob(t, s, id)
		if !ok {
			return kinds
		}
		kinds = append(kinds, j.Kind)
		if err := s.CompleteJob(t.Context(), j.ID); err != nil {
			t.Fatalf("CompleteJob(%d): %v", j.ID, err)
		}
	}
	t.Fatalf("request %d has more than 100 jobs", id)
	return nil
}

// firstJob returns request id's oldest job that DueJobs hands out, whenever
// due, checking that DueJobs hands out at most one job per lane.
func firstJob(t *testing.T, s Store, id uint64) (Job, bool) {
	t.Helper()
	jobs, _, err := s.DueJobs(t.Context(), farFuture, nil, Each(1000))
	if err != nil {
		t.Fatalf("DueJobs: %v", err)
	}
	found := false
	var out Job
	lanes := map[uint64]uint64{}
	for _, j := range jobs {
		if j.RequestID != id {
			continue
		}
		if other, dup := lanes[j.Lane()]; dup {
			t.Fatalf("DueJobs returned two jobs (%d and %d) of one lane of request %d", other, j.ID, id)
		}
		lanes[j.Lane()] = j.ID
		if !found || j.ID < out.ID {
			out, found = j, true
		}
	}
	return out, found
}

// waitFor polls cond until it holds, failing the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSettled waits until request id is in a final state and the outbox is
// empty: the worker has nothing left to do.
func waitSettled(t *testing.T, s Store, id uint64) Request {
	t.Helper()
	var r Request
	waitFor(t, fmt.Sprintf("request %d to settle", id), func() bool {
		var err error
		r, err = s.Get(t.Context(), id)
		if err != nil {
			t.Fatalf("Get(%d): %v", id, err)
		}
		return (r.State.Final() || r.State == StateApplied) && mustPendingJobs(t, s) == 0
	})
	return r
}

// fakeGranter stands in for OpenAI: it remembers which targets hold the role
// and, like the real adapter, reports an existing assignment instead of
// assigning again. hook, when set, runs before the POST of each call that
// still has to assign; an error from it is returned as the call's result.
type fakeGranter struct {
	mu       sync.Mutex
	assigned map[Target]bool
	calls    int // Assign calls
	posts    int // assignments actually made
	hook     func(ctx context.Context, call int, t Target) error
}

func (g *fakeGranter) Assign(ctx context.Context, t Target) (Assignment, error) {
	g.mu.Lock()
	g.calls++
	call := g.calls
	already := g.assigned[t]
	hook := g.hook
	g.mu.Unlock()
	if already {
		return assignmentFor(t, true), nil
	}
	if err := ctx.Err(); err != nil {
		return Assignment{}, err // an HTTP client sends nothing on a dead context
	}
	if hook != nil {
		if err := hook(ctx, call, t); err != nil {
			return Assignment{}, err
		}
	}
	g.post(t)
	return assignmentFor(t, false), nil
}

// post makes the assignment, as a POST that reached OpenAI does.
func (g *fakeGranter) post(t Target) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.assigned == nil {
		g.assigned = map[Target]bool{}
	}
	if !g.assigned[t] {
		g.assigned[t] = true
		g.posts++
	}
}

func (g *fakeGranter) counts() (calls, posts int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.posts
}

func assignmentFor(t Target, already bool) Assignment {
	return Assignment{
		Group: Group{ID: t.GroupID, Name: "Incident responders", CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), SCIMManaged: true},
		Role: Role{ID: t.RoleID, Name: "Key rotator", Description: "Rotates API keys", Permissions: []string{"api.keys.read", "api.keys.write"},
			ResourceType: "api.project", Predefined: false},
		AlreadyAssigned: already,
	}
}

// delivery is one message a fakeNotifier delivered: its kind and the state
// of the request it showed.
type delivery struct {
	Kind  JobKind
	State State
}

func (d delivery) String() string { return string(d.Kind) + "(" + string(d.State) + ")" }

// fakeNotifier stands in for Slack. fail, when set, is asked before each
// delivery (attempt counts from 1 per request and kind); its error is
// returned instead of delivering.
type fakeNotifier struct {
	mu        sync.Mutex
	delivered map[uint64][]delivery
	order     []uint64 // request ids in delivery order
	attempts  map[string]int
	told      map[uint64][]string  // notes told to requesters
	postings  map[string][]Posting // "id/kind" → what each attempt was told of earlier ones
	fail      func(kind JobKind, r Request, attempt int) error
}

// posting records what the Worker said of a post's earlier attempts.
func (n *fakeNotifier) posting(kind JobKind, r Request, p Posting) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.postings == nil {
		n.postings = map[string][]Posting{}
	}
	key := fmt.Sprintf("%d/%s", r.ID, kind)
	n.postings[key] = append(n.postings[key], p)
}

// postingsOf returns what each attempt to post request id's message of
// kind was told of earlier attempts, in order.
func (n *fakeNotifier) postingsOf(id uint64, kind JobKind) []Posting {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.postings[fmt.Sprintf("%d/%s", id, kind)])
}

func (n *fakeNotifier) try(kind JobKind, r Request) error {
	n.mu.Lock()
	if n.attempts == nil {
		n.attempts = map[string]int{}
	}
	key := fmt.Sprintf("%d/%s", r.ID, kind)
	n.attempts[key]++
	attempt := n.attempts[key]
	fail := n.fail
	n.mu.Unlock()
	if fail != nil {
		if err := fail(kind, r, attempt); err != nil {
			return err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.delivered == nil {
		n.delivered = map[uint64][]delivery{}
	}
	n.delivered[r.ID] = append(n.delivered[r.ID], delivery{Kind: kind, State: r.State})
	n.order = append(n.order, r.ID)
	if kind == JobTellRequester {
		if n.told == nil {
			n.told = map[uint64][]string{}
		}
		n.told[r.ID] = append(n.told[r.ID], r.Note)
	}
	return nil
}

func (n *fakeNotifier) PostApproval(ctx context.Context, r Request, p Posting) (string, error) {
	n.posting(JobPostApproval, r, p)
	if err := n.try(JobPostApproval, r); err != nil {
		return "", err
	}
	return fmt.Sprintf("1700000000.%06d", r.ID), nil
}

func (n *fakeNotifier) UpdateApproval(ctx context.Context, r Request) error {
	if r.MessageTS == "" {
		return errors.New("update without a message ts")
	}
	return n.try(JobUpdateApproval, r)
}

func (n *fakeNotifier) PostResult(ctx context.Context, r Request, p Posting) error {
	n.posting(JobPostResult, r, p)
	return n.try(JobPostResult, r)
}

func (n *fakeNotifier) TellRequester(ctx context.Context, r Request) error {
	return n.try(JobTellRequester, r)
}

func (n *fakeNotifier) DMRequester(ctx context.Context, r Request, state State) error {
	return n.try(NotifyRequester(state), r)
}

func (n *fakeNotifier) PostDenial(ctx context.Context, r Request, p Posting) error {
	n.posting(JobPostDenial, r, p)
	return n.try(JobPostDenial, r)
}

func (n *fakeNotifier) Remind(ctx context.Context, r Request, p Posting) error {
	n.posting(JobRemind, r, p)
	return n.try(JobRemind, r)
}

func (n *fakeNotifier) PostRevocation(ctx context.Context, r Request, p Posting) error {
	n.posting(JobPostRevocation, r, p)
	return n.try(JobPostRevocation, r)
}

func (n *fakeNotifier) WarnRequester(ctx context.Context, r Request) error {
	return n.try(JobWarnRequester, r)
}

func (n *fakeNotifier) NotifyApprovers(ctx context.Context, r Request) error {
	return n.try(JobNotifyApprovers, r)
}

// deliveries returns the messages about request id in its channel and
// privately through response_url, in order; the direct messages of
// NotifyRequester jobs are left out (see dms).
func (n *fakeNotifier) deliveries(id uint64) []delivery {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []delivery
	for _, d := range n.delivered[id] {
		if _, dm := d.Kind.Reports(); !dm {
			out = append(out, d)
		}
	}
	return out
}

// dms returns the states the direct messages about request id reported, in
// the order they were sent.
func (n *fakeNotifier) dms(id uint64) []State {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []State
	for _, d := range n.delivered[id] {
		if s, dm := d.Kind.Reports(); dm {
			out = append(out, s)
		}
	}
	return out
}

func (n *fakeNotifier) attemptsOf(id uint64, kind JobKind) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attempts[fmt.Sprintf("%d/%s", id, kind)]
}

func (n *fakeNotifier) delivery(id uint64, kind JobKind) bool {
	return slices.ContainsFunc(n.deliveries(id), func(d delivery) bool { return d.Kind == kind })
}

func formatDeliveries(ds []delivery) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// countingObserver records the Worker's outcomes.
type countingObserver struct {
	mu      sync.Mutex
	grants  map[string]int
	revokes map[string]int
}

func (o *countingObserver) Revoke(outcome string, _ int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.revokes == nil {
		o.revokes = map[string]int{}
	}
	o.revokes[outcome]++
}

func (o *countingObserver) revoke(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.revokes[outcome]
}

func (o *countingObserver) Grant(outcome string, _ int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.grants == nil {
		o.grants = map[string]int{}
	}
	o.grants[outcome]++
}

func (o *countingObserver) Delivery(JobKind, string) {}
func (o *countingObserver) Store(string)             {}
func (o *countingObserver) Quarantine(string)        {}

func (o *countingObserver) grant(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.grants[outcome]
}

// startWorker runs w until the returned stop is called or the test ends.
// stop waits for Run to return and fails the test if it returned an error.
func startWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Worker.Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Worker.Run did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// newWorker is a Worker on s with fast retries.
func newWorker(s *BoltStore, g Granter, n Notifier) *Worker {
	return &Worker{
		Store:       s,
		Granter:     g,
		Notifier:    n,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		CallTimeout: 5 * time.Second,
	}
}

// pendingStart is the start function of a request that goes straight to
// pending with the given ttl and quorum, as Service.Create does without a
// policy.
func pendingStart(now time.Time, ttl time.Duration, required int) func(*Request) Transition {
	return func(r *Request) Transition {
		r.State, r.Rule, r.Approvers, r.Required = StatePending, DefaultRule, []string{"UANA", "UBEN"}, required
		r.ExpiresAt = now.Add(ttl)
		return Transition{Event: Event{At: now}, Jobs: []JobKind{JobPostApproval}}
	}
}

// storeDecide applies one decision straight through the store, as
// Service.Decide does after its approver checks.
func storeDecide(s Store, ctx context.Context, id uint64, actor string, action Action, channel string, eligible bool, now time.Time) (Request, error) {
	d := Decision{RequestID: id, Actor: actor, Action: action, ChannelID: channel, Eligible: eligible, At: now}
	return s.Update(ctx, id, 0, func(r *Request) (Transition, error) { return Decide(r, d) })
}

// expireDue runs the due wakes at now, as the worker does, returning the
// ids that expired and the next wake.
func expireDue(s Store, ctx context.Context, now time.Time) (expired []uint64, next time.Time, err error) {
	if err := s.Sweep(ctx, now); err != nil {
		return nil, time.Time{}, err
	}
	ids, next, err := s.DueWakes(ctx, now, 1000)
	if err != nil {
		return nil, time.Time{}, err
	}
	for _, id := range ids {
		r, err := s.Update(ctx, id, 0, func(r *Request) (Transition, error) { return Tick(r, now), nil })
		if err != nil {
			return expired, next, err
		}
		if r.State == StateExpired {
			expired = append(expired, id)
		}
	}
	_, next, err = s.DueWakes(ctx, now, 1000)
	return expired, next, err
}

func countOpen(s Store, ctx context.Context) (pending, approved int, err error) {
	c, err := s.Counts(ctx)
	return c.Open[StatePending], c.Open[StateApproved], err
}

func pendingJobs(s Store, ctx context.Context) (int, error) {
	c, err := s.Counts(ctx)
	return c.Jobs, err
}

// isGroup treats S… ids as user groups, as the Slack adapter does.
func isGroup(id string) bool { return strings.HasPrefix(id, "S") }
