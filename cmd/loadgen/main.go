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
}

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
	if err := fs.Parse(args); err != nil {
		return nil, err
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
	for i := range o.runs {
		progress("run %d of %d", i+1, o.runs)
		dir := filepath.Join(work, fmt.Sprintf("run%d", i+1))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		figs, err := measure(ctx, o, bin, dir, seeded, i, progress)
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
