package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// TestTinyRun runs the whole tool with a handful of requests: it builds the
// real bot, starts it against the fakes, and every request must be created,
// approved and applied, with every figure of the report present. Timings are
// not checked: they are measurements, not assertions.
func TestTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bot")
	}
	const n, paced = 20, 3
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	args := []string{"-n", "20", "-c", "5", "-paced", "3", "-soak", "10", "-history", "300", "-startups", "1",
		"-dir", t.TempDir(), "-json", jsonPath, "-q"}
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
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout.String())
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
