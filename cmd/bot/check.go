package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack/socketmode"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai"
	"github.com/rolegate/rolegate/internal/pgstore"
)

// checkTimeout bounds each reachability check.
const checkTimeout = 15 * time.Second

// check validates the configuration and reaches Slack and OpenAI, printing
// one PASS or FAIL line for each. It returns an error when any fails.
func check(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL configuration: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return exitError{"check failed"}
	}
	mode := "HTTP mode"
	if cfg.SocketMode() {
		mode = "Socket Mode"
	}
	failed := false
	line := func(name string, err error, ok string) {
		if err != nil {
			failed = true
			fmt.Fprintf(stdout, "FAIL %s: %s\n", name, err)
			return
		}
		fmt.Fprintf(stdout, "PASS %s: %s\n", name, ok)
	}
	policy, err := cfg.policy()
	if err != nil {
		fmt.Fprintf(stdout, "FAIL policy: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return exitError{"check failed"}
	}
	fmt.Fprintf(stdout, "PASS configuration (%s, %s)\n", mode, policySummary(cfg, policy))
	if cfg.DryRun {
		fmt.Fprintln(stdout, "NOTE dry run: ROLEGATE_DRY_RUN=true, so rolegate will never POST or DELETE at OpenAI; every message says \"Dry run\"")
	}
	if cfg.DatabaseURL != "" {
		checkPostgres(ctx, cfg.DatabaseURL, line)
	} else {
		checkDatabase(ctx, cfg.DB, line)
	}

	scopes := &scopeHeader{}
	api := slackClientVia(cfg, scopes.wrap)
	sctx, cancel := context.WithTimeout(ctx, checkTimeout)
	auth, err := api.AuthTestContext(sctx)
	cancel()
	ok := ""
	if err == nil {
		ok = fmt.Sprintf("auth.test as %s in %s", auth.User, auth.Team)
	}
	line("slack", err, ok)
	if err == nil {
		checkScopes(stdout, scopes.get(), line)
	}

	if cfg.SocketMode() {
		sctx, cancel := context.WithTimeout(ctx, checkTimeout)
		_, _, err := socketmode.New(api).OpenContext(sctx)
		cancel()
		line("slack socket mode", err, "apps.connections.open accepted SLACK_APP_TOKEN")
	}

	octx, cancel := context.WithTimeout(ctx, checkTimeout)
	err = openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, AdminKey: cfg.OpenAIAdminKey, Timeout: cfg.OpenAITimeout}).Check(octx)
	cancel()
	line("openai", err, "listed projects with the admin key")

	if failed {
		return exitError{"check failed"}
	}
	return nil
}

// policySummary says in a few words how requests are decided.
func policySummary(cfg *Config, p approvals.Policy) string {
	if cfg.Policy == "" {
		return fmt.Sprintf("%d approvers, %d approval(s) required", len(cfg.approvers), cfg.ApprovalsRequired)
	}
	return fmt.Sprintf("policy %s with %d rule(s)", cfg.Policy, len(p.Rules))
}

// checkDatabase runs bbolt's full consistency check on a snapshot of the
// file (so it works while the bot runs) and lists the records the bot has
// moved aside because it could not read them. A file that does not exist
// yet is fine: the bot creates it.
func checkDatabase(ctx context.Context, path string, line func(name string, err error, ok string)) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		line("database", nil, path+" does not exist yet; the bot creates it at start")
		return
	}
	store, cleanup, err := approvals.OpenSnapshot(path)
	if err != nil {
		line("database", err, "")
		return
	}
	defer cleanup()
	c, err := store.Counts(ctx)
	if err != nil {
		line("database", err, "")
		return
	}
	line("database", nil, fmt.Sprintf("%s is consistent (bbolt check); %d open requests, %d jobs waiting", path, c.Open[approvals.StatePending]+c.Open[approvals.StateChecking]+c.Open[approvals.StateApproved], c.Jobs))
	q, err := store.Quarantined(ctx)
	if err != nil {
		line("quarantine", err, "")
		return
	}
	if len(q) == 0 {
		line("quarantine", nil, "no unreadable records")
		return
	}
	parts := make([]string, len(q))
	for i, r := range q {
		parts[i] = fmt.Sprintf("%s %d (%s, moved aside %s)", r.Kind, r.Key, r.Reason, r.At.Format(time.RFC3339))
	}
	line("quarantine", fmt.Errorf("%d record(s) could not be read and were moved aside: %s; everything else carries on. A newer rolegate may read them: upgrade, or remove them with bbolt's tools once looked at", len(q), strings.Join(parts, "; ")), "")
}

// checkPostgres reaches the database of ROLEGATE_DATABASE_URL and reports
// the server's version and the schema state, changing nothing (the bot
// migrates at start, not check).
func checkPostgres(ctx context.Context, url string, line func(name string, err error, ok string)) {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	in, err := pgstore.Inspect(cctx, url)
	if err != nil {
		line("database", fmt.Errorf("PostgreSQL (ROLEGATE_DATABASE_URL) unreachable: %w", err), "")
		return
	}
	switch {
	case in.Migrations.Applied > in.Migrations.Known:
		line("database", fmt.Errorf("PostgreSQL %s: %s", in.Version, in.Migrations), "")
	default:
		line("database", nil, fmt.Sprintf("PostgreSQL %s; %s", in.Version, in.Migrations))
	}
}

// botScopes are the bot token scopes manifest.yml asks for, and what is
// lost without each (TestBotScopesAreTheManifests keeps the two in step).
var botScopes = []struct {
	name    string
	needed  bool // nothing works without it
	without string
}{
	{"commands", true, "no slash command reaches rolegate"},
	{"chat:write", true, "rolegate cannot post"},
	{"chat:write.public", false, "rolegate cannot post in public channels it was not invited to"},
	{"usergroups:read", false, "user-group approvers (S…) cannot be expanded, so their members cannot decide"},
	{"channels:history", false, "an approval message or result cut short by a crash or a Slack timeout may be posted twice (public channels)"},
	{"groups:history", false, "an approval message or result cut short by a crash or a Slack timeout may be posted twice (private channels)"},
}

// checkScopes compares the bot token's scopes, as Slack listed them in
// auth.test's X-OAuth-Scopes header, with manifest.yml's. A scope nothing
// works without fails the check; another is a NOTE saying what is lost,
// typically for an app installed from an older manifest. No header (a
// proxy dropped it): nothing to compare.
func checkScopes(stdout io.Writer, header string, line func(name string, err error, ok string)) {
	if header == "" {
		fmt.Fprintln(stdout, "NOTE slack scopes: Slack did not list the bot token's scopes; compare them with manifest.yml by hand")
		return
	}
	granted := map[string]bool{}
	for _, s := range strings.Split(header, ",") {
		granted[strings.TrimSpace(s)] = true
	}
	var fatal, lacking []string
	for _, s := range botScopes {
		switch {
		case granted[s.name]:
		case s.needed:
			fatal = append(fatal, s.name+" ("+s.without+")")
		default:
			lacking = append(lacking, s.name+" ("+s.without+")")
		}
	}
	const fix = "reinstall the app from manifest.yml (app settings → OAuth & Permissions → add the scopes, then Reinstall to Workspace)"
	if len(fatal) > 0 {
		line("slack scopes", fmt.Errorf("the bot token lacks %s: %s", strings.Join(fatal, ", "), fix), "")
	} else {
		line("slack scopes", nil, fmt.Sprintf("the bot token has %d of manifest.yml's %d scopes", len(botScopes)-len(lacking), len(botScopes)))
	}
	if len(lacking) > 0 {
		fmt.Fprintf(stdout, "NOTE slack scopes: the bot token lacks %s: %s\n", strings.Join(lacking, "; "), fix)
	}
}

// scopeHeader keeps the X-OAuth-Scopes header of the Slack answers that
// pass through it.
type scopeHeader struct {
	mu     sync.Mutex
	scopes string
}

func (h *scopeHeader) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err == nil {
			if v := resp.Header.Get("X-OAuth-Scopes"); v != "" {
				h.mu.Lock()
				h.scopes = v
				h.mu.Unlock()
			}
		}
		return resp, err
	})
}

func (h *scopeHeader) get() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.scopes
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
