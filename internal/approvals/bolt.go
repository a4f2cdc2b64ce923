package approvals

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketRequests   = []byte("requests") // id → request
	bucketOpen       = []byte("open")     // id → state NUL requester (checking, pending, approved requests only; see openEntry)
	bucketWakes      = []byte("wakes")    // id → unix nanos of Request.NextWake (when not zero)
	bucketOutbox     = []byte("outbox")   // seq → job (Slack messages)
	bucketCalls      = []byte("calls")    // seq → job calling OpenAI; seq shared with outbox
	bucketAudit      = []byte("audit")    // seq → event
	bucketAuditIdx   = []byte("audit_by_request")
	bucketTriggers   = []byte("triggers")   // trigger_id → request id + created_at
	bucketQuarantine = []byte("quarantine") // kind/key → record that could not be decoded
	bucketMeta       = []byte("meta")       // "layout" → index layout version
	bucketGrants     = []byte("grants")     // project\x00group\x00role\x00 + id → "" (applied requests only)

	allBuckets = [][]byte{bucketRequests, bucketOpen, bucketWakes, bucketOutbox, bucketCalls,
		bucketAudit, bucketAuditIdx, bucketTriggers, bucketQuarantine, bucketMeta, bucketGrants}
)

// indexLayout is the version of the derived indexes (open, wakes). A file
// with an older layout has them rebuilt from the requests once, at open.
const indexLayout = 4

// triggerKeep is how long a command's trigger id is remembered to recognise
// a replayed delivery; Slack rejects signatures older than 5 minutes anyway.
const triggerKeep = 10 * time.Minute

// BoltStore is the Store kept in one bbolt file. A second process cannot
// open the same file (bbolt's lock), so it serves one replica.
type BoltStore struct {
	db      *bolt.DB
	commits *groupCommit // the write transactions of the hot paths
	changes chan struct{}
	// inherited is the last job id given out before Open: jobs up to it
	// were in the file when this process started, so the last one may
	// have been under way when it stopped (DueJobs marks them TakenOver).
	inherited uint64
}

var _ Store = (*BoltStore)(nil)

// Open opens (creating with mode 0600) the bbolt file at path. It fails after
// a second when another process holds the file, and with a message saying
// so when the file is damaged.
func Open(path string) (*BoltStore, error) {
	db, err := openBolt(path, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	if err := prepare(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := newBoltStore(db)
	err = db.View(func(tx *bolt.Tx) error {
		s.inherited = tx.Bucket(bucketOutbox).Sequence() // job ids of both queues
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

func newBoltStore(db *bolt.DB) *BoltStore {
	return &BoltStore{db: db, commits: &groupCommit{db: db}, changes: make(chan struct{}, 1)}
}

// openBolt opens the file, turning bbolt's panics on damaged pages into an
// error that says the file is damaged.
func openBolt(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("open %s: the database file is damaged (%v); restore it from a backup or move it aside", path, p)
		}
	}()
	db, err = bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the file is locked by another process (is rolegate already running?)", path)
		}
		if errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) || errors.Is(err, bolt.ErrVersionMismatch) {
			return nil, fmt.Errorf("open %s: the database file is damaged or not a bbolt file (%v); restore it from a backup or move it aside", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// prepare creates the buckets, rebuilds the derived indexes of a file
// written with an older layout, and chains the audit log of a file written
// before the audit chain (startChain), each once.
func prepare(db *bolt.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the database file is damaged (%v); restore it from a backup or move it aside", p)
		}
	}()
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get([]byte("layout")); v == nil || btoi(v) < indexLayout {
			if err := reindex(tx); err != nil {
				return fmt.Errorf("rebuild indexes: %w", err)
			}
			if err := meta.Put([]byte("layout"), itob(indexLayout)); err != nil {
				return err
			}
		}
		if err := startChain(tx, time.Now().UTC()); err != nil {
			return fmt.Errorf("chain the audit log: %w", err)
		}
		return nil
	})
}

// reindex rebuilds the open and wake indexes from the requests, moving
// aside any request it cannot decode.
func reindex(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketOpen, bucketWakes, bucketGrants} {
		if err := tx.DeleteBucket(b); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	var bad []uint64
	err := tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
		r, err := unmarshalRequest(v)
		if err != nil {
			bad = append(bad, btoi(k))
			return nil
		}
		return index(tx, &r)
	})
	if err != nil {
		return err
	}
	for _, id := range bad {
		v := tx.Bucket(bucketRequests).Get(itob(id))
		_, err := unmarshalRequest(v)
		if err := quarantine(tx, &CorruptError{Kind: "request", Key: id, Err: err}, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// OpenSnapshot opens a read-only copy of the file at path, for reading while
// the bot holds the file: bbolt's lock keeps a second opener out, so the
// file is copied and the copy checked (bbolt's full consistency check). The
// returned cleanup removes the copy.
func OpenSnapshot(path string) (*BoltStore, func(), error) {
	var lastErr error
	for range 3 {
		s, cleanup, err := openSnapshot(path)
		if err == nil {
			return s, cleanup, nil
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, nil, fmt.Errorf("snapshot %s: %w", path, lastErr)
}

func openSnapshot(path string) (*BoltStore, func(), error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	tmp, err := os.CreateTemp("", "rolegate-snapshot-*.db")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.Remove(tmp.Name()) }
	// Copied, not read whole: `bot audit export` of a large file must not
	// hold the file in memory.
	_, err = io.Copy(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	db, err := openBolt(tmp.Name(), &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	s := newBoltStore(db)
	err = s.Check()
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketRequests) == nil {
				return errors.New("not a rolegate database")
			}
			return nil
		})
	}
	if err != nil {
		db.Close()
		cleanup()
		return nil, nil, err
	}
	return s, func() { db.Close(); cleanup() }, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *BoltStore) Path() string { return s.db.Path() }

// Changes implements Store.
func (s *BoltStore) Changes() <-chan struct{} { return s.changes }

func (s *BoltStore) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Ping implements Store: the file is open and readable.
func (s *BoltStore) Ping(ctx context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// Check runs bbolt's full consistency check, returning the first problem
// found. A panic on a damaged page is returned as an error.
func (s *BoltStore) Check() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the database file is damaged: %v", p)
		}
	}()
	return s.db.View(func(tx *bolt.Tx) error {
		// Drained to the end: the checker reads tx until it closes the
		// channel, so returning at the first problem closed the
		// transaction under it (a data race, seen under -race on a
		// snapshot copied mid-write).
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		return first
	})
}

// Create implements Store. Commits from concurrent callers are batched.
func (s *BoltStore) Create(ctx context.Context, n NewRequest, now time.Time, maxOpen int, start func(*Request) Transition) (r Request, created bool, err error) {
	n, err = n.normalize()
	if err != nil {
		return Request{}, false, err
	}
	err = s.commits.update(func(tx *bolt.Tx) error {
		r, created = Request{}, false // this function may run more than once
		triggers := tx.Bucket(bucketTriggers)
		if n.TriggerID != "" {
			if v := triggers.Get([]byte(n.TriggerID)); v != nil {
				old, err := getRequest(tx, btoi(v[:8]))
				if err != nil {
					return err
				}
				r = old
				return nil
			}
		}
		if maxOpen > 0 {
			if open := awaiting(tx, n.Requester, maxOpen); len(open) >= maxOpen {
				return &TooManyOpenError{Limit: maxOpen, Open: open}
			}
		}
		id, err := tx.Bucket(bucketRequests).NextSequence()
		if err != nil {
			return err
		}
		r = Request{
			ID: id, Ask: n.Ask, Target: n.Target, Reason: n.Reason,
			Requester: n.Requester, TeamID: n.TeamID, ChannelID: n.ChannelID, ResponseURL: n.ResponseURL,
			CreatedAt: now, Duration: n.Duration, BreakGlass: n.BreakGlass, Extends: n.Extends,
		}
		tr := start(&r)
		if !r.State.Valid() {
			return fmt.Errorf("create request: start left an invalid state %q", r.State)
		}
		tr.Event.Actor, tr.Event.Action = n.Requester, ActionCreate
		if tr.Event.Detail == "" {
			tr.Event.Detail = n.Reason
		}
		if err := putAndRecord(tx, &r, tr, now); err != nil {
			return err
		}
		if n.TriggerID != "" {
			v := append(itob(id), itob(uint64(now.UnixNano()))...)
			if err := triggers.Put([]byte(n.TriggerID), v); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		var tm *TooManyOpenError
		if errors.As(err, &tm) {
			return Request{}, false, tm
		}
		return Request{}, false, fmt.Errorf("create request: %w", err)
	}
	if created {
		s.notify()
	}
	return r, created, nil
}

// openEntry is the open index's value for r: its state and requester, so
// the limit per requester, listing by requester and the metrics' counts
// need not decode the requests.
func openEntry(r *Request) []byte {
	return append(append([]byte(r.State), 0), r.Requester...)
}

// parseOpenEntry splits an open index value.
func parseOpenEntry(v []byte) (state State, requester string) {
	s, req, _ := bytes.Cut(v, []byte{0})
	return State(s), string(req)
}

// awaiting lists requester's requests that are checking or pending, oldest
// first, stopping at limit: the index alone answers, without decoding a
// request.
func awaiting(tx *bolt.Tx, requester string, limit int) []uint64 {
	var ids []uint64
	c := tx.Bucket(bucketOpen).Cursor()
	for k, v := c.First(); k != nil && len(ids) < limit; k, v = c.Next() {
		if state, req := parseOpenEntry(v); req == requester && state.Awaiting() {
			ids = append(ids, btoi(k))
		}
	}
	return ids
}

// Update implements Store. Commits from concurrent callers are batched: each
// change still reads and writes inside the transaction that commits it.
func (s *BoltStore) Update(ctx context.Context, id, doneJob uint64, change func(*Request) (Transition, error)) (Request, error) {
	return s.update(id, doneJob, func(_ *bolt.Tx, r *Request) (Transition, error) { return change(r) })
}

// update runs change on request id inside one (batched) write transaction;
// change may read the transaction but must not write it. A change's
// storage error (wrapped in txError) fails the transaction.
func (s *BoltStore) update(id, doneJob uint64, change func(*bolt.Tx, *Request) (Transition, error)) (Request, error) {
	var out Request
	var changed bool
	var cerr error // change's verdict, which may come with a change
	err := s.commits.update(func(tx *bolt.Tx) error {
		out, changed, cerr = Request{}, false, nil // this function may run more than once
		if doneJob != 0 {
			if err := deleteJob(tx, doneJob); err != nil {
				return err
			}
		}
		r, err := getRequest(tx, id)
		if errors.Is(err, ErrNotFound) {
			cerr = err // a refusal, not a failure: keep the batch's other writes
			return nil
		}
		if err != nil {
			return err
		}
		out = r
		before := r.Target
		tr, verdict := change(tx, &r)
		cerr = verdict
		if !tr.Changed() {
			return nil
		}
		if before != r.Target {
			if err := tx.Bucket(bucketGrants).Delete(append(grantPrefix(before), itob(r.ID)...)); err != nil {
				return err
			}
		}
		if err := putAndRecord(tx, &r, tr, time.Now().UTC()); err != nil {
			return err
		}
		out, changed = r, true
		return nil
	})
	if changed {
		s.notify()
	}
	if err != nil {
		return out, err
	}
	return out, cerr
}

// UpdateGrant implements Store.
func (s *BoltStore) UpdateGrant(ctx context.Context, id, doneJob uint64, change func(*Request, []Request) (Transition, error)) (Request, error) {
	return s.update(id, doneJob, func(tx *bolt.Tx, r *Request) (Transition, error) {
		others, err := grantsOf(tx, r.Target)
		if err != nil {
			return Transition{}, err
		}
		return change(r, others)
	})
}

// grantsOf reads the applied requests of target, skipping any it cannot
// decode (the worker quarantines those).
func grantsOf(tx *bolt.Tx, t Target) ([]Request, error) {
	prefix := grantPrefix(t)
	var out []Request
	c := tx.Bucket(bucketGrants).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		r, err := getRequest(tx, btoi(k[len(prefix):]))
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func grantPrefix(t Target) []byte {
	return []byte(t.ProjectID + "\x00" + t.GroupID + "\x00" + t.RoleID + "\x00")
}

// Get implements Store.
func (s *BoltStore) Get(ctx context.Context, id uint64) (Request, error) {
	var r Request
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		r, err = getRequest(tx, id)
		return err
	})
	return r, err
}

// List implements Store.
func (s *BoltStore) List(ctx context.Context, opt ListOptions) ([]Request, error) {
	var out []Request
	err := s.db.View(func(tx *bolt.Tx) error {
		keep := func(r Request) bool {
			if (opt.State == "" || r.State == opt.State) && (opt.Requester == "" || r.Requester == opt.Requester) {
				out = append(out, r)
			}
			return opt.Limit == 0 || len(out) < opt.Limit
		}
		if opt.Open || opt.State.Open() {
			c := tx.Bucket(bucketOpen).Cursor()
			for k, v := c.Last(); k != nil; k, v = c.Prev() {
				if _, req := parseOpenEntry(v); opt.Requester != "" && req != opt.Requester {
					continue
				}
				r, err := getRequest(tx, btoi(k))
				if err != nil {
					continue // an unreadable record is the worker's to quarantine
				}
				if !keep(r) {
					return nil
				}
			}
			return nil
		}
		c := tx.Bucket(bucketRequests).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			r, err := unmarshalRequest(v)
			if err != nil {
				continue
			}
			if !keep(r) {
				return nil
			}
		}
		return nil
	})
	return out, err
}

// Counts implements Store.
func (s *BoltStore) Counts(ctx context.Context) (Counts, error) {
	c := Counts{Open: map[State]int{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketOpen).ForEach(func(_, v []byte) error {
			state, _ := parseOpenEntry(v)
			c.Open[state]++
			return nil
		})
		c.Jobs = tx.Bucket(bucketOutbox).Stats().KeyN + tx.Bucket(bucketCalls).Stats().KeyN
		c.Quarantined = tx.Bucket(bucketQuarantine).Stats().KeyN
		return err
	})
	return c, err
}

// Audit implements Store.
func (s *BoltStore) Audit(ctx context.Context, id uint64) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		audit := tx.Bucket(bucketAudit)
		c := tx.Bucket(bucketAuditIdx).Cursor()
		prefix := itob(id)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			e, err := unmarshalEvent(audit.Get(k[8:]))
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// DueWakes implements Store. The wakes index holds only requests with
// something due by time, so the scan is as long as that list, not the
// history.
func (s *BoltStore) DueWakes(ctx context.Context, now time.Time, limit int) (ids []uint64, next time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ids, next = nil, time.Time{}
		c := tx.Bucket(bucketWakes).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			at := fromUnixNano(int64(binary.BigEndian.Uint64(v)))
			if !at.After(now) {
				if len(ids) < limit {
					ids = append(ids, btoi(k))
				} else if next.IsZero() || at.Before(next) {
					next = at
				}
			} else if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		return nil
	})
	return ids, next, err
}

// Sweep implements Store: trigger ids older than triggerKeep are forgotten.
func (s *BoltStore) Sweep(ctx context.Context, now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		triggers := tx.Bucket(bucketTriggers)
		var old [][]byte
		c := triggers.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 16 && now.Sub(fromUnixNano(int64(btoi(v[8:])))) > triggerKeep {
				old = append(old, bytes.Clone(k))
			}
		}
		for _, k := range old {
			if err := triggers.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// jobBucket is where jobs of kind wait: OpenAI calls in a queue of their
// own, so that they never wait behind a backlog of Slack messages.
func jobBucket(tx *bolt.Tx, kind JobKind) *bolt.Bucket {
	if kind.Calls() {
		return tx.Bucket(bucketCalls)
	}
	return tx.Bucket(bucketOutbox)
}

// DueJobs implements Store. The scan stops once limit jobs are found, so a
// backlog costs the worker only the jobs it takes (it scans again when one
// of them finishes), not the whole outbox every time.
func (s *BoltStore) DueJobs(ctx context.Context, now time.Time, skip map[uint64]bool, limit JobLimit) (jobs []Job, next time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		jobs, next = nil, time.Time{}
		seen := make(map[uint64]bool)
		for _, q := range []struct {
			bucket []byte
			limit  int
		}{{bucketCalls, limit.Calls}, {bucketOutbox, limit.Messages}} {
			taken := 0
			c := tx.Bucket(q.bucket).Cursor()
			for k, v := c.First(); k != nil && taken < q.limit; k, v = c.Next() {
				j, err := unmarshalJob(v)
				if err != nil {
					jobs = append(jobs, Job{ID: btoi(k), Corrupt: &CorruptError{Kind: "job", Key: btoi(k), Err: err}})
					taken++
					continue
				}
				if seen[j.Lane()] || skip[j.Lane()] {
					continue
				}
				seen[j.Lane()] = true
				j.TakenOver = j.ID <= s.inherited
				if j.NotBefore.After(now) {
					if next.IsZero() || j.NotBefore.Before(next) {
						next = j.NotBefore
					}
					continue
				}
				jobs = append(jobs, j)
				taken++
			}
		}
		return nil
	})
	return jobs, next, err
}

// CompleteJob implements Store. Like every write the Worker makes, its
// commit is batched with concurrent writers'.
func (s *BoltStore) CompleteJob(ctx context.Context, jobID uint64) error {
	return s.commits.update(func(tx *bolt.Tx) error { return deleteJob(tx, jobID) })
}

// RetryJob implements Store.
func (s *BoltStore) RetryJob(ctx context.Context, j Job) error {
	return s.commits.update(func(tx *bolt.Tx) error {
		b := jobBucket(tx, j.Kind)
		if b.Get(itob(j.ID)) == nil {
			return nil
		}
		v, err := marshalJob(j)
		if err != nil {
			return err
		}
		return b.Put(itob(j.ID), v)
	})
}

// Quarantine implements Store.
func (s *BoltStore) Quarantine(ctx context.Context, cerr *CorruptError, now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error { return quarantine(tx, cerr, now) })
}

// quarantineKey is kind, a NUL, and the big-endian key.
func quarantineKey(kind string, key uint64) []byte {
	return append(append([]byte(kind), 0), itob(key)...)
}

func quarantine(tx *bolt.Tx, cerr *CorruptError, now time.Time) error {
	key := itob(cerr.Key)
	var src *bolt.Bucket
	switch cerr.Kind {
	case "request":
		src = tx.Bucket(bucketRequests)
	case "job":
		src = tx.Bucket(bucketOutbox)
		if src.Get(key) == nil {
			src = tx.Bucket(bucketCalls)
		}
	default:
		return fmt.Errorf("quarantine: unknown kind %q", cerr.Kind)
	}
	value := src.Get(key)
	if value == nil {
		return nil // already moved
	}
	v, err := marshalQuarantined(Quarantined{Kind: cerr.Kind, Key: cerr.Key, Reason: cerr.Err.Error(), At: now, Value: bytes.Clone(value)})
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketQuarantine).Put(quarantineKey(cerr.Kind, cerr.Key), v); err != nil {
		return err
	}
	if err := src.Delete(key); err != nil {
		return err
	}
	if cerr.Kind == "request" {
		// Its jobs would only find it missing; its indexes point nowhere.
		for _, b := range [][]byte{bucketOpen, bucketWakes} {
			if err := tx.Bucket(b).Delete(key); err != nil {
				return err
			}
		}
	}
	return nil
}

// Quarantined implements Store.
func (s *BoltStore) Quarantined(ctx context.Context) ([]Quarantined, error) {
	var out []Quarantined
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			q, err := unmarshalQuarantined(v)
			if err != nil {
				q = Quarantined{Kind: "unknown", Reason: err.Error(), Value: bytes.Clone(v)}
			}
			out = append(out, q)
			return nil
		})
	})
	return out, err
}

func getRequest(tx *bolt.Tx, id uint64) (Request, error) {
	v := tx.Bucket(bucketRequests).Get(itob(id))
	if v == nil {
		return Request{}, fmt.Errorf("request %d: %w", id, ErrNotFound)
	}
	r, err := unmarshalRequest(v) // decodes into fresh memory: nothing refers to the page after the tx
	if err != nil {
		return Request{}, &CorruptError{Kind: "request", Key: id, Err: err}
	}
	return r, nil
}

// putRequest writes r and keeps the open and wake indexes in step with it.
func putRequest(tx *bolt.Tx, r *Request) error {
	v, err := marshalRequest(r)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketRequests).Put(itob(r.ID), v); err != nil {
		return err
	}
	return index(tx, r)
}

func index(tx *bolt.Tx, r *Request) error {
	key := itob(r.ID)
	open, wakes := tx.Bucket(bucketOpen), tx.Bucket(bucketWakes)
	var err error
	if r.State.Open() {
		err = open.Put(key, openEntry(r))
	} else {
		err = open.Delete(key)
	}
	if err != nil {
		return err
	}
	gkey := append(grantPrefix(r.Target), key...)
	if r.State == StateApplied {
		err = tx.Bucket(bucketGrants).Put(gkey, nil)
	} else {
		err = tx.Bucket(bucketGrants).Delete(gkey)
	}
	if err != nil {
		return err
	}
	if at := r.NextWake(); !at.IsZero() {
		return wakes.Put(key, itob(uint64(at.UnixNano())))
	}
	return wakes.Delete(key)
}

// putAndRecord writes r, appends tr's audit event and queues its jobs. The
// event's time is tr.Event.At, or now when that is zero.
func putAndRecord(tx *bolt.Tx, r *Request, tr Transition, now time.Time) error {
	if err := putRequest(tx, r); err != nil {
		return err
	}
	return record(tx, r, tr, now)
}

// record appends tr's audit event, linked to the audit chain's head in tx,
// and enqueues its jobs.
func record(tx *bolt.Tx, r *Request, tr Transition, now time.Time) error {
	audit := tx.Bucket(bucketAudit)
	seq, err := audit.NextSequence()
	if err != nil {
		return err
	}
	ev := tr.Event
	ev.ID, ev.RequestID = seq, r.ID
	if ev.At.IsZero() {
		ev.At = now
	}
	if err := link(tx, &ev); err != nil {
		return err
	}
	v, err := marshalEvent(ev)
	if err != nil {
		return err
	}
	if err := audit.Put(itob(seq), v); err != nil {
		return err
	}
	if err := tx.Bucket(bucketAuditIdx).Put(append(itob(r.ID), itob(seq)...), nil); err != nil {
		return err
	}
	outbox := tx.Bucket(bucketOutbox)
	for _, kind := range tr.Jobs {
		seq, err := outbox.NextSequence() // one sequence for both queues: job ids are unique
		if err != nil {
			return err
		}
		v, err := marshalJob(Job{ID: seq, Kind: kind, RequestID: r.ID})
		if err != nil {
			return err
		}
		if err := jobBucket(tx, kind).Put(itob(seq), v); err != nil {
			return err
		}
	}
	return nil
}

// deleteJob removes job id from whichever queue holds it.
func deleteJob(tx *bolt.Tx, id uint64) error {
	if err := tx.Bucket(bucketOutbox).Delete(itob(id)); err != nil {
		return err
	}
	return tx.Bucket(bucketCalls).Delete(itob(id))
}

// Record is a request with its audit trail, as Import writes it.
type Record struct {
	Request Request
	Events  []Event
}

// Import writes finished records as they are, ids included, with their
// audit trails and indexes but no outgoing work, in transactions of up to
// 10,000 requests. The events get new sequence numbers and are chained
// onto this store's audit chain (their ID, Prev and Hash are ignored). It is for copying a history into a store (a migration,
// a benchmark's seed), not for live requests: an id already stored is an
// error, and the store's id sequence moves past the highest id imported.
func (s *BoltStore) Import(ctx context.Context, recs []Record) error {
	const batch = 10_000
	for len(recs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		part := recs[:min(batch, len(recs))]
		recs = recs[len(part):]
		err := s.db.Update(func(tx *bolt.Tx) error {
			requests := tx.Bucket(bucketRequests)
			for i := range part {
				r := part[i].Request
				if requests.Get(itob(r.ID)) != nil {
					return fmt.Errorf("request %d is already stored", r.ID)
				}
				if err := putRequest(tx, &r); err != nil {
					return err
				}
				for _, ev := range part[i].Events {
					if err := record(tx, &r, Transition{Event: ev}, ev.At); err != nil {
						return err
					}
				}
				if r.ID > requests.Sequence() {
					if err := requests.SetSequence(r.ID); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("import requests: %w", err)
		}
	}
	return nil
}
