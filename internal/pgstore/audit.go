package pgstore

import (
	"context"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
)

// ForEachEvent calls fn with every stored event in sequence order, from the
// first one at or after since (zero: from the first) to the last, as
// approvals.BoltStore.ForEachEvent does: a contiguous run that verifies on
// its own from its first event's Prev. It reads in one repeatable-read
// transaction, one row at a time. It stops at fn's first error and returns
// it; an event that cannot be decoded is a *approvals.CorruptError.
func (s *Store) ForEachEvent(ctx context.Context, since time.Time, fn func(approvals.Event) error) error {
	return s.readEvents(ctx, func(tx pgx.Tx) error {
		var from int64
		if !since.IsZero() {
			var first *int64
			if err := tx.QueryRow(ctx, "SELECT min(seq) FROM events WHERE at >= $1", since).Scan(&first); err != nil {
				return err
			}
			if first == nil {
				return nil // nothing at or after since
			}
			from = *first
		}
		for e, err := range events(ctx, tx, from) {
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// VerifyChain checks the stored audit chain from event 1
// (approvals.VerifyEvents) and that it ends at the chain head row, which
// catches events dropped from the end: the check `bot audit verify` runs on
// a bbolt file. Its error is a read failure; a broken chain is
// VerifyResult.Problem.
func (s *Store) VerifyChain(ctx context.Context) (approvals.VerifyResult, error) {
	var res approvals.VerifyResult
	err := s.readEvents(ctx, func(tx pgx.Tx) error {
		var seq int64
		var head []byte
		if err := tx.QueryRow(ctx, "SELECT seq, hash FROM chain_head").Scan(&seq, &head); err != nil {
			return err
		}
		var err error
		res, err = approvals.VerifyEvents(events(ctx, tx, 0), approvals.VerifyOptions{})
		if err != nil {
			return err
		}
		res.CheckHead(uint64(seq), headHash(head))
		return nil
	})
	return res, err
}

// readEvents runs fn in a read-only repeatable-read transaction: one
// snapshot, however long the log, while replicas keep appending.
func (s *Store) readEvents(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// events iterates the events from seq from on, in seq order. An event that
// cannot be decoded comes as a *approvals.CorruptError of kind "event".
func events(ctx context.Context, tx pgx.Tx, from int64) iter.Seq2[approvals.Event, error] {
	return func(yield func(approvals.Event, error) bool) {
		rows, err := tx.Query(ctx, "SELECT seq, body FROM events WHERE seq >= $1 ORDER BY seq", from)
		if err != nil {
			yield(approvals.Event{}, err)
			return
		}
		defer rows.Close()
		var seq int64
		var body []byte
		for rows.Next() {
			if err := rows.Scan(&seq, &body); err != nil {
				yield(approvals.Event{}, err)
				return
			}
			e, err := approvals.UnmarshalEvent(body)
			if err != nil {
				err = &approvals.CorruptError{Kind: "event", Key: uint64(seq), Err: err}
			}
			if !yield(e, err) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(approvals.Event{}, err)
		}
	}
}
