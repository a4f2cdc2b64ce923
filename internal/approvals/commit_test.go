package approvals_test

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// TestConcurrentWritesCommitIndependently checks the group commit behind
// Create, Decide and the worker's writes: writes that arrive together share
// a transaction, yet a write that fails (a click on an unknown request or
// from another channel) neither undoes nor blocks the others, and each
// caller gets its own outcome.
func TestConcurrentWritesCommitIndependently(t *testing.T) {
	s, err := approvals.Open(filepath.Join(t.TempDir(), "commit.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	const n = 40
	ids := make([]uint64, n)
	for i := range ids {
		n := benchRequest()
		r, created, err := s.Create(t.Context(), n, now, 0, pendingStart(now, time.Hour, 1))
		if err != nil || !created {
			t.Fatalf("Create = %v, %v", created, err)
		}
		ids[i] = r.ID
	}

	var wg sync.WaitGroup
	good := make([]error, n)
	wrongChannel := make([]error, n)
	unknown := make([]error, n)
	for i, id := range ids {
		wg.Go(func() {
			_, good[i] = storeDecide(s, t.Context(), id, "U0ANA", approvals.ActionApprove, "C0CHAN", true, now)
		})
		wg.Go(func() {
			_, wrongChannel[i] = storeDecide(s, t.Context(), id, "U0BOB", approvals.ActionDeny, "C0OTHER", true, now)
		})
		wg.Go(func() {
			_, unknown[i] = storeDecide(s, t.Context(), 1_000_000+id, "U0BOB", approvals.ActionApprove, "C0CHAN", true, now)
		})
	}
	wg.Wait()

	for i, id := range ids {
		if good[i] != nil {
			t.Errorf("approving request %d: %v", id, good[i])
		}
		if !errors.Is(wrongChannel[i], approvals.ErrWrongChannel) {
			t.Errorf("deny of request %d from another channel = %v, want ErrWrongChannel", id, wrongChannel[i])
		}
		if !errors.Is(unknown[i], approvals.ErrNotFound) {
			t.Errorf("approving an unknown request = %v, want ErrNotFound", unknown[i])
		}
		r, err := s.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != approvals.StateApproved || r.Decider != "U0ANA" {
			t.Errorf("request %d is %s by %q, want approved by U0ANA", id, r.State, r.Decider)
		}
	}
	if err := s.Check(); err != nil {
		t.Fatalf("bbolt consistency: %v", err)
	}
}
