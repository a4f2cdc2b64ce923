package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/pgtest"
)

// TestMain lets the test binary stand in for loadgen as the floor server
// child, as the loadgen binary does.
func TestMain(m *testing.M) {
	if secret := os.Getenv(floorServerEnv); secret != "" {
		if err := serveFloor(secret, os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runReport runs the tool with args, quietly, in a fresh -dir and with a
// fresh -json, and returns the report it wrote and the table it printed.
func runReport(t *testing.T, args ...string) (report, string) {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	args = append(args, "-dir", t.TempDir(), "-json", jsonPath, "-q")
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("loadgen: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	return rep, stdout.String()
}

// TestTinyRun runs the whole tool with a handful of requests: it builds the
// real bot, starts it against the fakes, and every request must be created,
// approved and applied, with every figure of the report present. Timings are
// not checked: they are measurements, not assertions.
func TestTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bot")
	}
	const n, paced = 20, 3
	rep, table := runReport(t, "-n", "20", "-c", "5", "-paced", "3", "-soak", "10", "-history", "300", "-startups", "1")
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs in the report, want 1", len(rep.Runs))
	}
	// Every request of every round was applied: the measured round, the
	// paced one and two memory rounds of 10.
	if got, want := rep.Median["requests_applied"], float64(n+paced+2*10); got != want {
		t.Errorf("requests applied = %v, want %v", got, want)
	}
	for _, s := range sections {
		for _, r := range s.rows {
			for _, key := range []string{r.key, r.floor} {
				if key == "" {
					continue
				}
				if _, ok := rep.Median[key]; !ok {
					t.Errorf("the report lacks %s (%s)", key, r.label)
				}
			}
		}
	}
	if len(rep.Targets) != 13 {
		t.Errorf("%d targets checked, want 13: %+v", len(rep.Targets), rep.Targets)
	}
	if rep.Machine.CPUs == 0 || rep.Machine.CPUModel == "" {
		t.Errorf("machine not described: %+v", rep.Machine)
	}
	for _, want := range []string{"slash command ack p99", "durable requests created", "click → assignment", "idle RSS", "start-up",
		"Command → approval message posted", "catalog list calls per request"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
}

// TestCheckPhasesTiny runs the check phases on a handful of requests: every
// request, typed by name, passes its checks and gets its approval message,
// the fake's counters see the cold catalog's fetches, the warm burst makes
// no list calls, and each request's group roles are listed once. Timings are only checked against what the
// fake's delay makes certain: a cold check waits for three lists and the
// group's roles one after the other, a warm one at least for the group's
// roles.
func TestCheckPhasesTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bot")
	}
	dir := t.TempDir()
	o, err := parseOptions([]string{"-n", "40", "-c", "20", "-openai-delay", "20ms", "-dir", dir}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := buildBot(t.Context(), dir, false)
	if err != nil {
		t.Fatal(err)
	}
	figs, err := measureChecks(t.Context(), o, bin, dir, func(string, ...any) {})
	if err != nil {
		t.Fatalf("check phases: %v", err)
	}

	for _, s := range sections {
		for _, r := range s.rows {
			if _, ok := figs[r.key]; strings.HasPrefix(r.key, "checks_") && !ok {
				t.Errorf("the check phases lack %s (%s)", r.key, r.label)
			}
		}
	}
	for _, key := range []string{"checks_list_projects_calls", "checks_list_groups_calls", "checks_list_project_roles_calls"} {
		if figs[key] < 1 {
			t.Errorf("%s = %v: the cold catalog's fetch was not counted", key, figs[key])
		}
	}
	// The warm burst's requests span two groups; both must be in the
	// cached list, or the checks resolve them again uncached.
	if got := figs["checks_warm_list_calls"]; got != 0 {
		t.Errorf("%v catalog list calls during the warm burst, want 0", got)
	}
	if got := figs["checks_group_role_checks_per_request"]; got != 1 {
		t.Errorf("group-role checks per request = %v, want 1", got)
	}
	delay := ms(o.openAIDelay)
	if got := figs["checks_cold_approval_max_ms"]; got < 4*delay {
		t.Errorf("slowest cold command → approval = %v ms, want at least 4 × %v ms (three lists, then the group's roles)", got, delay)
	}
	if got := figs["checks_warm_approval_p50_ms"]; got < delay {
		t.Errorf("warm command → approval p50 = %v ms, want at least the %v ms of the group-role check", got, delay)
	}
}

// TestPostgresReplicasTiny runs the tool with -postgres on a handful of
// requests and 1 and 2 replicas: every request made on PostgreSQL, its
// command on one replica and its click on another, is applied once, the
// report has the PostgreSQL rows for each count beside bbolt's figures,
// labelled with the engine and the replicas, and the ack target of issue
// 14 is checked for each. Timings are not checked.
func TestPostgresReplicasTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bot and PostgreSQL")
	}
	if _, err := pgtest.BinDir(); err != nil {
		if errors.Is(err, pgtest.ErrNoServer) && os.Getenv("CI") != "true" {
			t.Skipf("SKIPPING the PostgreSQL load test: %v (install PostgreSQL 14+ server binaries or set ROLEGATE_PG_BINDIR; under CI=true this fails)", err)
		}
		t.Fatal(err)
	}
	const n, paced = 20, 2
	// -paced 2 costs under a second and covers the one-at-a-time path on
	// several replicas; the phases -postgres skips are off, so nothing is
	// skipped.
	rep, table := runReport(t, "-n", "20", "-c", "5", "-postgres", "-replicas", "1,2", "-paced", "2", "-soak", "0", "-history", "0",
		"-startups", "1", "-checks=false")
	if !slices.Equal(rep.Config.Replicas, []int{1, 2}) {
		t.Errorf("replicas in the report = %v, want [1 2]", rep.Config.Replicas)
	}
	if !strings.Contains(rep.Config.Postgres, "fsync on") || !strings.Contains(rep.Config.Postgres, "synchronous_commit on") {
		t.Errorf("the server is not described as durable: %q", rep.Config.Postgres)
	}
	if len(rep.Config.Skipped) != 0 {
		t.Errorf("skipped %q, though those phases were off", rep.Config.Skipped)
	}
	if got, want := rep.Median["requests_applied"], float64(n+paced); got != want {
		t.Errorf("bbolt: requests applied = %v, want %v", got, want)
	}
	for _, k := range []int{1, 2} {
		if got, want := rep.Median[pgKey(k, "requests_applied")], float64(n+paced); got != want {
			t.Errorf("PostgreSQL, %s: requests applied = %v, want %v", replicasWord(k), got, want)
		}
		// Every request's jobs go through the outbox: at least its checks,
		// its approval message, its assignment and its result.
		if got := rep.Median[pgKey(k, "jobs_per_request")]; got < 4 {
			t.Errorf("PostgreSQL, %s: %v outbox jobs done per request, want at least 4", replicasWord(k), got)
		}
	}
	for key := range rep.Median {
		if strings.HasPrefix(key, "pg3_") {
			t.Errorf("figure %s for 3 replicas, which were not asked for", key)
		}
	}
	for _, s := range pgSections(rep.Config.Replicas) {
		for _, r := range s.rows {
			// One replica has no other replicas to time the start-up of.
			if _, ok := rep.Median[r.key]; !ok && r.key != pgKey(1, "startup_later_ms") {
				t.Errorf("the report lacks %s (%s)", r.key, r.label)
			}
			if _, ok := rep.Median[r.floor]; r.floor != "" && !ok {
				t.Errorf("the report lacks bbolt's %s beside %s", r.floor, r.label)
			}
		}
	}
	var verdicts []string
	for _, v := range rep.Targets {
		if v.Target == "≤ 2× bbolt" {
			verdicts = append(verdicts, v.Figure)
		}
	}
	if want := []string{"PostgreSQL, 1 replica: slash command ack p99", "PostgreSQL, 2 replicas: slash command ack p99"}; !slices.Equal(verdicts, want) {
		t.Errorf("PostgreSQL targets checked: %q, want %q", verdicts, want)
	}
	for _, want := range []string{"bbolt, one bot: Acks", "PostgreSQL, 1 replica: slash command ack p99", "PostgreSQL, 2 replicas: durable requests created",
		"PostgreSQL, 2 replicas: outbox jobs claimed and done", "fsync on"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	// The check phases were off: no title of theirs without rows.
	if strings.Contains(table, "Command → approval message posted") {
		t.Errorf("the table shows the title of a phase that did not run:\n%s", table)
	}
}

// TestPostgresFlags: -replicas without -postgres, a bad list and a
// machine without PostgreSQL's server end the run with an error that says
// what to do, before anything is built or measured.
func TestPostgresFlags(t *testing.T) {
	start := startPostgres
	t.Cleanup(func() { startPostgres = start })
	startPostgres = func() (*pgtest.Server, error) { return nil, pgtest.ErrNoServer }

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-replicas", "1,2"}, "-replicas needs -postgres"},
		{[]string{"-postgres", "-replicas", "0"}, "want counts from 1 to 10"},
		{[]string{"-postgres", "-replicas", "1,x"}, "want counts from 1 to 10"},
		{[]string{"-postgres", "-replicas", "2,2"}, "2 appears twice"},
		{[]string{"-postgres", "-bot-env", "ROLEGATE_DATABASE_URL=postgres://x/y"}, "drop -bot-env ROLEGATE_DATABASE_URL"},
		{[]string{"-postgres", "-replicas", "1,2,3"}, "ROLEGATE_PG_BINDIR"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			err := run(t.Context(), append(tc.args, "-dir", dir, "-q"), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error saying %q", err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("the failed run left %d entries in -dir (built or measured something first?)", len(left))
			}
		})
	}
}
