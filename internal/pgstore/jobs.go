package pgstore

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rolegate/rolegate/internal/approvals"
)

func insertJob(w *wtx, j approvals.Job) error {
	body, err := approvals.MarshalJob(j)
	if err != nil {
		return err
	}
	w.exec("INSERT INTO jobs (request_id, kind, calls, not_before, body) VALUES ($1, $2, $3, $4, $5)",
		toInt64(j.RequestID), string(j.Kind), j.Kind.Calls(), ceilMicro(j.NotBefore), body)
	return nil
}

// claimJobs claims the jobs of one kind ($2: calls or messages) that may
// run now ($3): the oldest job of its lane, due, not leased by another
// replica ($1 is this one) and not in a lane the Worker is running ($4),
// oldest first, at most $5, leased to this replica for $6. The LIMIT
// matters: FOR UPDATE locks every row the query returns, and a lock on a
// job the Worker does not take would hold up the transaction that
// completes it. RETURNING has no order: DueJobs sorts. Each job comes
// with its request's body (Job.Request), as the Worker would read it next.
const claimJobs = `WITH due AS (SELECT j.id, j.leased_by AS was FROM jobs j
	WHERE j.calls = $2
	  AND (j.not_before IS NULL OR j.not_before <= $3)
	  AND (j.leased_until IS NULL OR j.leased_until <= now() OR j.leased_by = $1)
	  AND j.request_id <> ALL($4)
	  AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.request_id = j.request_id AND o.calls = j.calls AND o.id < j.id)
	ORDER BY j.id LIMIT $5
	FOR UPDATE OF j SKIP LOCKED)
	UPDATE jobs SET leased_until = now() + $6, leased_by = $1 FROM due WHERE jobs.id = due.id
	RETURNING jobs.id, jobs.request_id, jobs.body, coalesce(due.was, ''),
		(SELECT r.body FROM requests r WHERE r.id = jobs.request_id)`

// dueNext is the earliest NotBefore still ahead ($1): when DueJobs
// should look again for a job that waits.
const dueNext = `SELECT min(not_before) FROM jobs WHERE not_before > $1`

// leaseNext is how long until the earliest lease another replica ($1)
// holds ends: when DueJobs should look again for a dead replica's work.
// It reads every live lease (and the index entries of the many rows the
// outbox has since removed: 2.6 ms after a burst), so DueJobs asks it at
// most every leaseLookEvery and otherwise uses what it last heard.
const leaseNext = `SELECT min(leased_until) - now() FROM jobs WHERE leased_until > now() AND leased_by <> $1`

// leaseLookEvery bounds how often DueJobs reads leaseNext. A lease another
// replica takes is first seen up to this late, which the Worker's own
// looking (at least every 30 s) already allows for.
const leaseLookEvery = time.Second

// DueJobs implements approvals.Store, and claims what it returns: up to
// limit.Calls OpenAI calls and limit.Messages Slack messages (the calls
// column is JobKind.Calls, so each kind has its own budget). Each job
// handed out is leased to this replica (jobs.leased_by) for Options.Lease,
// renewed while the process lives, until RetryJob, CompleteJob or Update
// with it as doneJob releases it. Only the oldest job of a lane is a
// candidate, and only when nobody else holds it (no lease, a lapsed lease,
// or this replica's own: the Worker passes the lanes it is running in
// skip), so a lane's jobs still run one at a time, in order, across
// replicas. FOR UPDATE SKIP LOCKED lets replicas claim at once without
// waiting on each other. next also counts the end of the earliest lease
// another replica holds, so the Worker looks again when a dead replica's
// lease lapses. It is one round trip, committed lax (see laxBatch).
//
// A job last leased by another owner (whose lease lapsed, or was released
// when it closed: Close keeps leased_by as that trace) comes back with
// TakenOver set: that process may have been running it when it stopped,
// so a message may have reached Slack unrecorded. The owner names one
// run of one process, so a restarted replica's old leases count too. A
// job released by RetryJob or never claimed is not taken over.
func (s *Store) DueJobs(ctx context.Context, now time.Time, skip map[uint64]bool, limit approvals.JobLimit) (jobs []approvals.Job, next time.Time, err error) {
	skipCalls, skipMessages := []int64{}, []int64{} // not nil: NULL would match no job
	for lane := range skip {
		if lane&1 == 1 {
			skipCalls = append(skipCalls, toInt64(lane>>1))
		} else {
			skipMessages = append(skipMessages, toInt64(lane>>1))
		}
	}
	b := &pgx.Batch{}
	for _, kind := range []struct {
		calls bool
		skip  []int64
		limit int
	}{{true, skipCalls, limit.Calls}, {false, skipMessages, limit.Messages}} {
		if kind.limit <= 0 {
			continue
		}
		b.Queue(claimJobs, s.opt.Owner, kind.calls, now, kind.skip, kind.limit, s.opt.Lease).Query(func(rows pgx.Rows) error {
			var id, requestID int64
			var body []byte
			var was string
			var request []byte
			var claimed []approvals.Job
			_, err := pgx.ForEachRow(rows, []any{&id, &requestID, &body, &was, &request}, func() error {
				j, err := approvals.UnmarshalJob(body)
				if err != nil {
					claimed = append(claimed, approvals.Job{ID: uint64(id), Corrupt: &approvals.CorruptError{Kind: "job", Key: uint64(id), Err: err}})
					return nil
				}
				j.ID, j.RequestID = uint64(id), uint64(requestID)
				j.TakenOver = was != "" && was != s.opt.Owner
				if r, err := approvals.UnmarshalRequest(request); request != nil && err == nil {
					j.Request = &r // else the Worker reads it, and finds it missing or unreadable
				}
				claimed = append(claimed, j)
				return nil
			})
			slices.SortFunc(claimed, func(a, b approvals.Job) int { return cmp.Compare(a.ID, b.ID) })
			jobs = append(jobs, claimed...)
			return err
		})
	}
	b.Queue(dueNext, now).QueryRow(func(row pgx.Row) error {
		var notBefore *time.Time
		if err := row.Scan(&notBefore); err != nil {
			return err
		}
		if notBefore != nil {
			next = notBefore.UTC()
		}
		return nil
	})
	s.leases.Lock()
	held := s.leases.next
	// Again after leaseLookEvery, and as soon as the lease last heard of
	// has ended: the one after it is the next to wait for (a dead
	// replica's leases end one after another; missing the second left its
	// jobs to the Worker's 30 s idle look: taken over 45 s after the kill
	// in TestReplicasSurviveTwoKillsMidBurst).
	lookAgain := time.Since(s.leases.lookedAt) >= leaseLookEvery || (!held.IsZero() && !time.Now().Before(held))
	s.leases.Unlock()
	if lookAgain {
		b.Queue(leaseNext, s.opt.Owner).QueryRow(func(row pgx.Row) error {
			var in *time.Duration
			if err := row.Scan(&in); err != nil {
				return err
			}
			held = time.Time{}
			if in != nil {
				held = time.Now().Add(*in)
			}
			s.leases.Lock()
			s.leases.lookedAt, s.leases.next = time.Now(), held
			s.leases.Unlock()
			return nil
		})
	}
	if err := s.laxBatch(ctx, b); err != nil {
		return nil, time.Time{}, err
	}
	// held is on the real clock; now may be the Worker's own.
	if in := time.Until(held); !held.IsZero() && in > 0 {
		if at := now.Add(in); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return jobs, next, nil
}

// laxBatch runs b's queries in one implicit transaction, in one round
// trip, on the lax pool: committed without waiting for the write-ahead log
// to reach the disk (synchronous_commit off for that pool's sessions). It
// is for the outbox's bookkeeping, whose loss in a crash of the database
// server (not of a replica: what PostgreSQL has acknowledged survives the
// process that asked) only means a job runs again, as jobs may: a lease,
// a finished job's removal. Transitions, the audit chain and RetryJob's
// record of an attempt under way wait for the flush. Measured: a burst of
// 1,000 requests made 8,500 WAL flushes, most of them these.
func (s *Store) laxBatch(ctx context.Context, b *pgx.Batch) error {
	return s.lax.SendBatch(ctx, b).Close()
}

// laxExec is one statement committed lax (see laxBatch).
func (s *Store) laxExec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return s.lax.Exec(ctx, sql, args...)
}

// RetryJob implements approvals.Store and releases the job's lease, unless
// j records an attempt under way (Tries > Attempts: the Worker stores the
// first assignment attempt before it starts): then this replica keeps the
// job, its lease renewed, so no other replica starts a second attempt
// while this one's POST may be in flight (seen in
// TestReplicasServeOneBurstTogether: 23 POSTs for 18 grants before this).
// It leaves alone a job another replica holds now (this replica's lease
// lapsed and the job was taken over): that replica is running it.
//
// The write joins the group commit (with the Worker's records, behind
// commands and clicks): it must reach the disk before an assignment
// starts, and a statement of its own per attempt took one of the pool's
// connections for a WAL flush each, so that a burst of assignments kept
// the clicks' reads waiting for a connection (click ack p99 74 → 420 ms
// once the Worker got faster).
func (s *Store) RetryJob(ctx context.Context, j approvals.Job) error {
	body, err := approvals.MarshalJob(j)
	if err != nil {
		return err
	}
	keep := j.Tries > j.Attempts
	return s.commits.update(ctx, false, nil, func(_ context.Context, w *wtx) error {
		w.exec(`UPDATE jobs SET body = $2, not_before = $3,
			leased_until = CASE WHEN $5 THEN now() + $6 END, leased_by = CASE WHEN $5 THEN $4 END
			WHERE id = $1 AND (leased_by IS NULL OR leased_by = $4 OR leased_until <= now())`,
			toInt64(j.ID), body, ceilMicro(j.NotBefore), s.opt.Owner, keep, s.opt.Lease)
		return nil
	})
}

// CompleteJob implements approvals.Store. The removal is committed lax
// (laxBatch): lost in a crash of the database server, the job runs again.
func (s *Store) CompleteJob(ctx context.Context, jobID uint64) error {
	_, err := s.laxExec(ctx, "DELETE FROM jobs WHERE id = $1", toInt64(jobID))
	return err
}
