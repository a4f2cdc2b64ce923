package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
)

// migratedOwner is the leased_by of a job Import copied: the bbolt
// process that last held it.
const migratedOwner = "bbolt (migrate-store)"

// Import writes d (a bbolt file's whole content, approvals.BoltStore.Dump)
// into an empty database in one transaction: requests and jobs keep their
// ids, events their seq (and so their order in the audit chain), and the
// id sequences and the chain head move past them. A database that already
// holds requests or events is refused: Import copies, it does not merge.
func (s *Store) Import(ctx context.Context, d approvals.Dump) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT (SELECT count(*) FROM requests) + (SELECT count(*) FROM events) + (SELECT count(*) FROM jobs)").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errors.New("the database already holds requests: migrate into an empty database")
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE requests, events, jobs, chain_head IN EXCLUSIVE MODE"); err != nil {
			return err
		}
		var reqRows, evRows, jobRows [][]any
		var events []approvals.Event
		for i := range d.Records {
			r := d.Records[i].Request
			cols, err := requestColumns(&r)
			if err != nil {
				return err
			}
			reqRows = append(reqRows, append([]any{toInt64(r.ID)}, cols...))
			events = append(events, d.Records[i].Events...)
		}
		events = append(events, d.Orphaned...)
		// Events in seq order: the chain's order.
		slices.SortFunc(events, func(a, b approvals.Event) int { return cmp.Compare(a.ID, b.ID) })
		var head int64
		var headHash []byte
		for _, ev := range events {
			body, err := approvals.MarshalEvent(ev)
			if err != nil {
				return err
			}
			// Prev and Hash are copied as they are, never recomputed: the
			// copy verifies only if the source did, and appends continue
			// the source's chain from its head.
			prev, hash := []byte(ev.Prev), []byte(ev.Hash)
			evRows = append(evRows, []any{toInt64(ev.ID), toInt64(ev.RequestID), ev.At, body, prev, hash})
			head, headHash = toInt64(ev.ID), hash
		}
		for _, j := range d.Jobs {
			body, err := approvals.MarshalJob(j)
			if err != nil {
				return err
			}
			// leased_by names the bbolt file's last process, with no lease
			// (leased_until stays NULL): the first claim hands the job out
			// at once, marked TakenOver, since that process may have been
			// running it when it stopped (a message posted unrecorded).
			jobRows = append(jobRows, []any{toInt64(j.ID), toInt64(j.RequestID), string(j.Kind), j.Kind.Calls(), ceilMicro(j.NotBefore), body, migratedOwner})
		}
		copies := []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"requests", append([]string{"id"}, requestColumnNames...), reqRows},
			{"events", []string{"seq", "request_id", "at", "body", "prev", "hash"}, evRows},
			{"jobs", []string{"id", "request_id", "kind", "calls", "not_before", "body", "leased_by"}, jobRows},
		}
		for _, c := range copies {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
				return fmt.Errorf("copy %s: %w", c.table, err)
			}
		}
		for _, q := range d.Quarantined {
			if _, err := tx.Exec(ctx, "INSERT INTO quarantine (kind, key, reason, at, value) VALUES ($1, $2, $3, $4, $5)",
				q.Kind, toInt64(q.Key), q.Reason, q.At, q.Value); err != nil {
				return err
			}
		}
		// The sequences continue after every id the source handed out, kept
		// or not (a quarantined request's id stays taken: its events and
		// its quarantine record name it).
		if _, err := tx.Exec(ctx, `SELECT
			setval(pg_get_serial_sequence('requests', 'id'), greatest($1, (SELECT max(id) FROM requests), (SELECT max(request_id) FROM events), 1), greatest($1, (SELECT max(id) FROM requests), (SELECT max(request_id) FROM events)) > 0),
			setval(pg_get_serial_sequence('jobs', 'id'), greatest($2, (SELECT max(id) FROM jobs), 1), greatest($2, (SELECT max(id) FROM jobs)) > 0)`,
			toInt64(d.RequestSeq), toInt64(d.JobSeq)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE chain_head SET seq = $1, hash = $2", head, headHash)
		return err
	})
}

// Dump reads the whole database in one repeatable-read transaction, in the
// shape of approvals.BoltStore.Dump, so a copy can be compared with its
// source record by record.
func (s *Store) Dump(ctx context.Context) (approvals.Dump, error) {
	var d approvals.Dump
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var reqSeq, jobSeq int64
		if err := tx.QueryRow(ctx, `SELECT
			(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM requests_id_seq),
			(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM jobs_id_seq)`).Scan(&reqSeq, &jobSeq); err != nil {
			return err
		}
		d.RequestSeq, d.JobSeq = uint64(reqSeq), uint64(jobSeq)
		events := map[uint64][]approvals.Event{}
		rows, err := tx.Query(ctx, "SELECT body FROM events ORDER BY seq")
		if err != nil {
			return err
		}
		var body []byte
		_, err = pgx.ForEachRow(rows, []any{&body}, func() error {
			e, err := approvals.UnmarshalEvent(body)
			if err != nil {
				return err
			}
			events[e.RequestID] = append(events[e.RequestID], e)
			d.Events++
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, "SELECT body FROM requests ORDER BY id")
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&body}, func() error {
			r, err := approvals.UnmarshalRequest(body)
			if err != nil {
				return err
			}
			d.Records = append(d.Records, approvals.Record{Request: r, Events: events[r.ID]})
			delete(events, r.ID)
			return nil
		})
		if err != nil {
			return err
		}
		for _, evs := range events {
			d.Orphaned = append(d.Orphaned, evs...)
		}
		slices.SortFunc(d.Orphaned, func(a, b approvals.Event) int { return cmp.Compare(a.ID, b.ID) })
		rows, err = tx.Query(ctx, "SELECT id, request_id, body FROM jobs ORDER BY id")
		if err != nil {
			return err
		}
		var id, requestID int64
		_, err = pgx.ForEachRow(rows, []any{&id, &requestID, &body}, func() error {
			j, err := approvals.UnmarshalJob(body)
			if err != nil {
				return err
			}
			j.ID, j.RequestID = uint64(id), uint64(requestID)
			d.Jobs = append(d.Jobs, j)
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, "SELECT kind, key, reason, at, value FROM quarantine ORDER BY kind, key")
		if err != nil {
			return err
		}
		var q approvals.Quarantined
		var key int64
		_, err = pgx.ForEachRow(rows, []any{&q.Kind, &key, &q.Reason, &q.At, &q.Value}, func() error {
			q.Key, q.At = uint64(key), q.At.UTC()
			d.Quarantined = append(d.Quarantined, q)
			q = approvals.Quarantined{}
			return nil
		})
		return err
	})
	return d, err
}
