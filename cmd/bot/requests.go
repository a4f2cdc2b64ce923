package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// listRequests is `bot requests`: it prints stored requests, newest first.
// It reads PostgreSQL when ROLEGATE_DATABASE_URL is set, else a snapshot of
// ROLEGATE_DB, so it works while the bot (or its replicas) run.
func listRequests(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("requests", flag.ContinueOnError)
	fs.SetOutput(stdout)
	state := fs.String("state", "", "only requests in this state (pending, approved, applied, failed, denied, expired, cancelled)")
	limit := fs.Int("limit", 50, "at most this many requests (0: all)")
	if err := fs.Parse(args); err != nil {
		return exitError{err.Error()}
	}
	if *state != "" && !approvals.State(*state).Valid() {
		fmt.Fprintf(stderr, "rolegate: unknown state %q: use one of pending, approved, applied, failed, denied, expired, cancelled\n", *state)
		return exitError{"bad state"}
	}
	store, cleanup, err := auditSnapshot(ctx, getenv, stderr)
	if err != nil {
		return err // auditSnapshot said why
	}
	defer cleanup()
	reqs, err := store.List(ctx, approvals.ListOptions{State: approvals.State(*state), Limit: *limit})
	if err != nil {
		fmt.Fprintf(stderr, "rolegate: %v\n", err)
		return exitError{"cannot read database"}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tPROJECT\tGROUP\tROLE\tAPPROVALS\tAGE")
	now := time.Now()
	for _, r := range reqs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.ID, r.State, r.Requester, r.ProjectID, r.GroupID, r.RoleID,
			len(r.Approvals), r.Required, age(now.Sub(r.CreatedAt)))
	}
	tw.Flush()
	if len(reqs) == 0 {
		fmt.Fprintln(stdout, "(no requests)")
	}
	return nil
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
