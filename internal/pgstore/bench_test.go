package pgstore

import (
	"fmt"
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
