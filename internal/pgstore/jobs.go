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

// DueJobs implements approvals.Store, and claims what it returns: each job
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
func (s *Store) DueJobs(ctx context.Context, now time.Time, skip map[uint64]bool, limit int) (jobs []approvals.Job, next time.Time, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		jobs, next = nil, time.Time{}
		rows, err := tx.Query(ctx, `SELECT j.id, j.request_id, j.calls, j.body FROM jobs j
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
		var claim []int64
		_, err = pgx.ForEachRow(rows, []any{&id, &requestID, &calls, &body}, func() error {
			if len(jobs) >= limit {
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
				return nil
			}
			j.ID, j.RequestID = uint64(id), uint64(requestID)
			if j.NotBefore.After(now) {
				if next.IsZero() || j.NotBefore.Before(next) {
					next = j.NotBefore
				}
				return nil
			}
			jobs = append(jobs, j)
			claim = append(claim, id)
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

// RetryJob implements approvals.Store and releases the job's lease. It
// leaves alone a job another replica holds now (this replica's lease
// lapsed and the job was taken over): that replica is running it.
func (s *Store) RetryJob(ctx context.Context, j approvals.Job) error {
	body, err := approvals.MarshalJob(j)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `UPDATE jobs SET body = $2, not_before = $3, leased_until = NULL, leased_by = NULL
		WHERE id = $1 AND (leased_by IS NULL OR leased_by = $4 OR leased_until <= now())`,
		toInt64(j.ID), body, ceilMicro(j.NotBefore), s.opt.Owner)
	return err
}

// CompleteJob implements approvals.Store.
func (s *Store) CompleteJob(ctx context.Context, jobID uint64) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM jobs WHERE id = $1", toInt64(jobID))
	return err
}
