// Command bot is rolegate: a Slack app that puts an approval gate in front of
// assigning an OpenAI project role to a group.
//
// Usage:
//
//	bot              serve (HTTP mode, or Socket Mode when SLACK_APP_TOKEN is set)
//	bot check        validate the configuration and reach Slack and OpenAI
//	bot requests     list stored requests
//	bot help         print usage
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		var ee exitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "rolegate:", err)
		}
		os.Exit(1)
	}
}

// exitError is a failure already reported to the user; main only sets the
// exit code.
type exitError struct{ msg string }

func (e exitError) Error() string { return e.msg }

const usage = `rolegate: an approval gate in Slack for assigning OpenAI project roles to groups.

Usage:
  bot                       serve: HTTP mode, or Socket Mode when SLACK_APP_TOKEN is set
  bot check                 validate the configuration, call Slack auth.test and one
                            read-only OpenAI admin call; exit non-zero on any failure
  bot requests [--state S] [--limit N]
                            list stored requests (works while the bot runs);
                            S is one of pending, approved, applied, failed, denied,
                            expired, cancelled
  bot healthcheck           exit 0 when the running bot's /healthz answers 200
                            (for container HEALTHCHECKs: the image has no shell)
  bot help                  print this

Environment:
  SLACK_BOT_TOKEN             required, xoxb-…
  SLACK_APP_TOKEN             xapp-… app-level token (connections:write): Socket Mode
  SLACK_SIGNING_SECRET        required in HTTP mode
  SLACK_API_URL               default https://slack.com/api/
  OPENAI_ADMIN_KEY            required, OpenAI admin key
  OPENAI_BASE_URL             default https://api.openai.com/v1
  ROLEGATE_APPROVERS          required, comma-separated Slack user (U…, W…) and user-group (S…) ids
  ROLEGATE_APPROVALS_REQUIRED default 1: distinct approvals needed
  ROLEGATE_REQUEST_TTL        default 24h: pending requests expire after this
  ROLEGATE_DB                 default rolegate.db: the bbolt file
  ROLEGATE_ADDR               default :8080: Slack endpoints (HTTP mode), /healthz, /readyz, /metrics
  ROLEGATE_LOG_FORMAT         json (default) or text
  ROLEGATE_LOG_LEVEL          debug, info (default), warn, error
  ROLEGATE_OPENAI_MAX_ATTEMPTS default 5: OpenAI attempts per approved request
  ROLEGATE_OPENAI_DEADLINE    default 10m: give up on an assignment after this
  ROLEGATE_OPENAI_TIMEOUT     default 15s: one OpenAI HTTP call
`

// run is the whole program: args without the program name, the environment
// through getenv. It returns when ctx is cancelled (serve) or the
// subcommand is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "":
		cfg, err := loadConfig(getenv)
		if err != nil {
			fmt.Fprintf(stderr, "rolegate: configuration:\n%s\n", err)
			return exitError{"bad configuration"}
		}
		return serve(ctx, cfg, stderr)
	case "check":
		return check(ctx, getenv, stdout)
	case "requests":
		return listRequests(ctx, args, getenv, stdout)
	case "healthcheck":
		return healthcheck(ctx, getenv, stdout)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "rolegate: unknown command %q\n\n%s", cmd, usage)
	return exitError{"unknown command"}
}
