package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/approvals"
)

func insertJob(ctx context.Context, tx pgx.Tx, j approvals.Job) error {
	body, err := approvals.MarshalJob(j)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO jobs (request_id, kind, calls, not_before, body) VALUES ($1, $2, $3, $4, $5)",
		toInt64(j.RequestID), string(j.Kind), j.Kind.Calls(), ceilMicro(j.NotBefore), body)
	return err
}

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
// lease lapses.
//
// A job last leased by another owner (whose lease lapsed, or was released
// when it closed: Close keeps leased_by as that trace) comes back with
// TakenOver set: that process may have been running it when it stopped,
// so a message may have reached Slack unrecorded. The owner names one
// run of one process, so a restarted replica's old leases count too. A
// job released by RetryJob or never claimed is not taken over.
func (s *Store) DueJobs(ctx context.Context, now time.Time, skip map[uint64]bool, limit approvals.JobLimit) (jobs []approvals.Job, next time.Time, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		jobs, next = nil, time.Time{}
		rows, err := tx.Query(ctx, `SELECT j.id, j.request_id, j.calls, j.body, coalesce(j.leased_by, '') FROM jobs j
			WHERE NOT EXISTS (SELECT 1 FROM jobs o WHERE o.request_id = j.request_id AND o.calls = j.calls AND o.id < j.id)
			  AND (j.leased_until IS NULL OR j.leased_until <= now() OR j.leased_by = $1)
			ORDER BY j.calls DESC, j.id
			FOR UPDATE OF j SKIP LOCKED`, s.opt.Owner)
		if err != nil {
			return err
		}
		var id, requestID int64
		var calls bool
		var body []byte
		var leasedBy string
		var claim []int64
		var taken [2]int // messages, calls
		budget := [2]int{limit.Messages, limit.Calls}
		_, err = pgx.ForEachRow(rows, []any{&id, &requestID, &calls, &body, &leasedBy}, func() error {
			q := 0
			if calls {
				q = 1
			}
			if taken[q] >= budget[q] {
				return nil
			}
			lane := uint64(requestID) << 1
			if calls {
				lane |= 1
			}
			if skip[lane] {
				return nil
			}
			j, err := approvals.UnmarshalJob(body)
			if err != nil {
				jobs = append(jobs, approvals.Job{ID: uint64(id), Corrupt: &approvals.CorruptError{Kind: "job", Key: uint64(id), Err: err}})
				claim = append(claim, id)
				taken[q]++
				return nil
			}
			j.ID, j.RequestID = uint64(id), uint64(requestID)
			j.TakenOver = leasedBy != "" && leasedBy != s.opt.Owner
			if j.NotBefore.After(now) {
				if next.IsZero() || j.NotBefore.Before(next) {
					next = j.NotBefore
				}
				return nil
			}
			jobs = append(jobs, j)
			claim = append(claim, id)
			taken[q]++
			return nil
		})
		if err != nil {
			return err
		}
		if len(claim) > 0 {
			if _, err := tx.Exec(ctx, "UPDATE jobs SET leased_until = now() + $2, leased_by = $1 WHERE id = ANY($3)", s.opt.Owner, s.opt.Lease, claim); err != nil {
				return err
			}
		}
		var held *time.Duration
		if err := tx.QueryRow(ctx, "SELECT min(leased_until) - now() FROM jobs WHERE leased_until > now() AND leased_by <> $1", s.opt.Owner).Scan(&held); err != nil {
			return err
		}
		if held != nil {
			at := now.Add(*held)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return jobs, next, nil
}

// RetryJob implements approvals.Store and releases the job's lease, unless
// j records an attempt under way (Tries > Attempts: the Worker stores the
// first assignment attempt before it starts): then this replica keeps the
// job, its lease renewed, so no other replica starts a second attempt
// while this one's POST may be in flight (seen in
// TestReplicasServeOneBurstTogether: 23 POSTs for 18 grants before this).
// It leaves alone a job another replica holds now (this replica's lease
// lapsed and the job was taken over): that replica is running it.
func (s *Store) RetryJob(ctx context.Context, j approvals.Job) error {
	body, err := approvals.MarshalJob(j)
	if err != nil {
		return err
	}
	keep := j.Tries > j.Attempts
	_, err = s.pool.Exec(ctx, `UPDATE jobs SET body = $2, not_before = $3,
		leased_until = CASE WHEN $5 THEN now() + $6 END, leased_by = CASE WHEN $5 THEN $4 END
		WHERE id = $1 AND (leased_by IS NULL OR leased_by = $4 OR leased_until <= now())`,
		toInt64(j.ID), body, ceilMicro(j.NotBefore), s.opt.Owner, keep, s.opt.Lease)
	return err
}

// CompleteJob implements approvals.Store.
func (s *Store) CompleteJob(ctx context.Context, jobID uint64) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM jobs WHERE id = $1", toInt64(jobID))
	return err
}
