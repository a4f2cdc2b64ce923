package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rolegate/rolegate/internal/slackapp"
)

// floorValueSize is the size of the value each floor transaction writes:
// about what a pending request plus its audit event and outbox job take.
const floorValueSize = 700

// boltFloor measures committed bbolt write transactions per second on the
// disk holding dir: one at a time (db.Update) for up to seqN transactions or
// two seconds, and n db.Batch calls from c goroutines, with bbolt's default
// batch settings (the ones rolegate's store uses).
func boltFloor(ctx context.Context, dir string, seqN, n, c int) (seq, batched float64, err error) {
	path := filepath.Join(dir, "floor.db")
	defer os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	bucket := []byte("floor")
	value := make([]byte, floorValueSize)
	put := func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		k := binary.BigEndian.AppendUint64(nil, id)
		return b.Put(k, value)
	}

	start := time.Now()
	done := 0
	for ; done < seqN && time.Since(start) < 2*time.Second && ctx.Err() == nil; done++ {
		if err := db.Update(put); err != nil {
			return 0, 0, err
		}
	}
	seq = float64(done) / time.Since(start).Seconds()

	var failed atomic.Value
	start = time.Now()
	parallel(ctx, n, c, func(int) {
		if err := db.Batch(put); err != nil {
			failed.Store(err)
		}
	})
	batched = float64(n) / time.Since(start).Seconds()
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, err
	}
	return seq, batched, ctx.Err()
}

// floorServerEnv, when set in a process's environment, makes the load tool
// run as the HTTP floor server instead (see serveFloor).
const floorServerEnv = "ROLEGATE_LOADGEN_FLOOR_SERVER"

// floorReply is the size of a real command answer, so the floor writes as
// much as the bot does.
var floorReply = `{"response_type":"ephemeral","text":"Request #1 is being checked: role ` + "`r00`" + ` for group ` + "`g00000`" + ` in project ` + "`proj_abc`" + `. rolegate looks them up at OpenAI now and tells you here when it is waiting for approval, or why not."}` + "\n"

// serveFloor is the HTTP floor: a server that only reads the body, verifies
// Slack's signature with slackapp.Verify and answers 200. It listens on a
// free loopback port, prints the address on stdout and serves until stdin
// closes.
func serveFloor(secret string, stdin io.Reader, stdout io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	verified := func(w http.ResponseWriter, r *http.Request) bool {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, slackapp.MaxBody))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return false
		}
		if err := slackapp.Verify(secret, r.Header, body, time.Now()); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /slack/commands", func(w http.ResponseWriter, r *http.Request) {
		if verified(w, r) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, floorReply)
		}
	})
	mux.HandleFunc("POST /slack/interactions", func(w http.ResponseWriter, r *http.Request) {
		if verified(w, r) {
			w.WriteHeader(http.StatusOK)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintln(stdout, ln.Addr().String())
	_, _ = io.Copy(io.Discard, stdin)
	return srv.Close()
}

// floorProc is the HTTP floor server running as a child process, so it is
// measured as the bot is: a separate process the load crosses loopback to.
type floorProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startFloor(self, secret string) (*floorProc, error) {
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), floorServerEnv+"="+secret)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start floor server: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("floor server did not start: %w", err)
	}
	return &floorProc{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}, nil
}

func (f *floorProc) stop() error {
	f.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- f.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		<-done
		return errors.New("floor server did not stop")
	}
}

// httpFloor drives the floor server with the load's request mix: n slash
// commands, then n clicks, c in flight.
func httpFloor(ctx context.Context, self, secret string, n, c int) (phase, phase, error) {
	fp, err := startFloor(self, secret)
	if err != nil {
		return phase{}, phase{}, err
	}
	defer fp.stop()
	p := newPoster("http://"+fp.addr, secret, c)
	defer p.close()
	sg := &signer{responseURL: func(ch, user, ts string) string {
		return "http://127.0.0.1:1/response/" + user + ts
	}}
	var errs errorList
	cmds := runPhase(ctx, n, c, func(i int) time.Duration {
		group, role := target(i)
		body := sg.command(requester(i), fmt.Sprintf("%s %s %s load test request %d for key rotation", loadProject, group, role, i))
		status, _, d, err := p.post(ctx, "/slack/commands", body)
		if err != nil || status != http.StatusOK {
			errs.add("floor command: %d %v", status, err)
		}
		return d
	})
	clicks := runPhase(ctx, n, c, func(i int) time.Duration {
		body, err := sg.click(approver, slackapp.ActionApprove, uint64(i+1), fmt.Sprintf("1700000000.%06d", i+1))
		if err != nil {
			errs.add("floor click: %v", err)
			return 0
		}
		status, _, d, err := p.post(ctx, "/slack/interactions", body)
		if err != nil || status != http.StatusOK {
			errs.add("floor click: %d %v", status, err)
		}
		return d
	})
	return cmds, clicks, errs.err()
}

// phase is one batch of n requests: their latencies and the wall time.
type phase struct {
	lat  latency
	wall time.Duration
	n    int
}

func (p phase) perSecond() float64 {
	if p.wall <= 0 {
		return 0
	}
	return float64(p.n) / p.wall.Seconds()
}

// runPhase runs do for 0..n-1 with c in flight; do returns the request's
// latency.
func runPhase(ctx context.Context, n, c int, do func(i int) time.Duration) phase {
	var s samples
	start := time.Now()
	parallel(ctx, n, c, func(i int) { s.add(do(i)) })
	return phase{lat: s.summary(), wall: time.Since(start), n: n}
}

func requester(i int) string { return fmt.Sprintf("U0LOADREQ%02d", i%requesters) }
