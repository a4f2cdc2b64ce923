package main

import (
	"bytes"
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
			for _, secret := range []string{"xoxb-test-bot-token", "test-signing-secret-123", "sk-admin-test-key-123", "xoxp-user-token", "xoxb-not-app"} {
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
	if !strings.Contains(stderr.String(), "OPENAI_ADMIN_KEY: is required but not set") {
		t.Fatalf("stderr = %q", stderr.String())
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), []string{arg}, envFrom(nil), &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		for _, want := range []string{"bot check", "bot requests", "SLACK_BOT_TOKEN", "ROLEGATE_APPROVERS"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%s output lacks %q", arg, want)
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"frobnicate"}, envFrom(nil), &stdout, &stderr); err == nil || !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: err=%v stderr=%q", err, stderr.String())
	}
}
