package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/slack-go/slack/socketmode"

	"github.com/rolegate/rolegate/internal/openai"
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
	fmt.Fprintf(stdout, "PASS configuration (%s, %d approvers, %d approval(s) required)\n", mode, len(cfg.approvers), cfg.ApprovalsRequired)
	if cfg.DryRun {
		fmt.Fprintln(stdout, "NOTE dry run: ROLEGATE_DRY_RUN=true, so rolegate will never POST or DELETE at OpenAI; every message says \"Dry run\"")
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

	api := slackClient(cfg)
	sctx, cancel := context.WithTimeout(ctx, checkTimeout)
	auth, err := api.AuthTestContext(sctx)
	cancel()
	ok := ""
	if err == nil {
		ok = fmt.Sprintf("auth.test as %s in %s", auth.User, auth.Team)
	}
	line("slack", err, ok)

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
