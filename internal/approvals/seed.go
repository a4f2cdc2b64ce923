package approvals

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// seedBatch is how many requests SeedFinished writes per transaction: big
// enough that 100,000 requests take a few commits, small enough that one
// transaction's dirty pages stay a few tens of MiB.
const seedBatch = 10_000

// SeedFinished appends n requests that have run their whole course (created,
// posted, approved, applied) with their audit trails, as a long-running bot
// leaves them. It is for tools and benchmarks only — the load tool's
// start-up measurement and the store benchmarks need a large history in
// seconds — and nothing in the bot calls it. Values go through the same
// codec and helpers as real transitions, so the file has the real format;
// no outbox jobs, open-index entries or trigger ids are written, since a
// finished request has none. Unlike the other methods it commits every
// seedBatch requests, so a failure leaves the requests seeded so far. The
// requests are created at now minus one second per request, oldest first.
// It returns the ids of the first and last request written.
func (s *Store) SeedFinished(ctx context.Context, n int, now time.Time) (first, last uint64, err error) {
	target := Target{ProjectID: "proj_seed", GroupID: "group_seed", RoleID: "role_seed"}
	assignment := Assignment{
		Group: Group{ID: target.GroupID, Name: "Seeded Group", CreatedAt: now.Add(-365 * 24 * time.Hour)},
		Role: Role{ID: target.RoleID, Name: "Seeded Role", Description: "A role assigned by SeedFinished",
			Permissions: []string{"api.organization.projects.api_keys.read"}, ResourceType: "api.project"},
	}
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return first, last, fmt.Errorf("seed requests: %w", err)
		}
		batch := min(seedBatch, n-done)
		var lo, hi uint64
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := range batch {
				created := now.Add(-time.Duration(n-done-i) * time.Second).UTC()
				decided := created.Add(200 * time.Millisecond)
				finished := decided.Add(300 * time.Millisecond)
				id, err := tx.Bucket(bucketRequests).NextSequence()
				if err != nil {
					return err
				}
				r := Request{
					ID: id, State: StateApplied, Target: target,
					Reason:    fmt.Sprintf("seeded request %d for benchmarks", id),
					Requester: "U0SEEDREQ", TeamID: "T0SEED", ChannelID: "C0SEED",
					MessageTS: fmt.Sprintf("1700000000.%06d", id%1_000_000),
					CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour), Required: 1,
					Approvals: []Vote{{User: "U0SEEDAPPR", At: decided}},
					Decider:   "U0SEEDAPPR", DecidedAt: decided,
					Assignment: &assignment, FinishedAt: finished,
				}
				if err := putRequest(tx, &r); err != nil {
					return err
				}
				for _, e := range []struct {
					ev Event
					at time.Time
				}{
					{Event{Actor: r.Requester, Action: ActionCreate, Detail: r.Reason}, created},
					{Event{Actor: SystemActor, Action: ActionPosted, Detail: r.MessageTS}, created.Add(50 * time.Millisecond)},
					{Event{Actor: r.Decider, Action: ActionApprove, Detail: "1 of 1"}, decided},
					{Event{Actor: SystemActor, Action: ActionApply, Detail: "assigned"}, finished},
				} {
					if err := record(tx, &r, transition{event: e.ev}, e.at); err != nil {
						return err
					}
				}
				if lo == 0 {
					lo = id
				}
				hi = id
			}
			return nil
		})
		if err != nil {
			return first, last, fmt.Errorf("seed requests: %w", err)
		}
		if first == 0 {
			first = lo
		}
		last, done = hi, done+batch
	}
	return first, last, nil
}
