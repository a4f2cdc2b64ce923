package pgstore

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
	"github.com/rolegate/rolegate/internal/pgtest"
)

func create(t *testing.T, s approvals.Store) approvals.Request {
	t.Helper()
	now := time.Now().UTC()
	r, _, err := s.Create(t.Context(), storetest.NewRequest(), now, 0, storetest.PendingStart(now, time.Hour, 1))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lapseLeases stands for a lease's time passing: it moves every lease held
// by owner into the past, as if the 15 s had gone by without renewal.
func lapseLeases(t *testing.T, url, owner string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "UPDATE jobs SET leased_until = now() - interval '1 millisecond' WHERE leased_by = $1", owner); err != nil {
		t.Fatal(err)
	}
}

func TestDeadReplicasJobIsTakenOverAfterItsLeaseNotBefore(t *testing.T) {
	url := pgtest.URL(t)
	dead := openURL(t, url, Options{Owner: "dead", NoRenew: true})
	live := openURL(t, url, Options{Owner: "live"})
	r := create(t, dead)

	claimed, _, err := dead.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10))
	if err != nil || len(claimed) != 1 || claimed[0].RequestID != r.ID {
		t.Fatalf("first replica's DueJobs = %+v, %v; want request %d's post", claimed, err, r.ID)
	}
	if claimed[0].TakenOver {
		t.Errorf("a job nobody ran before is marked taken over")
	}
	// The replica "dies" holding the job: it neither renews nor releases.
	before := time.Now()
	jobs, next, err := live.DueJobs(t.Context(), before, nil, approvals.Each(10))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 0 {
		t.Fatalf("another replica got %+v while the lease holds: the job would run twice", jobs)
	}
	if next.IsZero() || next.Before(before) || next.After(before.Add(DefaultLease+time.Second)) {
		t.Errorf("next = %v, want the lease's end (within %s of %v) so the worker looks again then", next, DefaultLease, before)
	}
	lapseLeases(t, url, "dead")
	jobs, _, err = live.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10))
	if err != nil || len(jobs) != 1 || jobs[0].ID != claimed[0].ID {
		t.Fatalf("after the lease lapsed: %+v, %v; want job %d taken over", jobs, err, claimed[0].ID)
	}
	if !jobs[0].TakenOver {
		t.Errorf("the dead replica's job is not marked taken over: its post may have reached Slack")
	}
	// A retry the live replica records releases the job as its own: the
	// next claim is no take-over.
	if err := live.RetryJob(t.Context(), jobs[0]); err != nil {
		t.Fatal(err)
	}
	if again, _, err := live.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10)); err != nil || len(again) != 1 || again[0].TakenOver {
		t.Fatalf("after the live replica's own retry: %+v, %v; want the job, not taken over", again, err)
	}
	// Now the live replica holds it: the dead one (were it to come back) does not get it.
	if again, _, _ := dead.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10)); len(again) != 0 {
		t.Errorf("the job went back to the replica that lost it: %+v", again)
	}
	// Its later jobs stay in order: completing the post frees the lane for the next.
	if _, err := live.Update(t.Context(), r.ID, jobs[0].ID, func(x *approvals.Request) (approvals.Transition, error) {
		return approvals.RecordPosted(x, "1700000000.000001", time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	// Recording the post queues the requester's "pending" message, next in
	// the lane: it is handed out now that the post is done.
	next2, _, err := live.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10))
	if err != nil || len(next2) != 1 || next2[0].Kind != approvals.NotifyRequester(approvals.StatePending) {
		t.Errorf("after the post was recorded: %+v, %v; want only the requester's pending message", next2, err)
	}
}

func TestLiveReplicaRenewsItsLeases(t *testing.T) {
	url := pgtest.URL(t)
	a := openURL(t, url, Options{Owner: "a", NoRenew: true})
	b := openURL(t, url, Options{Owner: "b"})
	create(t, a)
	if jobs, _, _ := a.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10)); len(jobs) != 1 {
		t.Fatalf("claim: %+v", jobs)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	// Nearly lapsed; a renewal (what the background loop does every
	// Lease/3) pushes it a whole lease ahead again.
	if _, err := conn.Exec(t.Context(), "UPDATE jobs SET leased_until = now() + interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	if err := a.renewLeases(t.Context()); err != nil {
		t.Fatal(err)
	}
	var left time.Duration
	if err := conn.QueryRow(t.Context(), "SELECT leased_until - now() FROM jobs").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left < DefaultLease-2*time.Second {
		t.Errorf("lease has %v left after renewal, want about %v", left, DefaultLease)
	}
	// A lapsed lease is not taken back by a renewal.
	lapseLeases(t, url, "a")
	if err := a.renewLeases(t.Context()); err != nil {
		t.Fatal(err)
	}
	if jobs, _, _ := b.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10)); len(jobs) != 1 {
		t.Errorf("a lapsed lease was renewed: the other replica got %+v", jobs)
	}
}

func TestClosingReleasesLeasesAtOnce(t *testing.T) {
	url := pgtest.URL(t)
	a, err := Open(t.Context(), url, Options{Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b := openURL(t, url, Options{Owner: "b"})
	create(t, a)
	if jobs, _, _ := a.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10)); len(jobs) != 1 {
		t.Fatalf("claim: %+v", jobs)
	}
	a.Close() // a rolling deploy stops a replica gracefully
	jobs, _, _ := b.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10))
	if len(jobs) != 1 {
		t.Fatalf("after the holder closed, the other replica got %+v, want the job at once", jobs)
	}
	if !jobs[0].TakenOver {
		t.Errorf("a job released by a stop is not marked taken over: the stop may have cut its post short after Slack took it")
	}
}

func TestReplicasClaimEachJobOnce(t *testing.T) {
	url := pgtest.URL(t)
	stores := []*Store{openURL(t, url, Options{Owner: "a"}), openURL(t, url, Options{Owner: "b"}), openURL(t, url, Options{Owner: "c"})}
	const n = 30
	for range n {
		create(t, stores[0])
	}
	var mu sync.Mutex
	got := map[uint64]string{}
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Go(func() {
			busy := map[uint64]bool{} // as the Worker passes the lanes it runs
			for range 20 {
				jobs, _, err := s.DueJobs(t.Context(), time.Now(), busy, approvals.Each(4))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, j := range jobs {
					if other, dup := got[j.ID]; dup && other != s.Owner() {
						t.Errorf("job %d handed to %s and %s", j.ID, other, s.Owner())
					}
					got[j.ID] = s.Owner()
					busy[j.Lane()] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != n {
		t.Errorf("%d distinct jobs claimed, want all %d", len(got), n)
	}
}

func TestChangesReachOtherReplicas(t *testing.T) {
	url := pgtest.URL(t)
	a := openURL(t, url)
	b := openURL(t, url)
	// Drain what opening signalled, then wait for b's LISTEN to be up: a
	// notification before it would be missed (the poll covers that in
	// production).
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-b.Changes():
		default:
		}
		create(t, a)
		select {
		case <-b.Changes():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a write on one replica never signalled another's Changes")
		}
	}
}

func TestRemember(t *testing.T) {
	url := pgtest.URL(t)
	a, b := openURL(t, url), openURL(t, url)
	first, err := a.Remember(t.Context(), "env-1", time.Minute)
	if err != nil || !first {
		t.Fatalf("first Remember = %v, %v", first, err)
	}
	if again, err := b.Remember(t.Context(), "env-1", time.Minute); err != nil || again {
		t.Errorf("the same envelope on another replica: first = %v, %v; want false", again, err)
	}
	if other, _ := b.Remember(t.Context(), "env-2", time.Minute); !other {
		t.Errorf("another envelope was taken for a repeat")
	}
	if first, _ := a.Remember(t.Context(), "short", -time.Second); !first {
		t.Fatal("short")
	}
	if again, _ := a.Remember(t.Context(), "short", time.Minute); !again {
		t.Errorf("a key past its time is still remembered")
	}
}

func TestConcurrentStartMigratesOnce(t *testing.T) {
	url := pgtest.URL(t)
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), url)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d failed to start: %v", i, err)
		}
	}
	s := openURL(t, url)
	var rows, heads int
	if err := s.pool.QueryRow(t.Context(), "SELECT (SELECT count(*) FROM schema_migrations), (SELECT count(*) FROM chain_head)").Scan(&rows, &heads); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	if rows != len(ms) || heads != 1 {
		t.Errorf("schema_migrations has %d rows (want %d), chain_head %d rows (want 1): migrated more than once", rows, len(ms), heads)
	}
	st, err := s.Migrations(t.Context())
	if err != nil || st.Applied != len(ms) || st.Known != len(ms) {
		t.Errorf("Migrations = %+v, %v", st, err)
	}
}

// TestReadersDoNotMigrate: a store opened to read (NoMigrate) neither
// creates nor upgrades the schema the replicas share, and says what to do.
func TestReadersDoNotMigrate(t *testing.T) {
	url := pgtest.URL(t)
	if _, err := Open(t.Context(), url, Options{NoMigrate: true, NoListen: true, NoRenew: true}); err == nil || !strings.Contains(err.Error(), "no rolegate schema") {
		t.Errorf("Open on an empty database: %v, want no schema", err)
	}
	s := openURL(t, url)
	if _, err := s.pool.Exec(t.Context(), "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	_, err := Open(t.Context(), url, Options{NoMigrate: true, NoListen: true, NoRenew: true})
	if want := fmt.Sprintf("schema version %d, older than this rolegate's %d", len(ms)-1, len(ms)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open on an older schema: %v, want %q", err, want)
	}
	var applied int
	if err := s.pool.QueryRow(t.Context(), "SELECT max(version) FROM schema_migrations").Scan(&applied); err != nil || applied != len(ms)-1 {
		t.Errorf("schema version %d after a reader's Open, %v; want it left at %d", applied, err, len(ms)-1)
	}
}

// TestTurnsGoToOneReplica: of three replicas asking for a task's turn at
// once, one has it; nobody has it again until the period is over, and
// then one does.
func TestTurnsGoToOneReplica(t *testing.T) {
	url := pgtest.URL(t)
	var stores []*Store
	for range 3 {
		stores = append(stores, openURL(t, url, Options{NoListen: true, NoRenew: true}))
	}
	const every = 500 * time.Millisecond
	turns := func() int {
		var n int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, s := range stores {
			wg.Go(func() {
				mine, err := s.Turn(t.Context(), "drift", every)
				if err != nil {
					t.Error(err)
				}
				if mine {
					mu.Lock()
					n++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return n
	}
	if n := turns(); n != 1 {
		t.Errorf("first turn went to %d replicas, want 1", n)
	}
	if n := turns(); n != 0 {
		t.Errorf("a turn before the period was over went to %d replicas, want 0", n)
	}
	time.Sleep(every)
	if n := turns(); n != 1 {
		t.Errorf("the next turn went to %d replicas, want 1", n)
	}
	if mine, err := stores[0].Turn(t.Context(), "other task", every); err != nil || !mine {
		t.Errorf("another task's first turn: %v, %v; want it", mine, err)
	}
}

// TestOnlyBookkeepingSkipsTheFlush: the lax pool, and only it, commits
// without waiting for the WAL flush.
func TestOnlyBookkeepingSkipsTheFlush(t *testing.T) {
	s := openTest(t)
	for pool, want := range map[string]string{"transitions": "on", "bookkeeping": "off"} {
		p := s.pool
		if pool == "bookkeeping" {
			p = s.lax
		}
		var got string
		if err := p.QueryRow(t.Context(), "SHOW synchronous_commit").Scan(&got); err != nil || got != want {
			t.Errorf("%s: synchronous_commit %q, %v; want %q", pool, got, err, want)
		}
	}
}

// TestClaimedJobsCarryTheirRequest: DueJobs hands each job out with its
// request as stored, so the Worker need not read it again.
func TestClaimedJobsCarryTheirRequest(t *testing.T) {
	s := openTest(t)
	r := create(t, s)
	jobs, _, err := s.DueJobs(t.Context(), time.Now(), nil, approvals.Each(8))
	if err != nil || len(jobs) != 1 {
		t.Fatalf("DueJobs = %+v, %v; want the new request's job", jobs, err)
	}
	if got := jobs[0].Request; got == nil || got.ID != r.ID || got.State != r.State || got.Reason != r.Reason {
		t.Errorf("job's Request = %+v, want request %d as stored", got, r.ID)
	}
}

// TestLookAheadFollowsADeadReplicasLeasesOneAfterAnother: a dead
// replica's leases end at different times; each DueJobs that takes one
// over names the end of the next as when to look again, even right after
// an earlier look (the look-ahead is read at most once a second otherwise).
// Missing it left the rest to the Worker's 30 s idle look.
func TestLookAheadFollowsADeadReplicasLeasesOneAfterAnother(t *testing.T) {
	url := pgtest.URL(t)
	dead := openURL(t, url, Options{Owner: "dead", NoRenew: true})
	live := openURL(t, url, Options{Owner: "live"})
	create(t, dead)
	create(t, dead)
	claimed, _, err := dead.DueJobs(t.Context(), time.Now(), nil, approvals.Each(10))
	if err != nil || len(claimed) != 2 {
		t.Fatalf("dead replica's DueJobs = %+v, %v", claimed, err)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	// The first lease ends in 300 ms, the second in 5 s.
	for i, in := range []string{"300 milliseconds", "5 seconds"} {
		if _, err := conn.Exec(t.Context(), "UPDATE jobs SET leased_until = now() + $2::interval WHERE id = $1", int64(claimed[i].ID), in); err != nil {
			t.Fatal(err)
		}
	}
	// A look just before the first ends (the Worker busy with other work),
	// then the look at its end, within the second.
	if _, next, err := live.DueJobs(t.Context(), time.Now(), nil, approvals.JobLimit{}); err != nil || next.IsZero() {
		t.Fatalf("the look before: next %v, %v; want the first lease's end", next, err)
	}
	time.Sleep(400 * time.Millisecond)
	before := time.Now()
	jobs, next, err := live.DueJobs(t.Context(), before, nil, approvals.Each(10))
	if err != nil || len(jobs) != 1 || jobs[0].ID != claimed[0].ID {
		t.Fatalf("DueJobs = %+v, %v; want the first lapsed job", jobs, err)
	}
	if next.IsZero() || next.Before(before.Add(3*time.Second)) || next.After(before.Add(6*time.Second)) {
		t.Errorf("next = %v (%v from now), want the second lease's end, about 5 s ahead", next, next.Sub(before))
	}
}
