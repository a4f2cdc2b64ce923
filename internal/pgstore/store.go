// Package pgstore is the PostgreSQL engine of approvals.Store, for running
// several rolegate replicas on one database.
//
// Every Store method is one transaction with the semantics of the bbolt
// engine (approvals.BoltStore), enforced by the database rather than by one
// process: a transition locks its request row (SELECT … FOR UPDATE) and
// writes the request, its audit event and its jobs together, so two replicas
// deciding at once yield one decision; audit events are appended to one
// chain whose head row every append locks; trigger ids are a table with a
// primary key. Jobs are leased: DueJobs claims them with FOR UPDATE SKIP
// LOCKED for Options.Lease, renewed while the process lives, so each runs on
// one replica at a time and a dead replica's jobs are taken over once its
// leases lapse.
package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rolegate/rolegate/internal/approvals"
)

// DefaultLease is how long a claimed job is kept from other replicas
// without renewal. A live replica renews its leases every Lease/3, so a job
// that runs long (an OpenAI call with retries inside CallTimeout) keeps its
// lease; a replica that dies stops renewing and its jobs go to another one
// within DefaultLease (plus the poll that notices, which the Worker
// schedules for the lease's end): 15 s leaves room within the 30 s DESIGN.md
// promises.
const DefaultLease = 15 * time.Second

// notifyChannel is the LISTEN/NOTIFY channel writes signal.
const notifyChannel = "rolegate_changes"

// Options tune a Store. The zero value is what serve uses.
type Options struct {
	// Lease is how long a job DueJobs hands out stays this replica's
	// without renewal (default DefaultLease).
	Lease time.Duration
	// Owner names this replica in jobs.leased_by (default host/pid/random).
	Owner string
	// NoRenew turns lease renewal off: a test's stand-in for a replica
	// that died holding its jobs.
	NoRenew bool
	// NoListen turns LISTEN off: Changes then only hears this process's
	// own writes, and the Worker's polling covers the rest.
	NoListen bool
	// Logger reports lost LISTEN connections and failed renewals.
	Logger *slog.Logger
	// NoMigrate leaves the schema as it is and refuses a database whose
	// schema is not this rolegate's: for the commands that only read
	// (bot audit, requests, drift), which must not upgrade a database the
	// running replicas share.
	NoMigrate bool
}

// Store is the approvals.Store kept in PostgreSQL. It is safe for
// concurrent use by many goroutines and many processes.
type Store struct {
	pool    *pgxpool.Pool
	lax     *pgxpool.Pool // synchronous_commit off: the outbox's bookkeeping (laxBatch)
	opt     Options
	changes chan struct{}
	log     *slog.Logger
	commits *groupCommit // the write transactions of Create and Update
	// leases is what DueJobs last heard of other replicas' leases.
	leases struct {
		sync.Mutex
		lookedAt time.Time
		next     time.Time // when the earliest of them ends; zero: none
	}

	stop context.CancelFunc
	wg   sync.WaitGroup
	once sync.Once
}

var _ approvals.Store = (*Store)(nil)

// Open connects to the database at url (postgres://…; pool_max_conns and
// the other pgxpool parameters are honoured, the pool defaults to 20
// connections, half of them kept open while idle, and a second pool of a
// quarter as many serves laxBatch),
// applies the migrations not yet applied under an advisory
// lock (replicas starting together migrate once), and starts listening for
// changes. Close it when done.
func Open(ctx context.Context, url string, opts ...Options) (*Store, error) {
	var opt Options
	if len(opts) > 0 {
		opt = opts[0]
	}
	if opt.Lease <= 0 {
		opt.Lease = DefaultLease
	}
	if opt.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		rand.Read(b)
		opt.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message can quote the URL, password included.
		return nil, errors.New("open database: ROLEGATE_DATABASE_URL is not a valid postgres:// URL")
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = 20
	}
	if !strings.Contains(url, "pool_min_conns") {
		// Connections kept open while idle: a burst of clicks after a
		// quiet spell otherwise waits for new connections (connect, log
		// in, prepare statements afresh): 34–274 ms for the first reads of
		// 1,000 clicks in cmd/loadgen.
		cfg.MinConns = cfg.MaxConns / 2
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := migrate(ctx, pool, !opt.NoMigrate); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	laxCfg := cfg.Copy()
	laxCfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	laxCfg.MaxConns = max(2, cfg.MaxConns/4)
	laxCfg.MinConns = 0
	lax, err := pgxpool.NewWithConfig(ctx, laxCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	s := &Store{pool: pool, lax: lax, opt: opt, changes: make(chan struct{}, 1), log: opt.Logger, stop: stop}
	s.commits = &groupCommit{s: s}
	if !opt.NoListen {
		s.wg.Go(func() { s.listen(bg) })
	}
	if !opt.NoRenew {
		s.wg.Go(func() { s.renew(bg) })
	}
	return s, nil
}

// Close stops listening and renewing, releases the leases this replica
// holds (so another replica takes its jobs at once, not after the lease:
// the Worker has stopped before the store is closed) and closes the pool.
// A released job keeps its leased_by: the stop may have cut a post short
// after Slack accepted it, so the next holder is told it took the job
// over (DueJobs) and looks for the message before posting it again.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.stop()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tag, err := s.pool.Exec(ctx, "UPDATE jobs SET leased_until = NULL WHERE leased_by = $1 AND leased_until IS NOT NULL", s.opt.Owner)
		if err == nil && tag.RowsAffected() > 0 {
			s.pool.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel)
		}
		s.lax.Close()
		s.pool.Close()
	})
	return nil
}

// Owner is the name this replica leases jobs under.
func (s *Store) Owner() string { return s.opt.Owner }

// Changes implements approvals.Store: signalled after this process's
// commits that queue work or change a wake-up, and on every NOTIFY from
// another replica's.
func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Ping implements approvals.Store: the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var one int
	return s.pool.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Version returns the server's version string (SHOW server_version).
func (s *Store) Version(ctx context.Context) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v, err
}

// listen holds one connection in LISTEN and signals Changes on every
// notification. A lost connection is reopened with back-off; meanwhile
// Changes is signalled once, and the Worker's own polling (at least every
// 30 s, and at every job's NotBefore and lease end) keeps work moving.
func (s *Store) listen(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.notify() // something may have happened while we were not listening
		s.log.Warn("LISTEN connection lost; reconnecting", "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	s.notify() // catch up on what was written before LISTEN took effect
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.notify()
	}
}

// renew extends this replica's unexpired leases every Lease/3. A lease that
// has lapsed (the database was unreachable for a whole lease) is not taken
// back: another replica may hold the job by now.
func (s *Store) renew(ctx context.Context) {
	t := time.NewTicker(s.opt.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.renewLeases(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("Renewing job leases failed", "err", err)
		}
	}
}

func (s *Store) renewLeases(ctx context.Context) error {
	// SKIP LOCKED: a row locked now is being completed or retried (by a
	// transaction that may hold other job rows: locking them all in one
	// statement deadlocked with those, seen under loadgen); the next
	// renewal, a third of a lease later, catches any still held.
	_, err := s.laxExec(ctx, `UPDATE jobs SET leased_until = now() + $2 WHERE id IN (
		SELECT id FROM jobs WHERE leased_by = $1 AND leased_until > now() ORDER BY id FOR UPDATE SKIP LOCKED)`, s.opt.Owner, s.opt.Lease)
	return err
}

// inTx runs fn in a transaction, again (up to 5 times) when PostgreSQL
// reports a serialization failure or deadlock, which only means a
// concurrent transaction won: fn reads everything afresh each time.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := range 5 {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// ceilMicro rounds t up to PostgreSQL's microsecond, so a time read back
// from an index column is never earlier than the exact one in the body: a
// wake or job found due by the column is due by the body too.
func ceilMicro(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	c := t.Truncate(time.Microsecond)
	if c.Before(t) {
		c = c.Add(time.Microsecond)
	}
	return &c
}

func toInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

var _ approvals.Rememberer = (*Store)(nil)

// Turn implements approvals.Turner with the database's clock, so replicas
// whose clocks differ still take turns: the first caller at or after a
// task's next_at takes the turn and moves next_at on by nine tenths of
// every.
func (s *Store) Turn(ctx context.Context, name string, every time.Duration) (mine bool, err error) {
	err = s.pool.QueryRow(ctx, `INSERT INTO turns (name, next_at) VALUES ($1, now() + $2)
		ON CONFLICT (name) DO UPDATE SET next_at = EXCLUDED.next_at WHERE turns.next_at <= now()
		RETURNING true`, name, every-every/10).Scan(&mine)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return mine, err
}

var _ approvals.Turner = (*Store)(nil)
