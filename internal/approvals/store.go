package approvals

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// JobKind names a piece of outgoing work recorded with the transition that
// causes it.
type JobKind string

// The kinds of outgoing work. Jobs of one request run in the order they were
// recorded.
const (
	JobPostApproval   JobKind = "post_approval"   // chat.postMessage the approval message
	JobUpdateApproval JobKind = "update_approval" // chat.update it to the current state
	JobAssign         JobKind = "assign"          // call the OpenAI Admin API
	JobPostResult     JobKind = "post_result"     // post the assignment summary or the error
	JobTellRequester  JobKind = "tell_requester"  // tell the requester privately why nothing happened
)

// Job is one entry of the outbox.
type Job struct {
	ID        uint64
	Kind      JobKind
	RequestID uint64
	Attempts  int       // failed attempts so far
	NotBefore time.Time // do not try before this; zero means now
	FirstTry  time.Time // when the first attempt started
	LastError string
	// Ambiguous is set once an attempt may have taken effect unseen.
	Ambiguous bool
}

var (
	bucketRequests = []byte("requests") // id → request
	bucketOpen     = []byte("open")     // id → expires_at (pending and approved requests only)
	bucketOutbox   = []byte("outbox")   // seq → job (Slack messages)
	bucketCalls    = []byte("calls")    // seq → assign job; seq shared with outbox
	bucketAudit    = []byte("audit")    // seq → event
	bucketAuditIdx = []byte("audit_by_request")
	bucketTriggers = []byte("triggers") // trigger_id → request id + created_at
)

// noExpiry is the open index's expiry for approved requests.
const noExpiry = math.MaxInt64

// triggerKeep is how long a command's trigger id is remembered to recognise
// a replayed delivery; Slack rejects signatures older than 5 minutes anyway.
const triggerKeep = 10 * time.Minute

// Store keeps requests, their audit trail and the outbox in one bbolt file.
// Every exported method is one transaction. A Store is safe for concurrent
// use; Close it when done.
type Store struct {
	db      *bolt.DB
	commits *groupCommit // the write transactions of the hot paths
	changes chan struct{}
}

// Open opens (creating with mode 0600) the bbolt file at path. It fails after
// a second when another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the file is locked by another process (is rolegate already running?)", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRequests, bucketOpen, bucketOutbox, bucketCalls, bucketAudit, bucketAuditIdx, bucketTriggers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: create buckets: %w", path, err)
	}
	return &Store{db: db, commits: &groupCommit{db: db}, changes: make(chan struct{}, 1)}, nil
}

// OpenSnapshot opens a read-only copy of the file at path, for listing while
// the bot holds the file: bbolt's lock keeps a second opener out, so the file
// is copied and the copy checked. The returned cleanup removes the copy.
func OpenSnapshot(path string) (*Store, func(), error) {
	var lastErr error
	for range 3 {
		tmp, err := os.CreateTemp("", "rolegate-snapshot-*.db")
		if err != nil {
			return nil, nil, fmt.Errorf("snapshot %s: %w", path, err)
		}
		cleanup := func() { os.Remove(tmp.Name()) }
		src, err := os.ReadFile(path)
		if err == nil {
			_, err = tmp.Write(src)
		}
		tmp.Close()
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("snapshot %s: %w", path, err)
		}
		db, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err == nil {
			err = db.View(func(tx *bolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				if tx.Bucket(bucketRequests) == nil {
					return errors.New("not a rolegate database")
				}
				return nil
			})
			if err == nil {
				s := &Store{db: db, commits: &groupCommit{db: db}, changes: make(chan struct{}, 1)}
				return s, func() { db.Close(); cleanup() }, nil
			}
			db.Close()
		}
		cleanup()
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, nil, fmt.Errorf("snapshot %s: %w", path, lastErr)
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Changes is signalled (without blocking) after every commit that adds
// outgoing work, so the Worker wakes without polling.
func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Create stores a new pending request and the job that posts its approval
// message, in one transaction. Commits from concurrent callers are batched.
// When n.TriggerID was seen in the last few minutes, the request made then is
// returned with created false and nothing is written.
func (s *Store) Create(ctx context.Context, n NewRequest, now time.Time, ttl time.Duration, required int) (r Request, created bool, err error) {
	n.Reason = strings.TrimSpace(n.Reason)
	if err := n.Validate(); err != nil {
		return Request{}, false, err
	}
	if required < 1 {
		return Request{}, false, fmt.Errorf("%w: approvals required must be at least 1", ErrInvalid)
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
		id, err := tx.Bucket(bucketRequests).NextSequence()
		if err != nil {
			return err
		}
		r = Request{
			ID: id, State: StatePending, Target: n.Target, Reason: n.Reason,
			Requester: n.Requester, TeamID: n.TeamID, ChannelID: n.ChannelID, ResponseURL: n.ResponseURL,
			CreatedAt: now, ExpiresAt: now.Add(ttl), Required: required,
		}
		if err := putRequest(tx, &r); err != nil {
			return err
		}
		if n.TriggerID != "" {
			v := append(itob(id), itob(uint64(now.UnixNano()))...)
			if err := triggers.Put([]byte(n.TriggerID), v); err != nil {
				return err
			}
		}
		created = true
		return record(tx, &r, transition{event: Event{Actor: n.Requester, Action: ActionCreate, Detail: n.Reason}, jobs: []JobKind{JobPostApproval}}, now)
	})
	if err != nil {
		return Request{}, false, fmt.Errorf("create request: %w", err)
	}
	if created {
		s.notify()
	}
	return r, created, nil
}

// Decide applies actor's action to request id as one compare-and-set
// transaction. eligible says whether actor is a configured approver;
// channelID is where the click came from. It returns the request as stored
// afterwards. Errors: ErrNotFound, ErrWrongChannel, *NotPendingError,
// ErrExpired (the request was expired by this call), ErrSelfApproval,
// ErrNotApprover, ErrNotRequester, ErrAlreadyVoted. Commits from concurrent
// callers are batched, like Create's: each decision still reads and writes
// inside the transaction that commits it.
func (s *Store) Decide(ctx context.Context, id uint64, actor string, action Action, channelID string, eligible bool, now time.Time) (Request, error) {
	var out Request
	var changed bool
	var derr error // a refusal that may still commit a transition (expiry)
	err := s.commits.update(func(tx *bolt.Tx) error {
		out, changed, derr = Request{}, false, nil // this function may run more than once
		r, err := getRequest(tx, id)
		if errors.Is(err, ErrNotFound) {
			derr = err // a refusal, not a failure: keep the batch's other decisions
			return nil
		}
		if err != nil {
			return err
		}
		out = r
		if channelID != r.ChannelID {
			derr = ErrWrongChannel
			return nil
		}
		var tr transition
		tr, derr = decide(&r, actor, action, eligible, now)
		if tr.event.Action == "" {
			return nil
		}
		if err := putAndRecord(tx, &r, tr, now); err != nil {
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
	return out, derr
}

// Get returns request id.
func (s *Store) Get(ctx context.Context, id uint64) (Request, error) {
	var r Request
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		r, err = getRequest(tx, id)
		return err
	})
	return r, err
}

// ListOptions filters List.
type ListOptions struct {
	State State // empty for every state
	Limit int   // 0 for no limit
}

// List returns requests newest first. Listing open states (pending,
// approved) reads only the open index, so it costs nothing for a long
// finished history.
func (s *Store) List(ctx context.Context, opt ListOptions) ([]Request, error) {
	var out []Request
	err := s.db.View(func(tx *bolt.Tx) error {
		keep := func(r Request) bool {
			if opt.State == "" || r.State == opt.State {
				out = append(out, r)
			}
			return opt.Limit == 0 || len(out) < opt.Limit
		}
		if opt.State == StatePending || opt.State == StateApproved {
			c := tx.Bucket(bucketOpen).Cursor()
			for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
				r, err := getRequest(tx, btoi(k))
				if err != nil {
					return err
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
				return err
			}
			if !keep(r) {
				return nil
			}
		}
		return nil
	})
	return out, err
}

// CountOpen returns how many requests are pending and approved.
func (s *Store) CountOpen(ctx context.Context) (pending, approved int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOpen).ForEach(func(k, _ []byte) error {
			r, err := getRequest(tx, btoi(k))
			if err != nil {
				return err
			}
			if r.State == StatePending {
				pending++
			} else {
				approved++
			}
			return nil
		})
	})
	return pending, approved, err
}

// Audit returns request id's audit trail, oldest first.
func (s *Store) Audit(ctx context.Context, id uint64) ([]Event, error) {
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

// ExpireDue moves every pending request whose expiry is at or before now to
// StateExpired and forgets trigger ids older than a few minutes. It returns
// the ids expired and the earliest expiry still ahead (zero if none).
func (s *Store) ExpireDue(ctx context.Context, now time.Time) (expired []uint64, next time.Time, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		expired, next = nil, time.Time{}
		c := tx.Bucket(bucketOpen).Cursor()
		var due []uint64
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if binary.BigEndian.Uint64(v) == noExpiry {
				continue
			}
			at := fromUnixNano(int64(binary.BigEndian.Uint64(v)))
			if !at.After(now) {
				due = append(due, btoi(k))
			} else if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		for _, id := range due {
			r, err := getRequest(tx, id)
			if err != nil {
				return err
			}
			if r.State != StatePending {
				continue // approved requests are past deciding; the worker finishes them
			}
			if err := putAndRecord(tx, &r, expire(&r, now), now); err != nil {
				return err
			}
			expired = append(expired, id)
		}
		triggers := tx.Bucket(bucketTriggers)
		var old [][]byte
		tc := triggers.Cursor()
		for k, v := tc.First(); k != nil; k, v = tc.Next() {
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
	if len(expired) > 0 {
		s.notify()
	}
	return expired, next, err
}

// Lane is the ordering key of j: the jobs of one lane run one at a time,
// oldest first. A request has two lanes, its Slack messages and its OpenAI
// call, so a Slack outage does not hold up the assignment (the result
// message is only queued once the call is done, so it still comes after).
func (j Job) Lane() uint64 {
	if j.Kind == JobAssign {
		return j.RequestID<<1 | 1
	}
	return j.RequestID << 1
}

// jobBucket is where jobs of kind wait: OpenAI calls in a queue of their
// own, so that they never wait behind a backlog of Slack messages.
func jobBucket(tx *bolt.Tx, kind JobKind) *bolt.Bucket {
	if kind == JobAssign {
		return tx.Bucket(bucketCalls)
	}
	return tx.Bucket(bucketOutbox)
}

// DueJobs returns up to limit jobs that may run at now: OpenAI calls first,
// then Slack messages, each oldest first and at most one per lane (see
// Job.Lane): a lane's later jobs wait for its earlier ones, and lanes in busy
// are skipped entirely. next is the earliest NotBefore of a job that is not
// yet due (zero if none) among the jobs scanned: the scan stops once limit
// jobs are found, so a backlog costs the worker only the jobs it takes (it
// scans again when one of them finishes), not the whole outbox every time.
func (s *Store) DueJobs(ctx context.Context, now time.Time, busy map[uint64]bool, limit int) (jobs []Job, next time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		seen := make(map[uint64]bool)
		for _, bucket := range [][]byte{bucketCalls, bucketOutbox} {
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.First(); k != nil && len(jobs) < limit; k, v = c.Next() {
				j, err := unmarshalJob(v)
				if err != nil {
					return err
				}
				if seen[j.Lane()] || busy[j.Lane()] {
					continue
				}
				seen[j.Lane()] = true
				if j.NotBefore.After(now) {
					if next.IsZero() || j.NotBefore.Before(next) {
						next = j.NotBefore
					}
					continue
				}
				jobs = append(jobs, j)
			}
		}
		return nil
	})
	return jobs, next, err
}

// PendingJobs returns how many jobs the outbox holds.
func (s *Store) PendingJobs(ctx context.Context) (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN + tx.Bucket(bucketCalls).Stats().KeyN
		return nil
	})
	return n, err
}

// CompleteJob removes a delivered job from the outbox. Like every write the
// Worker makes, its commit is batched with concurrent writers'.
func (s *Store) CompleteJob(ctx context.Context, jobID uint64) error {
	return s.commits.update(func(tx *bolt.Tx) error { return deleteJob(tx, jobID) })
}

// RetryJob stores j (with its attempt count, error and NotBefore updated by
// the caller) back into the outbox, unless it was completed meanwhile.
func (s *Store) RetryJob(ctx context.Context, j Job) error {
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

// Applied completes assign job jobID: request id moves from approved to
// applied with the assignment, and the messages reporting it are queued.
func (s *Store) Applied(ctx context.Context, jobID, id uint64, a Assignment, now time.Time) (Request, error) {
	return s.finishJob(jobID, id, now, func(r *Request) (transition, error) { return applied(r, a, now) })
}

// Failed completes assign job jobID: request id moves from approved to
// failed with the API's error, and the messages reporting it are queued.
func (s *Store) Failed(ctx context.Context, jobID, id uint64, f Failure, now time.Time) (Request, error) {
	return s.finishJob(jobID, id, now, func(r *Request) (transition, error) { return failed(r, f, now) })
}

// Unseen completes post job jobID when Slack refused the approval message
// for good: a pending request is cancelled (nobody could decide it) and the
// requester is told privately why.
func (s *Store) Unseen(ctx context.Context, jobID, id uint64, why string, now time.Time) (Request, error) {
	return s.finishJob(jobID, id, now, func(r *Request) (transition, error) { return unseen(r, why, now) })
}

// Posted completes post job jobID: it records the approval message's ts.
func (s *Store) Posted(ctx context.Context, jobID, id uint64, ts string, now time.Time) (Request, error) {
	return s.finishJob(jobID, id, now, func(r *Request) (transition, error) {
		r.MessageTS = ts
		return transition{event: Event{Actor: SystemActor, Action: ActionPosted, Detail: ts}}, nil
	})
}

// finishJob deletes job jobID and applies change to request id in one
// transaction. A change that does not apply (the request moved on) still
// completes the job, so it is not retried forever; its error is returned.
// The commit is batched with concurrent writers' (the worker runs several
// jobs at once, and requests and decisions keep arriving).
func (s *Store) finishJob(jobID, id uint64, now time.Time, change func(*Request) (transition, error)) (Request, error) {
	var out Request
	var queued bool
	err := s.commits.update(func(tx *bolt.Tx) error {
		out, queued = Request{}, false // this function may run more than once
		if err := deleteJob(tx, jobID); err != nil {
			return err
		}
		r, err := getRequest(tx, id)
		if err != nil {
			return err
		}
		out = r
		tr, cerr := change(&r)
		if cerr != nil {
			var np *NotPendingError
			if errors.As(cerr, &np) {
				return nil // job done; nothing to change
			}
			return cerr
		}
		if err := putAndRecord(tx, &r, tr, now); err != nil {
			return err
		}
		out, queued = r, len(tr.jobs) > 0
		return nil
	})
	if queued {
		s.notify()
	}
	return out, err
}

// Check verifies the file's consistency (bbolt's tx.Check), returning the
// first problem found.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

func getRequest(tx *bolt.Tx, id uint64) (Request, error) {
	v := tx.Bucket(bucketRequests).Get(itob(id))
	if v == nil {
		return Request{}, fmt.Errorf("request %d: %w", id, ErrNotFound)
	}
	return unmarshalRequest(v) // decodes into fresh memory: nothing refers to the page after the tx
}

// putRequest writes r and keeps the open index in step with its state.
func putRequest(tx *bolt.Tx, r *Request) error {
	v, err := marshalRequest(r)
	if err != nil {
		return err
	}
	key := itob(r.ID)
	if err := tx.Bucket(bucketRequests).Put(key, v); err != nil {
		return err
	}
	open := tx.Bucket(bucketOpen)
	switch r.State {
	case StatePending:
		return open.Put(key, itob(uint64(r.ExpiresAt.UnixNano())))
	case StateApproved:
		return open.Put(key, itob(noExpiry)) // past deciding: nothing to expire
	}
	return open.Delete(key)
}

func putAndRecord(tx *bolt.Tx, r *Request, tr transition, now time.Time) error {
	if err := putRequest(tx, r); err != nil {
		return err
	}
	return record(tx, r, tr, now)
}

// record appends tr's audit event and enqueues its jobs.
func record(tx *bolt.Tx, r *Request, tr transition, now time.Time) error {
	audit := tx.Bucket(bucketAudit)
	seq, err := audit.NextSequence()
	if err != nil {
		return err
	}
	ev := tr.event
	ev.ID, ev.RequestID, ev.At = seq, r.ID, now
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
	for _, kind := range tr.jobs {
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

// Ping reports whether the file is open and readable.
func (s *Store) Ping() error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}
