package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
)

// createReads is everything Create reads, in one statement: the body and
// id of the request made under the trigger id $1 (NULL when none is
// remembered), the open requests of requester $2 that count against the
// limit $3, and a new request id, taken only when one will be used (no
// replay, under the limit), so refused commands leave no gap in the ids
// people see.
const createReads = `WITH t AS (SELECT request_id FROM triggers WHERE trigger_id = $1),
	o AS (SELECT coalesce(array_agg(id ORDER BY id), '{}'::bigint[]) AS ids FROM requests
		WHERE open AND requester = $2 AND state IN ('checking', 'pending'))
	SELECT (SELECT request_id FROM t), (SELECT body FROM requests WHERE id = (SELECT request_id FROM t)), o.ids,
		CASE WHEN NOT EXISTS (SELECT 1 FROM t) AND ($3::int <= 0 OR cardinality(o.ids) < $3::int)
			THEN nextval(pg_get_serial_sequence('requests', 'id')) END
	FROM o`

// Create implements approvals.Store. Its reads and writes are safe from
// other replicas' without a lock of their own: every write transaction
// holds the audit chain head first (beginWrites), so no other Create can
// claim the same trigger id or add to the requester's open requests
// before this one commits.
func (s *Store) Create(ctx context.Context, n approvals.NewRequest, now time.Time, maxOpen int, start func(*approvals.Request) approvals.Transition) (r approvals.Request, created bool, err error) {
	n, err = n.Normalize()
	if err != nil {
		return approvals.Request{}, false, err
	}
	var (
		replayedID, id *int64
		replayedBody   []byte
		open           []int64
	)
	pre := &prefetch{
		sql: createReads, args: []any{n.TriggerID, n.Requester, maxOpen},
		scan: func(row pgx.Row) error { return row.Scan(&replayedID, &replayedBody, &open, &id) },
		keys: []string{"requester:" + n.Requester},
	}
	if n.TriggerID != "" {
		pre.keys = append(pre.keys, "trigger:"+n.TriggerID)
	}
	err = s.commits.update(ctx, true, pre, func(ctx context.Context, w *wtx) error {
		r, created = approvals.Request{}, false // this function may run more than once
		if w.readErr != nil {
			return w.readErr
		}
		if replayedID != nil {
			r, err = decodeRequest(uint64(*replayedID), replayedBody)
			return err
		}
		if maxOpen > 0 && len(open) >= maxOpen {
			ids := make([]uint64, len(open))
			for i, o := range open {
				ids[i] = uint64(o)
			}
			return &approvals.TooManyOpenError{Limit: maxOpen, Open: ids}
		}
		if id == nil {
			return errors.New("no request id was taken")
		}
		if n.TriggerID != "" {
			w.exec("INSERT INTO triggers (trigger_id, request_id, seen_at) VALUES ($1, $2, $3)", n.TriggerID, *id, now)
		}
		r = approvals.Request{
			ID: uint64(*id), Ask: n.Ask, Target: n.Target, Reason: n.Reason,
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
		if err := insertRequest(w, &r); err != nil {
			return err
		}
		if err := record(w, &r, tr, now); err != nil {
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

// lockRequest is the prefetch that reads request id into body and locks
// its row: the compare-and-set of a transition is that lock, held to the
// commit.
func lockRequest(id uint64, body *[]byte) *prefetch {
	return &prefetch{
		sql: "SELECT body FROM requests WHERE id = $1 FOR UPDATE", args: []any{toInt64(id)},
		scan: func(row pgx.Row) error { return row.Scan(body) },
		keys: []string{fmt.Sprint("request:", id)},
	}
}

func decodeRow(id uint64, body []byte, err error) (approvals.Request, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return approvals.Request{}, fmt.Errorf("request %d: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return approvals.Request{}, err
	}
	return decodeRequest(id, body)
}

// decodeRequest decodes request id's stored body; a request whose trigger
// id is remembered but whose row is gone (quarantined) is not found.
func decodeRequest(id uint64, body []byte) (approvals.Request, error) {
	if body == nil {
		return approvals.Request{}, fmt.Errorf("request %d: %w", id, approvals.ErrNotFound)
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

func insertRequest(w *wtx, r *approvals.Request) error {
	cols, err := requestColumns(r)
	if err != nil {
		return err
	}
	w.exec(`INSERT INTO requests (id, state, requester, channel_id, created_at, expires_at, wake_at, open,
		project_id, group_id, role_id, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, append([]any{toInt64(r.ID)}, cols...)...)
	return nil
}

func updateRequest(w *wtx, r *approvals.Request) error {
	cols, err := requestColumns(r)
	if err != nil {
		return err
	}
	w.exec(`UPDATE requests SET state = $2, requester = $3, channel_id = $4, created_at = $5, expires_at = $6,
		wake_at = $7, open = $8, project_id = $9, group_id = $10, role_id = $11, body = $12, version = version + 1 WHERE id = $1`, append([]any{toInt64(r.ID)}, cols...)...)
	return nil
}

// record queues tr's jobs and appends its audit event (time tr.Event.At,
// or now when that is zero), and tells the other replicas there is work.
func record(w *wtx, r *approvals.Request, tr approvals.Transition, now time.Time) error {
	for _, kind := range tr.Jobs {
		if err := insertJob(w, approvals.Job{Kind: kind, RequestID: r.ID}); err != nil {
			return err
		}
	}
	ev := tr.Event
	ev.RequestID = r.ID
	if ev.At.IsZero() {
		ev.At = now
	}
	w.notify = true
	return w.appendEvent(ev)
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
	return s.update(ctx, id, doneJob, func(_ context.Context, _ *wtx, r *approvals.Request) (approvals.Transition, error) {
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
	return s.update(ctx, id, doneJob, func(ctx context.Context, w *wtx, r *approvals.Request) (approvals.Transition, error) {
		others, err := grantsOf(ctx, w, r.Target)
		if err != nil {
			return approvals.Transition{}, errStorage{err}
		}
		return change(r, others)
	})
}

// grantsOf reads and locks the applied requests of target, oldest first,
// skipping any it cannot decode (the worker quarantines those).
func grantsOf(ctx context.Context, w *wtx, t approvals.Target) ([]approvals.Request, error) {
	var bodies [][]byte
	err := w.query(ctx, func(rows pgx.Rows) error {
		var err error
		bodies, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
		return err
	}, `SELECT body FROM requests WHERE state = 'applied' AND project_id = $1 AND group_id = $2 AND role_id = $3
		ORDER BY id FOR UPDATE`, t.ProjectID, t.GroupID, t.RoleID)
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
func (s *Store) update(ctx context.Context, id, doneJob uint64, change func(context.Context, *wtx, *approvals.Request) (approvals.Transition, error)) (approvals.Request, error) {
	var out approvals.Request
	var changed bool
	var cerr error // change's verdict, which may come with a change
	var body []byte
	err := s.commits.update(ctx, !approvals.ByWorker(ctx), lockRequest(id, &body), func(ctx context.Context, w *wtx) error {
		out, changed, cerr = approvals.Request{}, false, nil // this function may run more than once
		if doneJob != 0 {
			w.exec("DELETE FROM jobs WHERE id = $1", toInt64(doneJob))
		}
		r, err := decodeRow(id, body, w.readErr)
		if errors.Is(err, approvals.ErrNotFound) {
			cerr = err // a refusal, not a failure: the job is still done
			return nil
		}
		if err != nil {
			return err
		}
		out = r
		tr, verdict := change(ctx, w, &r)
		if se, ok := verdict.(errStorage); ok {
			return se.err
		}
		cerr = verdict
		if !tr.Changed() {
			return nil
		}
		if err := updateRequest(w, &r); err != nil {
			return err
		}
		if err := record(w, &r, tr, time.Now().UTC()); err != nil {
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
	var body []byte // one statement: no transaction round trips
	err := s.pool.QueryRow(ctx, "SELECT body FROM requests WHERE id = $1", toInt64(id)).Scan(&body)
	return decodeRow(id, body, err)
}

// List implements approvals.Store.
func (s *Store) List(ctx context.Context, opt approvals.ListOptions) ([]approvals.Request, error) {
	// Pages by id, newest first, until opt.Limit readable requests: one
	// that cannot be decoded is skipped (the worker quarantines it) without
	// costing the caller a place, as on bbolt.
	page := int64(opt.Limit)
	if page <= 0 {
		page = math.MaxInt64
	}
	var out []approvals.Request
	before := int64(math.MaxInt64)
	for {
		rows, err := s.pool.Query(ctx, `SELECT id, body FROM requests
			WHERE ($1 = '' OR state = $1) AND ($2 = '' OR requester = $2) AND (NOT $3 OR open) AND id < $5
			ORDER BY id DESC LIMIT $4`, string(opt.State), opt.Requester, opt.Open, page, before)
		if err != nil {
			return nil, err
		}
		var n int64
		var id int64
		var body []byte
		_, err = pgx.ForEachRow(rows, []any{&id, &body}, func() error {
			n, before = n+1, id
			if opt.Limit > 0 && len(out) == opt.Limit {
				return nil
			}
			if r, err := approvals.UnmarshalRequest(body); err == nil {
				out = append(out, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n < page || (opt.Limit > 0 && len(out) >= opt.Limit) {
			return out, nil
		}
	}
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
