package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded SQL file, named NNNN_what.sql.
type migration struct {
	Version int
	Name    string
	SQL     string
}

// migrationLock is the pg_advisory_lock key replicas take while they
// migrate: the first one migrates, the others wait and then find nothing
// to do. ('rolegate' in ASCII, as a bigint.)
const migrationLock int64 = 0x726f6c6567617465

func migrations() ([]migration, error) {
	entries, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, path := range entries {
		name := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: the name must start with a positive number and _", path)
		}
		b, err := migrationFiles.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must be 1, 2, 3… without gaps", m.Name)
		}
	}
	return out, nil
}

// MigrationState says which schema a database has and which this binary
// knows.
type MigrationState struct {
	Applied int       // highest version applied (0: none)
	Known   int       // highest version this binary carries
	At      time.Time // when Applied was applied
}

func (m MigrationState) String() string {
	switch {
	case m.Applied == 0:
		return fmt.Sprintf("no schema yet (version %d is created at the first start)", m.Known)
	case m.Applied == m.Known:
		return fmt.Sprintf("schema version %d (up to date)", m.Applied)
	case m.Applied < m.Known:
		return fmt.Sprintf("schema version %d, %d pending (applied at the next start)", m.Applied, m.Known-m.Applied)
	default:
		return fmt.Sprintf("schema version %d is newer than this binary's %d: upgrade rolegate", m.Applied, m.Known)
	}
}

// migrate applies the migrations not yet applied, each in a transaction of
// its own, holding the advisory lock throughout on one connection.
func migrate(ctx context.Context, pool *pgxpool.Pool, apply bool) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if !apply {
		var applied *int
		err := pool.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&applied)
		if err != nil || applied == nil {
			return errors.New("the database has no rolegate schema yet: start the bot on it first (it creates the schema)")
		}
		switch {
		case *applied > len(ms):
			return fmt.Errorf("the database has schema version %d, newer than this rolegate's %d: upgrade rolegate", *applied, len(ms))
		case *applied < len(ms):
			return fmt.Errorf("the database has schema version %d, older than this rolegate's %d: start the new bot on it first (it migrates at start), then run this again", *applied, len(ms))
		}
		return nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var applied int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&applied); err != nil {
		return err
	}
	if applied > len(ms) {
		return fmt.Errorf("the database has schema version %d, newer than this rolegate's %d: upgrade rolegate (or restore the database)", applied, len(ms))
	}
	for _, m := range ms[applied:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// Migrations reports the schema state of the database.
func (s *Store) Migrations(ctx context.Context) (MigrationState, error) {
	ms, err := migrations()
	if err != nil {
		return MigrationState{}, err
	}
	st := MigrationState{Known: len(ms)}
	err = s.pool.QueryRow(ctx, "SELECT version, applied_at FROM schema_migrations ORDER BY version DESC LIMIT 1").Scan(&st.Applied, &st.At)
	if err == pgx.ErrNoRows {
		err = nil
	}
	return st, err
}

// Inspection is what `bot check` reports about a database, read without
// changing it (no migration).
type Inspection struct {
	Version    string // the server's, e.g. "15.8 (Debian 15.8-0+deb12u1)"
	Migrations MigrationState
}

// Inspect connects to url and reports the server's version and the schema
// state, without migrating anything.
func Inspect(ctx context.Context, url string) (Inspection, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return Inspection{}, fmt.Errorf("ROLEGATE_DATABASE_URL is not a valid postgres:// URL")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Inspection{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var in Inspection
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&in.Version); err != nil {
		return Inspection{}, err
	}
	ms, err := migrations()
	if err != nil {
		return Inspection{}, err
	}
	in.Migrations.Known = len(ms)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return in, err
	}
	err = conn.QueryRow(ctx, "SELECT version, applied_at FROM schema_migrations ORDER BY version DESC LIMIT 1").Scan(&in.Migrations.Applied, &in.Migrations.At)
	if err == pgx.ErrNoRows {
		err = nil
	}
	return in, err
}
