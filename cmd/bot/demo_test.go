package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runDemoForTest runs `bot demo` with args as main would, with an
// environment full of garbage (the demo must not read it), and returns
// what it printed. Everything the demo creates in TMPDIR must be gone when
// it returns, and the working directory must stay empty.
func runDemoForTest(t *testing.T, args ...string) string {
	t.Helper()
	tmp, work := t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Chdir(work)
	var stdout, stderr bytes.Buffer
	garbage := func(string) string { return "not-a-value" }
	if err := run(t.Context(), append([]string{"demo"}, args...), garbage, &stdout, &stderr); err != nil {
		t.Fatalf("bot demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for dir, what := range map[string]string{tmp: "the temporary directory", work: "the working directory"} {
		left, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range left {
			t.Errorf("bot demo left %s in %s", e.Name(), what)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("bot demo wrote to stderr:\n%s", stderr.String())
	}
	return stdout.String()
}

func TestDemoShowsTheWholeFlowAndLeavesNothingBehind(t *testing.T) {
	out := runDemoForTest(t)
	for i, s := range demoSteps() {
		if !strings.Contains(out, "== "+string(rune('1'+i))+". "+s.Heading+"\n") {
			t.Errorf("the output lacks step %d, %q", i+1, s.Heading)
		}
	}
	for _, want := range []string{
		`> /assign-role "Support Project" "Support Team" "Key Manager"`, // asked by name
		"Request #1 is being checked",
		"Request #1 is waiting for approval",
		"Role assignment request #1", // the approval message's header
		"*Requester*  @ana",          // mentions shown as names
		"[Approve] [Deny]",
		"@ana clicks [Approve]",
		"cannot approve",
		"@bob clicks [Approve]",
		"the message above, updated in place",
		"reply in the request's thread, also sent to the channel",
		"Request #1 applied",
		"api.organization.projects.service_accounts.write", // every permission
		" UTC", // dates by their fallback text
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	// Readable text, not Slack's wire format.
	for _, raw := range []string{"<@U", "<!date", `{"type"`, "&lt;", "&gt;", "&amp;"} {
		if strings.Contains(out, raw) {
			t.Errorf("the output contains raw %q", raw)
		}
	}
	// Steps this build cannot show say so in one line, and nothing else.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "skipped:") && !strings.HasPrefix(line, "   skipped: this build") {
			t.Errorf("unexpected skip line %q", line)
		}
	}
}

func TestDemoRefusesUnknownArguments(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"demo", "--frobnicate"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), `unknown argument "--frobnicate"`) || !strings.Contains(stderr.String(), "Usage: bot demo") {
		t.Errorf("err = %v, stderr:\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("it ran anyway:\n%s", stdout.String())
	}
}

// TestPicturesShowTheCurrentMessages fails when the blocks behind README's
// pictures (docs/*.png) change without the pictures being regenerated: it
// re-runs the demo and compares the blocks' hashes with
// docs/pictures.sha256, written when the pictures were made.
func TestPicturesShowTheCurrentMessages(t *testing.T) {
	docs, err := filepath.Abs(filepath.Join("..", "..", "docs")) // before the demo's Chdir
	if err != nil {
		t.Fatal(err)
	}
	htmlDir := t.TempDir()
	runDemoForTest(t, "--html", htmlDir)
	got, err := os.ReadFile(filepath.Join(htmlDir, "pictures.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(docs, "pictures.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	const regenerate = "Regenerate them and commit docs/: scripts/pictures.sh (needs Debian's chromium, fonts-lato and fonts-noto-color-emoji)"
	if !bytes.Equal(got, want) {
		t.Errorf("the messages behind README's pictures changed:\n%s\ncurrent:\n%s\ndocs/pictures.sha256:\n%s", regenerate, got, want)
	}
	for _, line := range strings.Split(string(want), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		_, png, _ := strings.Cut(line, "  ")
		if _, err := os.Stat(filepath.Join(docs, png)); err != nil {
			t.Errorf("docs/pictures.sha256 lists %s, which is missing. %s", png, regenerate)
		}
	}
	for _, name := range []string{"approval", "summary", "approval-applied"} {
		if _, err := os.Stat(filepath.Join(htmlDir, name+".html")); err != nil {
			t.Errorf("bot demo --html did not write %s.html", name)
		}
	}
}

func TestCanonicalBlocksIgnoreDatesAndKeyOrder(t *testing.T) {
	a, err := canonicalBlocks([]byte(`[{"type":"section","text":{"type":"mrkdwn","text":"Expires <!date^1700000000^{date_short_pretty} at {time}|2023-11-14 22:13 UTC>."}}]`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := canonicalBlocks([]byte(`[{"text":{"text":"Expires <!date^1800000000^{date_short_pretty} at {time}|2027-01-15 08:00 UTC>.","type":"mrkdwn"},"type":"section"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("same blocks, different hashes input:\n%s\n%s", a, b)
	}
	c, _ := canonicalBlocks([]byte(`[{"type":"section","text":{"type":"mrkdwn","text":"Expired <!date^1700000000^{date_short_pretty} at {time}|2023-11-14 22:13 UTC>."}}]`))
	if bytes.Equal(a, c) {
		t.Error("a changed word left the canonical form unchanged")
	}
}
