// Command bot is rolegate: a Slack app that puts an approval gate in front of
// assigning an OpenAI project role to a group.
//
// Usage:
//
//	bot                  serve (HTTP mode, or Socket Mode when SLACK_APP_TOKEN is set)
//	bot check            validate the configuration and reach Slack and OpenAI
//	bot requests         list stored requests
//	bot drift            compare rolegate's grants with OpenAI's assignments
//	bot migrate-store    copy the bbolt file into PostgreSQL and verify it
//	bot healthcheck      probe the running bot's /healthz
//	bot demo             the whole flow against built-in fakes, printed as text
//	bot help [command]   print usage, or one command's help
//
// The commands are the rows of commandTable; `bot <command> --help` prints a
// row's help text.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
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

// subcommand is one row of the command table: what follows `bot`.
type subcommand struct {
	// Name is what is typed after bot ("check").
	Name string
	// Summary is the one line shown in `bot help`'s list of commands.
	Summary string
	// Help is the full text `bot <name> --help`, `bot <name> -h` and
	// `bot help <name>` print, starting with a usage line; it ends in a
	// newline.
	Help string
	// Run carries out the command with the arguments after its name. It is
	// never called for a help request, so it may read the configuration
	// first thing. Return exitError when the failure was already printed.
	Run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// commandTable lists bot's subcommands in the order `bot help` shows them.
// To add one (audit, drift, demo, migrate-store), add a row. It is a function,
// not a variable, because the help row refers back to the table.
func commandTable() []subcommand {
	return []subcommand{
		{
			Name:    "serve",
			Summary: "serve Slack (plain `bot` does this); Socket Mode when SLACK_APP_TOKEN is set",
			Help:    serveHelp,
			Run: func(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
				cfg, err := loadConfig(getenv)
				if err != nil {
					printConfigProblems(stderr, err)
					return exitError{"bad configuration"}
				}
				return serve(ctx, cfg, stderr)
			},
		},
		{
			Name:    "check",
			Summary: "validate the configuration, call Slack and OpenAI once each; exit 1 on any failure",
			Help:    checkHelp,
			Run: func(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
				return check(ctx, getenv, stdout)
			},
		},
		{
			Name:    "requests",
			Summary: "list stored requests, newest first (works while the bot runs)",
			Help:    requestsHelp,
			Run:     listRequests,
		},
		{
			Name:    "audit",
			Summary: "export the audit log as JSON lines, or verify its hash chain (works while the bot runs)",
			Help:    auditHelp,
			Run:     runAudit,
		},
		{
			Name:    "drift",
			Summary: "compare what rolegate granted with the roles OpenAI lists; exit 1 on any difference",
			Help:    driftHelp,
			Run:     runDrift,
		},
		{
			Name:    "migrate-store",
			Summary: "copy the bbolt file into PostgreSQL (--to \"$ROLEGATE_DATABASE_URL\") and verify the copy",
			Help:    migrateStoreHelp,
			Run: func(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
				return migrateStore(ctx, args, getenv, stdout)
			},
		},
		{
			Name:    "healthcheck",
			Summary: "exit 0 when the running bot's /healthz answers 200 (container HEALTHCHECK)",
			Help:    healthcheckHelp,
			Run: func(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
				return healthcheck(ctx, getenv, stdout)
			},
		},
		{
			Name:    "demo",
			Summary: "see the whole flow, with fake Slack and OpenAI on this machine; needs no setup",
			Help:    demoHelp,
			Run: func(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
				return runDemo(ctx, args, stdout, stderr)
			},
		},
		{
			Name:    "help",
			Summary: "print this, or one command's help: bot help <command>",
			Help:    "Usage: bot help [command]\n\nWithout a command, prints the overview: commands, what people type in Slack,\nand the environment. With one, prints that command's help, as\n`bot <command> --help` does.\n",
			Run:     runHelp,
		},
	}
}

// findCommand returns the row named name.
func findCommand(name string) (subcommand, bool) {
	for _, c := range commandTable() {
		if c.Name == name {
			return c, true
		}
	}
	return subcommand{}, false
}

// run is the whole program: args without the program name, the environment
// through getenv. It returns when ctx is cancelled (serve) or the
// subcommand is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	name, rest := args[0], args[1:]
	if isHelpFlag(name) {
		return runHelp(ctx, rest, getenv, stdout, stderr)
	}
	cmd, ok := findCommand(name)
	if !ok {
		return unknownCommand(name, stderr)
	}
	if wantsHelp(rest) {
		fmt.Fprint(stdout, cmd.Help)
		return nil
	}
	return cmd.Run(ctx, rest, getenv, stdout, stderr)
}

// runHelp prints the overview, or the help of the command named in args.
func runHelp(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelpFlag(args[0]) {
		printUsage(stdout)
		return nil
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		return unknownCommand(args[0], stderr)
	}
	fmt.Fprint(stdout, cmd.Help)
	return nil
}

func unknownCommand(name string, stderr io.Writer) error {
	fmt.Fprintf(stderr, "rolegate: unknown command %q\n\n", name)
	printCommands(stderr)
	return exitError{"unknown command"}
}

func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

// wantsHelp reports whether args ask for help rather than a run: a help flag
// anywhere before "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// printConfigProblems prints loadConfig's error under a header that counts
// the problems.
func printConfigProblems(w io.Writer, err error) {
	var p configProblems
	if !errors.As(err, &p) {
		fmt.Fprintf(w, "rolegate: configuration: %v\n", err)
		return
	}
	fmt.Fprintf(w, "rolegate: %s:\n", p.Summary())
	for _, line := range p {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintln(w, "Run `bot help` for every variable and its default.")
}

// printUsage prints the overview: the command table, the Slack side and the
// environment.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "rolegate: an approval gate in Slack for assigning OpenAI project roles to groups.\n\n")
	printCommands(w)
	fmt.Fprint(w, "\n", slackHelp, "\n", environmentHelp)
}

// printCommands prints the usage line and the command table.
func printCommands(w io.Writer) {
	fmt.Fprint(w, "Usage:\n  bot [command] [arguments]      without a command, bot serves\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commandTable() {
		fmt.Fprintf(tw, "  bot %s\t%s\n", c.Name, c.Summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nRun `bot <command> --help` (or `bot help <command>`) for a command's details,\n`bot help` for what people type in Slack and every environment variable.\n")
}

// slackHelp is what people do in Slack once the bot serves.
const slackHelp = `In Slack (the app installed, the bot serving, the app invited to the channel):
  /assign-role
      opens a form: project, group and role (type to search), duration, reason
  /assign-role "Support Project" "Support Team" "Key Manager" for 4h rotating keys, INC-42
      asks for the role "Key Manager" for the group "Support Team" in the
      project "Support Project" for 4 hours, with the reason after it. Names
      with spaces go in double quotes; ids (proj_…, group_…, role_…) work too.
      Without "for <duration>" (90s, 30m, 4h, 2d, 1h30m) the rule's default applies.
  /assign-role status <id>        a request's state and history, privately
  /assign-role list               your open requests, and those you can decide
  /assign-role cancel <id>        withdraw your own pending request
  /assign-role revoke <id>        end an applied grant now (requester or an approver)
  /assign-role extend <id> <duration> <reason…>
                                  ask for more time on a time-bound grant (approved like a request)
  /assign-role break-glass <project> <group> <role> [for <duration>] <reason…>
                                  emergency: applied at once where a rule allows break-glass;
                                  the channel is alerted and every approver gets a DM
  /assign-role help               this list, privately

  The request is posted in the channel with Approve and Deny buttons. Only
  approvers (ROLEGATE_APPROVERS, or a rule's approvers in ROLEGATE_POLICY)
  decide, and the requester never approves their own request: to try
  rolegate out you need two Slack users, one to ask and one to approve.
  Every step answers in the channel thread and by DM to the requester.
`

// environmentHelp lists every variable, with its default.
const environmentHelp = `Environment (bad values stop the bot at start, one line per variable):
  SLACK_BOT_TOKEN                  required, xoxb-…
  SLACK_APP_TOKEN                  xapp-… app-level token (connections:write): Socket Mode
  SLACK_SIGNING_SECRET             required in HTTP mode
  SLACK_API_URL                    default https://slack.com/api/ (https://, or http:// to a loopback host)
  OPENAI_ADMIN_KEY                 required, OpenAI admin key
  OPENAI_BASE_URL                  default https://api.openai.com/v1 (https://, or http:// to a loopback host)
  ROLEGATE_POLICY                  path of the policy file (YAML rules); unset: one rule from the variables below
  ROLEGATE_APPROVERS               comma-separated Slack user (U…, W…) and user-group (S…) ids;
                                   required without ROLEGATE_POLICY
  ROLEGATE_APPROVALS_REQUIRED      default 1: distinct approvals needed (1..20)
  ROLEGATE_REQUEST_TTL             default 24h: pending requests expire after this (1m..720h)
  ROLEGATE_MAX_OPEN_PER_REQUESTER  default 5: open requests one person may have (1..1000)
  ROLEGATE_DRY_RUN                 default false: true never POSTs or DELETEs at OpenAI; messages say "Dry run"
  ROLEGATE_DRIFT_INTERVAL          default 1h: how often the bot compares OpenAI with its grants (bot drift),
                                   exporting rolegate_drift_* metrics; 0 turns it off (or 1m..720h)
  ROLEGATE_DB                      default rolegate.db: the bbolt file
  ROLEGATE_DATABASE_URL            postgres://… : keep state in PostgreSQL instead (ROLEGATE_DB is then ignored)
  ROLEGATE_ADDR                    default :8080: Slack endpoints (HTTP mode), /healthz, /readyz, /metrics
  ROLEGATE_LOG_FORMAT              json (default) or text
  ROLEGATE_LOG_LEVEL               debug, info (default), warn, error
  ROLEGATE_OPENAI_MAX_ATTEMPTS     default 5: OpenAI attempts per approved request (1..100)
  ROLEGATE_OPENAI_DEADLINE         default 10m: give up on an assignment after this
  ROLEGATE_OPENAI_TIMEOUT          default 15s: one OpenAI HTTP call
`

const serveHelp = `Usage: bot [serve]

Serves until SIGINT or SIGTERM. With SLACK_APP_TOKEN set, the bot opens a
Socket Mode connection to Slack and needs no public URL; otherwise Slack
POSTs to /slack/commands and /slack/interactions on ROLEGATE_ADDR, signed
with SLACK_SIGNING_SECRET. In both modes ROLEGATE_ADDR serves:
  GET /healthz   200 while the process is up and its database open
  GET /readyz    200 once it can receive from Slack; the body says why not
  GET /metrics   Prometheus metrics

The configuration is read from the environment (see below) and checked in
full before anything starts: every bad variable is named, never its value.

` + environmentHelp

const checkHelp = `Usage: bot check

Validates the configuration (and the policy file, when ROLEGATE_POLICY is
set), checks the database (bbolt's consistency check, or PostgreSQL's version
and schema), then calls Slack's auth.test with SLACK_BOT_TOKEN and compares
the token's scopes with manifest.yml's, opens a Socket Mode connection with
SLACK_APP_TOKEN when it is set, and makes one read-only OpenAI admin call
with OPENAI_ADMIN_KEY. Prints one PASS or FAIL line each (a NOTE for a
missing scope rolegate can work without) and exits 1 if any failed. It changes nothing in Slack or OpenAI and can run
next to a serving bot. Run it after installing or rotating a token.
`

const requestsHelp = `Usage: bot requests [--state S] [--limit N]

Lists stored requests, newest first: id, state, requester, project, group,
role, approvals and age. It reads PostgreSQL when ROLEGATE_DATABASE_URL is
set, else a snapshot of ROLEGATE_DB, so it works while the bot is running.
  --state S   only requests in state S: pending, approved, applied, failed,
              denied, expired or cancelled
  --limit N   at most N requests (default 50; 0 lists all)
`

const healthcheckHelp = `Usage: bot healthcheck

Asks the running bot's GET /healthz on ROLEGATE_ADDR (a host of 0.0.0.0, ::
or none means 127.0.0.1) and exits 0 when it answers 200, 1 otherwise, with
one line saying which. For container HEALTHCHECKs: the image has no shell or
curl. Readiness (connected to Slack) is /readyz; this only says the process
is up with its database open.
`
