package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/approvalstest"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// runBot runs `bot args…` with env and returns stdout, stderr and the error.
func runBot(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr strings.Builder
	err := run(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// independentHash recomputes an exported line's hash from the rule in
// `bot audit --help`, without the approvals package: seven netstrings.
func independentHash(t *testing.T, line []byte) (hash, prev, want string) {
	t.Helper()
	var l map[string]any
	if err := json.Unmarshal(line, &l); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, k := range []string{"seq", "request_id", "actor", "action", "at", "detail", "prev"} {
		var s string
		switch v := l[k].(type) {
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		case string:
			s = v
		default:
			t.Fatalf("field %s of %s is %T", k, line, v)
		}
		fmt.Fprintf(&buf, "%d:%s,", len(s), s)
	}
	sum := sha256.Sum256(buf.Bytes())
	return "sha256:" + hex.EncodeToString(sum[:]), l["prev"].(string), l["hash"].(string)
}

// TestAuditExportWhileTheBotRunsVerifies: an auditor exports the log of a
// running bot, checks it with rolegate and without, and finds the hash the
// result message showed in the channel.
func TestAuditExportWhileTheBotRunsVerifies(t *testing.T) {
	b := newBot(t, nil)
	applied := b.request(requester, defaultTarget+" audited <&> request")
	cancelled := b.request(requester, defaultTarget+" changed my mind")
	b.click(approverAna, slackapp.ActionApprove, applied)
	b.command(requester, fmt.Sprintf("cancel %d", cancelled))
	b.waitSettled(applied)
	b.waitSettled(cancelled)

	out, errOut, err := runBot(t, b.env, "audit", "export")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	lines := bytes.Split(bytes.TrimSpace([]byte(out)), []byte("\n"))
	if len(lines) < 6 {
		t.Fatalf("export has %d lines:\n%s", len(lines), out)
	}
	prev := approvals.GenesisHash
	for i, line := range lines {
		got, linkedTo, stored := independentHash(t, line)
		if got != stored || linkedTo != prev {
			t.Fatalf("line %d does not verify by the published rule: %s", i+1, line)
		}
		prev = stored
	}
	if !strings.Contains(out, `"detail":"audited <&> request"`) {
		t.Errorf("the export escapes or loses the reason:\n%s", out)
	}

	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("audit chain intact: %d events, head %s\n", len(lines), prev)
	if got, _, err := runBot(t, b.env, "audit", "verify", "--file", file); err != nil || got != want {
		t.Fatalf("verify --file = %q, %v; want %q", got, err, want)
	}
	if got, _, err := runBot(t, b.env, "audit", "verify"); err != nil || got != want {
		t.Fatalf("verify = %q, %v; want %q", got, err, want)
	}

	// The result in the channel carries the short hash of the request's
	// latest event, which the export holds.
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Audit(t.Context(), applied)
	cleanup()
	if err != nil || len(events) == 0 {
		t.Fatal(events, err)
	}
	short := slackapp.ShortHash(events[len(events)-1].Hash)
	if len(short) != len("sha256:")+12 || !strings.Contains(b.resultMessage(applied).VisibleText(), "`"+short+"`") {
		t.Errorf("the result message lacks the audit hash %s:\n%s", short, b.resultMessage(applied).VisibleText())
	}
	if !strings.Contains(out, `"hash":"`+short) {
		t.Errorf("the export lacks the event the channel shows (%s)", short)
	}

	// A part from --since verifies on its own, from its first event's prev.
	since := events[len(events)-1].At.Format(time.RFC3339Nano)
	part, _, err := runBot(t, b.env, "audit", "export", "--since", since)
	if err != nil || len(part) == 0 || len(part) >= len(out) {
		t.Fatalf("export --since %s: %d of %d bytes, %v", since, len(part), len(out), err)
	}
	os.WriteFile(file, []byte(part), 0o600)
	if got, _, err := runBot(t, b.env, "audit", "verify", "--file", file); err != nil || !strings.HasPrefix(got, "audit chain intact: ") || !strings.Contains(got, "the export starts at event") {
		t.Fatalf("verify of a partial export = %q, %v", got, err)
	}

	resp, err := http.Get("http://" + b.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\nrolegate_dry_run 0\n") {
		t.Error("/metrics lacks rolegate_dry_run 0")
	}
}

// seededDB is a closed rolegate file holding 5 finished requests: 20
// chained events, 4 per request (create, posted, approve, apply).
func seededDB(t *testing.T) map[string]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	s, err := approvals.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Import(t.Context(), approvalstest.Finished(1, 5, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"ROLEGATE_DB": path}
}

// The four ways of rewriting history, on the file and on its export, are
// each named by the sequence number of the first bad event, with exit 1.
func TestAuditVerifyNamesTheFirstBadEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		store  func(a *bolt.Bucket) error
		export func(lines []string) []string
		want   string
	}{
		{"edited",
			func(a *bolt.Bucket) error {
				return a.Put(key(9), bytes.Replace(bytes.Clone(a.Get(key(9))), []byte("seeded request 3"), []byte("seeded request 8"), 1))
			},
			func(l []string) []string {
				l[8] = strings.Replace(l[8], "seeded request 3", "seeded request 8", 1)
				return l
			},
			"audit chain broken at event 9 (edited)"},
		{"dropped",
			func(a *bolt.Bucket) error { return a.Delete(key(6)) },
			func(l []string) []string { return append(l[:5], l[6:]...) },
			"audit chain broken at event 6 (dropped)"},
		{"reordered",
			func(a *bolt.Bucket) error {
				v4, v7 := bytes.Clone(a.Get(key(4))), bytes.Clone(a.Get(key(7)))
				a.Put(key(4), v7)
				return a.Put(key(7), v4)
			},
			func(l []string) []string { l[3], l[6] = l[6], l[3]; return l },
			"audit chain broken at event 4 (reordered)"},
		{"inserted",
			func(a *bolt.Bucket) error { // a copy of event 11 slipped in after it
				for k := uint64(20); k >= 12; k-- {
					a.Put(key(k+1), bytes.Clone(a.Get(key(k))))
				}
				return a.Put(key(12), bytes.Clone(a.Get(key(11))))
			},
			func(l []string) []string { return append(l[:11:11], append([]string{l[10]}, l[11:]...)...) },
			"audit chain broken at event 11 (inserted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := seededDB(t)
			out, _, err := runBot(t, env, "audit", "export")
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 20 {
				t.Fatalf("%d events exported, want 20", len(lines))
			}
			file := filepath.Join(t.TempDir(), "export.jsonl")
			os.WriteFile(file, []byte(strings.Join(tt.export(lines), "\n")+"\n"), 0o600)
			if got, _, err := runBot(t, env, "audit", "verify", "--file", file); err == nil || !strings.HasPrefix(got, tt.want) {
				t.Errorf("verify --file of a tampered export = %q, %v; want %q and exit 1", got, err, tt.want)
			}

			db, err := bolt.Open(env["ROLEGATE_DB"], 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return tt.store(tx.Bucket([]byte("audit"))) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if got, _, err := runBot(t, env, "audit", "verify"); err == nil || !strings.HasPrefix(got, tt.want) {
				t.Errorf("verify of a tampered file = %q, %v; want %q and exit 1", got, err, tt.want)
			}
		})
	}
}

// key is the audit bucket's key of event seq.
func key(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func TestAuditCommandLine(t *testing.T) {
	t.Parallel()
	env := seededDB(t)
	for _, args := range [][]string{{"audit", "--help"}, {"audit", "export", "--help"}, {"audit", "verify", "-h"}, {"help", "audit"}} {
		out, _, err := runBot(t, env, args...)
		if err != nil || !strings.HasPrefix(out, "Usage: bot audit export") || !strings.Contains(out, "bot audit verify [--file F]") ||
			!strings.Contains(out, "netstring") {
			t.Errorf("%v = %q, %v", args, out, err)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "Usage: bot audit"},
		{[]string{"audit", "rewrite"}, `unknown audit command "rewrite"`},
		{[]string{"audit", "export", "--since", "yesterday"}, "not an RFC 3339 time"},
		{[]string{"audit", "verify", "--file", filepath.Join(t.TempDir(), "missing.jsonl")}, "no such file"},
	} {
		if _, errOut, err := runBot(t, env, tt.args...); err == nil || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v = %q, %v; want exit 1 saying %q", tt.args, errOut, err, tt.want)
		}
	}
	if _, errOut, err := runBot(t, map[string]string{"ROLEGATE_DB": filepath.Join(t.TempDir(), "none.db")}, "audit", "verify"); err == nil || !strings.Contains(errOut, "no database") {
		t.Errorf("verify without a file = %q, %v", errOut, err)
	}
	// Dropped from the end: the chain alone looks fine, the recorded head
	// does not.
	db, err := bolt.Open(env["ROLEGATE_DB"], 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("audit")).Delete(key(20)) })
	db.Close()
	if out, _, err := runBot(t, env, "audit", "verify"); err == nil || !strings.HasPrefix(out, "audit chain broken at event 20 (dropped)") {
		t.Errorf("verify after the last event was deleted = %q, %v", out, err)
	}
}
