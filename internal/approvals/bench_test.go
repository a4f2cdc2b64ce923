package approvals_test

// Benchmarks of the store's hot operations, on a real file with durable
// commits (bbolt fsyncs every commit). Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/approvals/
//
// The figures are measurements, never assertions. Every write is a bbolt
// commit: a benchmark run one at a time measures the commit latency (for
// batched methods, bbolt's batch delay included), a parallel one the
// throughput the batching reaches.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/approvalstest"
)

// benchHistory is the finished history of the listing benchmarks.
const benchHistory = 100_000

func benchStore(b *testing.B) *approvals.BoltStore {
	b.Helper()
	s, err := approvals.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

var benchTrigger atomic.Int64

func benchRequest() approvals.NewRequest {
	n := benchTrigger.Add(1)
	return approvals.NewRequest{
		Target:      approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
		Reason:      "need key rotation for incident 42",
		Requester:   "U0REQ",
		TeamID:      "T0TEAM",
		ChannelID:   "C0CHAN",
		ResponseURL: "https://hooks.slack.com/commands/T0TEAM/1/abc",
		TriggerID:   fmt.Sprintf("%d.%d.benchtrigger", n, n),
	}
}

// benchPending creates n pending requests, 100 at a time, and returns their
// ids.
func benchPending(b *testing.B, s *approvals.BoltStore, n int) []uint64 {
	b.Helper()
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	next := atomic.Int64{}
	for range min(100, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				r, _, err := s.Create(context.Background(), benchRequest(), time.Now(), 0, benchStart)
				if err != nil {
					failed.Store(err)
					return
				}
				ids[i] = r.ID
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkStoreCreate stores new requests: one caller at a time (each
// waits for its own commit, bbolt's batch delay included), and 100 callers
// at once (commits shared, as under a burst of slash commands).
func BenchmarkStoreCreate(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s := benchStore(b)
		ctx := context.Background()
		for b.Loop() {
			if _, _, err := s.Create(ctx, benchRequest(), time.Now(), 0, benchStart); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel100", func(b *testing.B) {
		s := benchStore(b)
		ctx := context.Background()
		b.SetParallelism(max(1, 100/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := s.Create(ctx, benchRequest(), time.Now(), 0, benchStart); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkStoreDecide approves pending requests (the compare-and-set
// transaction of a click): one at a time, and 100 clicks at once.
func BenchmarkStoreDecide(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s := benchStore(b)
		ids := benchPending(b, s, b.N)
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			if _, err := benchDecide(s, ctx, ids[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel100", func(b *testing.B) {
		s := benchStore(b)
		ids := benchPending(b, s, b.N)
		ctx := context.Background()
		var next atomic.Int64
		b.SetParallelism(max(1, 100/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := ids[next.Add(1)-1]
				if _, err := benchDecide(s, ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchWithHistory is a store holding benchHistory finished requests and
// pending more pending ones.
func benchWithHistory(b *testing.B, pending int) *approvals.BoltStore {
	b.Helper()
	s := benchStore(b)
	if err := s.Import(context.Background(), approvalstest.Finished(1, benchHistory, time.Now())); err != nil {
		b.Fatal(err)
	}
	benchPending(b, s, pending)
	return s
}

// BenchmarkStoreListPending lists the pending requests (10) of a store
// holding 100,000 finished ones: the open index keeps it independent of the
// history.
func BenchmarkStoreListPending(b *testing.B) {
	s := benchWithHistory(b, 10)
	ctx := context.Background()
	for b.Loop() {
		rs, err := s.List(ctx, approvals.ListOptions{State: approvals.StatePending})
		if err != nil || len(rs) != 10 {
			b.Fatalf("List = %d requests, %v", len(rs), err)
		}
	}
}

// BenchmarkStoreCountOpen counts open requests (each /metrics scrape does)
// in a store holding 100,000 finished ones.
func BenchmarkStoreCountOpen(b *testing.B) {
	s := benchWithHistory(b, 10)
	ctx := context.Background()
	for b.Loop() {
		if c, err := s.Counts(ctx); err != nil || c.Open[approvals.StatePending] != 10 {
			b.Fatalf("Counts = %v, %v", c, err)
		}
	}
}

// BenchmarkStoreDueJobs takes the next job while the outbox holds a backlog
// of 10,000 (a burst of commands not yet posted): what the worker does each
// time a job finishes.
func BenchmarkStoreDueJobs(b *testing.B) {
	s := benchStore(b)
	benchPending(b, s, 10_000)
	ctx := context.Background()
	busy := map[uint64]bool{}
	for b.Loop() {
		jobs, _, err := s.DueJobs(ctx, time.Now(), busy, approvals.JobLimit{Messages: 1})
		if err != nil || len(jobs) != 1 {
			b.Fatalf("DueJobs = %d jobs, %v", len(jobs), err)
		}
	}
}

// BenchmarkStoreOpen opens a file holding 100,000 finished requests, as the
// bot does at start-up.
func BenchmarkStoreOpen(b *testing.B) {
	s := benchWithHistory(b, 0)
	path := s.Path()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := approvals.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkStoreImport writes finished history in bulk, 10,000 requests
// (one commit) per iteration; ns/request is the cost of one.
func BenchmarkStoreImport(b *testing.B) {
	s := benchStore(b)
	const per = 10_000
	next := uint64(1)
	for b.Loop() {
		recs := approvalstest.Finished(next, per, time.Now())
		next += per
		if err := s.Import(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/request")
}

// benchStart makes a request pending at once with one approval needed.
func benchStart(r *approvals.Request) approvals.Transition {
	r.State, r.Rule, r.Approvers, r.Required = approvals.StatePending, approvals.DefaultRule, []string{"U0ANA"}, 1
	r.ExpiresAt = r.CreatedAt.Add(24 * time.Hour)
	return approvals.Transition{Event: approvals.Event{At: r.CreatedAt}, Jobs: []approvals.JobKind{approvals.JobPostApproval}}
}

// benchDecide approves request id through the store, as Service.Decide
// does after its checks.
func benchDecide(s approvals.Store, ctx context.Context, id uint64) (approvals.Request, error) {
	d := approvals.Decision{RequestID: id, Actor: "U0ANA", Action: approvals.ActionApprove, ChannelID: "C0CHAN", Eligible: true, At: time.Now()}
	return s.Update(ctx, id, 0, func(r *approvals.Request) (approvals.Transition, error) { return approvals.Decide(r, d) })
}

// benchEvents is the length of the audit log of the chain benchmarks:
// approvalstest.Finished writes 4 events per request.
const benchEvents = 200_000

// benchChained is a store holding benchEvents chained events.
func benchChained(b *testing.B) *approvals.BoltStore {
	b.Helper()
	s := benchStore(b)
	if err := s.Import(context.Background(), approvalstest.Finished(1, benchEvents/4, time.Now())); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkVerifyChain recomputes every hash and link of a 200,000-event
// log (what `bot audit verify` does after opening its snapshot).
func BenchmarkVerifyChain(b *testing.B) {
	s := benchChained(b)
	ctx := context.Background()
	for b.Loop() {
		res, err := s.VerifyChain(ctx)
		if err != nil || !res.Intact() || res.Events != benchEvents {
			b.Fatalf("VerifyChain = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(b.N*benchEvents)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAuditExport writes a 200,000-event log as `bot audit export`
// does (one JSON line per event, buffered); B/op divided by the events is
// the memory an event costs while it is written, and it does not grow
// with the log.
func BenchmarkAuditExport(b *testing.B) {
	s := benchChained(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		w := bufio.NewWriterSize(io.Discard, 64<<10)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		n := 0
		err := s.ForEachEvent(ctx, time.Time{}, func(e approvals.Event) error { n++; return enc.Encode(approvals.LineOf(e)) })
		if err != nil || n != benchEvents {
			b.Fatalf("exported %d events: %v", n, err)
		}
		w.Flush()
	}
	b.ReportMetric(float64(b.N*benchEvents)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkChainHash is the CPU the chain adds to every event written
// (with a read and a write of the head in meta, which stay in the
// transaction's memory): set it against BenchmarkStoreCreate's ns/op.
func BenchmarkChainHash(b *testing.B) {
	e := approvals.Event{ID: 123456, RequestID: 4242, Actor: "U0REQ", Action: approvals.ActionCreate, At: time.Now(),
		Detail: "need key rotation for incident 42", Prev: approvals.GenesisHash}
	for b.Loop() {
		e.Prev = approvals.ChainHash(e)
	}
}
