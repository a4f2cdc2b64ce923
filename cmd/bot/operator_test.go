package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/pgtest"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

func TestCheck(t *testing.T) {
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	sl.SetAppToken(testAppToken)
	oa := openaitest.NewServer(testAdminKey)
	t.Cleanup(oa.Close)
	env := func(edit map[string]string) func(string) string {
		m := map[string]string{
			"SLACK_BOT_TOKEN":    testBotToken,
			"SLACK_APP_TOKEN":    testAppToken,
			"SLACK_API_URL":      sl.APIURL(),
			"OPENAI_ADMIN_KEY":   testAdminKey,
			"OPENAI_BASE_URL":    oa.URL(),
			"ROLEGATE_APPROVERS": approverAna,
			"ROLEGATE_DB":        filepath.Join(t.TempDir(), "none-yet.db"),
		}
		for k, v := range edit {
			m[k] = v
		}
		return envFrom(m)
	}
	tests := []struct {
		name     string
		edit     map[string]string
		wantFail []string // lines that must FAIL
		wantText string   // the service's error, shown on the failing line
	}{
		{"all pass", nil, nil, ""},
		{"bad bot token", map[string]string{"SLACK_BOT_TOKEN": "xoxb-wrong-token-000000"}, []string{"slack:"}, "invalid_auth"},
		{"bad app token", map[string]string{"SLACK_APP_TOKEN": "xapp-wrong-token-000000"}, []string{"slack socket mode:"}, "invalid_auth"},
		{"bad admin key", map[string]string{"OPENAI_ADMIN_KEY": "sk-admin-wrong-000000"}, []string{"openai:"}, "401"},
		{"openai unreachable", map[string]string{"OPENAI_BASE_URL": "http://" + freeAddr(t) + "/v1"}, []string{"openai:"}, "cannot reach OpenAI"},
		{"bad configuration", map[string]string{"ROLEGATE_APPROVERS": "nobody"}, []string{"configuration:"}, "ROLEGATE_APPROVERS"},
		{"quarantined records", map[string]string{"ROLEGATE_DB": quarantinedDB(t)}, []string{"quarantine:"}, "request 1 (decode request 1: unknown schema version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			err := run(t.Context(), []string{"check"}, env(tt.edit), &out, &out)
			text := out.String()
			if (err != nil) != (len(tt.wantFail) > 0) {
				t.Fatalf("check returned %v:\n%s", err, text)
			}
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				failing := false
				for _, f := range tt.wantFail {
					if strings.Contains(line, f) {
						failing = true
					}
				}
				if failing != strings.HasPrefix(line, "FAIL") {
					t.Errorf("unexpected line %q:\n%s", line, text)
				}
				if failing && !strings.Contains(line, tt.wantText) {
					t.Errorf("line %q does not show the service's error %q", line, tt.wantText)
				}
			}
			if len(tt.wantFail) == 0 && strings.Count(text, "PASS") != 6 {
				t.Errorf("want 6 PASS lines (configuration, database, slack, slack scopes, socket mode, openai):\n%s", text)
			}
			for _, s := range []string{testBotToken, testAppToken, testAdminKey, "sk-admin-wrong-000000", "xoxb-wrong-token-000000"} {
				if strings.Contains(text, s) {
					t.Errorf("check printed a secret")
				}
			}
		})
	}

	// An app installed from an older manifest: what it lacks is named, with
	// what is lost and how to mend it; only a scope nothing works without
	// fails the check.
	for _, tt := range []struct {
		name   string
		scopes []string
		fail   bool
		want   string
	}{
		{"no history scopes", []string{"commands", "chat:write", "chat:write.public", "usergroups:read"}, false,
			"NOTE slack scopes: the bot token lacks channels:history (an approval message or result cut short"},
		{"no chat:write", []string{"commands", "chat:write.public", "usergroups:read", "channels:history", "groups:history"}, true,
			"FAIL slack scopes: the bot token lacks chat:write (rolegate cannot post): reinstall the app from manifest.yml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sl.SetScopes(tt.scopes...)
			defer sl.SetScopes(slackfake.DefaultScopes...)
			var out strings.Builder
			err := run(t.Context(), []string{"check"}, env(nil), &out, &out)
			if (err != nil) != tt.fail || !strings.Contains(out.String(), tt.want) {
				t.Errorf("check = %v, want failed %v and %q:\n%s", err, tt.fail, tt.want, out.String())
			}
		})
	}
}

// TestBotScopesAreTheManifests: bot check compares the token with the
// scopes manifest.yml asks for, and the fake Slack grants them by default.
func TestBotScopesAreTheManifests(t *testing.T) {
	data, err := os.ReadFile("../../manifest.yml")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		OAuth struct {
			Scopes struct {
				Bot []string `yaml:"bot"`
			} `yaml:"scopes"`
		} `yaml:"oauth_config"`
	}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range botScopes {
		names = append(names, s.name)
	}
	if want := m.OAuth.Scopes.Bot; !slices.Equal(names, want) || !slices.Equal(slackfake.DefaultScopes, want) {
		t.Errorf("bot check knows %v and the fake grants %v; manifest.yml asks for %v", names, slackfake.DefaultScopes, want)
	}
}

// TestRequestsListsWhileTheBotRuns: `bot requests` lists what the running
// bot stored, the same on either engine; with ROLEGATE_DATABASE_URL set it
// reads PostgreSQL and ignores ROLEGATE_DB.
func TestRequestsListsWhileTheBotRuns(t *testing.T) {
	for _, engine := range []string{"bbolt", "postgresql"} {
		t.Run(engine, func(t *testing.T) {
			extra := map[string]string{}
			if engine == "postgresql" {
				extra["ROLEGATE_DATABASE_URL"] = pgtest.URL(t)
			}
			b := newBot(t, extra)
			// The bot's ROLEGATE_DB: with a database URL, a file that is
			// never created.
			env := map[string]string{"ROLEGATE_DB": b.env["ROLEGATE_DB"], "ROLEGATE_DATABASE_URL": extra["ROLEGATE_DATABASE_URL"]}
			list := func(args ...string) (string, string, error) {
				var out, errOut strings.Builder
				err := run(t.Context(), append([]string{"requests"}, args...), envFrom(env), &out, &errOut)
				return out.String(), errOut.String(), err
			}
			first := b.request(requester, defaultTarget+" listed")
			second := b.request(approverAna, "proj_abc group_02 role_02 also listed")
			b.deny(approverBob, second, "listed as denied")
			b.approvalMessage(first)
			b.waitFor("the pending and the denied request in the listing", func() bool {
				out, _, err := list()
				return err == nil && strings.Contains(out, "denied") && strings.Contains(out, "pending")
			})

			all, errOut, err := list()
			if err != nil || errOut != "" {
				t.Fatalf("requests: %v\n%s%s", err, all, errOut)
			}
			lines := strings.Split(strings.TrimSpace(all), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
				!strings.HasPrefix(lines[1], strconv.FormatUint(second, 10)+" ") || !strings.Contains(lines[1], "denied") || !strings.Contains(lines[1], "group_02") ||
				!strings.HasPrefix(lines[2], strconv.FormatUint(first, 10)+" ") || !strings.Contains(lines[2], "pending") || !strings.Contains(lines[2], requester) || !strings.Contains(lines[2], "role_01") {
				t.Fatalf("requests output:\n%s", all)
			}
			if pending, _, _ := list("--state", "pending"); strings.Contains(pending, "denied") || !strings.Contains(pending, "pending") {
				t.Fatalf("--state pending:\n%s", pending)
			}
			if one, _, _ := list("--limit", "1"); strings.Count(strings.TrimSpace(one), "\n") != 1 || !strings.Contains(one, "denied") {
				t.Fatalf("--limit 1, want the newest only:\n%s", one)
			}
			if _, errOut, err := list("--state", "bogus"); err == nil || !strings.Contains(errOut, `unknown state "bogus"`) {
				t.Fatalf("--state bogus: %v %q", err, errOut)
			}
			if resp, err := http.Get("http://" + b.addr + "/healthz"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("bot unhealthy after listing: %v", err)
			}
		})
	}
}

// TestRequestsSaysWhyItCannotRead: no file at ROLEGATE_DB, or a
// ROLEGATE_DATABASE_URL that is not PostgreSQL's, is one line on stderr
// and exit 1.
func TestRequestsSaysWhyItCannotRead(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no file", map[string]string{"ROLEGATE_DB": filepath.Join(t.TempDir(), "none.db")}, "no database at"},
		{"not postgres", map[string]string{"ROLEGATE_DATABASE_URL": "mysql://rg:hunter2-db-pass@db/rg"}, "ROLEGATE_DATABASE_URL must be a PostgreSQL URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runBot(t, tt.env, "requests")
			if !errors.As(err, new(exitError)) || out != "" || !strings.Contains(errOut, tt.want) || strings.Contains(errOut, "hunter2") {
				t.Fatalf("err %v\nstdout %q\nstderr %q; want exit 1 saying %q", err, out, errOut, tt.want)
			}
		})
	}
}

// quarantinedDB is a database in which request 1 was written by a newer
// rolegate and moved aside, as the worker does.
func quarantinedDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "quarantined.db")
	s, err := approvals.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	r, _, err := s.Create(t.Context(), approvals.NewRequest{Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"}, Reason: "x", Requester: requester, ChannelID: testChannel}, now, 0,
		func(r *approvals.Request) approvals.Transition {
			r.State = approvals.StateChecking
			return approvals.Transition{Event: approvals.Event{At: now}}
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine(t.Context(), &approvals.CorruptError{Kind: "request", Key: r.ID, Err: errors.New("decode request 1: unknown schema version 3")}, now); err != nil {
		t.Fatal(err)
	}
	return path
}
