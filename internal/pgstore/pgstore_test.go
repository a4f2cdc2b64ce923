package pgstore

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
	"github.com/rolegate/rolegate/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openTest opens a Store on a fresh database, closed when the test ends.
func openTest(t *testing.T, opts ...Options) *Store {
	t.Helper()
	return openURL(t, pgtest.URL(t), opts...)
}

func openURL(t *testing.T, url string, opts ...Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the engine-agnostic Store suite that bbolt runs too.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) approvals.Store { return openTest(t) })
}

// TestVerifyChainFindsEditsAndDrops: the chain every append links is
// checked as bbolt's is: intact as written, an edited event named by its
// seq, and events dropped from the end caught against the head row.
func TestVerifyChainFindsEditsAndDrops(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	for range 3 {
		create(t, s)
	}
	res, err := s.VerifyChain(t.Context())
	if err != nil || !res.Intact() || res.Events != 3 || res.HeadSeq != 3 {
		t.Fatalf("VerifyChain = %+v, %v; want 3 intact events", res, err)
	}
	var seen []uint64
	if err := s.ForEachEvent(t.Context(), time.Time{}, func(e approvals.Event) error { seen = append(seen, e.ID); return nil }); err != nil || !slices.Equal(seen, []uint64{1, 2, 3}) {
		t.Errorf("ForEachEvent = %v, %v", seen, err)
	}

	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), `UPDATE events SET body = jsonb_set(body, '{detail}', '"edited"') WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	if res, err := s.VerifyChain(t.Context()); err != nil || res.Problem == nil || res.Problem.Seq != 2 || res.Problem.Kind != approvals.ProblemEdited {
		t.Errorf("after editing event 2: %+v, %v; want event 2 edited", res, err)
	}
	if _, err := conn.Exec(t.Context(), `DELETE FROM events WHERE seq >= 2`); err != nil {
		t.Fatal(err)
	}
	if res, err := s.VerifyChain(t.Context()); err != nil || res.Problem == nil || res.Problem.Seq != 2 || res.Problem.Kind != approvals.ProblemDropped {
		t.Errorf("after dropping events 2 and 3: %+v, %v; want event 2 dropped", res, err)
	}
}

// TestListSkipsUnreadableWithoutLosingPlaces: a request that cannot be
// decoded is left out of List (the worker quarantines it) and the limit
// still counts readable ones, as on bbolt (`bot requests --limit 3` shows
// three).
func TestListSkipsUnreadableWithoutLosingPlaces(t *testing.T) {
	s := openTest(t)
	var ids []uint64
	for range 6 {
		r, _, err := s.Create(t.Context(), storetest.NewRequest(), storetest.T0, 0, storetest.PendingStart(storetest.T0, storetest.TTL, 1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	// The two newest are unreadable.
	if _, err := s.pool.Exec(t.Context(), `UPDATE requests SET body = '{"v": 99}' WHERE id = ANY($1)`, []int64{int64(ids[5]), int64(ids[4])}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 3, 0} {
		got, err := s.List(t.Context(), approvals.ListOptions{Limit: limit})
		want := []uint64{ids[3], ids[2], ids[1], ids[0]}
		if limit > 0 {
			want = want[:limit]
		}
		var gotIDs []uint64
		for _, r := range got {
			gotIDs = append(gotIDs, r.ID)
		}
		if err != nil || !slices.Equal(gotIDs, want) {
			t.Errorf("List(limit %d) = %v, %v; want %v", limit, gotIDs, err, want)
		}
	}
}
