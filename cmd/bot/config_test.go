package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func baseEnv() map[string]string {
	return map[string]string{
		"SLACK_BOT_TOKEN":      "xoxb-test-bot-token",
		"SLACK_SIGNING_SECRET": "test-signing-secret-123",
		"OPENAI_ADMIN_KEY":     "sk-admin-test-key-123",
		"ROLEGATE_APPROVERS":   "U0ANA,U0BOB",
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(envFrom(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SocketMode() || cfg.DB != "rolegate.db" || cfg.Addr != ":8080" || cfg.ApprovalsRequired != 1 ||
		cfg.RequestTTL.String() != "24h0m0s" || cfg.SlackAPIURL != "https://slack.com/api/" || cfg.OpenAIBaseURL != "https://api.openai.com/v1" ||
		cfg.OpenAIMaxAttempts != 5 || cfg.LogFormat != "json" {
		t.Fatalf("defaults not as DESIGN.md says: %+v", cfg)
	}
	if len(cfg.approvers) != 2 {
		t.Fatalf("approvers = %v", cfg.approvers)
	}
}

func TestLoadConfigNamesTheBadVariable(t *testing.T) {
	tests := []struct {
		name  string
		edit  map[string]string // "" deletes
		names string
	}{
		{"no bot token", map[string]string{"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN"},
		{"no admin key", map[string]string{"OPENAI_ADMIN_KEY": ""}, "OPENAI_ADMIN_KEY"},
		{"no approvers", map[string]string{"ROLEGATE_APPROVERS": ""}, "ROLEGATE_APPROVERS"},
		{"user token", map[string]string{"SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN"},
		{"bad app token", map[string]string{"SLACK_APP_TOKEN": "xoxb-not-app"}, "SLACK_APP_TOKEN"},
		{"http mode without secret", map[string]string{"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET"},
		{"approvals not a number", map[string]string{"ROLEGATE_APPROVALS_REQUIRED": "two"}, "ROLEGATE_APPROVALS_REQUIRED"},
		{"approvals zero", map[string]string{"ROLEGATE_APPROVALS_REQUIRED": "0"}, "ROLEGATE_APPROVALS_REQUIRED"},
		{"more approvals than approvers", map[string]string{"ROLEGATE_APPROVALS_REQUIRED": "3"}, "ROLEGATE_APPROVALS_REQUIRED"},
		{"ttl not a duration", map[string]string{"ROLEGATE_REQUEST_TTL": "tomorrow"}, "ROLEGATE_REQUEST_TTL"},
		{"ttl too short", map[string]string{"ROLEGATE_REQUEST_TTL": "1s"}, "ROLEGATE_REQUEST_TTL"},
		{"approver not an id", map[string]string{"ROLEGATE_APPROVERS": "U0ANA,ana@example.com"}, "ROLEGATE_APPROVERS"},
		{"channel as approver", map[string]string{"ROLEGATE_APPROVERS": "C0123"}, "ROLEGATE_APPROVERS"},
		{"bad openai url", map[string]string{"OPENAI_BASE_URL": "api.openai.com"}, "OPENAI_BASE_URL"},
		{"bad slack url", map[string]string{"SLACK_API_URL": "ftp://x"}, "SLACK_API_URL"},
		{"plain http slack url", map[string]string{"SLACK_API_URL": "http://slack.com/api/"}, "SLACK_API_URL"},
		{"dry run not a bool", map[string]string{"ROLEGATE_DRY_RUN": "maybe"}, "ROLEGATE_DRY_RUN"},
		{"max open not a number", map[string]string{"ROLEGATE_MAX_OPEN_PER_REQUESTER": "five"}, "ROLEGATE_MAX_OPEN_PER_REQUESTER"},
		{"database url not postgres", map[string]string{"ROLEGATE_DATABASE_URL": "mysql://rg:hunter2-db-pass@db/rg"}, "ROLEGATE_DATABASE_URL"},
		{"policy file missing", map[string]string{"ROLEGATE_POLICY": "/nonexistent/policy.yaml"}, "ROLEGATE_POLICY"},
		{"bad log format", map[string]string{"ROLEGATE_LOG_FORMAT": "xml"}, "ROLEGATE_LOG_FORMAT"},
		{"bad max attempts", map[string]string{"ROLEGATE_OPENAI_MAX_ATTEMPTS": "-1"}, "ROLEGATE_OPENAI_MAX_ATTEMPTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv()
			for k, v := range tt.edit {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			_, err := loadConfig(envFrom(env))
			if err == nil {
				t.Fatalf("loadConfig accepted %v", tt.edit)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Fatalf("error %q does not name %s", err, tt.names)
			}
			for _, secret := range []string{"xoxb-test-bot-token", "test-signing-secret-123", "sk-admin-test-key-123", "xoxp-user-token", "xoxb-not-app", "hunter2-db-pass"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q shows a secret value", err)
				}
			}
		})
	}
}

func TestLoadConfigSocketModeNeedsNoSigningSecret(t *testing.T) {
	env := baseEnv()
	delete(env, "SLACK_SIGNING_SECRET")
	env["SLACK_APP_TOKEN"] = "xapp-1-test"
	cfg, err := loadConfig(envFrom(env))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SocketMode() {
		t.Fatal("SLACK_APP_TOKEN set but not in Socket Mode")
	}
}

func TestRunRefusesToStartWithOneLinePerProblem(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := baseEnv()
	delete(env, "OPENAI_ADMIN_KEY")
	err := run(t.Context(), nil, envFrom(env), &stdout, &stderr)
	if err == nil {
		t.Fatal("run started without OPENAI_ADMIN_KEY")
	}
	if !strings.Contains(stderr.String(), "OPENAI_ADMIN_KEY: is required but not set") ||
		!strings.Contains(stderr.String(), "rolegate: 1 problem in the configuration:\n") {
		t.Fatalf("stderr = %q", stderr.String())
	}
}

// TestLoadConfigReportsEveryProblemAtOnce: env's own errors (missing, not a
// number, not a bool) and rolegate's checks come back together, one line per
// variable, so an operator fixes everything in one round.
func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	env := baseEnv()
	delete(env, "OPENAI_ADMIN_KEY")
	env["ROLEGATE_APPROVALS_REQUIRED"] = "two"
	env["ROLEGATE_DRY_RUN"] = "maybe"
	env["ROLEGATE_LOG_FORMAT"] = "xml"
	env["SLACK_API_URL"] = "http://slack.example.com/api/"
	env["ROLEGATE_DATABASE_URL"] = "mysql://rg:hunter2-db-pass@db/rg"
	env["ROLEGATE_REQUEST_TTL"] = "tomorrow"
	want := []string{"SLACK_API_URL", "OPENAI_ADMIN_KEY", "ROLEGATE_APPROVALS_REQUIRED", "ROLEGATE_REQUEST_TTL",
		"ROLEGATE_LOG_FORMAT", "ROLEGATE_DRY_RUN", "ROLEGATE_DATABASE_URL"}

	_, err := loadConfig(envFrom(env))
	p, ok := err.(configProblems)
	if !ok {
		t.Fatalf("loadConfig error %T %v, want configProblems", err, err)
	}
	if len(p) != len(want) {
		t.Fatalf("%d lines, want %d (one per variable):\n%s", len(p), len(want), err)
	}
	for i, key := range want { // in the order of the Config fields
		if !strings.HasPrefix(p[i], key+": ") {
			t.Errorf("line %d = %q, want it to name %s", i, p[i], key)
		}
	}
	if got := p.Summary(); got != "7 problems in the configuration" {
		t.Errorf("summary = %q", got)
	}
	for _, value := range []string{"two", "maybe", "xml", "slack.example.com", "hunter2-db-pass", "mysql", "tomorrow", "sk-admin"} {
		if strings.Contains(err.Error(), value) {
			t.Errorf("the error shows the value %q:\n%s", value, err)
		}
	}

	var stdout, stderr bytes.Buffer
	if run(t.Context(), nil, envFrom(env), &stdout, &stderr) == nil {
		t.Fatal("run started with a bad configuration")
	}
	if !strings.HasPrefix(stderr.String(), "rolegate: 7 problems in the configuration:\n") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func TestConfigProblemsSummary(t *testing.T) {
	for _, tt := range []struct {
		p    configProblems
		want string
	}{
		{configProblems{"A: x"}, "1 problem in the configuration"},
		{configProblems{"A: x", "B: y"}, "2 problems in the configuration"},
	} {
		if got := tt.p.Summary(); got != tt.want {
			t.Errorf("%d problems: %q, want %q", len(tt.p), got, tt.want)
		}
	}
}

// TestLoadConfigAPIURLsNeedHTTPSUnlessLoopback: a token sent over plain http
// crosses the network in clear text unless the host is this machine.
func TestLoadConfigAPIURLsNeedHTTPSUnlessLoopback(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://slack.com/api/", true},
		{"https://api.openai.com/v1", true},
		{"https://10.0.0.7:8443/api", true},
		{"http://127.0.0.1:8080/api/", true},
		{"http://127.3.4.5/api/", true}, // all of 127.0.0.0/8
		{"http://localhost:9000/", true},
		{"http://LocalHost/", true},
		{"http://[::1]:9000/", true},
		{"http://slack.com/api/", false},
		{"http://10.0.0.7/api/", false},
		{"http://128.0.0.1/", false},
		{"http://127.0.0.1.example.com/", false},
		{"http://localhost.example.com/", false},
		{"http://[::2]/", false},
		{"ftp://127.0.0.1/", false},
		{"api.openai.com", false},
		{"https://", false},
		{"https:///v1", false},
	}
	for _, key := range []string{"SLACK_API_URL", "OPENAI_BASE_URL"} {
		for _, tt := range tests {
			t.Run(key+"="+tt.url, func(t *testing.T) {
				env := baseEnv()
				env[key] = tt.url
				_, err := loadConfig(envFrom(env))
				if tt.ok && err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !tt.ok {
					want := key + ": must be an https:// URL (http:// is allowed only for a loopback host: 127.0.0.0/8, ::1 or localhost)"
					if err == nil || err.Error() != want {
						t.Fatalf("error = %v, want %q", err, want)
					}
				}
			})
		}
	}
}

func TestLoadConfigNewVariables(t *testing.T) {
	cfg, err := loadConfig(envFrom(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxOpenPerRequester != 5 || cfg.DryRun || cfg.DatabaseURL != "" || cfg.Policy != "" {
		t.Fatalf("defaults not as DESIGN.md says: max open %d, dry run %v, database url set %v, policy %q",
			cfg.MaxOpenPerRequester, cfg.DryRun, cfg.DatabaseURL != "", cfg.Policy)
	}

	tests := []struct {
		key, value string
		ok         bool
	}{
		{"ROLEGATE_MAX_OPEN_PER_REQUESTER", "1", true},
		{"ROLEGATE_MAX_OPEN_PER_REQUESTER", "1000", true},
		{"ROLEGATE_MAX_OPEN_PER_REQUESTER", "0", false},
		{"ROLEGATE_MAX_OPEN_PER_REQUESTER", "1001", false},
		{"ROLEGATE_MAX_OPEN_PER_REQUESTER", "-3", false},
		{"ROLEGATE_DRY_RUN", "true", true},
		{"ROLEGATE_DRY_RUN", "false", true},
		{"ROLEGATE_DRY_RUN", "1", true},
		{"ROLEGATE_DRY_RUN", "yes please", false},
		{"ROLEGATE_DATABASE_URL", "postgres://rg:pw@db.internal:5432/rolegate?sslmode=require", true},
		{"ROLEGATE_DATABASE_URL", "postgresql://rg@db/rolegate", true},
		{"ROLEGATE_DATABASE_URL", "postgres:///rolegate?host=/run/postgresql", true},
		{"ROLEGATE_DATABASE_URL", "db.internal:5432", false},
		{"ROLEGATE_DATABASE_URL", "sqlite:///tmp/x.db", false},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			env := baseEnv()
			env[tt.key] = tt.value
			cfg, err := loadConfig(envFrom(env))
			switch {
			case tt.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.ok && err == nil:
				t.Fatalf("accepted")
			case !tt.ok && (!strings.HasPrefix(err.Error(), tt.key+": ") || len(tt.value) > 2 && strings.Contains(err.Error(), tt.value)):
				t.Fatalf("error %q does not name %s alone, or shows the value", err, tt.key)
			case tt.ok && tt.key == "ROLEGATE_DRY_RUN" && cfg.DryRun != (tt.value != "false"):
				t.Fatalf("DryRun = %v", cfg.DryRun)
			}
		})
	}
}

// TestLoadConfigPolicyFile: with a policy file the approvers come from its
// rules, so ROLEGATE_APPROVERS is optional; the file must be there to read.
func TestLoadConfigPolicyFile(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		policy    string
		approvers string
		problem   string // "" accepted
	}{
		{"policy without approvers", policy, "", ""},
		{"policy and approvers", policy, "U0ANA", ""},
		{"neither", "", "", "ROLEGATE_APPROVERS: is required without ROLEGATE_POLICY"},
		{"missing file", filepath.Join(dir, "nope.yaml"), "", "ROLEGATE_POLICY: names a file that does not exist"},
		{"a directory", dir, "", "ROLEGATE_POLICY: names a directory, not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv()
			delete(env, "ROLEGATE_APPROVERS")
			if tt.policy != "" {
				env["ROLEGATE_POLICY"] = tt.policy
			}
			if tt.approvers != "" {
				env["ROLEGATE_APPROVERS"] = tt.approvers
			}
			cfg, err := loadConfig(envFrom(env))
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Policy != tt.policy {
					t.Fatalf("Policy = %q", cfg.Policy)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.problem) || strings.Count(err.Error(), "\n") != 0 {
				t.Fatalf("error = %v, want one line starting %q", err, tt.problem)
			}
			if tt.policy != "" && strings.Contains(err.Error(), tt.policy) {
				t.Fatalf("error shows the path: %v", err)
			}
		})
	}
}

// TestLoggerBlanksTheDatabaseURL: ROLEGATE_DATABASE_URL holds a password.
func TestLoggerBlanksTheDatabaseURL(t *testing.T) {
	env := baseEnv()
	env["ROLEGATE_DATABASE_URL"] = "postgres://rolegate:s3cret-db-password@db.internal/rolegate"
	cfg, err := loadConfig(envFrom(env))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log := newLogger(cfg, &out)
	log.Error("connecting", "url", cfg.DatabaseURL, "detail", "password authentication failed for s3cret-db-password")
	if strings.Contains(out.String(), "s3cret-db-password") {
		t.Fatalf("log shows the database password: %s", out.String())
	}
}

// TestListenErrorNamesROLEGATE_ADDR: a port already taken stops the bot with
// a line that says which variable to change.
func TestListenErrorNamesROLEGATE_ADDR(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := baseEnv()
	env["ROLEGATE_ADDR"] = ln.Addr().String()
	env["ROLEGATE_DB"] = filepath.Join(t.TempDir(), "rolegate.db")
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), nil, envFrom(env), &stdout, &stderr)
	if err == nil {
		t.Fatal("bot served on a port another listener holds")
	}
	if !strings.Contains(err.Error(), "ROLEGATE_ADDR "+ln.Addr().String()) {
		t.Errorf("returned error %q does not name ROLEGATE_ADDR and the address", err)
	}
	var line struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
		Addr  string `json:"addr"`
		Err   string `json:"err"`
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if line.Level == "ERROR" {
			break
		}
	}
	if line.Level != "ERROR" || !strings.Contains(line.Msg, "ROLEGATE_ADDR") || line.Addr != ln.Addr().String() || !strings.Contains(line.Err, "address already in use") {
		t.Errorf("log line = %+v", line)
	}
}
