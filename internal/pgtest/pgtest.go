// Package pgtest starts a throwaway PostgreSQL server for the tests of one
// package and hands each test a fresh, empty database on it.
//
// The server is found through `pg_config --bindir` (Debian installs initdb
// and postgres outside PATH), or ROLEGATE_PG_BINDIR. It runs as the
// unprivileged postgres user when the tests run as root (initdb refuses
// root), with its data directory and Unix socket in a temporary directory,
// listening on a free loopback port, fsync on. One server serves a whole
// test binary: call Main from TestMain so it is stopped at the end. Each
// URL call creates a database with CREATE DATABASE … TEMPLATE, which takes
// milliseconds, so tests stay independent without a server each.
//
// Where no server binary is found the tests are skipped with a loud
// message; with CI=true they fail instead, so CI cannot silently skip them.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one running PostgreSQL.
type Server struct {
	dir  string // temporary directory: data/, the socket, the log
	port int
	cmd  *exec.Cmd
	exit chan error
	n    atomic.Int64 // databases created

	stopOnce sync.Once
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
	mu        sync.Mutex
)

// Main runs the tests and stops the shared server, if one was started. Call
// it from TestMain: os.Exit(pgtest.Main(m)). A package that cannot (its
// TestMain does other things) may skip it: the server dies with the test
// binary and its directory is removed by a later Start.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// URL returns the URL of a new, empty database on the shared server,
// starting the server on first use. Without a server binary it skips t (or
// fails it under CI=true).
func URL(t testing.TB) string {
	t.Helper()
	s := server(t)
	u, err := s.CreateDatabase(t.Context())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Shared returns the shared server, starting it on first use; it skips or
// fails t like URL.
func Shared(t testing.TB) *Server {
	t.Helper()
	return server(t)
}

func server(t testing.TB) *Server {
	t.Helper()
	once.Do(func() {
		s, err := Start()
		mu.Lock()
		shared, sharedErr = s, err
		mu.Unlock()
	})
	if sharedErr != nil {
		if errors.Is(sharedErr, ErrNoServer) && os.Getenv("CI") != "true" {
			t.Skipf("SKIPPING PostgreSQL tests: %v (install PostgreSQL 14+ server binaries or set ROLEGATE_PG_BINDIR; under CI=true this fails)", sharedErr)
		}
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// ErrNoServer means no PostgreSQL server binary was found.
var ErrNoServer = errors.New("no PostgreSQL server binary (initdb, postgres) found")

// BinDir finds the folder of initdb and postgres: ROLEGATE_PG_BINDIR,
// `pg_config --bindir`, then Debian's /usr/lib/postgresql/<version>/bin.
func BinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("ROLEGATE_PG_BINDIR"); d != "" {
		candidates = append(candidates, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(m) > 0 {
		for i := len(m) - 1; i >= 0; i-- { // newest version first
			candidates = append(candidates, m[i])
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoServer
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start initialises and starts a server in a new temporary directory. Stop
// it with Stop.
func Start() (*Server, error) {
	bindir, err := BinDir()
	if err != nil {
		return nil, err
	}
	removeStale()
	dir, err := os.MkdirTemp("", "rolegate-pgtest-*")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	cred, err := credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	// --no-sync only skips flushing initdb's own files: the server below
	// runs with fsync on, so what the tests (and benchmarks) measure is a
	// durable commit.
	initdb := exec.Command(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 5 { // a free port can be taken between finding and binding it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		if lastErr = s.run(bindir, data, cred); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// removeStale removes the directories of servers whose test binary ended
// without Main (a package whose TestMain is not pgtest's, or a killed
// run): the server died with it (Pdeathsig), its files stayed. Only
// directories older than ten minutes whose postmaster is gone are touched,
// so a server another test binary is starting or running is left alone.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "rolegate-pgtest-*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
			if pid > 0 && syscall.Kill(pid, 0) == nil {
				continue // still running
			}
		}
		os.RemoveAll(d)
	}
}

// credential returns who runs the server: the postgres user when we are
// root (initdb and postgres refuse root), owning dir; nil otherwise.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// run starts postgres and waits until it accepts connections.
func (s *Server) run(bindir, data string, cred *syscall.Credential) error {
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("server-%d.log", s.port)))
	if err != nil {
		return err
	}
	if cred != nil {
		os.Chown(logf.Name(), int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bindir, "postgres"), "-D", data,
		"-p", strconv.Itoa(s.port), "-k", s.dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=on", "-c", "max_connections=300", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with the test binary even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exit := make(chan error, 1)
	go func() { exit <- cmd.Wait(); logf.Close() }()
	s.cmd, s.exit = cmd, exit
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.adminURL("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case werr := <-exit:
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("postgres exited (%v):\n%s", werr, log)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exit
			return fmt.Errorf("postgres did not accept connections within a minute: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) adminURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Pid is the process id of the server's postmaster. Its backends and
// background workers are its children, so a benchmark can add up the
// server's CPU time from /proc.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// CreateDatabase creates an empty database and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	conn, err := pgx.Connect(ctx, s.adminURL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.adminURL(name), nil
}

// Stop kills the server and removes its directory. It may be called more
// than once.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }

func (s *Server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown: the data is thrown away
		select {
		case <-s.exit:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exit
		}
	}
	os.RemoveAll(s.dir)
}
