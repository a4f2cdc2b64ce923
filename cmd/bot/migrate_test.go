package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
	"github.com/rolegate/rolegate/internal/pgstore"
	"github.com/rolegate/rolegate/internal/pgtest"
)

// TestMigrateStoreCopiesEverythingAndVerifies fills a bbolt file with
// requests in several states, waiting jobs and a quarantined record, runs
// `bot migrate-store`, and compares what PostgreSQL then holds with the
// file, record by record; new requests continue after the copied ids.
func TestMigrateStoreCopiesEverythingAndVerifies(t *testing.T) {
	url := pgtest.URL(t)
	path := filepath.Join(t.TempDir(), "rolegate.db")
	b, err := approvals.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	t0 := storetest.T0
	var ids []uint64
	for i := range 6 {
		r, _, err := b.Create(ctx, storetest.NewRequest(func(n *approvals.NewRequest) { n.TriggerID = "trig" + string(rune('a'+i)) }), t0, 0, storetest.PendingStart(t0, time.Hour, 1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	decide := func(id uint64, actor string, a approvals.Action) {
		d := approvals.Decision{RequestID: id, Actor: actor, Action: a, ChannelID: "C1", Eligible: true, At: t0.Add(time.Minute)}
		if _, err := b.Update(ctx, id, 0, func(r *approvals.Request) (approvals.Transition, error) { return approvals.Decide(r, d) }); err != nil {
			t.Fatal(err)
		}
	}
	decide(ids[0], "UANA", approvals.ActionApprove)
	decide(ids[1], "UANA", approvals.ActionDeny)
	decide(ids[2], "UREQ", approvals.ActionCancel)
	jobs, _, _ := b.DueJobs(ctx, t0, nil, approvals.Each(100))
	if err := b.CompleteJob(ctx, jobs[len(jobs)-1].ID); err != nil { // one delivered already
		t.Fatal(err)
	}
	j := jobs[0]
	j.Attempts, j.NotBefore, j.LastError = 2, t0.Add(time.Minute+123*time.Nanosecond), "rate limited"
	if err := b.RetryJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := b.Quarantine(ctx, &approvals.CorruptError{Kind: "request", Key: ids[5], Err: errors.New("unknown schema version 9")}, t0.Add(time.Second+456*time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	want, err := b.Dump()
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	getenv := func(k string) string { return map[string]string{"ROLEGATE_DB": path}[k] }
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate-store", "--to", url}, getenv, &out, &out); err != nil {
		t.Fatalf("migrate-store: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "verified: 5 requests, 9 audit events") || !strings.Contains(out.String(), "1 quarantined") ||
		!strings.Contains(out.String(), "audit chain intact: head event 9 sha256:") {
		t.Errorf("migrate-store printed %q", out.String())
	}

	pg, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	got, err := pg.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Records, want.Records) || !reflect.DeepEqual(got.Jobs, want.Jobs) || got.Events != want.Events {
		t.Errorf("PostgreSQL holds\n%+v\nwant\n%+v", got, want)
	}
	// The copied trigger ids are not needed (10 minutes); new ids and
	// events continue after the copied ones.
	r, _, err := pg.Create(ctx, storetest.NewRequest(), t0, 0, storetest.PendingStart(t0, time.Hour, 1))
	if err != nil || r.ID != ids[5]+1 {
		t.Errorf("first request after the migration got id %d (%v), want %d", r.ID, err, ids[5]+1)
	}
	evs, _ := pg.Audit(ctx, r.ID)
	if len(evs) != 1 || evs[0].ID != uint64(want.Events)+1 {
		t.Errorf("first event after the migration = %+v, want id %d", evs, want.Events+1)
	}
	// The copied chain goes on: bot audit verify reads PostgreSQL when
	// ROLEGATE_DATABASE_URL is set and finds the new event linked to the
	// source's head, and an export of it verifies on its own.
	pgenv := func(k string) string { return map[string]string{"ROLEGATE_DATABASE_URL": url}[k] }
	out.Reset()
	if err := run(ctx, []string{"audit", "verify"}, pgenv, &out, &out); err != nil || !strings.Contains(out.String(), "audit chain intact: 10 events, head "+evs[0].Hash) {
		t.Errorf("audit verify on PostgreSQL = %v, %q; want 10 events ending at %s", err, out.String(), evs[0].Hash)
	}
	var export bytes.Buffer
	if err := run(ctx, []string{"audit", "export"}, pgenv, &export, &out); err != nil || strings.Count(export.String(), "\n") != 10 {
		t.Fatalf("audit export on PostgreSQL = %v, %d lines", err, strings.Count(export.String(), "\n"))
	}
	file := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(file, export.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"audit", "verify", "--file", file}, getenv, &out, &out); err != nil || !strings.Contains(out.String(), "audit chain intact: 10 events") {
		t.Errorf("audit verify of the export = %v, %q", err, out.String())
	}

	// A second run into the now non-empty database is refused, changing nothing.
	out.Reset()
	if err := run(context.Background(), []string{"migrate-store", "--to", url}, getenv, &out, &out); err == nil || !strings.Contains(out.String(), "empty database") {
		t.Errorf("second migrate-store = %v, %q; want a refusal naming an empty database", err, out.String())
	}

	// The copied jobs may have been under way when the bbolt process
	// stopped: the first replica to claim them is told so (TakenOver, so a
	// message is looked for before it is posted again); the new request's
	// job is not.
	claimed, _, err := pg.DueJobs(ctx, t0.Add(time.Hour), nil, approvals.Each(100))
	if err != nil || len(claimed) == 0 {
		t.Fatalf("DueJobs after the migration = %v, %v", claimed, err)
	}
	for _, j := range claimed {
		if copied := j.RequestID != r.ID; j.TakenOver != copied {
			t.Errorf("job %d of request %d: TakenOver %v, want %v", j.ID, j.RequestID, j.TakenOver, copied)
		}
	}
}
