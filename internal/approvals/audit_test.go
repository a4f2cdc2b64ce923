package approvals

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The canonical encoding is a published contract: anyone re-verifying an
// export relies on these exact bytes, so the test spells them out.
func TestChainHashIsTheDocumentedEncoding(t *testing.T) {
	t.Parallel()
	e := Event{ID: 1, RequestID: 7, Actor: "U1", Action: ActionCreate, Detail: "hi",
		At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Prev: GenesisHash}
	want := "1:1,1:7,2:U1,6:create,30:2025-01-02T03:04:05.000000000Z,2:hi,71:" + GenesisHash + ","
	if got := string(canonical(nil, e)); got != want {
		t.Fatalf("canonical =\n%s\nwant\n%s", got, want)
	}
	sum := sha256.Sum256([]byte(want))
	if got := ChainHash(e); got != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("ChainHash = %s", got)
	}
	// Lengths are bytes, and separators inside fields change nothing but
	// the length: "a,b" and "a" + "b" never collide.
	e2 := e
	e2.Actor, e2.Detail = "U1,2:hi", ""
	if ChainHash(e2) == ChainHash(e) {
		t.Fatal("moving text between fields kept the hash")
	}
	e3 := e
	e3.Detail = "ü"
	if !strings.Contains(string(canonical(nil, e3)), ",2:ü,") {
		t.Fatalf("a two-byte character is not counted as 2: %s", canonical(nil, e3))
	}
}

// chainStore holds a few requests through every kind of write: creation,
// votes, a denial and an update, from several goroutines.
func chainStore(t *testing.T) *BoltStore {
	t.Helper()
	s := newStore(t)
	for i := range 4 {
		r := mustCreateAt(t, s, newRequest(func(n *NewRequest) { n.Reason = fmt.Sprintf("reason %d, INC-%d", i, i) }), t0.Add(time.Duration(i)*time.Second), 1)
		action := ActionApprove
		if i%2 == 1 {
			action = ActionDeny
		}
		mustDecide(t, s, r.ID, "UANA", action, t0.Add(time.Minute))
	}
	return s
}

func mustVerify(t *testing.T, s *BoltStore) VerifyResult {
	t.Helper()
	res, err := s.VerifyChain(t.Context())
	if err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	return res
}

func TestEveryEventIsChainedToTheOneBefore(t *testing.T) {
	t.Parallel()
	s := chainStore(t)
	var all []Event
	if err := s.ForEachEvent(t.Context(), time.Time{}, func(e Event) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Fatalf("%d events, want 8 (4 creations, 4 decisions)", len(all))
	}
	prev := GenesisHash
	for i, e := range all {
		if e.ID != uint64(i+1) || e.Prev != prev || e.Hash != ChainHash(e) || !strings.HasPrefix(e.Hash, "sha256:") {
			t.Fatalf("event %d = %+v: want seq %d, prev %s and its own hash", i, e, i+1, prev)
		}
		prev = e.Hash
	}
	res := mustVerify(t, s)
	if !res.Intact() || res.Events != 8 || res.Head != prev || res.HeadSeq != 8 {
		t.Fatalf("VerifyChain = %+v, want intact, 8 events, head %s", res, prev)
	}
	// The per-request trail carries the hashes too: the last one is what
	// the result message shows.
	trail, err := s.Audit(t.Context(), 4)
	if err != nil || len(trail) != 2 || trail[1].Hash != all[7].Hash {
		t.Fatalf("Audit(4) = %+v, %v; want its 2 events ending in %s", trail, err, all[7].Hash)
	}
}

// Text that JSON cannot carry as is, and times with a monotonic reading or
// another zone, still verify after a round trip through the store.
func TestChainSurvivesOddTextAndTimes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	paris := time.FixedZone("CET", 3600)
	start := func(r *Request) Transition {
		r.State, r.Required, r.Approvers, r.Rule = StatePending, 1, []string{"UANA"}, DefaultRule
		r.ExpiresAt = r.CreatedAt.Add(ttl)
		return Transition{Event: Event{At: time.Now().In(paris), Detail: "bad \xff\xfe utf-8 <&> \u2028 \x00"}}
	}
	if _, _, err := s.Create(t.Context(), newRequest(), time.Now(), 0, start); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, s); !res.Intact() || res.Events != 1 {
		t.Fatalf("VerifyChain = %+v", res)
	}
}

// Many goroutines creating and deciding at once share group commits; the
// events of one commit still chain in commit order.
func TestConcurrentBurstLeavesAChainThatVerifies(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r, _, err := s.Create(t.Context(), newRequest(func(nr *NewRequest) { nr.TriggerID = fmt.Sprintf("1.%d.trig", i) }), time.Now(), 0, pendingStart(time.Now(), ttl, 2))
			if err != nil {
				errs <- err
				return
			}
			for _, who := range []string{"UANA", "UBOB"} {
				if _, err := storeDecide(s, t.Context(), r.ID, who, ActionApprove, "C1", true, time.Now()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if res := mustVerify(t, s); !res.Intact() || res.Events != 3*n {
		t.Fatalf("VerifyChain = %+v, want intact with %d events", res, 3*n)
	}
}

// tamper opens the closed store file with bbolt itself and changes the
// audit bucket as someone with the file could.
func tamper(t *testing.T, path string, fn func(audit *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketAudit)) }); err != nil {
		t.Fatal(err)
	}
}

// forge returns a well-formed event record with seq id, chained to prev:
// what someone who knows the (public) encoding would insert.
func forge(t *testing.T, id uint64, prev string) []byte {
	t.Helper()
	e := Event{ID: id, RequestID: 2, Actor: "UMALLORY", Action: ActionApprove, At: t0, Prev: prev}
	e.Hash = ChainHash(e)
	v, err := marshalEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func storedHash(t *testing.T, audit *bolt.Bucket, seq uint64) string {
	t.Helper()
	e, err := unmarshalEvent(audit.Get(itob(seq)))
	if err != nil {
		t.Fatal(err)
	}
	return e.Hash
}

func TestTamperedStoreIsReportedAtTheBadEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(t *testing.T, audit *bolt.Bucket) error
		seq    uint64
		kind   ProblemKind
	}{
		{"a byte of a detail edited", func(t *testing.T, a *bolt.Bucket) error {
			v := bytes.Clone(a.Get(itob(5)))
			i := bytes.Index(v, []byte("reason 2"))
			v[i+len("reason ")] = '9'
			return a.Put(itob(5), v)
		}, 5, ProblemEdited},
		{"an actor edited and its own hash recomputed", func(t *testing.T, a *bolt.Bucket) error {
			e, _ := unmarshalEvent(a.Get(itob(4)))
			e.Actor = "UMALLORY"
			e.Hash = ChainHash(e)
			v, _ := marshalEvent(e)
			return a.Put(itob(4), v)
		}, 5, ProblemUnlinked},
		{"one deleted", func(t *testing.T, a *bolt.Bucket) error { return a.Delete(itob(3)) }, 3, ProblemDropped},
		{"the first deleted", func(t *testing.T, a *bolt.Bucket) error { return a.Delete(itob(1)) }, 1, ProblemDropped},
		{"the last deleted", func(t *testing.T, a *bolt.Bucket) error { return a.Delete(itob(8)) }, 8, ProblemDropped},
		{"two swapped", func(t *testing.T, a *bolt.Bucket) error {
			v3, v6 := bytes.Clone(a.Get(itob(3))), bytes.Clone(a.Get(itob(6)))
			if err := a.Put(itob(3), v6); err != nil {
				return err
			}
			return a.Put(itob(6), v3)
		}, 3, ProblemReordered},
		{"one inserted, the rest moved up", func(t *testing.T, a *bolt.Bucket) error {
			for seq := uint64(8); seq >= 4; seq-- {
				if err := a.Put(itob(seq+1), bytes.Clone(a.Get(itob(seq)))); err != nil {
					return err
				}
			}
			return a.Put(itob(4), forge(t, 4, storedHash(t, a, 3)))
		}, 4, ProblemInserted},
		{"one appended", func(t *testing.T, a *bolt.Bucket) error {
			return a.Put(itob(9), forge(t, 9, storedHash(t, a, 8)))
		}, 9, ProblemInserted}, // the store's head still names event 8
		{"one made unreadable", func(t *testing.T, a *bolt.Bucket) error { return a.Put(itob(2), []byte("{not json")) }, 2, ProblemUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := chainStore(t)
			path := s.Path()
			if res := mustVerify(t, s); !res.Intact() {
				t.Fatalf("before tampering: %+v", res.Problem)
			}
			closeStore(t, s)
			tamper(t, path, func(a *bolt.Bucket) error { return tt.tamper(t, a) })
			s = openStore(t, path)
			res := mustVerify(t, s)
			if res.Intact() || res.Problem.Seq != tt.seq || res.Problem.Kind != tt.kind {
				t.Fatalf("VerifyChain found %v, want event %d %s", res.Problem, tt.seq, tt.kind)
			}
		})
	}
}

// exportLines is the store's log as `bot audit export` writes it.
func exportLines(t *testing.T, s *BoltStore, since time.Time) [][]byte {
	t.Helper()
	var lines [][]byte
	err := s.ForEachEvent(t.Context(), since, func(e Event) error {
		b, err := json.Marshal(LineOf(e))
		lines = append(lines, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func lineSeq(lines [][]byte) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for _, l := range lines {
			if !yield(l, nil) {
				return
			}
		}
	}
}

func verifyLines(t *testing.T, lines [][]byte) VerifyResult {
	t.Helper()
	res, err := VerifyEvents(ExportedEvents(lineSeq(lines)), VerifyOptions{Partial: true})
	if err != nil {
		t.Fatalf("VerifyEvents: %v", err)
	}
	return res
}

func TestTamperedExportIsReportedAtTheBadEvent(t *testing.T) {
	t.Parallel()
	s := chainStore(t)
	clean := exportLines(t, s, time.Time{})
	if res := verifyLines(t, clean); !res.Intact() || res.Events != 8 || res.First != 1 || res.FirstPrev != GenesisHash {
		t.Fatalf("clean export: %+v", res)
	}
	edit := func(i int, fn func(*EventLine)) []byte {
		var l EventLine
		if err := json.Unmarshal(clean[i], &l); err != nil {
			t.Fatal(err)
		}
		fn(&l)
		b, _ := json.Marshal(l)
		return b
	}
	tests := []struct {
		name  string
		lines func() [][]byte
		seq   uint64
		kind  ProblemKind
	}{
		{"a byte of a detail edited", func() [][]byte {
			out := append([][]byte(nil), clean...)
			out[4] = bytes.Replace(bytes.Clone(out[4]), []byte("reason 2"), []byte("reason 9"), 1)
			return out
		}, 5, ProblemEdited},
		{"a time edited", func() [][]byte {
			out := append([][]byte(nil), clean...)
			out[1] = edit(1, func(l *EventLine) { l.At = strings.Replace(l.At, "12:01", "12:02", 1) })
			return out
		}, 2, ProblemEdited},
		{"one deleted", func() [][]byte {
			return append(append([][]byte(nil), clean[:2]...), clean[3:]...)
		}, 3, ProblemDropped},
		{"two swapped", func() [][]byte {
			out := append([][]byte(nil), clean...)
			out[5], out[6] = out[6], out[5]
			return out
		}, 6, ProblemReordered},
		{"one inserted", func() [][]byte {
			out := append([][]byte(nil), clean[:3]...)
			var prev EventLine
			json.Unmarshal(clean[2], &prev)
			forged, _ := json.Marshal(LineOf(mustEvent(t, forge(t, 4, prev.Hash))))
			return append(append(out, forged), clean[3:]...)
		}, 4, ProblemInserted},
		{"a line that is not an event", func() [][]byte {
			out := append([][]byte(nil), clean...)
			out[3] = []byte(`{"seq":4,"at":"yesterday"}`)
			return out
		}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := VerifyEvents(ExportedEvents(lineSeq(tt.lines())), VerifyOptions{Partial: true})
			if tt.kind == "" {
				if err == nil || !strings.Contains(err.Error(), "line 4") {
					t.Fatalf("VerifyEvents = %+v, %v; want an error naming line 4", res, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Intact() || res.Problem.Seq != tt.seq || res.Problem.Kind != tt.kind {
				t.Fatalf("VerifyEvents found %v, want event %d %s", res.Problem, tt.seq, tt.kind)
			}
		})
	}
}

func mustEvent(t *testing.T, v []byte) Event {
	t.Helper()
	e, err := unmarshalEvent(v)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// An export from --since starts mid-chain and verifies from its first
// event's prev; a store's own chain must start at event 1.
func TestPartialExportVerifiesFromItsFirstEvent(t *testing.T) {
	t.Parallel()
	s := chainStore(t)
	all := exportLines(t, s, time.Time{})
	part := exportLines(t, s, t0.Add(2*time.Second))
	if len(part) == 0 || len(part) >= len(all) {
		t.Fatalf("--since kept %d of %d events", len(part), len(all))
	}
	if !bytes.Equal(part[len(part)-1], all[len(all)-1]) {
		t.Fatal("a partial export does not run to the end")
	}
	res := verifyLines(t, part)
	if !res.Intact() || res.First == 1 || res.Events != len(part) || res.Head != mustVerify(t, s).Head {
		t.Fatalf("partial export: %+v", res)
	}
	res, err := VerifyEvents(ExportedEvents(lineSeq(part)), VerifyOptions{})
	if err != nil || res.Intact() || res.Problem.Seq != 1 || res.Problem.Kind != ProblemDropped {
		t.Fatalf("as a whole log, a partial one = %+v, %v; want event 1 dropped", res, err)
	}
}

// testdata/prechain.db was written by rolegate before the audit chain
// (commit 5b6c50f's Store: three requests created and decided, six events
// without prev or hash). Opening it chains them once, in order, and records
// that it did.
func TestOpenChainsAFileFromBeforeTheChain(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "old.db")
	copyFile(t, "testdata/prechain.db", path)
	var before []Event
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			e := mustEvent(t, v)
			if e.Hash != "" || e.Prev != "" || bytes.Contains(v, []byte("hash")) {
				t.Fatalf("the fixture's event %d is already chained: %s", e.ID, v)
			}
			before = append(before, e)
			return nil
		})
	})
	db.Close()
	if len(before) != 6 {
		t.Fatalf("fixture holds %d events, want 6", len(before))
	}

	s := openStore(t, path)
	res := mustVerify(t, s)
	if !res.Intact() || res.Events != 7 {
		t.Fatalf("after the upgrade VerifyChain = %+v, want 7 intact events", res)
	}
	var after []Event
	s.ForEachEvent(t.Context(), time.Time{}, func(e Event) error { after = append(after, e); return nil })
	for i, e := range before {
		got := after[i]
		got.Prev, got.Hash = "", ""
		if got != e {
			t.Errorf("event %d changed in the upgrade:\n%+v\n%+v", e.ID, e, got)
		}
	}
	last := after[6]
	if last.ID != 7 || last.RequestID != 0 || last.Actor != SystemActor || last.Action != ActionChainStarted ||
		last.Detail != "chained 6 events written before the audit chain" {
		t.Fatalf("the upgrade's own event = %+v", last)
	}
	// The file keeps working: new events chain on, and a second open
	// upgrades nothing.
	mustCreate(t, s, newRequest(func(n *NewRequest) { n.Reason = "after the upgrade" }), 1)
	closeStore(t, s)
	s = openStore(t, path)
	if res := mustVerify(t, s); !res.Intact() || res.Events != 8 {
		t.Fatalf("after reopening: %+v, want 8 intact events", res)
	}
}

// A brand-new file starts chained: no upgrade event.
func TestNewFileStartsChainedWithoutAnUpgradeEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if res := mustVerify(t, s); !res.Intact() || res.Events != 0 || res.Head != GenesisHash {
		t.Fatalf("empty store: %+v", res)
	}
	path := s.Path()
	closeStore(t, s)
	s = openStore(t, path)
	r := mustCreate(t, s, newRequest(), 1)
	if res := mustVerify(t, s); !res.Intact() || res.Events != 1 || r.ID != 1 {
		t.Fatalf("VerifyChain = %+v", res)
	}
}

// Imported history is chained like live writes.
func TestImportChains(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mustCreate(t, s, newRequest(), 1)
	recs := []Record{{Request: Request{ID: 10, State: StateDenied, Requester: "UREQ", ChannelID: "C1", CreatedAt: t0},
		Events: []Event{{Actor: "UREQ", Action: ActionCreate, At: t0, Hash: "sha256:ignored"}, {Actor: "UANA", Action: ActionDeny, At: t0}}}}
	if err := s.Import(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, s); !res.Intact() || res.Events != 3 {
		t.Fatalf("VerifyChain = %+v", res)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzScanEventRecord: whenever the fast reader accepts a stored event,
// encoding/json (the oracle) reads the same record from it.
func FuzzScanEventRecord(f *testing.F) {
	for _, e := range []Event{
		{ID: 1, RequestID: 7, Actor: "U1", Action: ActionCreate, At: t0, Detail: "hi", Prev: GenesisHash, Hash: GenesisHash},
		{ID: 2, Actor: "rolegate", Action: ActionPosted, At: time.Unix(0, -5), Detail: "<&> \u2028 ü \"q\""},
		{},
	} {
		v, _ := marshalEvent(e)
		f.Add(v)
	}
	f.Add([]byte(` { "v" : 2 , "id":18446744073709551615,"at":-9223372036854775807,"detail":"a\tb"}`))
	f.Add([]byte(`{"v":2,"ID":3,"id":4,"id":5,"at":1e3,"actor":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := scanEventRecord(b)
		if !ok {
			return
		}
		var want eventRecord
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("scanEventRecord accepted %q, which encoding/json refuses: %v", b, err)
		}
		if got != want {
			t.Fatalf("scanEventRecord(%q) = %+v, encoding/json reads %+v", b, got, want)
		}
	})
}
