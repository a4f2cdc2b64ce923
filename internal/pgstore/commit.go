package pgstore

import (
	"context"
	"errors"
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
// reads that follow, and the chain is linked in memory against the head
// read once. A caller declares its first read ahead (prefetch), so the
// reads of many callers go together in one round trip: a batch of Creates
// and decisions costs a few round trips, not one or a dozen per caller.
// Callers whose prefetches share a key (the same request, trigger id or
// requester) are not read together: the later one reads after the earlier
// one's writes, as if they had run one after the other. Callers read
// together see none of each other's writes, which is still the outcome of
// running them in some order: none reads what another of them writes.
//
// The contract is bbolt's: fn may run more than once (when the batch fails
// to commit, each fn runs again in a transaction of its own), so it must
// reset what it reports at its start. fn gets the batch's context, not the
// caller's: one caller giving up must not abort the others' transaction.
type groupCommit struct {
	s       *Store
	mu      sync.Mutex
	pending []*commitOp // someone waits for these to answer Slack
	later   []*commitOp // the Worker's records of what it did
	leading bool
}

type commitOp struct {
	pre  *prefetch
	fn   func(ctx context.Context, w *wtx) error
	err  error
	done chan struct{}
	// readErr is pre's scan error, kept for fn.
	readErr error
}

// prefetch is an op's first read, sent ahead with other ops' reads: scan
// stores the row where fn finds it, and fn finds scan's error in
// wtx.readErr (pgx.ErrNoRows for no row). keys name what the read depends
// on and what the op writes.
type prefetch struct {
	sql  string
	args []any
	scan func(pgx.Row) error
	keys []string
}

// maxBatch bounds one batch, so a burst does not make one transaction hold
// the chain head for long.
const maxBatch = 64

// update runs fn, after pre's read (if any), in a shared transaction and
// returns once that transaction has committed (or fn failed, its writes
// discarded). An urgent op (a slash command's request, a click's
// decision: Slack waits for their answer) goes into the next batch ahead
// of the Worker's records, which wait for no one.
func (g *groupCommit) update(ctx context.Context, urgent bool, pre *prefetch, fn func(ctx context.Context, w *wtx) error) error {
	op := &commitOp{pre: pre, fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	if urgent {
		g.pending = append(g.pending, op)
	} else {
		g.later = append(g.later, op)
	}
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
		// Urgent ops first, but a quarter of the batch goes to the others,
		// so a stream of commands cannot hold the Worker's records back.
		nLater := min(len(g.later), max(maxBatch/4, maxBatch-len(g.pending)))
		n := min(len(g.pending), maxBatch-nLater)
		batch := append(g.pending[:n:n], g.later[:nLater]...)
		g.pending, g.later = g.pending[n:], g.later[nLater:]
		n += nLater
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
		if err := g.s.writeTx(ctx, batch); err == nil {
			for _, op := range batch {
				close(op.done)
			}
			return
		}
		// The batch did not commit: nothing of it happened. Each op runs
		// again alone, so one bad op cannot fail the others.
	}
	for _, op := range batch {
		var err error
		for attempt := range 5 {
			// A serialization failure or deadlock only means a concurrent
			// transaction won: run again, reading everything afresh.
			if err = g.s.writeTx(ctx, []*commitOp{op}); !retryable(err) || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Duration(attempt+1) * time.Millisecond)
		}
		if err != nil {
			op.err = err
		} // else op.err is fn's verdict: a refusal committed nothing of its own
		close(op.done)
	}
}

// writeTx runs ops in one transaction on a connection of the pool. Its
// BEGIN goes with the first reads and its COMMIT with the last writes, so
// a batch of one run costs two round trips, and holds the chain head for
// two. A transaction that fails is left open: the pool closes a connection
// it gets back in a transaction, and PostgreSQL rolls it back.
func (s *Store) writeTx(ctx context.Context, ops []*commitOp) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	conn := c.Conn()
	if err := runOps(ctx, conn, ops); err != nil {
		return err
	}
	if st := conn.PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("the transaction did not commit (status %q)", st)
	}
	return nil
}

// runOps runs ops in a transaction it begins and commits on conn, which
// it first makes the holder of the chain head. Every transaction that may append an event takes that lock first,
// before any request row, so two of them (in different replicas) cannot
// deadlock over a request and the head, and writers run one at a time:
// what one reads (a trigger id, a requester's open requests) no other can
// change before it commits. Each op's result is in op.err; runOps fails
// only when the transaction is lost.
func runOps(ctx context.Context, conn *pgx.Conn, ops []*commitOp) error {
	wb := beginWrites(conn)
	for i := 0; i < len(ops); {
		// The longest run of ops from i whose prefetches share no key.
		j, keys := i, map[string]bool{}
		for ; j < len(ops) && ops[j].pre != nil && !anyKey(keys, ops[j].pre.keys); j++ {
			for _, k := range ops[j].pre.keys {
				keys[k] = true
			}
		}
		run := ops[i:max(j, i+1)]
		if err := wb.prefetch(ctx, run); err != nil {
			return err
		}
		for _, op := range run {
			op.err = wb.run(ctx, op)
			if op.err != nil && wb.aborted() {
				// A statement failed: the transaction is lost, and with
				// it the writes of the ops before this one.
				return op.err
			}
		}
		i += len(run)
	}
	return wb.finish(ctx)
}

func anyKey(set map[string]bool, keys []string) bool {
	for _, k := range keys {
		if set[k] {
			return true
		}
	}
	return false
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
	conn   *pgx.Conn
	locked bool  // the lock on the head has been taken (head, start read)
	start  int64 // the head's seq when locked
	head   chainHead
	unsent []*pgx.QueuedQuery
	notify bool
}

// beginWrites begins a transaction on conn that locks the chain head.
// BEGIN and the lock go with the batch's first reads, in their round trip
// and ahead of them: every round trip under the lock delays the other
// replicas' batches.
func beginWrites(conn *pgx.Conn) *writeBatch {
	wb := &writeBatch{conn: conn}
	lock := &pgx.QueuedQuery{SQL: "SELECT seq, hash FROM chain_head FOR UPDATE"}
	lock.QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&wb.head.seq, &wb.head.hash); err != nil {
			return fmt.Errorf("lock the audit chain head: %w", err)
		}
		wb.start, wb.locked = wb.head.seq, true
		return nil
	})
	wb.unsent = append(wb.unsent, &pgx.QueuedQuery{SQL: "BEGIN"}, lock)
	return wb
}

// prefetch sends the unsent writes and the prefetches of ops in one round
// trip. A read's own error (no row, say) is the op's, for its fn; a
// failed statement fails the transaction.
func (wb *writeBatch) prefetch(ctx context.Context, ops []*commitOp) error {
	var reads []*pgx.QueuedQuery
	for _, op := range ops {
		if op.pre == nil {
			continue
		}
		q := &pgx.QueuedQuery{SQL: op.pre.sql, Arguments: op.pre.args}
		q.QueryRow(func(row pgx.Row) error {
			op.readErr = op.pre.scan(row)
			return nil
		})
		reads = append(reads, q)
	}
	if len(reads) == 0 {
		return nil
	}
	err := wb.send(ctx, reads...)
	if err == nil && wb.aborted() {
		err = errors.New("a prefetch failed")
	}
	return err
}

// run runs op's fn; its writes and events join the batch only if it
// succeeds.
func (wb *writeBatch) run(ctx context.Context, op *commitOp) error {
	if !wb.locked { // an op without reads came first: lock now
		if err := wb.send(ctx); err != nil {
			return err
		}
	}
	w := &wtx{batch: wb, head: wb.head, readErr: op.readErr}
	if err := op.fn(ctx, w); err != nil {
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
	return wb.conn.PgConn().TxStatus() == 'E'
}

// finish sends what is left: the unsent writes, the chain head's new end,
// one notification for the other replicas, and COMMIT.
func (wb *writeBatch) finish(ctx context.Context) error {
	if wb.head.seq != wb.start {
		wb.unsent = append(wb.unsent, &pgx.QueuedQuery{SQL: "UPDATE chain_head SET seq = $1, hash = $2", Arguments: []any{wb.head.seq, wb.head.hash}})
	}
	if wb.notify {
		wb.unsent = append(wb.unsent, &pgx.QueuedQuery{SQL: "SELECT pg_notify($1, '')", Arguments: []any{notifyChannel}})
	}
	return wb.send(ctx, &pgx.QueuedQuery{SQL: "COMMIT"})
}

// send sends the unsent writes, then qs, in one round trip.
func (wb *writeBatch) send(ctx context.Context, qs ...*pgx.QueuedQuery) error {
	b := &pgx.Batch{QueuedQueries: append(wb.unsent, qs...)}
	wb.unsent = nil
	if len(b.QueuedQueries) == 0 {
		return nil
	}
	return wb.conn.SendBatch(ctx, b).Close()
}

// wtx is one op's handle on a write transaction. Reads go to the database
// at once (with the writes of the ops before it, in one round trip);
// writes are queued and sent only once the op has succeeded, so an op
// that fails leaves nothing behind; events are chained in memory against
// the head the transaction holds locked.
type wtx struct {
	// readErr is the op's prefetch's error: pgx.ErrNoRows for no row.
	readErr error
	batch   *writeBatch
	writes  []*pgx.QueuedQuery
	head    chainHead // after this op's events
	notify  bool
}

// exec queues a write.
func (w *wtx) exec(sql string, args ...any) {
	w.writes = append(w.writes, &pgx.QueuedQuery{SQL: sql, Arguments: args})
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
