package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/approvalstest"
	"github.com/rolegate/rolegate/internal/pgstore"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// Secrets of the load run's fakes and bot (throwaway values).
const (
	loadBotToken = "xoxb-loadgen-bot-token-0123456789"
	loadSecret   = "loadgen-signing-secret-0123456789abcdef"
	loadAdminKey = "sk-admin-loadgen-key-0123456789"
)

// figures is one run's measurements, by key (see rows for their meaning).
type figures map[string]float64

// seed writes n finished requests into a new database at path through the
// approvals package, so the file has the real format.
func seed(ctx context.Context, path string, n int) (time.Duration, error) {
	start := time.Now()
	s, err := approvals.Open(path)
	if err != nil {
		return 0, err
	}
	if err := s.Import(ctx, approvalstest.Finished(1, n, time.Now())); err != nil {
		s.Close()
		return 0, err
	}
	if err := s.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// botEnv is the bot's configuration against the fakes.
func botEnv(o *options, f *fakes, db string) map[string]string {
	env := map[string]string{
		"SLACK_BOT_TOKEN":      loadBotToken,
		"SLACK_SIGNING_SECRET": loadSecret,
		"SLACK_API_URL":        f.slackURL,
		"OPENAI_ADMIN_KEY":     loadAdminKey,
		"OPENAI_BASE_URL":      f.aiURL,
		"ROLEGATE_DB":          db,
		// One requester sends the whole burst.
		"ROLEGATE_MAX_OPEN_PER_REQUESTER": "1000",
		"ROLEGATE_APPROVERS":              approver + "," + approverTwo,
	}
	for k, v := range o.botEnv {
		env[k] = v
	}
	return env
}

// measure is one run: floors, the measured round, the memory rounds, the
// start-ups, the check phases and, with pg, the round on PostgreSQL with
// each count of replicas.
func measure(ctx context.Context, o *options, bin, dir, seeded string, pg *pgServer, runIndex int, progress func(string, ...any)) (figures, error) {
	figs := figures{}

	progress("floor: bbolt write transactions in %s", dir)
	seq, batched, err := boltFloor(ctx, dir, min(1000, max(200, 10*o.n)), max(2*o.n, 200), o.c)
	if err != nil {
		return nil, fmt.Errorf("bbolt floor: %w", err)
	}
	figs["floor_bolt_update_tps"] = seq
	figs["floor_bolt_batch_tps"] = batched

	progress("floor: signature-checking HTTP server, %d commands and %d clicks, %d in flight", o.n, o.n, o.c)
	fc, fk, err := httpFloor(ctx, o.self, loadSecret, o.n, o.c)
	if err != nil {
		return nil, fmt.Errorf("http floor: %w", err)
	}
	putLatency(figs, "floor_command_ack", fc.lat)
	putLatency(figs, "floor_click_ack", fk.lat)
	figs["floor_command_rps"] = fc.perSecond()
	figs["floor_click_rps"] = fk.perSecond()

	f, err := startFakes(loadBotToken, loadAdminKey)
	if err != nil {
		return nil, err
	}
	defer f.close()
	db := filepath.Join(dir, "rolegate.db")
	env := botEnv(o, f, db)
	var prof *profiler
	if o.profile != "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		env["LOADGEN_PPROF_ADDR"] = addr
		prof = &profiler{dir: o.profile, run: runIndex + 1, addr: addr}
	}
	b, err := startBot(bin, env, filepath.Join(dir, "bot.log"))
	if err != nil {
		return nil, err
	}
	defer b.stop()
	if _, err := b.waitHealthy(ctx, 10*time.Second); err != nil {
		return nil, err
	}
	// Let start-up garbage settle before calling the process idle.
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	idle, err := b.mem()
	if err != nil {
		return nil, err
	}
	figs["idle_rss_mib"] = mib(idle.RSS)
	figs["idle_rss_anon_mib"], figs["idle_rss_file_mib"] = mib(idle.Anon), mib(idle.File)

	l := newLoad(o, f, b)
	defer l.closePosters()

	progress("rolegate: %d commands, then %d approving clicks, %d in flight", o.n, o.n, o.c)
	stopProf := prof.cpu(ctx, "measured", 4*time.Second)
	stopTrace := prof.trace(ctx, "measured", time.Second)
	r, err := l.round(ctx, o.n)
	stopProf()
	stopTrace()
	if err != nil {
		return nil, err
	}
	putRound(figs, r)
	fs, fa := f.slackTime.summary(), f.aiTime.summary()
	figs["fake_slack_calls"] = float64(fs.N)
	figs["fake_slack_mean_ms"], figs["fake_slack_p99_ms"] = fs.Mean, fs.P99
	figs["fake_openai_calls"] = float64(fa.N)
	figs["fake_openai_mean_ms"], figs["fake_openai_p99_ms"] = fa.Mean, fa.P99
	m, err := b.mem()
	if err != nil {
		return nil, err
	}
	figs["peak_rss_mib"], figs["rss_after_run_mib"] = mib(m.HWM), mib(m.RSS)
	figs["rss_after_run_anon_mib"], figs["rss_after_run_file_mib"] = mib(m.Anon), mib(m.File)

	if o.paced > 0 {
		progress("rolegate: %d requests and clicks one at a time", o.paced)
		pc, pk, pa, err := l.paced(ctx, o.paced)
		if err != nil {
			return nil, err
		}
		putLatency(figs, "paced_command_ack", pc)
		putLatency(figs, "paced_click_ack", pk)
		putLatency(figs, "paced_click_assign", pa)
	}

	if o.soak > 0 {
		for i, key := range []string{"rss_after_soak1_mib", "rss_after_soak2_mib"} {
			progress("memory round %d: %d more requests", i+1, o.soak)
			stop, stopTrace := func() {}, func() {}
			if i == 0 {
				stop = prof.cpu(ctx, "soak", 10*time.Second)
				stopTrace = prof.trace(ctx, "soak", 2*time.Second)
			}
			r, err := l.round(ctx, o.soak)
			stop()
			stopTrace()
			if err != nil {
				return nil, err
			}
			if err := sleep(ctx, time.Second); err != nil {
				return nil, err
			}
			m, err := b.mem()
			if err != nil {
				return nil, err
			}
			figs[key] = mib(m.RSS)
			figs[strings.TrimSuffix(key, "_mib")+"_anon_mib"] = mib(m.Anon)
			figs[strings.TrimSuffix(key, "_mib")+"_file_mib"] = mib(m.File)
			figs[strings.TrimSuffix(key, "_mib")+"_seconds"] = r.drain.Seconds()
			if fi, err := os.Stat(db); err == nil {
				figs[strings.TrimSuffix(key, "_mib")+"_db_file_mib"] = mib(fi.Size())
			}
			figs[strings.TrimSuffix(key, "_mib")+"_created_per_sec"] = r.cmds.perSecond()
			figs[strings.TrimSuffix(key, "_mib")+"_click_assign_p99_ms"] = r.assign.P99
		}
		m, err := b.mem()
		if err != nil {
			return nil, err
		}
		figs["peak_rss_soak_mib"] = mib(m.HWM)
		prof.heap(ctx, "after-soak")
	}
	if err := b.stop(); err != nil {
		return nil, fmt.Errorf("stop bot: %w", err)
	}
	applied, err := countApplied(ctx, db, env["ROLEGATE_DATABASE_URL"])
	if err != nil {
		return nil, err
	}
	figs["requests_applied"] = float64(applied)
	if want := l.total; applied != want {
		return nil, fmt.Errorf("%d requests applied, want %d (bot log %s)", applied, want, b.logPath)
	}
	if err := f.track.strayErr(); err != nil {
		return nil, err
	}

	progress("start-up: empty database and %d finished requests, %d times each", o.history, o.startups)
	empty, _, err := startups(ctx, o, bin, f, filepath.Join(dir, "empty.db"), dir, o.startups)
	if err != nil {
		return nil, err
	}
	figs["startup_empty_ms"] = empty
	if seeded != "" {
		full, rss, err := startups(ctx, o, bin, f, seeded, dir, o.startups)
		if err != nil {
			return nil, err
		}
		figs["startup_history_ms"] = full
		figs["startup_history_rss_mib"] = rss
	}

	if o.checks {
		cf, err := measureChecks(ctx, o, bin, dir, progress)
		if err != nil {
			return nil, fmt.Errorf("check phases: %w", err)
		}
		maps.Copy(figs, cf)
	}
	if pg != nil {
		for _, k := range o.replicas {
			pf, err := measureReplicas(ctx, o, bin, dir, pg, k, progress)
			if err != nil {
				return nil, fmt.Errorf("PostgreSQL, %s: %w", replicasWord(k), err)
			}
			maps.Copy(figs, pf)
		}
	}
	return figs, nil
}

// putRound records what a measured round measured: its latencies, late
// answers, rates, duration and CPU.
func putRound(figs figures, r roundResult) {
	putLatency(figs, "command_ack", r.cmds.lat)
	putLatency(figs, "click_ack", r.clicks.lat)
	putLatency(figs, "click_assign", r.assign)
	figs["command_ack_late"] = float64(r.cmds.lat.Late)
	figs["click_ack_late"] = float64(r.clicks.lat.Late)
	figs["created_per_sec"] = r.cmds.perSecond()
	figs["clicks_per_sec"] = r.clicks.perSecond()
	figs["round_seconds"] = r.drain.Seconds()
	figs["bot_cpu_pct"] = r.botCPU
	figs["loadgen_cpu_pct"] = r.selfCPU
}

func putLatency(figs figures, key string, l latency) {
	figs[key+"_p50_ms"], figs[key+"_p95_ms"], figs[key+"_p99_ms"], figs[key+"_max_ms"] = l.P50, l.P95, l.P99, l.Max
}

// startups starts the bot on db n times and returns the median time to a
// healthy /healthz and the median RSS at that moment.
func startups(ctx context.Context, o *options, bin string, f *fakes, db, dir string, n int) (float64, float64, error) {
	var times, rss []float64
	for range n {
		b, err := startBot(bin, botEnv(o, f, db), filepath.Join(dir, "startup.log"))
		if err != nil {
			return 0, 0, err
		}
		d, err := b.waitHealthy(ctx, 10*time.Second)
		if err != nil {
			b.stop()
			return 0, 0, err
		}
		m, err := b.mem()
		if err == nil {
			rss = append(rss, mib(m.RSS))
		}
		if err := b.stop(); err != nil {
			return 0, 0, fmt.Errorf("stop bot: %w", err)
		}
		times = append(times, ms(d))
	}
	return median(times), median(rss), nil
}

func countApplied(ctx context.Context, db, databaseURL string) (int, error) {
	if databaseURL != "" { // the bot ran on PostgreSQL (-bot-env ROLEGATE_DATABASE_URL=…)
		s, err := pgstore.Open(ctx, databaseURL, pgstore.Options{NoListen: true, NoRenew: true})
		if err != nil {
			return 0, err
		}
		defer s.Close()
		rs, err := s.List(ctx, approvals.ListOptions{State: approvals.StateApplied})
		return len(rs), err
	}
	s, err := approvals.Open(db)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	rs, err := s.List(ctx, approvals.ListOptions{State: approvals.StateApplied})
	return len(rs), err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// load drives one bot, or several replicas on one database, through rounds
// of requests. With several, it spreads them as a load balancer would:
// request i's command goes to bot i mod k, and its click to the next bot,
// so a decision is recorded by another replica than the one that stored
// the request (as in production, where nothing ties a click to the replica
// that took the command).
type load struct {
	o       *options
	f       *fakes
	bots    []*botProc
	posters []*poster // posters[i] sends to bots[i]
	sg      *signer
	total   int // requests made so far, across rounds
}

// newLoad drives bots, all against the fakes f.
func newLoad(o *options, f *fakes, bots ...*botProc) *load {
	l := &load{o: o, f: f, bots: bots, sg: &signer{responseURL: f.slack.NewResponseURLFor}}
	for _, b := range bots {
		l.posters = append(l.posters, newPoster("http://"+b.addr, loadSecret, o.c))
	}
	return l
}

// commandTo and clickTo pick the bot that request i's command and its
// approving click go to.
func (l *load) commandTo(i int) *poster { return l.posters[i%len(l.posters)] }
func (l *load) clickTo(i int) *poster   { return l.posters[(i+1)%len(l.posters)] }

// command posts body, request i's slash command, to its bot and tracks the
// request the answer names: its id and the command's latency.
func (l *load) command(ctx context.Context, i int, body string) (uint64, time.Duration, error) {
	status, answer, d, err := l.commandTo(i).post(ctx, "/slack/commands", body)
	if err != nil || status != http.StatusOK {
		return 0, d, fmt.Errorf("%d %v", status, err)
	}
	id, err := replyID(answer)
	if err != nil {
		return 0, d, err
	}
	group, role := target(i)
	l.f.track.created(id, approvals.Target{ProjectID: loadProject, GroupID: group, RoleID: role})
	return id, d, nil
}

func (l *load) closePosters() {
	for _, p := range l.posters {
		p.close()
	}
}

// logs names the bots' log files, for an error message.
func (l *load) logs() string {
	var paths []string
	for _, b := range l.bots {
		paths = append(paths, b.logPath)
	}
	return strings.Join(paths, ", ")
}

// botsCPU is the CPU time all the bots have used so far.
func (l *load) botsCPU() time.Duration {
	var sum time.Duration
	for _, b := range l.bots {
		d, _ := cpuTime(b.Pid())
		sum += d
	}
	return sum
}

// roundResult is what one round measured.
type roundResult struct {
	cmds, clicks phase
	assign       latency
	drain        time.Duration // first command sent → last result posted
	botCPU       float64       // the bot's CPU use over the round, % of one core
	selfCPU      float64       // the load tool's (fakes included)
}

// round makes n requests (C in flight), then approves each on its posted
// approval message (C in flight), and waits until every result is posted.
func (l *load) round(ctx context.Context, n int) (roundResult, error) {
	var res roundResult
	first := l.total
	l.f.ensureTargets(first + n)
	botCPU0 := l.botsCPU()
	selfCPU0, _ := cpuTime(os.Getpid())
	start := time.Now()

	ids := make([]uint64, n)
	var errs errorList
	res.cmds = runPhase(ctx, n, l.o.c, func(i int) time.Duration {
		group, role := target(first + i)
		body := l.sg.command(requester(first+i), fmt.Sprintf("%s %s %s load test request %d for key rotation", loadProject, group, role, first+i))
		id, d, err := l.command(ctx, first+i, body)
		if err != nil {
			errs.add("command: %v", err)
			return d
		}
		ids[i] = id
		return d
	})
	if err := errs.err(); err != nil {
		return res, err
	}
	l.total += n

	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res.clicks = runPhase(wctx, n, l.o.c, func(i int) time.Duration {
		ts, err := l.f.track.approvalTS(wctx, ids[i])
		if err != nil {
			errs.add("%v", err)
			return 0
		}
		body, err := l.sg.click(approver, slackapp.ActionApprove, ids[i], ts)
		if err != nil {
			errs.add("click: %v", err)
			return 0
		}
		l.f.track.clicked(ids[i], time.Now())
		status, _, d, err := l.clickTo(first+i).post(wctx, "/slack/interactions", body)
		if err != nil || status != http.StatusOK {
			errs.add("click: %d %v", status, err)
		}
		return d
	})
	if err := errs.err(); err != nil {
		return res, err
	}
	if err := l.f.track.waitResults(wctx, l.total); err != nil {
		return res, fmt.Errorf("%w (bot logs %s)", err, l.logs())
	}
	res.drain = time.Since(start)
	res.assign = l.f.track.clickToAssign(ids).summary()
	botCPU1 := l.botsCPU()
	selfCPU1, _ := cpuTime(os.Getpid())
	res.botCPU = 100 * float64(botCPU1-botCPU0) / float64(res.drain)
	res.selfCPU = 100 * float64(selfCPU1-selfCPU0) / float64(res.drain)
	return res, nil
}

// paced makes k requests one at a time, then approves them one at a time,
// each click waiting for the previous assignment and a short pause: the
// latencies of an unloaded bot, every batched commit waiting alone.
func (l *load) paced(ctx context.Context, k int) (cmds, clicks, assign latency, err error) {
	first := l.total
	l.f.ensureTargets(first + k)
	ids := make([]uint64, k)
	var cs, ks samples
	for i := range k {
		group, role := target(first + i)
		body := l.sg.command(requester(first+i), fmt.Sprintf("%s %s %s paced request %d for key rotation", loadProject, group, role, first+i))
		id, d, err := l.command(ctx, first+i, body)
		if err != nil {
			return cmds, clicks, assign, fmt.Errorf("paced command: %w", err)
		}
		ids[i] = id
		cs.add(d)
		if err := sleep(ctx, pacedGap); err != nil {
			return cmds, clicks, assign, err
		}
	}
	l.total += k
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, id := range ids {
		ts, err := l.f.track.approvalTS(wctx, id)
		if err != nil {
			return cmds, clicks, assign, err
		}
		// Let the approval post's own commit settle, so the click meets an
		// idle bot.
		if err := sleep(ctx, pacedGap); err != nil {
			return cmds, clicks, assign, err
		}
		body, err := l.sg.click(approver, slackapp.ActionApprove, id, ts)
		if err != nil {
			return cmds, clicks, assign, err
		}
		l.f.track.clicked(id, time.Now())
		status, _, d, err := l.clickTo(first+i).post(wctx, "/slack/interactions", body)
		if err != nil || status != http.StatusOK {
			return cmds, clicks, assign, fmt.Errorf("paced click: %d %v", status, err)
		}
		ks.add(d)
		if err := l.f.track.waitAssigned(wctx, id); err != nil {
			return cmds, clicks, assign, err
		}
	}
	if err := l.f.track.waitResults(wctx, l.total); err != nil {
		return cmds, clicks, assign, err
	}
	return cs.summary(), ks.summary(), l.f.track.clickToAssign(ids).summary(), nil
}

// pacedGap separates the paced requests.
const pacedGap = 20 * time.Millisecond

// profiler fetches pprof profiles from a profiling build of the bot. A nil
// profiler does nothing.
type profiler struct {
	dir  string
	run  int
	addr string
}

// cpu starts a CPU profile of d in the background; the returned func waits
// for it to be saved.
func (p *profiler) cpu(ctx context.Context, name string, d time.Duration) func() {
	if p == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.fetch(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), fmt.Sprintf("cpu-%s-run%d.pprof", name, p.run), d+10*time.Second)
	}()
	return func() { <-done }
}

// trace starts an execution trace of d in the background, like cpu.
func (p *profiler) trace(ctx context.Context, name string, d time.Duration) func() {
	if p == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.fetch(ctx, fmt.Sprintf("/debug/pprof/trace?seconds=%d", int(d.Seconds())), fmt.Sprintf("trace-%s-run%d.out", name, p.run), d+10*time.Second)
	}()
	return func() { <-done }
}

func (p *profiler) heap(ctx context.Context, name string) {
	if p == nil {
		return
	}
	p.fetch(ctx, "/debug/pprof/heap?gc=1", fmt.Sprintf("heap-%s-run%d.pprof", name, p.run), 10*time.Second)
}

func (p *profiler) fetch(ctx context.Context, path, file string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+path, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: profile:", err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(filepath.Join(p.dir, file))
	if err != nil {
		return
	}
	defer out.Close()
	io.Copy(out, resp.Body)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
