package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
	"github.com/rolegate/rolegate/internal/pgtest"
)

// inOneBatch runs each of ops at once and makes them share one batch of
// the group commit, whose reads then go together (prefetch): another
// connection holds the chain head while a first write leads a batch of its
// own, the ops queue up behind it, and the head is let go once all of them
// wait. It returns each op's error.
func inOneBatch(t *testing.T, s *Store, url string, ops ...func() error) []error {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM chain_head FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, _, err := s.Create(ctx, storetest.NewRequest(func(n *approvals.NewRequest) { n.Requester = "ULEAD" }), storetest.T0, 0, storetest.PendingStart(storetest.T0, storetest.TTL, 1)); err != nil {
			t.Errorf("leading Create: %v", err)
		}
	})
	waitFor(t, s, func(g *groupCommit) bool { return g.leading && len(g.pending)+len(g.later) == 0 })
	errs := make([]error, len(ops))
	for i, op := range ops {
		wg.Go(func() { errs[i] = op() })
	}
	waitFor(t, s, func(g *groupCommit) bool { return len(g.pending)+len(g.later) == len(ops) })
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return errs
}

// waitFor waits until cond holds of s's group commit, read under its lock.
func waitFor(t *testing.T, s *Store, cond func(g *groupCommit) bool) {
	t.Helper()
	g := s.commits
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		ok := cond(g)
		g.mu.Unlock()
		if ok {
			return
		}
	}
	t.Fatal("timed out waiting for the group commit")
}

// TestBatchedDecisionsOnOneRequestDecideOnce: twenty approvals of one
// request read in one batch would all see it pending; the request's key
// makes each read after the one before has written, so one decides.
func TestBatchedDecisionsOnOneRequestDecideOnce(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	r, _, err := s.Create(t.Context(), storetest.NewRequest(), storetest.T0, 0, storetest.PendingStart(storetest.T0, storetest.TTL, 1))
	if err != nil {
		t.Fatal(err)
	}
	var ops []func() error
	for i := range 20 {
		ops = append(ops, func() error {
			_, err := storetest.Decide(t, s, r.ID, fmt.Sprintf("UAPP%02d", i), approvals.ActionApprove, storetest.T0.Add(time.Minute))
			return err
		})
	}
	won := 0
	for i, err := range inOneBatch(t, s, url, ops...) {
		var np *approvals.NotPendingError
		switch {
		case err == nil:
			won++
		case !errors.As(err, &np):
			t.Errorf("approver %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d approvals succeeded, want 1", won)
	}
	assigns := 0
	for _, k := range storetest.DrainJobs(t, s, r.ID) {
		if k == approvals.JobAssign {
			assigns++
		}
	}
	if assigns != 1 {
		t.Errorf("%d assign jobs, want 1", assigns)
	}
	if res, err := s.VerifyChain(t.Context()); err != nil || res.Problem != nil {
		t.Errorf("VerifyChain: %+v, %v", res, err)
	}
}

// TestBatchedCreatesKeepTheLimit: creates of one requester read in one
// batch would all see too few open requests; the requester's key makes
// each read after the one before has written.
func TestBatchedCreatesKeepTheLimit(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	const n, limit = 12, 4
	var ops []func() error
	for i := range n {
		ops = append(ops, func() error {
			req := storetest.NewRequest(func(r *approvals.NewRequest) { r.TriggerID = fmt.Sprint("t", i) })
			_, _, err := s.Create(t.Context(), req, storetest.T0, limit, storetest.PendingStart(storetest.T0, storetest.TTL, 1))
			return err
		})
	}
	created, refused := 0, 0
	for _, err := range inOneBatch(t, s, url, ops...) {
		var tm *approvals.TooManyOpenError
		switch {
		case err == nil:
			created++
		case errors.As(err, &tm):
			refused++
		default:
			t.Errorf("Create: %v", err)
		}
	}
	if created != limit || refused != n-limit {
		t.Errorf("%d created, %d refused; want %d created", created, refused, limit)
	}
}

// TestBatchedCreatesOfOneTriggerIDMakeOneRequest: a command delivered
// many times at once is one request, however its deliveries are batched,
// and the audit chain holds one creation.
func TestBatchedCreatesOfOneTriggerIDMakeOneRequest(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	const n = 8
	ids := make([]uint64, n)
	var ops []func() error
	for i := range n {
		ops = append(ops, func() error {
			req := storetest.NewRequest(func(r *approvals.NewRequest) { r.TriggerID, r.Requester = "same", fmt.Sprint("U", i) })
			r, _, err := s.Create(t.Context(), req, storetest.T0, 5, storetest.PendingStart(storetest.T0, storetest.TTL, 1))
			ids[i] = r.ID
			return err
		})
	}
	for i, err := range inOneBatch(t, s, url, ops...) {
		if err != nil {
			t.Errorf("Create %d: %v", i, err)
		}
		if ids[i] != ids[0] {
			t.Errorf("one trigger id gave requests %d and %d", ids[0], ids[i])
		}
	}
	if evs, err := s.Audit(t.Context(), ids[0]); err != nil || len(evs) != 1 {
		t.Errorf("audit of request %d: %d events, %v; want its creation", ids[0], len(evs), err)
	}
	if res, err := s.VerifyChain(t.Context()); err != nil || res.Problem != nil {
		t.Errorf("VerifyChain: %+v, %v", res, err)
	}
}

// TestClicksGoAheadOfTheWorkersRecords: with more of the Worker's records
// waiting than a batch holds, a decision someone waits for (a click)
// queued after all of them still goes into the next batch, first: its
// audit event comes before every one of theirs.
func TestClicksGoAheadOfTheWorkersRecords(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	create := func() uint64 {
		r, _, err := s.Create(t.Context(), storetest.NewRequest(func(n *approvals.NewRequest) { n.Requester = "UMANY" }), storetest.T0, 0, storetest.PendingStart(storetest.T0, storetest.TTL, 1))
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	var background []uint64
	for range maxBatch + 6 {
		background = append(background, create())
	}
	click := create()
	worker := approvals.AsWorker(t.Context())
	var ops []func() error
	for _, id := range background {
		ops = append(ops, func() error {
			_, err := s.Update(worker, id, 0, func(r *approvals.Request) (approvals.Transition, error) {
				return approvals.Transition{Event: approvals.Event{Actor: approvals.SystemActor, Action: approvals.ActionCheck, At: storetest.T0}}, nil
			})
			return err
		})
	}
	ops = append(ops, func() error { // queued last
		_, err := storetest.Decide(t, s, click, "UANA", approvals.ActionApprove, storetest.T0.Add(time.Minute))
		return err
	})
	for i, err := range inOneBatch(t, s, url, ops...) {
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	last := func(id uint64) uint64 {
		evs, err := s.Audit(t.Context(), id)
		if err != nil || len(evs) < 2 {
			t.Fatalf("audit of %d: %+v, %v", id, evs, err)
		}
		return evs[len(evs)-1].ID
	}
	clicked := last(click)
	for _, id := range background {
		if seq := last(id); seq < clicked {
			t.Fatalf("the Worker's record of request %d (event %d) went before the click (event %d)", id, seq, clicked)
		}
	}
}
