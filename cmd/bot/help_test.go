package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// noEnv is a getenv that fails the test when called: help must not read the
// configuration (it works on a machine with none).
func noEnv(t *testing.T) func(string) string {
	return func(k string) string {
		t.Errorf("help read %s from the environment", k)
		return ""
	}
}

func TestHelpExplainsTheSlackSideAndEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}} {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), args, noEnv(t), &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		out := stdout.String()
		want := []string{
			// every command, from the table
			"bot serve", "bot check", "bot requests", "bot healthcheck", "bot help",
			// what people type in Slack
			"/assign-role\n", `/assign-role "Support Project" "Support Team" "Key Manager" for 4h`,
			"/assign-role status <id>", "/assign-role list", "/assign-role cancel <id>", "/assign-role revoke <id>",
			"/assign-role extend <id>", "/assign-role break-glass", "opens a form",
			"never approves their own request", "two Slack users",
			// the environment, new variables included
			"SLACK_BOT_TOKEN", "ROLEGATE_APPROVERS", "ROLEGATE_POLICY", "ROLEGATE_MAX_OPEN_PER_REQUESTER",
			"ROLEGATE_DRY_RUN", "ROLEGATE_DATABASE_URL",
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q", args, w)
			}
		}
		if stderr.Len() != 0 {
			t.Errorf("%v: stderr = %q", args, stderr.String())
		}
	}
}

// TestCommandHelpDoesNotRunTheCommand: `bot <cmd> --help`, `-h` and
// `bot help <cmd>` print that command's help and exit 0 without running it
// (check would call Slack, serve would start serving).
func TestCommandHelpDoesNotRunTheCommand(t *testing.T) {
	for _, c := range commandTable() {
		if c.Help == "" || c.Summary == "" || c.Run == nil {
			t.Errorf("row %q lacks a summary, help or run func", c.Name)
		}
		if !strings.HasPrefix(c.Help, "Usage: bot") || !strings.HasSuffix(c.Help, "\n") {
			t.Errorf("%s help does not start with a usage line or end in a newline: %q", c.Name, c.Help)
		}
		for _, args := range [][]string{{c.Name, "--help"}, {c.Name, "-h"}, {"help", c.Name}, {c.Name, "--state", "pending", "--help"}} {
			var stdout, stderr bytes.Buffer
			// A cancelled context: a command that ran anyway would stop at once
			// instead of hanging, and noEnv reports its reading the config.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := run(ctx, args, noEnv(t), &stdout, &stderr); err != nil {
				t.Errorf("%v: %v", args, err)
			}
			if stdout.String() != c.Help {
				t.Errorf("%v printed %q, want %s's help", args, stdout.String(), c.Name)
			}
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"requests", "--help"}, noEnv(t), &stdout, io.Discard); err != nil ||
		!strings.Contains(stdout.String(), "--state S") || !strings.Contains(stdout.String(), "--limit N") {
		t.Errorf("requests --help: %v\n%s", err, stdout.String())
	}
}

func TestUnknownCommandNamesItAndExits1(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"help", "frobnicate"}, {"frobnicate", "--help"}} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, noEnv(t), &stdout, &stderr)
		if _, ok := err.(exitError); !ok {
			t.Fatalf("%v: err = %v, want an exitError (exit 1)", args, err)
		}
		lines := strings.Split(stderr.String(), "\n")
		if lines[0] != `rolegate: unknown command "frobnicate"` {
			t.Errorf("%v: first line = %q", args, lines[0])
		}
		if strings.Count(stderr.String(), "frobnicate") != 1 || !strings.Contains(stderr.String(), "bot check") {
			t.Errorf("%v: want one line naming it, then the usage:\n%s", args, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: stdout = %q", args, stdout.String())
		}
	}
}

func TestEveryCommandIsInTheUsage(t *testing.T) {
	var usage bytes.Buffer
	printUsage(&usage)
	for _, c := range commandTable() {
		if !strings.Contains(usage.String(), "bot "+c.Name+" ") || !strings.Contains(usage.String(), c.Summary) {
			t.Errorf("usage lacks %s and its summary", c.Name)
		}
	}
}
