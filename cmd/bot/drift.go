package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai"
)

const driftHelp = `Usage: bot drift

Compares the group-role assignments OpenAI lists with what rolegate's records
say should exist, for every project and group any rolegate request names.
Expected: the role of every applied request (a dry-run one granted nothing).
It prints each difference under its project, with ids, names and the
rolegate requests for that role:
  held     a role OpenAI lists that no applied rolegate request grants
           (assigned outside rolegate, or again after rolegate revoked it)
  missing  a role an applied rolegate request granted that OpenAI does not
           list (removed outside rolegate; or its project or group is gone)
and exits 1 when there is any, or prints
  no differences: N projects, M groups checked
and exits 0. It reads a snapshot of ROLEGATE_DB, or the PostgreSQL database
when ROLEGATE_DATABASE_URL is set (so it works while the bot runs), and makes one read-only OpenAI call per group with OPENAI_ADMIN_KEY;
it changes nothing. When OpenAI cannot be read it says so and exits 1
without a report. A role being assigned or revoked at that very moment can
show up once: run it again.

The serving bot runs the same check every ROLEGATE_DRIFT_INTERVAL (default
1h; 0 turns it off), logs each difference at warn, and exports
rolegate_drift_held_not_granted, rolegate_drift_granted_missing,
rolegate_drift_last_run_success and rolegate_drift_last_run_timestamp_seconds.
With several replicas on PostgreSQL, one of them runs each check.
`

// runDrift is `bot drift`.
func runDrift(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "rolegate: bot drift takes no arguments, got %q\n", args[0])
		return exitError{"bad arguments"}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		printConfigProblems(stderr, err)
		return exitError{"bad configuration"}
	}
	store, cleanup, err := auditSnapshot(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	client := openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, AdminKey: cfg.OpenAIAdminKey, Timeout: cfg.OpenAITimeout})
	rep, reqs, err := checkDrift(ctx, store, client)
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "rolegate: drift: interrupted; nothing was compared")
		return exitError{"interrupted"}
	case err != nil:
		fmt.Fprintf(stderr, "rolegate: %s\nNothing was compared. `bot check` tests the admin key and OPENAI_BASE_URL.\n", describeOpenAIFailure(cfg.OpenAIBaseURL, err))
		return exitError{"drift check failed"}
	}
	printDrift(stdout, rep, reqs)
	if rep.Differences() > 0 {
		return exitError{"drift found"}
	}
	return nil
}

// requestLister is what drift reads rolegate's records through: a snapshot
// (bot drift) or the serving bot's store.
type requestLister interface {
	List(ctx context.Context, opt approvals.ListOptions) ([]approvals.Request, error)
}

// checkDrift reads every stored request and compares. Every state, not
// only applied: a group whose grant was revoked is still one rolegate
// touched, and a role given back to it outside rolegate is exactly the
// drift to find. Listing by state would cost the same, as List scans every
// record for a state that is not open.
func checkDrift(ctx context.Context, store requestLister, roles approvals.GroupRoleLister) (approvals.Report, []approvals.Request, error) {
	reqs, err := store.List(ctx, approvals.ListOptions{})
	if err != nil {
		return approvals.Report{}, nil, fmt.Errorf("read requests: %w", err)
	}
	rep, err := approvals.Drift(ctx, reqs, roles)
	return rep, reqs, err
}

// describeOpenAIFailure says what went wrong reading OpenAI, naming the
// host (never the key: the client's errors are already redacted).
func describeOpenAIFailure(baseURL string, err error) string {
	host := baseURL
	if u, perr := url.Parse(baseURL); perr == nil && u.Host != "" {
		host = u.Scheme + "://" + u.Host
	}
	var ge *approvals.GrantError
	switch {
	case !errors.As(err, &ge):
		return err.Error()
	case ge.Failure.Status == http.StatusUnauthorized || ge.Failure.Status == http.StatusForbidden:
		return fmt.Sprintf("OpenAI at %s refused OPENAI_ADMIN_KEY: %v", host, err)
	case ge.Failure.Status == 0:
		return fmt.Sprintf("OpenAI at %s is unreachable: %v", host, err)
	}
	return fmt.Sprintf("OpenAI at %s failed: %v", host, err)
}

// printDrift writes rep for an operator: each project's differences, one
// line each, then a summary.
//
//	Project "Support Project" (proj_abc)
//	  held     group "Support Team" (group_01) role "Reader" (role_02): not granted by rolegate (no rolegate request for it)
//	  missing  group "Support Team" (group_01) role "Key Manager" (role_01): granted by rolegate (#1 applied), not listed by OpenAI
//
//	2 differences in 1 of 1 project (1 group checked): 1 held but not granted by rolegate, 1 granted by rolegate but missing
func printDrift(w io.Writer, rep approvals.Report, reqs []approvals.Request) {
	if rep.Differences() == 0 {
		fmt.Fprintf(w, "no differences: %s, %s checked\n", plural(rep.Projects, "project"), plural(rep.Groups, "group"))
		return
	}
	states := make(map[uint64]approvals.State, len(reqs))
	for _, r := range reqs {
		states[r.ID] = r.State
	}
	requests := func(f approvals.Finding) string {
		if len(f.Requests) == 0 {
			return "no rolegate request for it"
		}
		parts := make([]string, len(f.Requests))
		for i, id := range f.Requests {
			parts[i] = fmt.Sprintf("#%d %s", id, states[id])
		}
		return strings.Join(parts, ", ")
	}
	type line struct {
		approvals.Finding
		text string
	}
	var lines []line
	for _, f := range rep.Held {
		lines = append(lines, line{f, fmt.Sprintf("  held     %s: not granted by rolegate (%s)", driftSubject(f), requests(f))})
	}
	for _, f := range rep.Missing {
		why := "not listed by OpenAI"
		if f.Gone {
			why = "OpenAI says the project or group no longer exists"
		}
		lines = append(lines, line{f, fmt.Sprintf("  missing  %s: granted by rolegate (%s), %s", driftSubject(f), requests(f), why)})
	}
	// Held and Missing are each sorted; merge them per project, held first.
	byProject := map[string][]line{}
	var order []string
	for _, l := range lines {
		if _, ok := byProject[l.ProjectID]; !ok {
			order = append(order, l.ProjectID)
		}
		byProject[l.ProjectID] = append(byProject[l.ProjectID], l)
	}
	slices.Sort(order)
	for _, p := range order {
		ls := byProject[p]
		fmt.Fprintf(w, "Project %s\n", labelled(ls[0].ProjectName, p))
		for _, l := range ls {
			fmt.Fprintln(w, l.text)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%s in %d of %s (%s checked): %d held but not granted by rolegate, %d granted by rolegate but missing\n",
		plural(rep.Differences(), "difference"), len(order), plural(rep.Projects, "project"), plural(rep.Groups, "group"),
		len(rep.Held), len(rep.Missing))
}

// driftSubject names a finding's group and role, by name and id.
func driftSubject(f approvals.Finding) string {
	return "group " + labelled(f.GroupName, f.GroupID) + " role " + labelled(f.RoleName, f.RoleID)
}

// labelled is `"Name" (id)`, or the id alone when the name is unknown.
func labelled(name, id string) string {
	if name == "" {
		return id
	}
	return fmt.Sprintf("%q (%s)", name, id)
}

// driftGauges is where the periodic check reports (*metrics).
type driftGauges interface {
	Drift(r approvals.Report, err error, at time.Time)
}

// driftRunTimeout bounds one periodic check: one listing of the store and
// one OpenAI call per touched group, each with its own HTTP timeout.
const driftRunTimeout = 10 * time.Minute

// driftWatch runs bot drift's check in the serving bot every Interval,
// jittered so that replicas and restarts do not line up, the first a few
// minutes after start (not at once: a crash loop must not become a loop of
// OpenAI listings). It only reads, so it runs in dry run too.
type driftWatch struct {
	Store    requestLister
	Roles    approvals.GroupRoleLister
	Gauges   driftGauges
	Logger   *slog.Logger
	Interval time.Duration
	Now      func() time.Time
	// Jitter returns a random duration in [0, n); nil uses math/rand/v2.
	Jitter func(n time.Duration) time.Duration
	// Turns, when the store is shared by several replicas, hands each
	// check to one of them; nil: this process runs every check.
	Turns approvals.Turner
}

// Run checks on schedule until ctx ends.
func (w *driftWatch) Run(ctx context.Context) {
	timer := time.NewTimer(driftDelay(w.Interval, true, w.jitter))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		w.check(ctx)
		timer.Reset(driftDelay(w.Interval, false, w.jitter))
	}
}

func (w *driftWatch) jitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	if w.Jitter != nil {
		return w.Jitter(n)
	}
	return rand.N(n)
}

// driftDelay is the wait before the next check: the first between 2 and 5
// minutes after start (never more than the interval), then the interval
// give or take 10%.
func driftDelay(interval time.Duration, first bool, jitter func(time.Duration) time.Duration) time.Duration {
	if first {
		return min(interval, 2*time.Minute+jitter(3*time.Minute))
	}
	return interval - interval/10 + jitter(interval/5)
}

// check runs one comparison, sets the gauges, and logs each difference at
// warn once. A failure is logged and leaves the previous counts; a check
// cut short by shutdown records nothing.
func (w *driftWatch) check(ctx context.Context) {
	if w.Turns != nil {
		mine, err := w.Turns.Turn(ctx, "drift", w.Interval)
		switch {
		case err != nil && ctx.Err() == nil:
			// Two replicas checking is harmless (it only reads); none is not.
			w.Logger.WarnContext(ctx, "Could not tell whether another replica runs this drift check; running it", "err", err)
		case !mine:
			w.Logger.DebugContext(ctx, "Another replica runs this drift check")
			return
		}
	}
	rctx, cancel := context.WithTimeout(ctx, driftRunTimeout)
	defer cancel()
	rep, _, err := checkDrift(rctx, w.Store, w.Roles)
	if ctx.Err() != nil {
		return
	}
	w.Gauges.Drift(rep, err, w.Now())
	if err != nil {
		w.Logger.WarnContext(ctx, "Drift check failed; the drift metrics keep the last counts", "err", err)
		return
	}
	for _, f := range rep.Held {
		w.Logger.WarnContext(ctx, "Drift: a group holds a role rolegate did not grant", findingAttrs(f)...)
	}
	for _, f := range rep.Missing {
		w.Logger.WarnContext(ctx, "Drift: a role rolegate granted is missing at OpenAI", append(findingAttrs(f), "gone", f.Gone)...)
	}
	w.Logger.InfoContext(ctx, "Drift check done", "projects", rep.Projects, "groups", rep.Groups,
		"held_not_granted", len(rep.Held), "granted_missing", len(rep.Missing))
}

func findingAttrs(f approvals.Finding) []any {
	return []any{"project_id", f.ProjectID, "project", f.ProjectName, "group_id", f.GroupID, "group", f.GroupName,
		"role_id", f.RoleID, "role", f.RoleName, "request_ids", f.Requests}
}
