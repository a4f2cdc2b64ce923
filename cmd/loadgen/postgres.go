package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rolegate/rolegate/internal/pgtest"
)

// With -postgres, loadgen measures the PostgreSQL engine beside bbolt in
// the same run (issue 14): for each count k of -replicas, k bots on one
// fresh database, sharing one fake Slack and one fake OpenAI, take the
// measured round spread over them as a load balancer would spread it (see
// load). The bbolt bot's figures from the same run are the PostgreSQL
// rows' floor column, so the report states PostgreSQL ÷ bbolt on the same
// machine under the same neighbours.

// startPostgres starts the throwaway server: pgtest's, Debian's PostgreSQL
// run as the postgres user, fsync on. A variable so a test can stand in
// for a machine without the server binaries.
var startPostgres = pgtest.Start

// pgServer is the PostgreSQL server of a -postgres run.
type pgServer struct {
	*pgtest.Server
	// about describes the server as it reports itself: version and the
	// settings a commit's cost depends on.
	about string
}

// openPostgres starts the server and reads what it is. The caller stops it
// with Stop. A missing server binary is an error that says how to get one.
func openPostgres(ctx context.Context) (*pgServer, error) {
	s, err := startPostgres()
	if errors.Is(err, pgtest.ErrNoServer) {
		return nil, fmt.Errorf("-postgres: %w: install PostgreSQL's server (Debian: apt-get install postgresql) or set ROLEGATE_PG_BINDIR to the folder holding initdb and postgres", err)
	}
	if err != nil {
		return nil, fmt.Errorf("-postgres: start PostgreSQL: %w", err)
	}
	about, err := describePostgres(ctx, s)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("-postgres: %w", err)
	}
	return &pgServer{Server: s, about: about}, nil
}

// describePostgres asks the server its version and durability settings,
// rather than trusting what pgtest means to set.
func describePostgres(ctx context.Context, s *pgtest.Server) (string, error) {
	url, err := s.CreateDatabase(ctx)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version, fsync, syncCommit, sharedBuffers string
	err = conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit'), current_setting('shared_buffers')").
		Scan(&version, &fsync, &syncCommit, &sharedBuffers)
	if err != nil {
		return "", fmt.Errorf("read the server's settings: %w", err)
	}
	return fmt.Sprintf("PostgreSQL %s, fsync %s, synchronous_commit %s, shared_buffers %s", version, fsync, syncCommit, sharedBuffers), nil
}

// cpu is the CPU time the server has used so far: the postmaster's own
// and its reaped children's (cutime, cstime), plus its live children's
// (the backends, which mostly live as long as the bots' pools).
func (s *pgServer) cpu() time.Duration {
	pid := s.Pid()
	total := procCPU(pid, true)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		child, err := strconv.Atoi(filepath.Base(p))
		if err != nil || child == pid {
			continue
		}
		if parentOf(child) == pid {
			total += procCPU(child, false)
		}
	}
	return total
}

// statFields returns the fields of /proc/<pid>/stat after the command name:
// [0] state, [1] ppid, … [11] utime, [12] stime, [13] cutime, [14] cstime.
func statFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procCPU is pid's user+system CPU time, with its reaped children's when
// children is set (clock ticks of 1/100 s, Linux's USER_HZ).
func procCPU(pid int, children bool) time.Duration {
	f := statFields(pid)
	if len(f) < 15 {
		return 0
	}
	fields := f[11:13]
	if children {
		fields = f[11:15]
	}
	var ticks int64
	for _, v := range fields {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// outbox is a reading of the jobs table: how many jobs were ever created
// (the id sequence) and how many wait now. Between two readings, the jobs
// done (claimed by a replica and completed) are the created ones less the
// growth of the backlog. A job inserted by a transaction that then rolled
// back also takes an id, so this may overcount by those; a healthy round
// rolls back nothing.
type outbox struct{ created, waiting int64 }

func readOutbox(ctx context.Context, conn *pgx.Conn) (outbox, error) {
	var o outbox
	err := conn.QueryRow(ctx, `SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('jobs', 'id')::regclass), 0),
		(SELECT count(*) FROM jobs)`).Scan(&o.created, &o.waiting)
	if err != nil {
		return o, fmt.Errorf("read the outbox: %w", err)
	}
	return o, nil
}

func (o outbox) doneSince(before outbox) int64 {
	return (o.created - before.created) - (o.waiting - before.waiting)
}

// lockWaits is what sampleLockWaits saw.
type lockWaits struct {
	samples int
	waiting int // summed over the samples
	most    int
}

// sampleLockWaits counts, every interval until the returned func is called,
// the database's backends waiting for a lock (pg_stat_activity's
// wait_event_type Lock, live, not subject to the statistics' delay). Every
// write transaction locks the audit chain's head first, so this is where
// replicas queue behind each other. It samples on a connection of its own:
// pgx closes a connection whose query is cancelled.
func sampleLockWaits(ctx context.Context, url string, interval time.Duration) (func() lockWaits, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan lockWaits, 1)
	go func() {
		defer conn.Close(context.WithoutCancel(ctx))
		var w lockWaits
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- w
				return
			case <-t.C:
			}
			var n int
			err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&n)
			if err != nil {
				continue
			}
			w.samples++
			w.waiting += n
			w.most = max(w.most, n)
		}
	}()
	return func() lockWaits { cancel(); return <-done }, nil
}

// transactions are the database's transaction counts.
type transactions struct{ rollbacks, deadlocks int64 }

// readTransactions reads the database's rolled-back transactions and
// deadlocks once the bots' connections are gone: a backend reports its
// counts to the statistics when it exits, and only every second or so
// before, so the figures are whole only then. It waits up to five seconds
// for the backends to go.
func readTransactions(ctx context.Context, conn *pgx.Conn) (transactions, error) {
	var tx transactions
	deadline := time.Now().Add(5 * time.Second)
	for {
		var others int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&others)
		if err != nil {
			return tx, err
		}
		if others == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return tx, err
		}
	}
	err := conn.QueryRow(ctx, "SELECT xact_rollback, deadlocks FROM pg_stat_database WHERE datname = current_database()").Scan(&tx.rollbacks, &tx.deadlocks)
	if err != nil {
		return tx, fmt.Errorf("read the database's statistics: %w", err)
	}
	return tx, nil
}

// pgKey is the key of a figure measured on PostgreSQL with k replicas.
func pgKey(k int, key string) string { return fmt.Sprintf("pg%d_%s", k, key) }

// replicasWord is "1 replica", "2 replicas".
func replicasWord(k int) string {
	if k == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", k)
}

// measureReplicas starts k bots on a fresh database of pg, against fakes of
// their own, and measures the round on them (and the paced requests, with
// -paced). The figures' keys are pgKey(k, …) of the bbolt round's keys.
func measureReplicas(ctx context.Context, o *options, bin, dir string, pg *pgServer, k int, progress func(string, ...any)) (figures, error) {
	figs := figures{}
	url, err := pg.CreateDatabase(ctx)
	if err != nil {
		return nil, err
	}
	f, err := startFakes(loadBotToken, loadAdminKey)
	if err != nil {
		return nil, err
	}
	defer f.close()
	env := botEnv(o, f, "")
	delete(env, "ROLEGATE_DB")
	env["ROLEGATE_DATABASE_URL"] = url

	progress("PostgreSQL, %s: starting them one after another on a fresh database", replicasWord(k))
	var bots []*botProc
	defer func() {
		for _, b := range bots {
			b.stop() // a no-op error for the ones already stopped
		}
	}()
	var later []float64
	for i := range k {
		b, err := startBot(bin, env, filepath.Join(dir, fmt.Sprintf("pg%d-replica%d.log", k, i+1)))
		if err != nil {
			return nil, err
		}
		bots = append(bots, b)
		// The first one creates the schema; a loaded machine may take a while.
		d, err := b.waitHealthy(ctx, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		if i == 0 {
			figs["startup_first_ms"] = ms(d)
		} else {
			later = append(later, ms(d))
		}
	}
	if len(later) > 0 {
		figs["startup_later_ms"] = median(later)
	}
	// Let start-up garbage settle before calling the processes idle.
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	var idle []float64
	for _, b := range bots {
		m, err := b.mem()
		if err != nil {
			return nil, err
		}
		idle = append(idle, mib(m.RSS))
	}
	figs["idle_rss_mib"] = slices.Max(idle)

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	l := newLoad(o, f, bots...)
	defer l.closePosters()
	progress("PostgreSQL, %s: %d commands round-robin, then %d approving clicks each to another replica, %d in flight", replicasWord(k), o.n, o.n, o.c)
	before, err := readOutbox(ctx, conn)
	if err != nil {
		return nil, err
	}
	stopSampling, err := sampleLockWaits(ctx, url, 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	pgCPU0 := pg.cpu()
	r, err := l.round(ctx, o.n)
	pgCPU1 := pg.cpu()
	waits := stopSampling()
	if err != nil {
		return nil, err
	}
	after, err := readOutbox(ctx, conn)
	if err != nil {
		return nil, err
	}
	putRound(figs, r)
	figs["postgres_cpu_pct"] = 100 * float64(pgCPU1-pgCPU0) / float64(r.drain)
	done := after.doneSince(before)
	figs["jobs_per_sec"] = float64(done) / r.drain.Seconds()
	figs["jobs_per_request"] = float64(done) / float64(o.n)
	figs["lock_waiters_mean"] = float64(waits.waiting) / float64(max(1, waits.samples))
	figs["lock_waiters_max"] = float64(waits.most)
	figs["fake_slack_calls"] = float64(f.slackTime.summary().N)
	figs["fake_openai_calls"] = float64(f.aiTime.summary().N)
	var peak, largest, sum float64
	for _, b := range bots {
		m, err := b.mem()
		if err != nil {
			return nil, err
		}
		peak, largest, sum = max(peak, mib(m.HWM)), max(largest, mib(m.RSS)), sum+mib(m.RSS)
	}
	figs["peak_rss_mib"], figs["rss_after_run_mib"], figs["rss_after_run_all_mib"] = peak, largest, sum

	if o.paced > 0 {
		progress("PostgreSQL, %s: %d requests and clicks one at a time", replicasWord(k), o.paced)
		pc, pk, pa, err := l.paced(ctx, o.paced)
		if err != nil {
			return nil, err
		}
		putLatency(figs, "paced_command_ack", pc)
		putLatency(figs, "paced_click_ack", pk)
		putLatency(figs, "paced_click_assign", pa)
	}

	var errs []error
	for i, b := range bots {
		if err := b.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop replica %d: %w", i+1, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	tx, err := readTransactions(ctx, conn)
	if err != nil {
		return nil, err
	}
	figs["rollbacks"], figs["deadlocks"] = float64(tx.rollbacks), float64(tx.deadlocks)
	applied, err := countApplied(ctx, "", url)
	if err != nil {
		return nil, err
	}
	figs["requests_applied"] = float64(applied)
	if applied != l.total {
		return nil, fmt.Errorf("%d requests applied, want %d (bot logs %s)", applied, l.total, l.logs())
	}
	if err := f.track.strayErr(); err != nil {
		return nil, err
	}

	out := figures{}
	for key, v := range figs {
		out[pgKey(k, key)] = v
	}
	return out, nil
}
