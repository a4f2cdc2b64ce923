package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"reflect"
	"slices"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/pgstore"
)

const migrateStoreHelp = `Usage: bot migrate-store --to "$ROLEGATE_DATABASE_URL" [--from FILE]

Copies the bbolt file (--from, default ROLEGATE_DB) into an empty PostgreSQL
database (--to, default ROLEGATE_DATABASE_URL): every request, its audit
trail in order (event ids kept), the jobs still waiting and the quarantined
records. The schema is created first. Then it reads everything back and
compares it with the file, record by record, and prints the counts; any
difference is an error (exit 1).

Stop the bot before migrating (the file must not be held open: writes made
after the copy would be lost), then start it, or several replicas, with
ROLEGATE_DATABASE_URL set. The file is read through a snapshot and never
changed, so going back is starting the old bot on it again.
`

// migrateStore is `bot migrate-store`.
func migrateStore(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate-store", flag.ContinueOnError)
	fs.SetOutput(stdout)
	from := fs.String("from", getenv("ROLEGATE_DB"), "the bbolt file (default ROLEGATE_DB, or rolegate.db)")
	to := fs.String("to", getenv("ROLEGATE_DATABASE_URL"), "postgres:// URL of an empty database (default ROLEGATE_DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return exitError{err.Error()}
	}
	if *from == "" {
		*from = "rolegate.db"
	}
	fail := func(format string, args ...any) error {
		fmt.Fprintf(stdout, "rolegate: migrate-store: "+format+"\n", args...)
		return exitError{"migrate-store failed"}
	}
	if *to == "" {
		return fail("no destination: pass --to postgres://… or set ROLEGATE_DATABASE_URL")
	}
	if !isPostgresURL(*to) {
		return fail("--to must be a PostgreSQL URL, postgres://user:password@host:5432/dbname")
	}
	if _, err := os.Stat(*from); err != nil {
		return fail("cannot read %s: %v", *from, err)
	}
	// A bot holding the file would keep writing after the copy.
	held, err := approvals.Open(*from)
	if err != nil {
		return fail("%v: stop the bot before migrating", err)
	}
	held.Close()
	snap, cleanup, err := approvals.OpenSnapshot(*from)
	if err != nil {
		return fail("%v", err)
	}
	defer cleanup()
	src, err := snap.Dump()
	if err != nil {
		return fail("read %s: %v (run the bot once to move unreadable records aside, then migrate)", *from, err)
	}
	dst, err := pgstore.Open(ctx, *to, pgstore.Options{NoListen: true})
	if err != nil {
		return fail("%v", err)
	}
	defer dst.Close()
	if err := dst.Import(ctx, src); err != nil {
		return fail("copy into PostgreSQL: %v", err)
	}
	got, err := dst.Dump(ctx)
	if err != nil {
		return fail("read back: %v", err)
	}
	if err := sameDump(src, got); err != nil {
		return fail("the copy differs from %s: %v", *from, err)
	}
	// The copy's chain, read back, must verify as `bot audit verify` checks
	// a file: Prev and Hash were copied, so a break here is the source's
	// (or the copy's), and ROLEGATE_DATABASE_URL must not be used as is.
	chain, err := approvals.VerifyEvents(dumpEvents(got), approvals.VerifyOptions{})
	if err != nil {
		return fail("verify the copied audit chain: %v", err)
	}
	if !chain.Intact() {
		return fail("the copied audit chain is broken at %v: run `bot audit verify` on %s", chain.Problem, *from)
	}
	fmt.Fprintf(stdout, "migrated %s into PostgreSQL and verified: %d requests, %d audit events, %d jobs waiting, %d quarantined records\n",
		*from, len(got.Records), got.Events, len(got.Jobs), len(got.Quarantined))
	fmt.Fprintf(stdout, "audit chain intact: head event %d %s\n", chain.HeadSeq, chain.Head)
	return nil
}

// dumpEvents yields every event of d in sequence order: the chain's.
func dumpEvents(d approvals.Dump) iter.Seq2[approvals.Event, error] {
	events := slices.Clone(d.Orphaned)
	for _, r := range d.Records {
		events = append(events, r.Events...)
	}
	slices.SortFunc(events, func(a, b approvals.Event) int { return cmp.Compare(a.ID, b.ID) })
	return func(yield func(approvals.Event, error) bool) {
		for _, e := range events {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// sameDump compares a copy with its source and names the first difference.
// Quarantine times are compared to the microsecond, PostgreSQL's precision;
// everything else is stored in the same encoding and must match exactly.
func sameDump(want, got approvals.Dump) error {
	if len(want.Records) != len(got.Records) || want.Events != got.Events || len(want.Jobs) != len(got.Jobs) || len(want.Quarantined) != len(got.Quarantined) {
		return fmt.Errorf("counts: source %d requests, %d events, %d jobs, %d quarantined; copy %d, %d, %d, %d",
			len(want.Records), want.Events, len(want.Jobs), len(want.Quarantined), len(got.Records), got.Events, len(got.Jobs), len(got.Quarantined))
	}
	for i := range want.Records {
		if !reflect.DeepEqual(want.Records[i], got.Records[i]) {
			return fmt.Errorf("request %d (or its audit trail) differs", want.Records[i].Request.ID)
		}
	}
	if !reflect.DeepEqual(want.Orphaned, got.Orphaned) {
		return errors.New("the audit events of requests moved aside differ")
	}
	for i := range want.Jobs {
		if !reflect.DeepEqual(want.Jobs[i], got.Jobs[i]) {
			return fmt.Errorf("job %d differs", want.Jobs[i].ID)
		}
	}
	for i := range want.Quarantined {
		w, g := want.Quarantined[i], got.Quarantined[i]
		w.At, g.At = w.At.Truncate(time.Microsecond), g.At.Truncate(time.Microsecond)
		if !reflect.DeepEqual(w, g) {
			return fmt.Errorf("quarantined %s %d differs", w.Kind, w.Key)
		}
	}
	return nil
}
