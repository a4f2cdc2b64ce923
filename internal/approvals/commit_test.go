package approvals

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestConcurrentWritesCommitIndependently checks the group commit behind
// Create, Decide and the worker's writes: writes that arrive together share
// a transaction, yet a write that fails (a click on an unknown request or
// from another channel) neither undoes nor blocks the others, and each
// caller gets its own outcome.
func TestConcurrentWritesCommitIndependently(t *testing.T) {
	s := newStore(t)
	now := time.Now()
	const n = 40
	ids := make([]uint64, n)
	for i := range ids {
		r, created, err := s.Create(t.Context(), newRequest(func(n *NewRequest) { n.TriggerID = fmt.Sprintf("1.%d.trigger", i) }), now, 0, pendingStart(now, time.Hour, 1))
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
			_, good[i] = storeDecide(s, t.Context(), id, "U0ANA", ActionApprove, "C1", true, now)
		})
		wg.Go(func() {
			_, wrongChannel[i] = storeDecide(s, t.Context(), id, "U0BOB", ActionDeny, "C0OTHER", true, now)
		})
		wg.Go(func() {
			_, unknown[i] = storeDecide(s, t.Context(), 1_000_000+id, "U0BOB", ActionApprove, "C1", true, now)
		})
	}
	wg.Wait()

	for i, id := range ids {
		if good[i] != nil {
			t.Errorf("approving request %d: %v", id, good[i])
		}
		if !errors.Is(wrongChannel[i], ErrWrongChannel) {
			t.Errorf("deny of request %d from another channel = %v, want ErrWrongChannel", id, wrongChannel[i])
		}
		if !errors.Is(unknown[i], ErrNotFound) {
			t.Errorf("approving an unknown request = %v, want ErrNotFound", unknown[i])
		}
		r, err := s.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != StateApproved || r.Decider != "U0ANA" {
			t.Errorf("request %d is %s by %q, want approved by U0ANA", id, r.State, r.Decider)
		}
	}
}

// The tests below drive groupCommit itself, on a bare bbolt file, so each
// promise of its doc comment is checked without the store's own rules in
// the way. They make writers queue behind a lead that is held inside its
// transaction, so which writes share a transaction is decided by the test,
// not by the scheduler.

var commitBucket = []byte("commit")

// commitRig is a groupCommit on a fresh bbolt file with one bucket.
type commitRig struct {
	t  *testing.T
	db *bolt.DB
	g  *groupCommit
}

func newCommitRig(t *testing.T) *commitRig {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "commit.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(commitBucket); return err })
	if err != nil {
		t.Fatal(err)
	}
	r := &commitRig{t: t, db: db, g: &groupCommit{db: db}}
	t.Cleanup(func() {
		r.check()
		db.Close()
	})
	return r
}

// check runs bbolt's consistency check (tx.Check).
func (r *commitRig) check() {
	r.t.Helper()
	err := r.db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the checker reads tx until it is done
			if first == nil {
				first = err
			}
		}
		return first
	})
	if err != nil {
		r.t.Errorf("bbolt consistency: %v", err)
	}
}

// queued reports how many writers wait behind the lead.
func (r *commitRig) queued() int {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return len(r.g.queue)
}

// waitQueued waits until n writers wait behind the lead. It polls without
// asserting anything about time: the test's own deadline bounds it.
func (r *commitRig) waitQueued(n int) {
	r.t.Helper()
	for r.queued() < n {
		time.Sleep(100 * time.Microsecond)
	}
}

// holdLead starts a write that takes the lead and stays inside its
// transaction until release is called; it returns once the lead holds.
func (r *commitRig) holdLead() (release func() error) {
	r.t.Helper()
	inside, hold, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- r.g.update(func(tx *bolt.Tx) error {
			close(inside)
			<-hold
			return tx.Bucket(commitBucket).Put([]byte("lead"), []byte("x"))
		})
	}()
	<-inside
	return func() error { close(hold); return <-done }
}

// writers starts fns one after another, each queued behind the held lead
// before the next starts, so they queue in order; wait returns their errors.
func (r *commitRig) writers(fns ...func(*bolt.Tx) error) (wait func() []error) {
	r.t.Helper()
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { errs[i] = r.g.update(fn) })
		r.waitQueued(i + 1)
	}
	return func() []error { wg.Wait(); return errs }
}

// stored returns the bucket's keys and values.
func (r *commitRig) stored() map[string]string {
	r.t.Helper()
	got := map[string]string{}
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(commitBucket).ForEach(func(k, v []byte) error {
			got[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return got
}

// put is a writer that stores key and records the id of every transaction
// it ran in.
func put(key string, txIDs *[]int) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		*txIDs = append(*txIDs, tx.ID())
		return tx.Bucket(commitBucket).Put([]byte(key), []byte("v"))
	}
}

func TestGroupCommitQueuedWritersShareOneCommit(t *testing.T) {
	r := newCommitRig(t)
	release := r.holdLead()
	const n = 8
	txIDs := make([][]int, n)
	fns := make([]func(*bolt.Tx) error, n)
	for i := range fns {
		fns[i] = put(fmt.Sprintf("k%d", i), &txIDs[i])
	}
	wait := r.writers(fns...)
	if err := release(); err != nil {
		t.Fatalf("lead: %v", err)
	}
	for i, err := range wait() {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got := r.stored()
	if len(got) != n+1 {
		t.Errorf("stored %v, want the lead's key and %d others", got, n)
	}
	for i := range n {
		if _, ok := got[fmt.Sprintf("k%d", i)]; !ok {
			t.Errorf("writer %d's key is missing", i)
		}
		// Each ran once, in the one transaction all the queued writers shared.
		if len(txIDs[i]) != 1 || txIDs[i][0] != txIDs[0][0] {
			t.Errorf("writer %d ran in transactions %v, want once in writer 0's %v", i, txIDs[i], txIDs[0])
		}
	}
}

func TestGroupCommitManyConcurrentWritersAllCommit(t *testing.T) {
	r := newCommitRig(t)
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = r.g.update(func(tx *bolt.Tx) error {
				return tx.Bucket(commitBucket).Put([]byte(fmt.Sprintf("k%02d", i)), []byte("v"))
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if got := r.stored(); len(got) != n {
		t.Errorf("%d keys stored, want %d", len(got), n)
	}
	r.g.mu.Lock()
	leading, queued := r.g.leading, len(r.g.queue)
	r.g.mu.Unlock()
	if leading || queued != 0 {
		t.Errorf("after every writer returned: leading %v, %d queued; want idle", leading, queued)
	}
}

func TestGroupCommitFailureAndPanicStayTheirOwn(t *testing.T) {
	r := newCommitRig(t)
	release := r.holdLead()
	errBoom := errors.New("boom")
	var before, after, failing, panicking []int
	wait := r.writers(
		put("before", &before),
		func(tx *bolt.Tx) error {
			failing = append(failing, tx.ID())
			tx.Bucket(commitBucket).Put([]byte("failing"), []byte("v")) // undone with the error
			return errBoom
		},
		put("after", &after),
		func(tx *bolt.Tx) error {
			panicking = append(panicking, tx.ID())
			tx.Bucket(commitBucket).Put([]byte("panicking"), []byte("v"))
			panic("a bug in one caller")
		},
	)
	if err := release(); err != nil {
		t.Fatalf("lead: %v", err)
	}
	errs := wait()
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("the healthy writers got %v and %v, want nil", errs[0], errs[2])
	}
	if !errors.Is(errs[1], errBoom) {
		t.Errorf("the failing writer got %v, want its own error", errs[1])
	}
	if errs[3] == nil || !strings.Contains(errs[3].Error(), "panic") || !strings.Contains(errs[3].Error(), "a bug in one caller") {
		t.Errorf("the panicking writer got %v, want an error saying it panicked", errs[3])
	}
	got := r.stored()
	for _, k := range []string{"lead", "before", "after"} {
		if _, ok := got[k]; !ok {
			t.Errorf("%q was not committed: %v", k, got)
		}
	}
	for _, k := range []string{"failing", "panicking"} {
		if _, ok := got[k]; ok {
			t.Errorf("%q was committed although its function failed", k)
		}
	}
	// The failing functions ran again, alone: each got its own outcome.
	if len(failing) != 2 || len(panicking) != 2 {
		t.Errorf("the failing function ran %d times and the panicking one %d, want each in the batch and again alone", len(failing), len(panicking))
	}
	if len(before) < 2 {
		t.Errorf("the writer ahead of the failure ran %d times, want it run again without the failure", len(before))
	}
}

// TestGroupCommitRerunResetsCaptures is the contract callers keep: a
// function that runs twice must reset what it captures. Here each writer
// takes an id from NextSequence, as Create does; the writer ahead of a
// failure runs twice, and the id it returns must be the one committed, not
// the one from the transaction that was rolled back.
func TestGroupCommitRerunResetsCaptures(t *testing.T) {
	r := newCommitRig(t)
	release := r.holdLead()
	type result struct {
		id   uint64
		runs int
	}
	var first, third result
	take := func(key string, res *result) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			res.runs++
			*res = result{runs: res.runs} // reset what a failed run captured
			b := tx.Bucket(commitBucket)
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			res.id = id
			return b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, id))
		}
	}
	wait := r.writers(
		take("first", &first),
		func(tx *bolt.Tx) error {
			if _, err := tx.Bucket(commitBucket).NextSequence(); err != nil {
				return err
			}
			return errors.New("refused after taking an id")
		},
		take("third", &third),
	)
	if err := release(); err != nil {
		t.Fatalf("lead: %v", err)
	}
	errs := wait()
	if errs[0] != nil || errs[2] != nil || errs[1] == nil {
		t.Fatalf("outcomes %v, want nil, an error, nil", errs)
	}
	if first.runs != 2 {
		t.Fatalf("the writer ahead of the failure ran %d times, want 2: this test needs the rerun", first.runs)
	}
	got := r.stored()
	for key, res := range map[string]result{"first": first, "third": third} {
		v := got[key]
		if len(v) != 8 {
			t.Fatalf("%s: stored %q", key, v)
		}
		if stored := binary.BigEndian.Uint64([]byte(v)); stored != res.id {
			t.Errorf("%s returned id %d but id %d was committed", key, res.id, stored)
		}
	}
	if first.id == third.id {
		t.Errorf("two writers got the same id %d", first.id)
	}
}
