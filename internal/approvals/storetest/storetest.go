// Package storetest is the conformance suite of approvals.Store: what every
// engine (bbolt, PostgreSQL) must guarantee, tested through the interface
// only. Each engine's tests call Run with a function that opens a fresh,
// empty store for one test.
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// T0 is the fixed "now" of the suite: requests are created at T0 and live
// for TTL.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TTL is how long the suite's requests stay pending.
const TTL = 24 * time.Hour

// farFuture is a time at which every job is due.
var farFuture = time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)

// Run runs the suite. open returns a new, empty store for t; closing it is
// open's business (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) approvals.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s approvals.Store)
	}{
		{"CreateStoresRequestEventAndJob", testCreate},
		{"CreateRejectsInvalid", testCreateRejects},
		{"CreateTriggerReplayReturnsFirst", testTriggerReplay},
		{"ConcurrentTriggerReplayCreatesOne", testConcurrentTriggerReplay},
		{"ConcurrentCreatesGetDistinctIDs", testConcurrentCreates},
		{"CreateLimitPerRequester", testLimit},
		{"ConcurrentCreatesHonourLimit", testConcurrentLimit},
		{"ConcurrentApprovalsDecideOnce", testConcurrentApprovals},
		{"UpdateCompletesJobEvenWhenRefused", testUpdateDoneJob},
		{"UpdateRoundTripsEveryField", testRoundTrip},
		{"DueJobsOrderLanesAndRetry", testDueJobs},
		{"DueWakesExpireOnce", testWakes},
		{"List", testList},
		{"QuarantineMovesAside", testQuarantine},
		{"AuditInOrder", testAuditOrder},
		{"UpdateGrantSeesTheOtherGrants", testUpdateGrant},
		{"AuditChainVerifies", testAuditChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// NewRequest is a valid request from UREQ in channel C1; mods adjust it.
func NewRequest(mods ...func(*approvals.NewRequest)) approvals.NewRequest {
	n := approvals.NewRequest{
		Target:      approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
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

// PendingStart is the start function of a request that goes straight to
// pending with the given ttl and quorum, as Service.Create does without a
// policy.
func PendingStart(now time.Time, ttl time.Duration, required int) func(*approvals.Request) approvals.Transition {
	return func(r *approvals.Request) approvals.Transition {
		r.State, r.Rule, r.Approvers, r.Required = approvals.StatePending, approvals.DefaultRule, []string{"UANA", "UBEN"}, required
		r.ExpiresAt = now.Add(ttl)
		return approvals.Transition{Event: approvals.Event{At: now}, Jobs: []approvals.JobKind{approvals.JobPostApproval}}
	}
}

func mustCreate(t *testing.T, s approvals.Store, n approvals.NewRequest, now time.Time, required int) approvals.Request {
	t.Helper()
	r, created, err := s.Create(t.Context(), n, now, 0, PendingStart(now, TTL, required))
	if err != nil || !created {
		t.Fatalf("Create: created %v, %v", created, err)
	}
	return r
}

func mustGet(t *testing.T, s approvals.Store, id uint64) approvals.Request {
	t.Helper()
	r, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return r
}

// Decide applies one decision through the store, as Service.Decide does
// after its approver checks.
func Decide(t *testing.T, s approvals.Store, id uint64, actor string, action approvals.Action, now time.Time) (approvals.Request, error) {
	t.Helper()
	d := approvals.Decision{RequestID: id, Actor: actor, Action: action, ChannelID: "C1", Eligible: true, At: now}
	return s.Update(t.Context(), id, 0, func(r *approvals.Request) (approvals.Transition, error) { return approvals.Decide(r, d) })
}

func mustDecide(t *testing.T, s approvals.Store, id uint64, actor string, action approvals.Action, now time.Time) {
	t.Helper()
	if _, err := Decide(t, s, id, actor, action, now); err != nil {
		t.Fatalf("Decide(%d, %s, %s): %v", id, actor, action, err)
	}
}

func auditLines(t *testing.T, s approvals.Store, id uint64) []string {
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
		out = append(out, e.Actor+" "+string(e.Action))
	}
	return out
}

func jobCount(t *testing.T, s approvals.Store) int {
	t.Helper()
	c, err := s.Counts(t.Context())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c.Jobs
}

// DrainJobs takes request id's jobs out of the outbox one by one through
// DueJobs and returns their kinds in the order they were handed out.
func DrainJobs(t *testing.T, s approvals.Store, id uint64) []approvals.JobKind {
	t.Helper()
	var kinds []approvals.JobKind
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

// firstJob returns request id's oldest job that DueJobs hands out, checking
// that it hands out at most one job per lane.
func firstJob(t *testing.T, s approvals.Store, id uint64) (approvals.Job, bool) {
	t.Helper()
	jobs, _, err := s.DueJobs(t.Context(), farFuture, nil, approvals.Each(1000))
	if err != nil {
		t.Fatalf("DueJobs: %v", err)
	}
	found := false
	var out approvals.Job
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

func changed(s approvals.Store) bool {
	select {
	case <-s.Changes():
		return true
	default:
		return false
	}
}

func testCreate(t *testing.T, s approvals.Store) {
	changed(s) // whatever opening signalled
	r, created, err := s.Create(t.Context(), NewRequest(), T0, 0, PendingStart(T0, TTL, 2))
	if err != nil || !created {
		t.Fatalf("Create = %v, created %v", err, created)
	}
	want := approvals.Request{
		ID: r.ID, State: approvals.StatePending, Target: approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
		Ask:  approvals.Ask{Project: "proj_abc", Group: "group_01", Role: "role_01"},
		Rule: approvals.DefaultRule, Approvers: []string{"UANA", "UBEN"},
		Reason: "need key rotation for incident 42", Requester: "UREQ", TeamID: "T1", ChannelID: "C1",
		ResponseURL: "https://hooks.slack.test/commands/1", CreatedAt: T0, ExpiresAt: T0.Add(TTL), Required: 2,
	}
	if r.ID == 0 || !reflect.DeepEqual(r, want) {
		t.Errorf("Create returned\n%+v\nwant\n%+v", r, want)
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create"}) {
		t.Errorf("audit = %q", got)
	}
	if !changed(s) {
		t.Errorf("Create did not signal Changes, so the worker would not wake")
	}
	if got := DrainJobs(t, s, r.ID); !slices.Equal(got, []approvals.JobKind{approvals.JobPostApproval}) {
		t.Errorf("jobs = %v, want [post_approval]", got)
	}
}

func testCreateRejects(t *testing.T, s approvals.Store) {
	for _, n := range []approvals.NewRequest{
		NewRequest(func(n *approvals.NewRequest) { n.ProjectID = "../x" }),
		NewRequest(func(n *approvals.NewRequest) { n.Reason = "   " }),
		NewRequest(func(n *approvals.NewRequest) { n.Requester = "" }),
	} {
		if _, created, err := s.Create(t.Context(), n, T0, 0, PendingStart(T0, TTL, 1)); !errors.Is(err, approvals.ErrInvalid) || created {
			t.Errorf("Create(%+v) = %v, created %v; want ErrInvalid", n, err, created)
		}
	}
	if rs, _ := s.List(t.Context(), approvals.ListOptions{}); len(rs) != 0 || jobCount(t, s) != 0 {
		t.Errorf("refused requests left %d requests and %d jobs", len(rs), jobCount(t, s))
	}
}

func testTriggerReplay(t *testing.T, s approvals.Store) {
	trig := func(id string) func(*approvals.NewRequest) { return func(n *approvals.NewRequest) { n.TriggerID = id } }
	first := mustCreate(t, s, NewRequest(trig("trig.1")), T0, 1)
	later := T0.Add(3 * time.Second)
	again, created, err := s.Create(t.Context(), NewRequest(trig("trig.1")), later, 0, PendingStart(later, TTL, 1))
	if err != nil || created {
		t.Fatalf("replay: created %v, %v; want the first request back", created, err)
	}
	if !reflect.DeepEqual(again, first) {
		t.Errorf("replay returned\n%+v\nwant\n%+v", again, first)
	}
	if rs, _ := s.List(t.Context(), approvals.ListOptions{}); len(rs) != 1 {
		t.Errorf("replay stored another request: %d requests", len(rs))
	}
	if n := jobCount(t, s); n != 1 {
		t.Errorf("outbox has %d jobs after a replay, want 1", n)
	}
	if got := auditLines(t, s, first.ID); len(got) != 1 {
		t.Errorf("audit after replay = %q, want one create", got)
	}
	if other := mustCreate(t, s, NewRequest(trig("trig.2")), T0, 1); other.ID == first.ID {
		t.Errorf("a different trigger returned request %d again", first.ID)
	}
	if none := mustCreate(t, s, NewRequest(), T0, 1); none.ID == first.ID {
		t.Errorf("a command without a trigger id reused request %d", none.ID)
	}
	// The sweep forgets trigger ids after a few minutes.
	hour := T0.Add(time.Hour)
	if err := s.Sweep(t.Context(), hour); err != nil {
		t.Fatal(err)
	}
	late, created, err := s.Create(t.Context(), NewRequest(trig("trig.1")), hour, 0, PendingStart(hour, TTL, 1))
	if err != nil || !created || late.ID == first.ID {
		t.Errorf("trigger reuse an hour later: request %d, created %v, %v; want a new request", late.ID, created, err)
	}
}

func testConcurrentTriggerReplay(t *testing.T, s approvals.Store) {
	const n = 10
	ids := make([]uint64, n)
	var created int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, c, err := s.Create(t.Context(), NewRequest(func(nr *approvals.NewRequest) { nr.TriggerID = "same" }), T0, 0, PendingStart(T0, TTL, 1))
			if err != nil {
				t.Errorf("Create %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[i] = r.ID
			if c {
				created++
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("%d deliveries of one command created a request, want 1", created)
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Errorf("delivery %d got request %d, delivery 0 got %d", i, id, ids[0])
		}
	}
	if rs, _ := s.List(t.Context(), approvals.ListOptions{}); len(rs) != 1 || jobCount(t, s) != 1 {
		t.Errorf("stored %d requests and %d jobs, want 1 and 1", len(rs), jobCount(t, s))
	}
}

func testConcurrentCreates(t *testing.T, s approvals.Store) {
	const n = 40
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, created, err := s.Create(t.Context(), NewRequest(func(nr *approvals.NewRequest) {
				nr.TriggerID = fmt.Sprintf("trig.%d", i)
				nr.Reason = fmt.Sprintf("reason %d", i)
			}), T0, 0, PendingStart(T0, TTL, 1))
			if err != nil || !created {
				t.Errorf("Create %d: created %v, %v", i, created, err)
				return
			}
			if r.Reason != fmt.Sprintf("reason %d", i) {
				t.Errorf("Create %d returned another caller's request (reason %q)", i, r.Reason)
			}
			ids[i] = r.ID
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i, id := range ids {
		if id == 0 || seen[id] {
			t.Errorf("Create %d got id %d, which is zero or taken", i, id)
		}
		seen[id] = true
	}
	if rs, _ := s.List(t.Context(), approvals.ListOptions{}); len(rs) != n || jobCount(t, s) != n {
		t.Errorf("stored %d requests and %d jobs, want %d each", len(rs), jobCount(t, s), n)
	}
}

func testLimit(t *testing.T, s approvals.Store) {
	var ids []uint64
	for range 3 {
		r, _, err := s.Create(t.Context(), NewRequest(), T0, 3, PendingStart(T0, TTL, 1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	_, created, err := s.Create(t.Context(), NewRequest(), T0, 3, PendingStart(T0, TTL, 1))
	var tm *approvals.TooManyOpenError
	if !errors.As(err, &tm) || created || tm.Limit != 3 || !slices.Equal(tm.Open, ids) {
		t.Fatalf("fourth Create = %v (%+v), created %v; want TooManyOpenError listing %v", err, tm, created, ids)
	}
	// Someone else is not limited by UREQ's requests.
	if _, _, err := s.Create(t.Context(), NewRequest(func(n *approvals.NewRequest) { n.Requester = "UOTHER" }), T0, 3, PendingStart(T0, TTL, 1)); err != nil {
		t.Errorf("another requester refused: %v", err)
	}
	// An approved request no longer counts.
	mustDecide(t, s, ids[0], "UANA", approvals.ActionApprove, T0.Add(time.Minute))
	if _, created, err := s.Create(t.Context(), NewRequest(), T0, 3, PendingStart(T0, TTL, 1)); err != nil || !created {
		t.Errorf("Create after one was approved = %v, created %v", err, created)
	}
}

func testConcurrentLimit(t *testing.T, s approvals.Store) {
	const n, limit = 12, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, refused int
	for range n {
		wg.Go(func() {
			_, created, err := s.Create(t.Context(), NewRequest(), T0, limit, PendingStart(T0, TTL, 1))
			var tm *approvals.TooManyOpenError
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && created:
				ok++
			case errors.As(err, &tm):
				refused++
			default:
				t.Errorf("Create: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != limit || refused != n-limit {
		t.Errorf("%d created, %d refused; want exactly %d created", ok, refused, limit)
	}
}

func testConcurrentApprovals(t *testing.T, s approvals.Store) {
	r := mustCreate(t, s, NewRequest(), T0, 1)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = Decide(t, s, r.ID, fmt.Sprintf("UAPP%02d", i), approvals.ActionApprove, T0.Add(time.Minute))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		var np *approvals.NotPendingError
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("approvers %d and %d both succeeded", winner, i)
			}
			winner = i
		case errors.As(err, &np):
			if np.Request.State != approvals.StateApproved {
				t.Errorf("approver %d: NotPendingError carries state %s", i, np.Request.State)
			}
		default:
			t.Errorf("approver %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no approval succeeded")
	}
	got := mustGet(t, s, r.ID)
	if want := fmt.Sprintf("UAPP%02d", winner); got.Decider != want || len(got.Approvals) != 1 {
		t.Errorf("stored decider %q votes %+v, want only %s", got.Decider, got.Approvals, want)
	}
	if got := auditLines(t, s, r.ID); len(got) != 2 {
		t.Errorf("audit = %q, want create and one approve", got)
	}
	assigns := 0
	for _, k := range DrainJobs(t, s, r.ID) {
		if k == approvals.JobAssign {
			assigns++
		}
	}
	if assigns != 1 {
		t.Errorf("%d assign jobs queued, want exactly 1", assigns)
	}
}

func testUpdateDoneJob(t *testing.T, s approvals.Store) {
	r := mustCreate(t, s, NewRequest(), T0, 1)
	j, ok := firstJob(t, s, r.ID)
	if !ok {
		t.Fatal("no job for a new request")
	}
	// A refusal with no change still completes the job.
	refuse := errors.New("refused")
	got, err := s.Update(t.Context(), r.ID, j.ID, func(*approvals.Request) (approvals.Transition, error) {
		return approvals.Transition{}, refuse
	})
	if !errors.Is(err, refuse) || got.ID != r.ID {
		t.Errorf("Update = %+v, %v; want the request and change's error", got, err)
	}
	if n := jobCount(t, s); n != 0 {
		t.Errorf("%d jobs left after Update completed the only one", n)
	}
	// A missing request: ErrNotFound, and the job is still done.
	r2 := mustCreate(t, s, NewRequest(), T0, 1)
	j2, _ := firstJob(t, s, r2.ID)
	if _, err := s.Update(t.Context(), 999999, j2.ID, func(*approvals.Request) (approvals.Transition, error) {
		t.Error("change ran for a missing request")
		return approvals.Transition{}, nil
	}); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Update of a missing request = %v, want ErrNotFound", err)
	}
	if n := jobCount(t, s); n != 0 {
		t.Errorf("%d jobs left after Update of a missing request", n)
	}
	// A refusal that records a change (expiry) writes it.
	_, err = Decide(t, s, r2.ID, "UANA", approvals.ActionApprove, T0.Add(2*TTL))
	if !errors.Is(err, approvals.ErrExpired) || mustGet(t, s, r2.ID).State != approvals.StateExpired {
		t.Errorf("late approval = %v, state %s; want ErrExpired and expired", err, mustGet(t, s, r2.ID).State)
	}
}

func testRoundTrip(t *testing.T, s approvals.Store) {
	r := mustCreate(t, s, NewRequest(), T0, 2)
	at := func(m int) time.Time { return T0.Add(time.Duration(m)*time.Minute + 123456789*time.Nanosecond) }
	var want approvals.Request
	_, err := s.Update(t.Context(), r.ID, 0, func(x *approvals.Request) (approvals.Transition, error) {
		x.State = approvals.StateApplied
		x.Ask = approvals.Ask{Project: "Support Project", Group: "Support Team", Role: "Key Manager"}
		x.Preview = &approvals.Preview{Project: approvals.Project{ID: "proj_abc", Name: "Support Project"},
			Group: approvals.Group{ID: "group_01", Name: "Support Team", CreatedAt: at(1), SCIMManaged: true},
			Role:  approvals.Role{ID: "role_01", Name: "Key Manager", Description: "keys", Permissions: []string{"a", "b"}, ResourceType: "api.project"}}
		x.MessageTS = "1700000000.000100"
		x.Approvals = []approvals.Vote{{User: "UANA", At: at(2)}, {User: "UBEN", At: at(3)}}
		x.Decider, x.DecidedAt, x.Note, x.DenyReason = "UBEN", at(3), "a note", "a reason"
		x.Assignment = &approvals.Assignment{Group: x.Preview.Group, Role: x.Preview.Role, AlreadyAssigned: true}
		x.Failure = &approvals.Failure{Status: 429, Message: "slow down", Type: "rate_limit_error", Code: "c", Param: "p", RequestID: "req_1"}
		x.FinishedAt = at(4)
		want = *x
		return approvals.Transition{Event: approvals.Event{Actor: "rolegate", Action: approvals.ActionApply, At: at(4), Detail: "assigned"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("stored and read back\n got %+v\nwant %+v", got, want)
	}
	evs, err := s.Audit(t.Context(), r.ID)
	if err != nil || len(evs) != 2 || !evs[1].At.Equal(at(4)) || evs[1].Detail != "assigned" || evs[1].Actor != "rolegate" {
		t.Errorf("audit = %+v, %v; want the apply event with its exact time", evs, err)
	}
}

func testDueJobs(t *testing.T, s approvals.Store) {
	a := mustCreate(t, s, NewRequest(), T0, 1)
	b := mustCreate(t, s, NewRequest(), T0, 1)
	mustDecide(t, s, a.ID, "UANA", approvals.ActionApprove, T0.Add(time.Minute))

	jobs, next, err := s.DueJobs(t.Context(), T0, nil, approvals.Each(10))
	if err != nil {
		t.Fatal(err)
	}
	// OpenAI calls first, then one message per request, oldest first; a's
	// update waits for its post.
	if len(jobs) != 3 || jobs[0].RequestID != a.ID || jobs[0].Kind != approvals.JobAssign ||
		jobs[1].RequestID != a.ID || jobs[1].Kind != approvals.JobPostApproval || jobs[2].RequestID != b.ID || !next.IsZero() {
		t.Fatalf("DueJobs = %+v next %v, want a's call, then one message per request, oldest first", jobs, next)
	}
	callA := approvals.Job{RequestID: a.ID, Kind: approvals.JobAssign}.Lane()
	messagesA := approvals.Job{RequestID: a.ID}.Lane()
	if jobs, _, _ := s.DueJobs(t.Context(), T0, map[uint64]bool{callA: true, messagesA: true}, approvals.Each(10)); len(jobs) != 1 || jobs[0].RequestID != b.ID {
		t.Errorf("DueJobs with request %d busy = %+v", a.ID, jobs)
	}
	if jobs, _, _ := s.DueJobs(t.Context(), T0, map[uint64]bool{messagesA: true}, approvals.Each(10)); len(jobs) != 2 || jobs[0].Kind != approvals.JobAssign || jobs[1].RequestID != b.ID {
		t.Errorf("DueJobs with request %d's messages busy = %+v, want its OpenAI call still handed out", a.ID, jobs)
	}
	// Calls and messages have budgets of their own: a full one holds back
	// nothing of the other.
	if jobs, _, _ := s.DueJobs(t.Context(), T0, nil, approvals.JobLimit{Calls: 1}); len(jobs) != 1 || jobs[0].Kind != approvals.JobAssign {
		t.Errorf("DueJobs{Calls: 1} = %+v, want only the OpenAI call", jobs)
	}
	if jobs, _, _ := s.DueJobs(t.Context(), T0, nil, approvals.JobLimit{Messages: 1}); len(jobs) != 1 || jobs[0].Kind != approvals.JobPostApproval || jobs[0].RequestID != a.ID {
		t.Errorf("DueJobs{Messages: 1} = %+v, want only request %d's post, the oldest message", jobs, a.ID)
	}
	if jobs, _, _ := s.DueJobs(t.Context(), T0, nil, approvals.JobLimit{Calls: 1, Messages: 1}); len(jobs) != 2 || jobs[0].Kind != approvals.JobAssign || jobs[1].RequestID != a.ID {
		t.Errorf("DueJobs{1, 1} = %+v, want the OpenAI call and the oldest message", jobs)
	}
	// A job waiting for a retry holds back its lane, not other lanes.
	j := jobs[1]
	j.Attempts, j.NotBefore, j.LastError = 1, T0.Add(time.Minute), "ratelimited"
	if err := s.RetryJob(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	jobs, next, _ = s.DueJobs(t.Context(), T0, nil, approvals.Each(10))
	if len(jobs) != 2 || jobs[0].Kind != approvals.JobAssign || jobs[1].RequestID != b.ID || !next.Equal(T0.Add(time.Minute)) {
		t.Errorf("DueJobs with request %d's post waiting = %+v next %v", a.ID, jobs, next)
	}
	jobs, _, _ = s.DueJobs(t.Context(), T0.Add(time.Minute), nil, approvals.Each(10))
	if len(jobs) != 3 || jobs[1].ID != j.ID || jobs[1].Attempts != 1 || jobs[1].LastError != "ratelimited" || !jobs[1].NotBefore.Equal(j.NotBefore) {
		t.Errorf("DueJobs after the wait = %+v, want the retried job with its attempt recorded", jobs)
	}
	// RetryJob of a completed job does not bring it back.
	if err := s.CompleteJob(t.Context(), j.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryJob(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	if got := DrainJobs(t, s, a.ID); !slices.Equal(got, []approvals.JobKind{approvals.JobUpdateApproval, approvals.JobAssign, approvals.NotifyRequester(approvals.StateApproved)}) {
		t.Errorf("request %d jobs = %v after its post job completed", a.ID, got)
	}
}

func testWakes(t *testing.T, s approvals.Store) {
	create := func(at time.Time) approvals.Request { return mustCreate(t, s, NewRequest(), at, 1) }
	old := create(T0)
	approved := create(T0)
	edge := create(T0.Add(time.Hour))
	later := create(T0.Add(3 * time.Hour))
	soon := create(T0.Add(2 * time.Hour))
	mustDecide(t, s, approved.ID, "UANA", approvals.ActionApprove, T0.Add(time.Minute))
	now := T0.Add(TTL + time.Hour)

	expire := func() (expired []uint64, next time.Time) {
		ids, _, err := s.DueWakes(t.Context(), now, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			r, err := s.Update(t.Context(), id, 0, func(r *approvals.Request) (approvals.Transition, error) { return approvals.Tick(r, now), nil })
			if err != nil {
				t.Fatal(err)
			}
			if r.State == approvals.StateExpired && r.FinishedAt.Equal(now) && len(auditLines(t, s, id)) == 2 {
				expired = append(expired, id)
			}
		}
		_, next, err = s.DueWakes(t.Context(), now, 100)
		if err != nil {
			t.Fatal(err)
		}
		return expired, next
	}
	// Two replicas sweeping at once expire each request once.
	var wg sync.WaitGroup
	results := make([][]uint64, 2)
	for i := range results {
		wg.Go(func() { results[i], _ = expire() })
	}
	wg.Wait()
	// Both may see a request expired; its audit trail shows who did it once.
	got := slices.Compact(slices.Sorted(slices.Values(append(results[0], results[1]...))))
	if want := []uint64{old.ID, edge.ID}; !slices.Equal(got, want) {
		t.Errorf("expired %v, want %v", got, want)
	}
	for _, id := range []uint64{old.ID, edge.ID} {
		if lines := auditLines(t, s, id); !slices.Equal(lines, []string{"UREQ create", "rolegate expire"}) {
			t.Errorf("request %d audit = %q, want one expiry", id, lines)
		}
	}
	again, next := expire()
	if len(again) != 0 || !next.Equal(soon.ExpiresAt) {
		t.Errorf("second sweep: expired %v, next %v; want nothing, next %v", again, next, soon.ExpiresAt)
	}
	for id, want := range map[uint64]approvals.State{approved.ID: approvals.StateApproved, later.ID: approvals.StatePending, soon.ID: approvals.StatePending} {
		if got := mustGet(t, s, id).State; got != want {
			t.Errorf("request %d is %s, want %s", id, got, want)
		}
	}
	c, err := s.Counts(t.Context())
	if err != nil || c.Open[approvals.StatePending] != 2 || c.Open[approvals.StateApproved] != 1 {
		t.Errorf("Counts = %+v, %v; want 2 pending, 1 approved", c, err)
	}
}

func testList(t *testing.T, s approvals.Store) {
	var ids []uint64
	for range 6 {
		ids = append(ids, mustCreate(t, s, NewRequest(), T0, 1).ID)
	}
	mustDecide(t, s, ids[1], "UANA", approvals.ActionApprove, T0.Add(time.Minute))
	mustDecide(t, s, ids[2], "UANA", approvals.ActionDeny, T0.Add(time.Minute))
	mustDecide(t, s, ids[4], "UREQ", approvals.ActionCancel, T0.Add(time.Minute))
	other := mustCreate(t, s, NewRequest(func(n *approvals.NewRequest) { n.Requester = "UOTHER" }), T0, 1).ID
	rev := func(is ...int) []uint64 {
		var out []uint64
		for _, i := range is {
			out = append(out, ids[i])
		}
		return out
	}
	tests := []struct {
		opt  approvals.ListOptions
		want []uint64
	}{
		{approvals.ListOptions{}, append([]uint64{other}, rev(5, 4, 3, 2, 1, 0)...)},
		{approvals.ListOptions{Limit: 2}, []uint64{other, ids[5]}},
		{approvals.ListOptions{State: approvals.StatePending, Requester: "UREQ"}, rev(5, 3, 0)},
		{approvals.ListOptions{State: approvals.StatePending, Limit: 2}, []uint64{other, ids[5]}},
		{approvals.ListOptions{State: approvals.StateApproved}, rev(1)},
		{approvals.ListOptions{State: approvals.StateDenied}, rev(2)},
		{approvals.ListOptions{Open: true, Requester: "UREQ"}, rev(5, 3, 1, 0)},
		{approvals.ListOptions{State: approvals.StateApplied}, nil},
	}
	for _, tt := range tests {
		rs, err := s.List(t.Context(), tt.opt)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.opt, got, tt.want)
		}
	}
}

func testQuarantine(t *testing.T, s approvals.Store) {
	a := mustCreate(t, s, NewRequest(), T0, 1)
	b := mustCreate(t, s, NewRequest(), T0, 1)
	j, _ := firstJob(t, s, b.ID)
	now := T0.Add(time.Minute)
	if err := s.Quarantine(t.Context(), &approvals.CorruptError{Kind: "job", Key: j.ID, Err: errors.New("panic while running")}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine(t.Context(), &approvals.CorruptError{Kind: "request", Key: a.ID, Err: errors.New("unknown schema version")}, now); err != nil {
		t.Fatal(err)
	}
	// Moving it again is harmless.
	if err := s.Quarantine(t.Context(), &approvals.CorruptError{Kind: "request", Key: a.ID, Err: errors.New("again")}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), a.ID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Get of a quarantined request = %v, want ErrNotFound", err)
	}
	if _, ok := firstJob(t, s, b.ID); ok {
		t.Errorf("a quarantined job is still handed out")
	}
	q, err := s.Quarantined(t.Context())
	if err != nil || len(q) != 2 {
		t.Fatalf("Quarantined = %+v, %v; want 2 records", q, err)
	}
	kinds := map[string]approvals.Quarantined{}
	for _, r := range q {
		kinds[r.Kind] = r
	}
	if r := kinds["request"]; r.Key != a.ID || !strings.Contains(r.Reason, "unknown schema version") || !r.At.Equal(now) || len(r.Value) == 0 {
		t.Errorf("quarantined request = %+v", r)
	}
	if r := kinds["job"]; r.Key != j.ID || r.Reason != "panic while running" || len(r.Value) == 0 {
		t.Errorf("quarantined job = %+v", r)
	}
	if c, _ := s.Counts(t.Context()); c.Quarantined != 2 {
		t.Errorf("Counts.Quarantined = %d, want 2", c.Quarantined)
	}
}

func testAuditOrder(t *testing.T, s approvals.Store) {
	r := mustCreate(t, s, NewRequest(), T0, 2)
	mustDecide(t, s, r.ID, "UANA", approvals.ActionApprove, T0.Add(time.Minute))
	other := mustCreate(t, s, NewRequest(), T0, 1)
	mustDecide(t, s, r.ID, "UBEN", approvals.ActionApprove, T0.Add(2*time.Minute))
	mustDecide(t, s, other.ID, "UANA", approvals.ActionDeny, T0.Add(3*time.Minute))
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create", "UANA approve", "UBEN approve"}) {
		t.Errorf("audit = %q", got)
	}
	evs, _ := s.Audit(t.Context(), r.ID)
	for i := 1; i < len(evs); i++ {
		if evs[i].ID <= evs[i-1].ID {
			t.Errorf("event ids not increasing: %d then %d", evs[i-1].ID, evs[i].ID)
		}
	}
	if len(evs) == 3 && (evs[1].Detail != "1 of 2" || evs[2].Detail != "2 of 2") {
		t.Errorf("approve details = %q, %q", evs[1].Detail, evs[2].Detail)
	}
}

// setState moves request id to state through Update, as a transition would.
func setState(t *testing.T, s approvals.Store, id uint64, state approvals.State) {
	t.Helper()
	_, err := s.Update(t.Context(), id, 0, func(r *approvals.Request) (approvals.Transition, error) {
		r.State = state
		return approvals.Transition{Event: approvals.Event{Actor: "rolegate", Action: approvals.Action("test_" + string(state)), At: T0.Add(time.Hour)}}, nil
	})
	if err != nil {
		t.Fatalf("move request %d to %s: %v", id, state, err)
	}
}

func testUpdateGrant(t *testing.T, s approvals.Store) {
	a := mustCreate(t, s, NewRequest(), T0, 1)
	b := mustCreate(t, s, NewRequest(), T0, 1)
	pending := mustCreate(t, s, NewRequest(), T0, 1)
	elsewhere := mustCreate(t, s, NewRequest(func(n *approvals.NewRequest) { n.Target.RoleID = "role_02" }), T0, 1)
	for _, id := range []uint64{a.ID, b.ID, elsewhere.ID} {
		setState(t, s, id, approvals.StateApplied)
	}
	seen := func() []uint64 {
		t.Helper()
		var ids []uint64
		_, err := s.UpdateGrant(t.Context(), a.ID, 0, func(r *approvals.Request, others []approvals.Request) (approvals.Transition, error) {
			for _, o := range others {
				if o.State != approvals.StateApplied || o.Target != r.Target {
					t.Errorf("UpdateGrant gave request %d (%s, %+v) as a grant of %+v", o.ID, o.State, o.Target, r.Target)
				}
				if o.ID != r.ID {
					ids = append(ids, o.ID)
				}
			}
			return approvals.Transition{}, nil
		})
		if err != nil {
			t.Fatalf("UpdateGrant(%d): %v", a.ID, err)
		}
		return ids
	}
	if got := seen(); !slices.Equal(got, []uint64{b.ID}) {
		t.Errorf("request %d's other grants = %v, want [%d] (not pending %d, not %d of another role)", a.ID, got, b.ID, pending.ID, elsewhere.ID)
	}
	// A grant that ends is no longer one: the next change does not count it.
	setState(t, s, b.ID, approvals.StateRevoked)
	if got := seen(); len(got) != 0 {
		t.Errorf("request %d's other grants = %v after %d was revoked, want none", a.ID, got, b.ID)
	}
	// UpdateGrant writes as Update does: the change, its event and its jobs.
	r, err := s.UpdateGrant(t.Context(), a.ID, 0, func(r *approvals.Request, others []approvals.Request) (approvals.Transition, error) {
		r.Note = fmt.Sprintf("%d other grants", len(others)-1)
		return approvals.Transition{Event: approvals.Event{Actor: "rolegate", Action: approvals.Action("test_note"), At: T0.Add(2 * time.Hour)},
			Jobs: []approvals.JobKind{approvals.JobPostRevocation}}, nil
	})
	if err != nil || r.Note != "0 other grants" || mustGet(t, s, a.ID).Note != "0 other grants" {
		t.Errorf("UpdateGrant = %+v, %v; want the note stored", r, err)
	}
	if evs, err := s.Audit(t.Context(), a.ID); err != nil || evs[len(evs)-1].Action != "test_note" {
		t.Errorf("audit of %d = %+v, %v; want the change's event last", a.ID, evs, err)
	}
}

func testAuditChain(t *testing.T, s approvals.Store) {
	var ids []uint64
	for range 3 {
		ids = append(ids, mustCreate(t, s, NewRequest(), T0, 1).ID)
	}
	mustDecide(t, s, ids[0], "UANA", approvals.ActionApprove, T0.Add(time.Minute))
	mustDecide(t, s, ids[1], "UANA", approvals.ActionDeny, T0.Add(time.Minute))
	var wg sync.WaitGroup
	for i := range 8 { // concurrent writers chain one after another
		wg.Go(func() {
			_, _, err := s.Create(t.Context(), NewRequest(func(n *approvals.NewRequest) { n.Reason = fmt.Sprintf("concurrent %d, café ✓", i) }), T0, 0, PendingStart(T0, TTL, 1))
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rs, err := s.List(t.Context(), approvals.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var events []approvals.Event
	for _, r := range rs {
		evs, err := s.Audit(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, evs...)
	}
	slices.SortFunc(events, func(a, b approvals.Event) int { return int(a.ID) - int(b.ID) })
	all := func(yield func(approvals.Event, error) bool) {
		for _, e := range events {
			if !yield(e, nil) {
				return
			}
		}
	}
	res, err := approvals.VerifyEvents(all, approvals.VerifyOptions{})
	if err != nil || !res.Intact() || res.Events != len(events) || len(events) != 13 {
		t.Fatalf("VerifyEvents over %d events = %+v, %v; want 13 events, intact from the genesis hash", len(events), res, err)
	}
	if events[0].Prev != approvals.GenesisHash {
		t.Errorf("first event's prev = %q, want the genesis hash", events[0].Prev)
	}
}
