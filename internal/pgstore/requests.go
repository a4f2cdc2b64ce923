package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
)

// requesterLock is the first key of the transaction-scoped advisory lock a
// Create with a per-requester limit takes on the requester, so two
// replicas cannot both let a requester's fifth and sixth request through.
const requesterLock int32 = 0x726f6c65 // 'role'

// Create implements approvals.Store.
func (s *Store) Create(ctx context.Context, n approvals.NewRequest, now time.Time, maxOpen int, start func(*approvals.Request) approvals.Transition) (r approvals.Request, created bool, err error) {
	n, err = n.Normalize()
	if err != nil {
		return approvals.Request{}, false, err
	}
	err = s.commits.update(ctx, func(ctx context.Context, tx pgx.Tx) error {
		r, created = approvals.Request{}, false // this function may run more than once
		if n.TriggerID != "" {
			old, found, err := replayed(ctx, tx, n.TriggerID)
			if err != nil || found {
				r = old
				return err
			}
		}
		if maxOpen > 0 {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", requesterLock, n.Requester); err != nil {
				return err
			}
			open, err := awaiting(ctx, tx, n.Requester)
			if err != nil {
				return err
			}
			if len(open) >= maxOpen {
				return &approvals.TooManyOpenError{Limit: maxOpen, Open: open}
			}
		}
		var id int64
		if err := tx.QueryRow(ctx, "SELECT nextval(pg_get_serial_sequence('requests', 'id'))").Scan(&id); err != nil {
			return err
		}
		if n.TriggerID != "" {
			// Claimed before anything else is written: a concurrent Create
			// with the same trigger id waits here for this transaction and
			// then finds the row (ON CONFLICT DO NOTHING), instead of both
			// writing a request.
			tag, err := tx.Exec(ctx, "INSERT INTO triggers (trigger_id, request_id, seen_at) VALUES ($1, $2, $3) ON CONFLICT (trigger_id) DO NOTHING", n.TriggerID, id, now)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				old, found, err := replayed(ctx, tx, n.TriggerID)
				if err == nil && !found {
					err = errors.New("trigger id vanished while being claimed")
				}
				r = old
				return err
			}
		}
		r = approvals.Request{
			ID: uint64(id), Ask: n.Ask, Target: n.Target, Reason: n.Reason,
			Requester: n.Requester, TeamID: n.TeamID, ChannelID: n.ChannelID, ResponseURL: n.ResponseURL,
			CreatedAt: now,
		}
		tr := start(&r)
		if !r.State.Valid() {
			return fmt.Errorf("start left an invalid state %q", r.State)
		}
		tr.Event.Actor, tr.Event.Action = n.Requester, approvals.ActionCreate
		if tr.Event.Detail == "" {
			tr.Event.Detail = n.Reason
		}
		if err := insertRequest(ctx, tx, &r); err != nil {
			return err
		}
		if err := record(ctx, tx, &r, tr, now); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		var tm *approvals.TooManyOpenError
		if errors.As(err, &tm) {
			return approvals.Request{}, false, tm
		}
		return approvals.Request{}, false, fmt.Errorf("create request: %w", err)
	}
	if created {
		s.notify()
	}
	return r, created, nil
}

// replayed returns the request made under triggerID, if it is remembered.
func replayed(ctx context.Context, tx pgx.Tx, triggerID string) (approvals.Request, bool, error) {
	var id int64
	err := tx.QueryRow(ctx, "SELECT request_id FROM triggers WHERE trigger_id = $1", triggerID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return approvals.Request{}, false, nil
	}
	if err != nil {
		return approvals.Request{}, false, err
	}
	r, err := getRequest(ctx, tx, uint64(id), false)
	return r, true, err
}

// awaiting lists requester's requests that are checking or pending, oldest
// first.
func awaiting(ctx context.Context, tx pgx.Tx, requester string) ([]uint64, error) {
	rows, err := tx.Query(ctx, "SELECT id FROM requests WHERE open AND requester = $1 AND state IN ('checking', 'pending') ORDER BY id", requester)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = uint64(id)
	}
	return out, err
}

// rowQuerier is a transaction or the pool.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// getRequest reads request id, locking its row when forUpdate: the
// compare-and-set of a transition is that lock, held to the commit.
func getRequest(ctx context.Context, q rowQuerier, id uint64, forUpdate bool) (approvals.Request, error) {
	query := "SELECT body FROM requests WHERE id = $1"
	if forUpdate {
		query += " FOR UPDATE"
	}
	var body []byte
	err := q.QueryRow(ctx, query, toInt64(id)).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return approvals.Request{}, fmt.Errorf("request %d: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return approvals.Request{}, err
	}
	r, err := approvals.UnmarshalRequest(body)
	if err != nil {
		return approvals.Request{}, &approvals.CorruptError{Kind: "request", Key: id, Err: err}
	}
	return r, nil
}

// requestColumns are the indexed copies of r's fields, after id.
func requestColumns(r *approvals.Request) ([]any, error) {
	body, err := approvals.MarshalRequest(r)
	if err != nil {
		return nil, err
	}
	var expires *time.Time
	if !r.ExpiresAt.IsZero() {
		expires = &r.ExpiresAt
	}
	return []any{string(r.State), r.Requester, r.ChannelID, r.CreatedAt, expires, ceilMicro(r.NextWake()), r.State.Open(),
		r.Target.ProjectID, r.Target.GroupID, r.Target.RoleID, body}, nil
}

// requestColumnNames name requestColumns, after id.
var requestColumnNames = []string{"state", "requester", "channel_id", "created_at", "expires_at", "wake_at", "open",
	"project_id", "group_id", "role_id", "body"}

func insertRequest(ctx context.Context, tx pgx.Tx, r *approvals.Request) error {
	cols, err := requestColumns(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO requests (id, state, requester, channel_id, created_at, expires_at, wake_at, open,
		project_id, group_id, role_id, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, append([]any{toInt64(r.ID)}, cols...)...)
	return err
}

func updateRequest(ctx context.Context, tx pgx.Tx, r *approvals.Request) error {
	cols, err := requestColumns(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE requests SET state = $2, requester = $3, channel_id = $4, created_at = $5, expires_at = $6,
		wake_at = $7, open = $8, project_id = $9, group_id = $10, role_id = $11, body = $12, version = version + 1 WHERE id = $1`, append([]any{toInt64(r.ID)}, cols...)...)
	return err
}

// record queues tr's jobs and appends its audit event (time tr.Event.At,
// or now when that is zero), and tells the other replicas there is work.
func record(ctx context.Context, tx pgx.Tx, r *approvals.Request, tr approvals.Transition, now time.Time) error {
	for _, kind := range tr.Jobs {
		if err := insertJob(ctx, tx, approvals.Job{Kind: kind, RequestID: r.ID}); err != nil {
			return err
		}
	}
	ev := tr.Event
	ev.RequestID = r.ID
	if ev.At.IsZero() {
		ev.At = now
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel); err != nil {
		return err
	}
	// Last, so the chain head is held only for the append and the commit.
	return appendEvent(ctx, tx, ev)
}

// appendEvent appends ev to the one audit chain: under the chain head row's
// lock it takes the next seq, links ev to the head's hash
// (approvals.LinkEvent: Prev, then Hash over ev and Prev) and makes ev the
// head, so appends from every replica are chained one at a time, in seq
// order, as bbolt's record chains them in one file.
func appendEvent(ctx context.Context, tx pgx.Tx, ev approvals.Event) error {
	var seq int64
	var head []byte
	if err := tx.QueryRow(ctx, "SELECT seq, hash FROM chain_head FOR UPDATE").Scan(&seq, &head); err != nil {
		return fmt.Errorf("lock the audit chain head: %w", err)
	}
	ev.ID = uint64(seq + 1)
	approvals.LinkEvent(&ev, headHash(head))
	body, err := approvals.MarshalEvent(ev)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO events (seq, request_id, at, body, prev, hash) VALUES ($1, $2, $3, $4, $5, $6)",
		seq+1, toInt64(ev.RequestID), ev.At, body, []byte(ev.Prev), []byte(ev.Hash)); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "UPDATE chain_head SET seq = $1, hash = $2", seq+1, []byte(ev.Hash))
	return err
}

// headHash is the Prev of the event appended after a chain head whose
// stored hash is h: the genesis hash while the chain is empty.
func headHash(h []byte) string {
	if len(h) == 0 {
		return approvals.GenesisHash
	}
	return string(h)
}

// Update implements approvals.Store. The request's row is locked for the
// transaction (SELECT … FOR UPDATE), so change sees the state as committed
// and no other replica's transition can interleave: a compare-and-set.
// Commits from concurrent callers are batched (groupCommit); change may
// run more than once.
func (s *Store) Update(ctx context.Context, id, doneJob uint64, change func(*approvals.Request) (approvals.Transition, error)) (approvals.Request, error) {
	return s.update(ctx, id, doneJob, func(_ context.Context, _ pgx.Tx, r *approvals.Request) (approvals.Transition, error) {
		return change(r)
	})
}

// UpdateGrant implements approvals.Store. After the request's row, it
// locks and reads the applied requests of the same project, group and
// role (the request itself included, as bbolt's grants index has it), so
// change decides with the grants as committed and none of them can change
// before this transaction commits. The chain head lock every write takes
// first (writeTx) already orders writers; the row locks keep the guarantee
// should a write ever skip it.
func (s *Store) UpdateGrant(ctx context.Context, id, doneJob uint64, change func(r *approvals.Request, others []approvals.Request) (approvals.Transition, error)) (approvals.Request, error) {
	return s.update(ctx, id, doneJob, func(ctx context.Context, tx pgx.Tx, r *approvals.Request) (approvals.Transition, error) {
		others, err := grantsOf(ctx, tx, r.Target)
		if err != nil {
			return approvals.Transition{}, errStorage{err}
		}
		return change(r, others)
	})
}

// grantsOf reads and locks the applied requests of target, oldest first,
// skipping any it cannot decode (the worker quarantines those).
func grantsOf(ctx context.Context, tx pgx.Tx, t approvals.Target) ([]approvals.Request, error) {
	rows, err := tx.Query(ctx, `SELECT body FROM requests WHERE state = 'applied' AND project_id = $1 AND group_id = $2 AND role_id = $3
		ORDER BY id FOR UPDATE`, t.ProjectID, t.GroupID, t.RoleID)
	if err != nil {
		return nil, err
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, err
	}
	var out []approvals.Request
	for _, b := range bodies {
		r, err := approvals.UnmarshalRequest(b)
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// errStorage marks an error of the database (not change's verdict) that
// change returned from inside update: it fails the transaction.
type errStorage struct{ err error }

func (e errStorage) Error() string { return e.err.Error() }
func (e errStorage) Unwrap() error { return e.err }

// update is Update and UpdateGrant: change runs in the transaction, with
// the request's row locked.
func (s *Store) update(ctx context.Context, id, doneJob uint64, change func(context.Context, pgx.Tx, *approvals.Request) (approvals.Transition, error)) (approvals.Request, error) {
	var out approvals.Request
	var changed bool
	var cerr error // change's verdict, which may come with a change
	err := s.commits.update(ctx, func(ctx context.Context, tx pgx.Tx) error {
		out, changed, cerr = approvals.Request{}, false, nil // this function may run more than once
		if doneJob != 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM jobs WHERE id = $1", toInt64(doneJob)); err != nil {
				return err
			}
		}
		r, err := getRequest(ctx, tx, id, true)
		if errors.Is(err, approvals.ErrNotFound) {
			cerr = err // a refusal, not a failure: the job is still done
			return nil
		}
		if err != nil {
			return err
		}
		out = r
		tr, verdict := change(ctx, tx, &r)
		if se, ok := verdict.(errStorage); ok {
			return se.err
		}
		cerr = verdict
		if !tr.Changed() {
			return nil
		}
		if err := updateRequest(ctx, tx, &r); err != nil {
			return err
		}
		if err := record(ctx, tx, &r, tr, time.Now().UTC()); err != nil {
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

// Get implements approvals.Store.
func (s *Store) Get(ctx context.Context, id uint64) (approvals.Request, error) {
	return getRequest(ctx, s.pool, id, false) // one statement: no transaction round trips
}

// List implements approvals.Store.
func (s *Store) List(ctx context.Context, opt approvals.ListOptions) ([]approvals.Request, error) {
	var limit *int64
	if opt.Limit > 0 {
		l := int64(opt.Limit)
		limit = &l
	}
	rows, err := s.pool.Query(ctx, `SELECT body FROM requests
		WHERE ($1 = '' OR state = $1) AND ($2 = '' OR requester = $2) AND (NOT $3 OR open)
		ORDER BY id DESC LIMIT $4`, string(opt.State), opt.Requester, opt.Open, limit)
	if err != nil {
		return nil, err
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, err
	}
	var out []approvals.Request
	for _, b := range bodies {
		r, err := approvals.UnmarshalRequest(b)
		if err != nil {
			continue // an unreadable record is the worker's to quarantine
		}
		out = append(out, r)
	}
	return out, nil
}

// Audit implements approvals.Store.
func (s *Store) Audit(ctx context.Context, id uint64) ([]approvals.Event, error) {
	rows, err := s.pool.Query(ctx, "SELECT body FROM events WHERE request_id = $1 ORDER BY seq", toInt64(id))
	if err != nil {
		return nil, err
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, err
	}
	out := make([]approvals.Event, 0, len(bodies))
	for _, b := range bodies {
		e, err := approvals.UnmarshalEvent(b)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// DueWakes implements approvals.Store. Two replicas may both act on the
// same wake; the transition each runs (approvals.Tick) is a compare-and-set
// under the row lock, so the second finds nothing left to do.
func (s *Store) DueWakes(ctx context.Context, now time.Time, limit int) (ids []uint64, next time.Time, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ids, next = nil, time.Time{}
		rows, err := tx.Query(ctx, "SELECT id, wake_at FROM requests WHERE wake_at <= $1 ORDER BY id LIMIT $2", now, limit+1)
		if err != nil {
			return err
		}
		type due struct {
			ID     int64
			WakeAt time.Time
		}
		dues, err := pgx.CollectRows(rows, pgx.RowToStructByPos[due])
		if err != nil {
			return err
		}
		for i, d := range dues {
			if i < limit {
				ids = append(ids, uint64(d.ID))
			} else {
				next = d.WakeAt.UTC()
			}
		}
		var ahead *time.Time
		if err := tx.QueryRow(ctx, "SELECT min(wake_at) FROM requests WHERE wake_at > $1", now).Scan(&ahead); err != nil {
			return err
		}
		if ahead != nil && (next.IsZero() || ahead.Before(next)) {
			next = ahead.UTC()
		}
		return nil
	})
	return ids, next, err
}

// Sweep implements approvals.Store: trigger ids older than
// approvals.TriggerKeep, and remembered keys past their time, are
// forgotten.
func (s *Store) Sweep(ctx context.Context, now time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM triggers WHERE seen_at < $1", now.Add(-approvals.TriggerKeep)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM remembered WHERE until < now()")
		return err
	})
}

// Remember records key for ttl and reports whether it was new: false when
// the key was remembered already and its time has not run out. It is for
// deduplicating Socket Mode envelopes that Slack may deliver to more than
// one replica's connection; Sweep forgets expired keys.
func (s *Store) Remember(ctx context.Context, key string, ttl time.Duration) (first bool, err error) {
	err = s.pool.QueryRow(ctx, `INSERT INTO remembered (key, until) VALUES ($1, now() + $2)
		ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until WHERE remembered.until < now()
		RETURNING true`, key, ttl).Scan(&first)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return first, err
}

// Counts implements approvals.Store.
func (s *Store) Counts(ctx context.Context) (approvals.Counts, error) {
	c := approvals.Counts{Open: map[approvals.State]int{}}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT state, count(*) FROM requests WHERE open GROUP BY state")
		if err != nil {
			return err
		}
		var state string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
			c.Open[approvals.State(state)] = n
			return nil
		})
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM quarantine)").Scan(&c.Jobs, &c.Quarantined)
	})
	return c, err
}

// Quarantine implements approvals.Store.
func (s *Store) Quarantine(ctx context.Context, cerr *approvals.CorruptError, now time.Time) error {
	var query string
	switch cerr.Kind {
	case "request":
		query = "DELETE FROM requests WHERE id = $1 RETURNING body::text"
	case "job":
		query = "DELETE FROM jobs WHERE id = $1 RETURNING body::text"
	default:
		return fmt.Errorf("quarantine: unknown kind %q", cerr.Kind)
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var value string
		err := tx.QueryRow(ctx, query, toInt64(cerr.Key)).Scan(&value)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already moved
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO quarantine (kind, key, reason, at, value) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (kind, key) DO UPDATE SET reason = EXCLUDED.reason, at = EXCLUDED.at, value = EXCLUDED.value`,
			cerr.Kind, toInt64(cerr.Key), cerr.Err.Error(), now, []byte(value))
		return err
	})
}

// Quarantined implements approvals.Store.
func (s *Store) Quarantined(ctx context.Context) ([]approvals.Quarantined, error) {
	rows, err := s.pool.Query(ctx, "SELECT kind, key, reason, at, value FROM quarantine ORDER BY kind, key")
	if err != nil {
		return nil, err
	}
	var out []approvals.Quarantined
	var q approvals.Quarantined
	var key int64
	_, err = pgx.ForEachRow(rows, []any{&q.Kind, &key, &q.Reason, &q.At, &q.Value}, func() error {
		q.Key, q.At = uint64(key), q.At.UTC()
		out = append(out, q)
		q = approvals.Quarantined{}
		return nil
	})
	return out, err
}
