// Command loadgen measures how fast and how lean rolegate is, against floors
// measured in the same run on the same machine.
//
// It builds the real bot (or takes -bot), starts a fake Slack and a fake
// OpenAI on loopback in its own process, starts the bot in HTTP mode against
// them with a fresh database, and drives it with correctly signed requests:
// N slash commands with C in flight, then an Approve click on every posted
// approval message, C in flight; then -paced requests made and approved one
// at a time, for the latencies of an unloaded bot. The check phases then
// time command → approval message posted against a fake OpenAI answering
// in -openai-delay, for a cold catalog (a fresh bot's first burst of C) and
// a warm one (the next burst), and count the catalog's list calls in a
// burst of N on another fresh bot. It reports ack latencies,
// durable requests
// created per second, click → assignment latency (click sent → the POST
// reaching the fake OpenAI), the bot's memory idle, at peak and after
// 2×-soak more requests, and the start-up time to a healthy /healthz with a
// database of -history finished requests.
//
// The floors: an HTTP server (a child process) that only verifies Slack's
// signature and answers 200, driven with the same request mix; and committed
// bbolt write transactions per second in the same directory, one at a time
// and batched with C in flight. rolegate's figures are printed as ratios to
// them, so runs on different (or noisy) machines compare.
//
// Usage:
//
//	go run ./cmd/loadgen [-n 1000] [-c 100] [-runs 3] [-json out.json] [-markdown]
//
// With -postgres it also measures the PostgreSQL engine: it starts a
// throwaway server (internal/pgtest: Debian's PostgreSQL, fsync on) and,
// for each count in -replicas (like 1,2,3), runs that many bots on one fresh
// database and sends them the measured round as a load balancer would:
// commands round-robin, each approving click to another bot than its
// command. The PostgreSQL rows show bbolt's figures from the same run
// beside them (see postgres.go). The phases that measure bbolt's file
// (-history, -soak) and the engine-independent -checks are then skipped,
// with a line saying so.
//
//	go run ./cmd/loadgen -postgres -replicas 1,2,3 -paced 0 -startups 1
//
// With -runs K the whole measurement is repeated K times, each with a fresh
// bot and database, and the table shows medians. -from prints the table of a
// report saved with -json again (as Markdown with -markdown). Figures are measurements,
// never assertions: loadgen fails only when requests fail or are lost.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rolegate/rolegate/internal/testbin"
)

func main() {
	if secret := os.Getenv(floorServerEnv); secret != "" {
		if err := serveFloor(secret, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen floor server:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// options are loadgen's flags.
type options struct {
	n, c     int
	runs     int
	soak     int
	paced    int
	history  int
	startups int
	bot      string
	dir      string
	jsonOut  string
	markdown bool
	profile  string
	timeout  time.Duration
	keep     bool
	self     string // this executable, for the floor server child
	quiet    bool
	botEnv   envFlag
	from     string
	// checks runs the check phases (see measureChecks) with the fake
	// OpenAI answering every call in openAIDelay.
	checks      bool
	openAIDelay time.Duration
	// postgres also measures PostgreSQL (see postgres.go) with each count
	// of bots in replicas.
	postgres bool
	replicas intList
}

// intList is a comma-separated list of distinct counts, each at least 1.
type intList []int

func (l *intList) String() string {
	var s []string
	for _, n := range *l {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out intList
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxReplicas {
			return fmt.Errorf("want counts from 1 to %d separated by commas, like 1,2,3; got %q", maxReplicas, f)
		}
		if slices.Contains(out, n) {
			return fmt.Errorf("%d appears twice", n)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// maxReplicas bounds -replicas: each bot's pool holds up to 20 connections
// (pgstore's default) and pgtest's server allows 300.
const maxReplicas = 10

// envFlag collects repeated KEY=VALUE flags.
type envFlag map[string]string

func (e envFlag) String() string { return fmt.Sprint(map[string]string(e)) }

func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	e[k] = v
	return nil
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{botEnv: envFlag{}}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 1000, "slash commands (and then as many approving clicks) in the measured round")
	fs.IntVar(&o.c, "c", 100, "requests in flight")
	fs.IntVar(&o.runs, "runs", 1, "repeat the whole measurement this many times and report medians")
	fs.IntVar(&o.paced, "paced", 100, "requests made and approved one at a time after the measured round (0: skip)")
	fs.IntVar(&o.soak, "soak", 10000, "requests in each of the two memory rounds after the measured one (0: skip)")
	fs.IntVar(&o.history, "history", 100000, "finished requests in the database for the start-up measurement (0: skip)")
	fs.IntVar(&o.startups, "startups", 5, "start-ups timed per database (median)")
	fs.StringVar(&o.bot, "bot", "", "bot binary to run (default: build ./cmd/bot)")
	fs.StringVar(&o.dir, "dir", "", "directory for databases and logs; the disk under test (default: the system temp dir)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.BoolVar(&o.markdown, "markdown", false, "print the table as Markdown")
	fs.StringVar(&o.profile, "profile", "", "save CPU, heap and trace profiles of the bot into this directory (the bot is built with net/http/pprof; with -bot, give a binary built so)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (databases, bot logs)")
	fs.BoolVar(&o.quiet, "q", false, "no progress lines")
	fs.StringVar(&o.from, "from", "", "print the table of a report saved with -json, measuring nothing")
	fs.BoolVar(&o.checks, "checks", true, "also time command → approval message posted, cold and warm catalog, and count catalog list calls in a burst of -n, each on a fresh bot")
	fs.DurationVar(&o.openAIDelay, "openai-delay", 50*time.Millisecond, "how long the fake OpenAI takes to answer every call in the check phases")
	fs.Var(o.botEnv, "bot-env", "KEY=VALUE added to the bot's environment (repeatable), e.g. GOGC=50")
	fs.BoolVar(&o.postgres, "postgres", false, "also measure PostgreSQL: start a throwaway server for the run (Debian's, found with pg_config --bindir, fsync on) and measure the round on bots sharing one database, beside bbolt's; skips the phases that measure bbolt's file (-history, -soak) and the engine-independent -checks")
	fs.Var(&o.replicas, "replicas", "with -postgres: the numbers of bots to measure, each on a fresh database, like 1,2,3 (default 1)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	replicasSet := false
	fs.Visit(func(f *flag.Flag) { replicasSet = replicasSet || f.Name == "replicas" })
	switch {
	case replicasSet && !o.postgres:
		return nil, errors.New("-replicas needs -postgres: bbolt serves one process only")
	case o.postgres && o.botEnv["ROLEGATE_DATABASE_URL"] != "":
		return nil, errors.New("-postgres starts its own server: drop -bot-env ROLEGATE_DATABASE_URL")
	case o.postgres && len(o.replicas) == 0:
		o.replicas = intList{1}
	}
	switch {
	case o.n < 1 || o.c < 1 || o.runs < 1:
		return nil, errors.New("-n, -c and -runs must be at least 1")
	case o.soak < 0 || o.paced < 0 || o.history < 0 || o.startups < 1:
		return nil, errors.New("-soak, -paced and -history must not be negative, -startups at least 1")
	case o.openAIDelay < 0:
		return nil, errors.New("-openai-delay must not be negative")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	o.self = self
	return o, nil
}

// skipForPostgres turns off the phases a -postgres run does not measure
// and says why, one line each. Seeding history and timing start-up on it,
// and the memory rounds, measure bbolt's file and its mmap (the figures a
// run without -postgres reports); on PostgreSQL the data lives in the
// server. The check phases time the catalog, which lives in the bot's
// memory whatever the engine.
func (o *options) skipForPostgres() []string {
	var lines []string
	if o.history > 0 {
		lines = append(lines, fmt.Sprintf("-history %d (seeding a bbolt file and timing start-up on it measures bbolt's file)", o.history))
		o.history = 0
	}
	if o.soak > 0 {
		lines = append(lines, fmt.Sprintf("-soak %d (the memory rounds measure RSS growth from bbolt's mmap)", o.soak))
		o.soak = 0
	}
	if o.checks {
		lines = append(lines, "-checks (they time the catalog cache in the bot's memory, the same with either engine)")
		o.checks = false
	}
	return lines
}

// run is the whole tool: it measures and prints the report to stdout,
// progress to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if o.from != "" {
		data, err := os.ReadFile(o.from)
		if err != nil {
			return err
		}
		var rep report
		if err := json.Unmarshal(data, &rep); err != nil {
			return fmt.Errorf("%s: %w", o.from, err)
		}
		rep.summarise()
		rep.print(stdout, o.markdown)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	progress := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, "loadgen: "+format+"\n", a...)
		}
	}
	var pg *pgServer
	var skipped []string
	if o.postgres {
		skipped = o.skipForPostgres()
		for _, s := range skipped {
			fmt.Fprintf(stderr, "loadgen: skipped with -postgres: %s\n", s)
		}
		// Before building the bot: a missing server is the quickest error.
		progress("starting a throwaway PostgreSQL (fsync on)")
		if pg, err = openPostgres(ctx); err != nil {
			return err
		}
		defer pg.Stop()
		progress("%s", pg.about)
	}

	work, err := os.MkdirTemp(o.dir, "rolegate-load-")
	if err != nil {
		return err
	}
	if o.keep {
		progress("work directory %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	bin := o.bot
	if bin == "" {
		progress("building %s", testbin.BotPackage)
		if bin, err = buildBot(ctx, work, o.profile != ""); err != nil {
			return err
		}
	}

	var seeded string
	var seedTime time.Duration
	if o.history > 0 {
		progress("seeding %d finished requests", o.history)
		seeded = filepath.Join(work, "history.db")
		if seedTime, err = seed(ctx, seeded, o.history); err != nil {
			return err
		}
	}

	rep := &report{Machine: describeMachine(work), Config: configOf(o)}
	rep.Config.SeedSeconds = seedTime.Seconds()
	if pg != nil {
		rep.Config.Postgres = pg.about
		rep.Machine.PostgresDisk = diskOf(os.TempDir()) // pgtest's data directory
		rep.Config.Skipped = skipped
	}
	for i := range o.runs {
		progress("run %d of %d", i+1, o.runs)
		dir := filepath.Join(work, fmt.Sprintf("run%d", i+1))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		figs, err := measure(ctx, o, bin, dir, seeded, pg, i, progress)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		rep.Runs = append(rep.Runs, figs)
	}
	rep.summarise()
	rep.print(stdout, o.markdown)
	if o.jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
