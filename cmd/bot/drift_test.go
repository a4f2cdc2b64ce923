package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/approvalstest"
	"github.com/rolegate/rolegate/internal/openai"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

// bot drift against the real bot's database while it runs, and the fake
// OpenAI changed behind rolegate's back: clean, held, missing, then OpenAI
// failing and unreachable. It never writes at OpenAI.
func TestDriftWhileTheBotRuns(t *testing.T) {
	b := newBot(t, nil)
	id := b.approve(defaultTarget + " drift baseline")
	b.waitState(id, approvals.StateApplied)
	group, _ := b.openai.Group(openaitest.DefaultGroupID)
	granted, _ := b.openai.Role(openaitest.DefaultProjectID, openaitest.DefaultRoleID)
	outside, _ := b.openai.Role(openaitest.DefaultProjectID, openaitest.PredefinedRoleID)
	project, _ := b.openai.Project(openaitest.DefaultProjectID)
	posts, deletes := b.openai.AssignPOSTs(), b.openai.RevokeDELETEs()

	out, errOut, err := runBot(t, b.env, "drift")
	if err != nil || out != "no differences: 1 project, 1 group checked\n" || errOut != "" {
		t.Fatalf("clean: err %v\nstdout %q\nstderr %q", err, out, errOut)
	}

	// A role assigned outside rolegate.
	b.openai.AddAssignment(openaitest.DefaultProjectID, openaitest.DefaultGroupID, openaitest.PredefinedRoleID)
	heldLine := fmt.Sprintf("  held     group %q (%s) role %q (%s): not granted by rolegate (no rolegate request for it)\n",
		group.Name, group.ID, outside.Name, outside.ID)
	out, _, err = runBot(t, b.env, "drift")
	if !errors.As(err, new(exitError)) {
		t.Errorf("held: err = %v, want exit 1", err)
	}
	if want := fmt.Sprintf("Project %q (%s)\n", project.Name, project.ID) + heldLine + "\n" +
		"1 difference in 1 of 1 project (1 group checked): 1 held but not granted by rolegate, 0 granted by rolegate but missing\n"; out != want {
		t.Errorf("held: stdout\n%s\nwant\n%s", out, want)
	}

	// The role rolegate granted, removed at OpenAI by someone else.
	client := openai.New(openai.Config{BaseURL: b.openai.URL(), AdminKey: testAdminKey})
	if _, err := client.Revoke(t.Context(), approvals.Target{ProjectID: project.ID, GroupID: group.ID, RoleID: granted.ID}); err != nil {
		t.Fatal(err)
	}
	out, _, err = runBot(t, b.env, "drift")
	if !errors.As(err, new(exitError)) {
		t.Errorf("missing: err = %v, want exit 1", err)
	}
	missingLine := fmt.Sprintf("  missing  group %q (%s) role %q (%s): granted by rolegate (#%d applied), not listed by OpenAI\n",
		group.Name, group.ID, granted.Name, granted.ID, id)
	if want := fmt.Sprintf("Project %q (%s)\n", project.Name, project.ID) + heldLine + missingLine + "\n" +
		"2 differences in 1 of 1 project (1 group checked): 1 held but not granted by rolegate, 1 granted by rolegate but missing\n"; out != want {
		t.Errorf("missing: stdout\n%s\nwant\n%s", out, want)
	}
	if b.openai.AssignPOSTs() != posts || b.openai.RevokeDELETEs() != deletes+1 {
		t.Errorf("bot drift wrote at OpenAI: POSTs %d→%d, DELETEs %d→%d (1 is the test's)", posts, b.openai.AssignPOSTs(), deletes, b.openai.RevokeDELETEs())
	}

	// OpenAI failing, then unreachable: a clear message, no report.
	b.openai.FailNextOp(openaitest.OpListGroupRoles, 1, http.StatusServiceUnavailable)
	out, errOut, err = runBot(t, b.env, "drift")
	if !errors.As(err, new(exitError)) || out != "" ||
		!strings.Contains(errOut, "OpenAI at "+hostOf(t, b.openai.URL())+" failed") || !strings.Contains(errOut, "503") ||
		!strings.Contains(errOut, "Nothing was compared") {
		t.Errorf("503: err %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	down := maps.Clone(b.env)
	down["OPENAI_BASE_URL"] = "http://" + freeAddr(t) + "/v1"
	out, errOut, err = runBot(t, down, "drift")
	if !errors.As(err, new(exitError)) || out != "" ||
		!strings.Contains(errOut, "OpenAI at "+hostOf(t, down["OPENAI_BASE_URL"])+" is unreachable") {
		t.Errorf("unreachable: err %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	for _, s := range []string{out, errOut} {
		if strings.Contains(s, testAdminKey) {
			t.Error("the admin key appears in bot drift's output")
		}
	}
	resp, err := http.Get("http://" + b.addr + "/metrics")
	if err != nil {
		t.Fatalf("bot unhealthy after bot drift: %v", err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	// The serving bot exports the periodic check's gauges from the start;
	// its first check is minutes away.
	for _, w := range []string{"rolegate_drift_held_not_granted 0", "rolegate_drift_granted_missing 0",
		"rolegate_drift_last_run_success 0", "rolegate_drift_last_run_timestamp_seconds 0"} {
		if !strings.Contains(string(metrics), "\n"+w+"\n") {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}

// hostOf is raw's scheme and host, as bot drift names OpenAI.
func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Host
}

func TestDriftCommandLine(t *testing.T) {
	env := baseEnv()
	env["ROLEGATE_DB"] = filepath.Join(t.TempDir(), "none.db")
	if _, errOut, err := runBot(t, env, "drift"); !errors.As(err, new(exitError)) || !strings.Contains(errOut, "no database at") {
		t.Errorf("no database: %v %q", err, errOut)
	}
	if _, errOut, err := runBot(t, env, "drift", "proj_abc"); !errors.As(err, new(exitError)) || !strings.Contains(errOut, "takes no arguments") {
		t.Errorf("argument: %v %q", err, errOut)
	}
	delete(env, "OPENAI_ADMIN_KEY")
	if _, errOut, err := runBot(t, env, "drift"); !errors.As(err, new(exitError)) || !strings.Contains(errOut, "OPENAI_ADMIN_KEY") {
		t.Errorf("no key: %v %q", err, errOut)
	}
	out, _, err := runBot(t, nil, "drift", "--help")
	if err != nil || out != driftHelp || !strings.Contains(out, "no differences: N projects, M groups checked") {
		t.Errorf("--help: %v %q", err, out)
	}
}

// gauge reads one gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// One periodic check, called directly: the gauges say what it found, each
// difference is logged at warn once, a failed check keeps the counts and
// says so, and a check after the repair reads zero.
func TestDriftWatchSetsTheGaugesAndLogsEachDifferenceOnce(t *testing.T) {
	store, err := approvals.Open(filepath.Join(t.TempDir(), "rolegate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Three applied grants of role_seed to group_seed in proj_seed.
	if err := store.Import(t.Context(), approvalstest.Finished(1, 3, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))); err != nil {
		t.Fatal(err)
	}
	oa := openaitest.NewServer(testAdminKey)
	defer oa.Close()
	oa.AddProject("proj_seed", "Seed Project")
	oa.AddGroup("group_seed", "Seeded Group", false)
	oa.AddRole("proj_seed", openaitest.Role{ID: "role_seed", Name: "Seeded Role"})
	oa.AddRole("proj_seed", openaitest.Role{ID: "role_extra", Name: "Extra"})
	oa.AddAssignment("proj_seed", "group_seed", "role_extra") // held; role_seed missing

	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	client := openai.New(openai.Config{BaseURL: oa.URL(), AdminKey: testAdminKey})
	w := &driftWatch{Store: store, Roles: client, Gauges: newMetrics(reg, store, log, false), Logger: log, Interval: time.Hour,
		Now: func() time.Time { return now }}

	if gauge(t, reg, "rolegate_drift_last_run_timestamp_seconds") != 0 {
		t.Error("a last run before the first check")
	}
	// Another replica's turn: nothing is checked here.
	w.Turns = turner(false)
	w.check(t.Context())
	if gauge(t, reg, "rolegate_drift_last_run_timestamp_seconds") != 0 || oa.Calls(openaitest.OpListGroupRoles) != 0 {
		t.Error("a replica checked on another's turn")
	}
	w.Turns = turner(true)
	w.check(t.Context())
	for name, want := range map[string]float64{
		"rolegate_drift_held_not_granted":           1,
		"rolegate_drift_granted_missing":            1,
		"rolegate_drift_last_run_success":           1,
		"rolegate_drift_last_run_timestamp_seconds": float64(now.Unix()),
	} {
		if got := gauge(t, reg, name); got != want {
			t.Errorf("after a check with drift: %s = %v, want %v", name, got, want)
		}
	}
	text := logs.String()
	if n := strings.Count(text, `"level":"WARN","msg":"Drift: a group holds a role rolegate did not grant"`); n != 1 ||
		!strings.Contains(text, `"role_id":"role_extra","role":"Extra"`) {
		t.Errorf("held logged %d times:\n%s", n, text)
	}
	if n := strings.Count(text, `"level":"WARN","msg":"Drift: a role rolegate granted is missing at OpenAI"`); n != 1 ||
		!strings.Contains(text, `"role_id":"role_seed","role":"Seeded Role","request_ids":[1,2,3]`) {
		t.Errorf("missing logged %d times:\n%s", n, text)
	}
	if strings.Contains(text, testAdminKey) {
		t.Error("the admin key is in the logs")
	}

	// OpenAI failing: success drops, the counts stay.
	now = now.Add(time.Hour)
	oa.FailNextOp(openaitest.OpListGroupRoles, 1, http.StatusServiceUnavailable)
	logs.Reset()
	w.check(t.Context())
	if gauge(t, reg, "rolegate_drift_last_run_success") != 0 || gauge(t, reg, "rolegate_drift_held_not_granted") != 1 ||
		gauge(t, reg, "rolegate_drift_last_run_timestamp_seconds") != float64(now.Unix()) {
		t.Error("a failed check did not drop the success gauge, kept no counts, or left the timestamp")
	}
	if !strings.Contains(logs.String(), "Drift check failed") || !strings.Contains(logs.String(), "503") {
		t.Errorf("failure not logged:\n%s", logs.String())
	}

	// Repaired at OpenAI: the next check reads zero.
	oa.AddAssignment("proj_seed", "group_seed", "role_seed")
	if _, err := client.Revoke(t.Context(), approvals.Target{ProjectID: "proj_seed", GroupID: "group_seed", RoleID: "role_extra"}); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	w.check(t.Context())
	if gauge(t, reg, "rolegate_drift_held_not_granted") != 0 || gauge(t, reg, "rolegate_drift_granted_missing") != 0 ||
		gauge(t, reg, "rolegate_drift_last_run_success") != 1 {
		t.Error("a clean check did not clear the counts")
	}
	if strings.Contains(logs.String(), "WARN") {
		t.Errorf("a clean check warned:\n%s", logs.String())
	}

	// A check cut short by shutdown records nothing.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	now = now.Add(time.Hour)
	w.check(ctx)
	if gauge(t, reg, "rolegate_drift_last_run_timestamp_seconds") == float64(now.Unix()) {
		t.Error("a check cancelled by shutdown was recorded")
	}
}

func TestDriftDelayIsJitteredWithinBounds(t *testing.T) {
	low := func(time.Duration) time.Duration { return 0 }
	high := func(n time.Duration) time.Duration { return n - 1 }
	for _, tc := range []struct {
		interval time.Duration
		first    bool
		jitter   func(time.Duration) time.Duration
		want     time.Duration
	}{
		{time.Hour, true, low, 2 * time.Minute},
		{time.Hour, true, high, 5*time.Minute - 1},
		{time.Minute, true, high, time.Minute}, // never later than the interval
		{time.Hour, false, low, 54 * time.Minute},
		{time.Hour, false, high, 66*time.Minute - 1},
	} {
		if got := driftDelay(tc.interval, tc.first, tc.jitter); got != tc.want {
			t.Errorf("driftDelay(%s, first=%v) = %s, want %s", tc.interval, tc.first, got, tc.want)
		}
	}
}

func TestDriftIntervalConfig(t *testing.T) {
	for _, tc := range []struct {
		value   string
		want    time.Duration
		problem bool
	}{
		{"", time.Hour, false},
		{"0", 0, false},
		{"15m", 15 * time.Minute, false},
		{"30s", 0, true},
		{"-1h", 0, true},
		{"hourly", 0, true},
	} {
		env := baseEnv()
		if tc.value != "" {
			env["ROLEGATE_DRIFT_INTERVAL"] = tc.value
		}
		cfg, err := loadConfig(envFrom(env))
		switch {
		case tc.problem && (err == nil || !strings.Contains(err.Error(), "ROLEGATE_DRIFT_INTERVAL")):
			t.Errorf("%q: err = %v, want ROLEGATE_DRIFT_INTERVAL named", tc.value, err)
		case !tc.problem && err != nil:
			t.Errorf("%q: %v", tc.value, err)
		case !tc.problem && cfg.DriftInterval != tc.want:
			t.Errorf("%q: DriftInterval = %s, want %s", tc.value, cfg.DriftInterval, tc.want)
		}
	}
}

// turner is an approvals.Turner that always (or never) gives the turn.
type turner bool

func (m turner) Turn(context.Context, string, time.Duration) (bool, error) { return bool(m), nil }
