package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/pgstore"
)

const auditHelp = `Usage: bot audit export [--since RFC3339]
       bot audit verify [--file F]

rolegate's audit log is a hash chain: every event carries prev (the hash of
the event before it) and hash (SHA-256 over the event and prev). Both
commands read a snapshot of ROLEGATE_DB, or of the PostgreSQL database when
ROLEGATE_DATABASE_URL is set, so they work while the bot runs.

bot audit export [--since RFC3339]
  Prints the log as JSON lines, oldest first, one event a line:
    {"seq":1,"request_id":1,"actor":"U…","action":"create",
     "at":"2026-03-01T12:00:00.000000000Z","detail":"…","prev":"sha256:…","hash":"sha256:…"}
  --since T   start at the first event at or after T (e.g. 2026-03-01T00:00:00Z)
              and print every event after it, so the part verifies on its own
  It streams: memory stays the same however long the log.

bot audit verify [--file F]
  Recomputes every hash and link of the stored log (or, with --file, of an
  export; F "-" reads stdin; an export made with --since is checked from its
  first event's prev). Prints
    audit chain intact: N events, head sha256:…
  and exits 0, or names the first bad event by its sequence number and what
  is wrong with it (edited, dropped, reordered, inserted, unlinked) and exits 1.
  Compare the head, and the hashes rolegate posts with each result in Slack,
  with what the channel shows: someone who can rewrite the file can rewrite
  the whole chain, but not the channel's history.

How a hash is computed, to check an export without rolegate: "sha256:" and
the lowercase hex SHA-256 of the fields seq, request_id, actor, action, at,
detail and prev, in this order, each written as a netstring: its length in
bytes (decimal), ":", its UTF-8 bytes, ",". Each field is the string exactly
as the export has it (seq and request_id in decimal). The first event's prev
is "sha256:" and 64 zeros.
`

// runAudit is `bot audit <export|verify> …`.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditHelp)
		return exitError{"audit: name export or verify"}
	}
	switch args[0] {
	case "export":
		return auditExport(ctx, args[1:], getenv, stdout, stderr)
	case "verify":
		return auditVerify(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprintf(stderr, "rolegate: unknown audit command %q: use bot audit export or bot audit verify\n", args[0])
	return exitError{"unknown audit command"}
}

// auditLog is what the read-only commands (audit, drift, requests) read of
// either engine: the audit chain and the requests.
type auditLog interface {
	ForEachEvent(ctx context.Context, since time.Time, fn func(approvals.Event) error) error
	VerifyChain(ctx context.Context) (approvals.VerifyResult, error)
	requestLister
}

var (
	_ auditLog = (*approvals.BoltStore)(nil)
	_ auditLog = (*pgstore.Store)(nil)
)

// auditSnapshot opens the audit log: PostgreSQL when ROLEGATE_DATABASE_URL
// is set (each command reads one snapshot transaction), else a snapshot of
// ROLEGATE_DB. It says on stderr why not.
func auditSnapshot(ctx context.Context, getenv func(string) string, stderr io.Writer) (auditLog, func(), error) {
	if url := getenv("ROLEGATE_DATABASE_URL"); url != "" {
		if !isPostgresURL(url) {
			fmt.Fprintln(stderr, "rolegate: ROLEGATE_DATABASE_URL must be a PostgreSQL URL, postgres://user:password@host:5432/dbname")
			return nil, nil, exitError{"bad ROLEGATE_DATABASE_URL"}
		}
		// Read only: no migration (the replicas' schema is theirs to
		// upgrade), and no waiting forever for an unreachable server.
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		store, err := pgstore.Open(octx, url, pgstore.Options{NoListen: true, NoRenew: true, NoMigrate: true})
		if err != nil {
			fmt.Fprintf(stderr, "rolegate: %v\n", err)
			return nil, nil, exitError{"cannot read database"}
		}
		return store, func() { store.Close() }, nil
	}
	path := getenv("ROLEGATE_DB")
	if path == "" {
		path = "rolegate.db"
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "rolegate: no database at %s (set ROLEGATE_DB)\n", path)
		return nil, nil, exitError{"no database"}
	}
	store, cleanup, err := approvals.OpenSnapshot(path)
	if err != nil {
		fmt.Fprintf(stderr, "rolegate: %v\n", err)
		return nil, nil, exitError{"cannot read database"}
	}
	return store, cleanup, nil
}

func auditExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sinceFlag := fs.String("since", "", "start at the first event at or after this time (RFC 3339)")
	if err := fs.Parse(args); err != nil {
		return exitError{err.Error()}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rolegate: unexpected argument %q\n", fs.Arg(0))
		return exitError{"bad arguments"}
	}
	var since time.Time
	if *sinceFlag != "" {
		t, err := time.Parse(time.RFC3339, *sinceFlag)
		if err != nil {
			fmt.Fprintf(stderr, "rolegate: --since %q is not an RFC 3339 time such as 2026-03-01T00:00:00Z\n", *sinceFlag)
			return exitError{"bad --since"}
		}
		since = t
	}
	// `bot audit export | head` closes the pipe early: without this, the
	// SIGPIPE would kill the process before it removes its snapshot copy.
	signal.Ignore(syscall.SIGPIPE)
	store, cleanup, err := auditSnapshot(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	w := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err = store.ForEachEvent(ctx, since, func(e approvals.Event) error { return enc.Encode(approvals.LineOf(e)) })
	if err == nil {
		err = w.Flush()
	}
	if errors.Is(err, syscall.EPIPE) {
		return nil // the reader has all it wanted
	}
	if err != nil {
		fmt.Fprintf(stderr, "rolegate: audit export: %v\n", err)
		return exitError{"export failed"}
	}
	return nil
}

func auditVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "check this export (JSON lines; - for stdin) instead of the database")
	if err := fs.Parse(args); err != nil {
		return exitError{err.Error()}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rolegate: unexpected argument %q\n", fs.Arg(0))
		return exitError{"bad arguments"}
	}
	var res approvals.VerifyResult
	var err error
	if *file == "" {
		store, cleanup, serr := auditSnapshot(ctx, getenv, stderr)
		if serr != nil {
			return serr
		}
		defer cleanup()
		res, err = store.VerifyChain(ctx)
	} else {
		var in io.Reader = os.Stdin
		if *file != "-" {
			f, ferr := os.Open(*file)
			if ferr != nil {
				fmt.Fprintf(stderr, "rolegate: %v\n", ferr)
				return exitError{"cannot read the export"}
			}
			defer f.Close()
			in = f
		}
		res, err = approvals.VerifyEvents(approvals.ExportedEvents(lines(in)), approvals.VerifyOptions{Partial: true})
	}
	if err != nil {
		fmt.Fprintf(stdout, "audit chain not verified: %v\n", err)
		return exitError{"audit verify failed"}
	}
	if p := res.Problem; p != nil {
		fmt.Fprintf(stdout, "audit chain broken at event %d (%s): %s\n", p.Seq, p.Kind, p.Detail)
		if res.Events > 0 {
			fmt.Fprintf(stdout, "the %d events before it are intact, up to event %d %s\n", res.Events, res.HeadSeq, res.Head)
		}
		return exitError{"audit chain broken"}
	}
	fmt.Fprintf(stdout, "audit chain intact: %d events, head %s\n", res.Events, res.Head)
	if *file != "" && res.First > 1 {
		fmt.Fprintf(stdout, "the export starts at event %d: its prev %s must be the hash of event %d in the full log\n",
			res.First, res.FirstPrev, res.First-1)
	}
	return nil
}

// maxLine bounds one exported line (an event's detail is a reason or an
// API message, far below it).
const maxLine = 16 << 20

// lines iterates r's lines without their newline. Each line is valid only
// until the next.
func lines(r io.Reader) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			if !yield(sc.Bytes(), nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(nil, err)
		}
	}
}

// auditHead is the Notifier's AuditHead: the hash of request id's latest
// audit event, read from its index (a handful of events).
func auditHead(store approvals.Store) func(ctx context.Context, id uint64) (string, error) {
	return func(ctx context.Context, id uint64) (string, error) {
		events, err := store.Audit(ctx, id)
		if err != nil || len(events) == 0 {
			return "", err
		}
		return events[len(events)-1].Hash, nil
	}
}
