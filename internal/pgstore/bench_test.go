package pgstore

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
	"github.com/rolegate/rolegate/internal/pgtest"
)

// BenchmarkClaims measures jobs claimed and completed per second by 1, 2
// and 3 replicas working one outbox, each as the Worker does: DueJobs with
// its running lanes skipped, up to 8 at a time, then CompleteJob.
//
//	go test -run '^$' -bench Claims -benchtime 2000x ./internal/pgstore/
func BenchmarkClaims(b *testing.B) {
	for _, replicas := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			url := pgtest.URL(b)
			var stores []*Store
			for i := range replicas {
				s, err := Open(b.Context(), url, Options{Owner: fmt.Sprintf("r%d", i), NoListen: true})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				stores = append(stores, s)
			}
			now := storetest.T0
			for range b.N {
				if _, _, err := stores[0].Create(b.Context(), storetest.NewRequest(), now, 0, storetest.PendingStart(now, time.Hour, 1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var done atomic.Int64
			var wg sync.WaitGroup
			for _, s := range stores {
				wg.Go(func() {
					for done.Load() < int64(b.N) {
						jobs, _, err := s.DueJobs(b.Context(), time.Now(), nil, approvals.Each(8))
						if err != nil {
							b.Error(err)
							return
						}
						if len(jobs) == 0 {
							time.Sleep(time.Millisecond)
							continue
						}
						var inner sync.WaitGroup
						for _, j := range jobs {
							inner.Go(func() {
								if err := s.CompleteJob(b.Context(), j.ID); err != nil {
									b.Error(err)
								}
								done.Add(1)
							})
						}
						inner.Wait()
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}

// BenchmarkCreate stores new requests as a burst of slash commands does:
// 100 callers at once, each with its own trigger id and the per-requester
// limit the bot applies (5), one at a time for comparison. Its bbolt
// counterpart is approvals' BenchmarkStoreCreate.
//
//	go test -run '^$' -bench 'Create|Decide' -benchtime 2000x ./internal/pgstore/
func BenchmarkCreate(b *testing.B) {
	for _, callers := range []int{1, 100} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := benchOpen(b)
			var n atomic.Int64
			b.ResetTimer()
			benchParallel(b, callers, func() error {
				i := n.Add(1)
				req := storetest.NewRequest(func(r *approvals.NewRequest) {
					r.TriggerID = fmt.Sprintf("trig-%d", i)
					r.Requester = fmt.Sprintf("U%d", i)
				})
				now := time.Now()
				_, _, err := s.Create(b.Context(), req, now, 5, storetest.PendingStart(now, time.Hour, 1))
				return err
			})
		})
	}
}

// BenchmarkDecide approves pending requests as a burst of clicks does:
// the compare-and-set transaction of a decision, 100 at once.
func BenchmarkDecide(b *testing.B) {
	for _, callers := range []int{1, 100} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := benchOpen(b)
			now := time.Now()
			ids := make([]uint64, b.N)
			for i := range ids {
				r, _, err := s.Create(b.Context(), storetest.NewRequest(), now, 0, storetest.PendingStart(now, time.Hour, 1))
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = r.ID
			}
			var n atomic.Int64
			b.ResetTimer()
			benchParallel(b, callers, func() error {
				id := ids[n.Add(1)-1]
				_, err := s.Update(b.Context(), id, 0, func(r *approvals.Request) (approvals.Transition, error) {
					return approvals.Decide(r, approvals.Decision{RequestID: id, Actor: "UANA", Action: approvals.ActionApprove, ChannelID: "C1", Eligible: true, At: time.Now()})
				})
				return err
			})
		})
	}
}

func benchOpen(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.Context(), pgtest.URL(b), Options{NoListen: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// benchParallel runs op b.N times from callers goroutines and reports the
// rate and the 99th percentile latency.
func benchParallel(b *testing.B, callers int, op func() error) {
	var next atomic.Int64
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				start := time.Now()
				if err := op(); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
