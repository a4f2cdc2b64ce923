package main

import (
	"bytes"
	"encoding/json"
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
	if len(rep.Targets) != 9 {
		t.Errorf("%d targets checked, want 9: %+v", len(rep.Targets), rep.Targets)
	}
	if rep.Machine.CPUs == 0 || rep.Machine.CPUModel == "" {
		t.Errorf("machine not described: %+v", rep.Machine)
	}
	for _, want := range []string{"slash command ack p99", "durable requests created", "click → assignment", "idle RSS", "start-up"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout.String())
		}
	}
}
