// Package approvalstest builds request histories for tests, benchmarks and
// the load tool. Nothing in the bot imports it.
package approvalstest

import (
	"fmt"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Finished returns n requests numbered from first that have run their whole
// course (created, posted, approved, applied) with their audit trails, as a
// long-running bot leaves them. They are created at now minus one second
// per request, oldest first. Write them with BoltStore.Import.
func Finished(first uint64, n int, now time.Time) []approvals.Record {
	target := approvals.Target{ProjectID: "proj_seed", GroupID: "group_seed", RoleID: "role_seed"}
	assignment := approvals.Assignment{
		Group: approvals.Group{ID: target.GroupID, Name: "Seeded Group", CreatedAt: now.Add(-365 * 24 * time.Hour)},
		Role: approvals.Role{ID: target.RoleID, Name: "Seeded Role", Description: "A role assigned by approvalstest.Finished",
			Permissions: []string{"api.organization.projects.api_keys.read"}, ResourceType: "api.project"},
	}
	recs := make([]approvals.Record, n)
	for i := range n {
		id := first + uint64(i)
		created := now.Add(-time.Duration(n-i) * time.Second).UTC()
		decided := created.Add(200 * time.Millisecond)
		finished := decided.Add(300 * time.Millisecond)
		r := approvals.Request{
			ID: id, State: approvals.StateApplied, Target: target, Ask: approvals.AskFor(target),
			Reason:    fmt.Sprintf("seeded request %d for benchmarks", id),
			Requester: "U0SEEDREQ", TeamID: "T0SEED", ChannelID: "C0SEED",
			MessageTS: fmt.Sprintf("1700000000.%06d", id%1_000_000),
			Rule:      approvals.DefaultRule, Approvers: []string{"U0SEEDAPPR"}, Required: 1,
			CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour),
			Approvals: []approvals.Vote{{User: "U0SEEDAPPR", At: decided}},
			Decider:   "U0SEEDAPPR", DecidedAt: decided,
			Assignment: &assignment, FinishedAt: finished,
		}
		recs[i] = approvals.Record{Request: r, Events: []approvals.Event{
			{Actor: r.Requester, Action: approvals.ActionCreate, Detail: r.Reason, At: created},
			{Actor: approvals.SystemActor, Action: approvals.ActionPosted, Detail: r.MessageTS, At: created.Add(50 * time.Millisecond)},
			{Actor: r.Decider, Action: approvals.ActionApprove, Detail: "1 of 1", At: decided},
			{Actor: approvals.SystemActor, Action: approvals.ActionApply, Detail: "assigned", At: finished},
		}}
	}
	return recs
}
