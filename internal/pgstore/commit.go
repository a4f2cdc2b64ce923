package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
)

// groupCommit runs the transactions of concurrent callers together, one
// after another in one database transaction, and commits them once.
//
// Why: every transition appends to the one audit chain, whose head row
// each append locks until its transaction commits. One transaction per
// transition therefore serialises the whole store on a commit (an fsync)
// plus the round trips under the lock: measured with loadgen, 100 commands
// in flight, fsync on, a loaded 2-core machine: 100 requests created per
// second and a 2.4 s ack p99, against bbolt's 909 per second. A leader
// running the waiting callers in one transaction takes the head lock once
// and fsyncs once per batch, as bbolt's group commit (approvals/commit.go)
// does.
//
// Within the batch each caller's writes are queued (wtx) and sent with the
// next caller's first read, and the chain is linked in memory against the
// head read once: a request created costs one round trip, not the dozen a
// statement at a time took (BenchmarkCreate, 100 callers: 731 → see
// README's Performance table).
//
// The contract is bbolt's: fn may run more than once (when the batch fails
// to commit, each fn runs again in a transaction of its own), so it must
// reset what it reports at its start. fn gets the batch's context, not the
// caller's: one caller giving up must not abort the others' transaction.
type groupCommit struct {
	s       *Store
	mu      sync.Mutex
	pending []*commitOp
	leading bool
}

type commitOp struct {
	fn   func(ctx context.Context, w *wtx) error
	err  error
	done chan struct{}
}

// maxBatch bounds one batch, so a burst does not make one transaction hold
// the chain head for long.
const maxBatch = 64

// update runs fn in a shared transaction and returns once that transaction
// has committed (or fn failed, its writes discarded).
func (g *groupCommit) update(ctx context.Context, fn func(ctx context.Context, w *wtx) error) error {
	op := &commitOp{fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, op)
	lead := !g.leading
	if lead {
		g.leading = true
	}
	g.mu.Unlock()
	if lead {
		g.lead()
	}
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
		// The batch may still commit this op; the caller, like a caller
		// whose connection broke after COMMIT, cannot know.
		return ctx.Err()
	}
}

// lead runs batches until nothing is pending.
func (g *groupCommit) lead() {
	for {
		g.mu.Lock()
		n := min(len(g.pending), maxBatch)
		batch := g.pending[:n:n]
		g.pending = g.pending[n:]
		if n == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.run(batch)
	}
}

func (g *groupCommit) run(batch []*commitOp) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(batch) > 1 {
		err := pgx.BeginFunc(ctx, g.s.pool, func(tx pgx.Tx) error {
			wb, err := beginWrites(ctx, tx)
			if err != nil {
				return err
			}
			for _, op := range batch {
				op.err = wb.run(ctx, op.fn)
				if op.err != nil && wb.aborted() {
					// A statement failed: the transaction is lost, and
					// with it the writes of the ops before this one.
					return op.err
				}
			}
			return wb.finish(ctx)
		})
		if err == nil {
			for _, op := range batch {
				close(op.done)
			}
			return
		}
		// The batch did not commit: nothing of it happened. Each op runs
		// again alone, so one bad op cannot fail the others.
	}
	for _, op := range batch {
		op.err = g.s.writeTx(ctx, op.fn)
		close(op.done)
	}
}

// writeTx runs fn in a transaction of its own that first locks the audit
// chain head, as a batch does. Every transaction that may append an event
// takes that lock first, before any request row, so two of them (in
// different replicas) cannot deadlock over a request and the head, and
// writers run one at a time: what one reads (a trigger id, a requester's
// open requests) no other can change before it commits.
func (s *Store) writeTx(ctx context.Context, fn func(ctx context.Context, w *wtx) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		wb, err := beginWrites(ctx, tx)
		if err != nil {
			return err
		}
		if err := wb.run(ctx, fn); err != nil {
			return err
		}
		return wb.finish(ctx)
	})
}

// chainHead is the end of the audit chain: the last event's seq and hash.
type chainHead struct {
	seq  int64
	hash []byte
}

// writeBatch is what the ops of one write transaction share: the chain
// head, locked at the start and moved in memory by each event, and the
// writes of the ops done so far that are not sent yet.
type writeBatch struct {
	tx     pgx.Tx
	start  int64 // the head's seq when locked
	head   chainHead
	unsent []*pgx.QueuedQuery
	notify bool
}

// beginWrites locks the chain head for tx.
func beginWrites(ctx context.Context, tx pgx.Tx) (*writeBatch, error) {
	wb := &writeBatch{tx: tx}
	if err := tx.QueryRow(ctx, "SELECT seq, hash FROM chain_head FOR UPDATE").Scan(&wb.head.seq, &wb.head.hash); err != nil {
		return nil, fmt.Errorf("lock the audit chain head: %w", err)
	}
	wb.start = wb.head.seq
	return wb, nil
}

// run runs fn; its writes and events join the batch only if it succeeds.
func (wb *writeBatch) run(ctx context.Context, fn func(ctx context.Context, w *wtx) error) error {
	w := &wtx{batch: wb, head: wb.head}
	if err := fn(ctx, w); err != nil {
		return err
	}
	wb.unsent = append(wb.unsent, w.writes...)
	wb.head = w.head
	wb.notify = wb.notify || w.notify
	return nil
}

// aborted reports whether a statement of the transaction failed, which
// PostgreSQL makes the end of it.
func (wb *writeBatch) aborted() bool {
	return wb.tx.Conn().PgConn().TxStatus() == 'E'
}

// finish sends what is left: the unsent writes, the chain head's new end
// and one notification for the other replicas.
func (wb *writeBatch) finish(ctx context.Context) error {
	if wb.head.seq != wb.start {
		wb.unsent = append(wb.unsent, &pgx.QueuedQuery{SQL: "UPDATE chain_head SET seq = $1, hash = $2", Arguments: []any{wb.head.seq, wb.head.hash}})
	}
	if wb.notify {
		wb.unsent = append(wb.unsent, &pgx.QueuedQuery{SQL: "SELECT pg_notify($1, '')", Arguments: []any{notifyChannel}})
	}
	return wb.send(ctx, nil)
}

// send sends the unsent writes, then q (if any), in one round trip.
func (wb *writeBatch) send(ctx context.Context, q *pgx.QueuedQuery) error {
	b := &pgx.Batch{QueuedQueries: wb.unsent}
	if q != nil {
		b.QueuedQueries = append(b.QueuedQueries, q)
	}
	wb.unsent = nil
	if len(b.QueuedQueries) == 0 {
		return nil
	}
	return wb.tx.SendBatch(ctx, b).Close()
}

// wtx is one op's handle on a write transaction. Reads go to the database
// at once (with the writes of the ops before it, in one round trip);
// writes are queued and sent only once the op has succeeded, so an op
// that fails leaves nothing behind; events are chained in memory against
// the head the transaction holds locked.
type wtx struct {
	batch  *writeBatch
	writes []*pgx.QueuedQuery
	head   chainHead // after this op's events
	notify bool
}

// exec queues a write.
func (w *wtx) exec(sql string, args ...any) {
	w.writes = append(w.writes, &pgx.QueuedQuery{SQL: sql, Arguments: args})
}

// queryRow runs sql and hands its one row to scan.
func (w *wtx) queryRow(ctx context.Context, scan func(pgx.Row) error, sql string, args ...any) error {
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	q.QueryRow(scan)
	return w.batch.send(ctx, q)
}

// query runs sql and hands its rows to each.
func (w *wtx) query(ctx context.Context, each func(pgx.Rows) error, sql string, args ...any) error {
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	q.Query(each)
	return w.batch.send(ctx, q)
}

// appendEvent appends ev to the one audit chain: it takes the seq after
// the head, links ev to the head's hash (approvals.LinkEvent: Prev, then
// Hash over ev and Prev) and makes ev the head. The head row is locked
// for the whole transaction (beginWrites), so appends from every replica
// are chained one at a time, in seq order, as bbolt's record chains them
// in one file; the row itself is written once, at the end (finish).
func (w *wtx) appendEvent(ev approvals.Event) error {
	seq := w.head.seq + 1
	ev.ID = uint64(seq)
	approvals.LinkEvent(&ev, headHash(w.head.hash))
	body, err := approvals.MarshalEvent(ev)
	if err != nil {
		return err
	}
	w.exec("INSERT INTO events (seq, request_id, at, body, prev, hash) VALUES ($1, $2, $3, $4, $5, $6)",
		seq, toInt64(ev.RequestID), ev.At, body, []byte(ev.Prev), []byte(ev.Hash))
	w.head = chainHead{seq: seq, hash: []byte(ev.Hash)}
	return nil
}
