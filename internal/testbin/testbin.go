// Package testbin builds the bot binary and runs it as a child process, for
// the tests that need the real binary (crash recovery) and for the load
// tool. It is the one place that knows how to build the bot, start it,
// learn its address and wait until it answers.
package testbin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BotPackage is the import path of the bot.
const BotPackage = "github.com/rolegate/rolegate/cmd/bot"

// BuildOptions say how to build a binary.
type BuildOptions struct {
	// Package is the import path to build; empty means BotPackage.
	Package string
	// Tags are build tags (-tags), such as "rolegate_crashhook".
	Tags []string
	// Race builds with the race detector; see RaceEnabled.
	Race bool
	// Overlay adds files to the package without touching its sources
	// (go build -overlay): file name in the package's directory → path of
	// its content.
	Overlay map[string]string
}

func (o BuildOptions) key() string {
	names := make([]string, 0, len(o.Overlay))
	for name, src := range o.Overlay {
		names = append(names, name+"="+src)
	}
	slices.Sort(names)
	return fmt.Sprint(o.Package, o.Tags, o.Race, names)
}

// Build builds o.Package into dir and returns the binary's path. The go
// command's own errors are in the returned error.
func Build(ctx context.Context, dir string, o BuildOptions) (string, error) {
	pkg := o.Package
	if pkg == "" {
		pkg = BotPackage
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	if o.Race {
		args = append(args, "-race")
	}
	if len(o.Overlay) > 0 {
		out, err := exec.CommandContext(ctx, goTool(), "list", "-f", "{{.Dir}}", pkg).Output()
		if err != nil {
			return "", fmt.Errorf("find %s: %w", pkg, err)
		}
		replace := map[string]string{}
		for name, src := range o.Overlay {
			replace[filepath.Join(strings.TrimSpace(string(out)), name)] = src
		}
		js, err := json.Marshal(map[string]any{"Replace": replace})
		if err != nil {
			return "", err
		}
		overlay := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(overlay, js, 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", overlay)
	}
	if out, err := exec.CommandContext(ctx, goTool(), append(args, pkg)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

var built struct {
	mu   sync.Mutex
	dir  string
	bins map[string]string
}

// BuildOnce builds as Build does, once per process for each set of
// options, into a directory of its own: the tests of one package share the
// binary instead of each compiling it. RemoveBuilt deletes it.
func BuildOnce(o BuildOptions) (string, error) {
	built.mu.Lock()
	defer built.mu.Unlock()
	if bin, ok := built.bins[o.key()]; ok {
		return bin, nil
	}
	if built.dir == "" {
		dir, err := os.MkdirTemp("", "rolegate-testbin-")
		if err != nil {
			return "", err
		}
		built.dir, built.bins = dir, map[string]string{}
	}
	dir, err := os.MkdirTemp(built.dir, "build-")
	if err != nil {
		return "", err
	}
	bin, err := Build(context.Background(), dir, o)
	if err != nil {
		return "", err
	}
	built.bins[o.key()] = bin
	return bin, nil
}

// RemoveBuilt deletes what BuildOnce built; call it from TestMain after
// the tests ran.
func RemoveBuilt() {
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.dir != "" {
		os.RemoveAll(built.dir)
		built.dir, built.bins = "", nil
	}
}

// RaceEnabled reports whether this binary was built with -race, so a test
// can build the child the same way.
func RaceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// Options say how to run a binary.
type Options struct {
	// Env is the child's whole environment. Without ROLEGATE_ADDR the bot
	// listens on 127.0.0.1:0, a port it picks itself, so no other process
	// can take the port between choosing it and listening on it; the
	// address is read from its "rolegate started" log line (JSON logs).
	Env map[string]string
	// Output receives the child's stdout and stderr; nil discards them.
	Output io.Writer
}

// Proc is a running child. Its methods are safe for concurrent use.
type Proc struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited
	out     *addrWriter
}

// Start starts bin with o. The caller must end it (Stop or Kill).
func Start(bin string, o Options) (*Proc, error) {
	env := map[string]string{"ROLEGATE_ADDR": "127.0.0.1:0"}
	for k, v := range o.Env {
		env[k] = v
	}
	cmd := exec.Command(bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &addrWriter{next: o.Output}
	if out.next == nil {
		out.next = io.Discard
	}
	if addr := env["ROLEGATE_ADDR"]; !strings.HasSuffix(addr, ":0") {
		out.addr = addr
	}
	cmd.Stdout, cmd.Stderr = out, out
	p := &Proc{cmd: cmd, done: make(chan struct{}), out: out}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the child was started.
func (p *Proc) Started() time.Time { return p.started }

// Addr is the child's listen address, or "" while it is not yet known.
func (p *Proc) Addr() string {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.out.addr
}

// Done is closed once the child has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// State is how the child ended; nil while it runs.
func (p *Proc) State() *os.ProcessState {
	select {
	case <-p.done:
		return p.cmd.ProcessState
	default:
		return nil
	}
}

// WaitHTTP polls GET path (like "/healthz") every poll until it answers
// 200, and returns how long after the start that was. It fails if the
// child exits first or ctx ends.
func (p *Proc) WaitHTTP(ctx context.Context, path string, poll time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		if addr := p.Addr(); addr != "" {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
			if err != nil {
				return 0, err
			}
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(p.started), nil
				}
			}
		}
		select {
		case <-p.done:
			return 0, fmt.Errorf("exited while starting (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return 0, fmt.Errorf("%s did not answer 200: %w", path, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Signal sends sig to the child.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill SIGKILLs the child and returns once it is gone (or after timeout).
func (p *Proc) Kill(timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(timeout):
	}
}

// Stop asks the child to shut down (SIGTERM) and waits for it; after
// timeout it kills it and says so. It returns nil only for a clean exit.
func (p *Proc) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return fmt.Errorf("had already exited: %v", p.cmd.ProcessState)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill(timeout)
		return fmt.Errorf("did not stop within %s after SIGTERM", timeout)
	}
	if !p.cmd.ProcessState.Success() {
		return fmt.Errorf("stopped with %v", p.cmd.ProcessState)
	}
	return nil
}

// addrWriter passes the child's output on and reads the listen address
// from the "rolegate started" log line.
type addrWriter struct {
	next io.Writer

	mu      sync.Mutex
	addr    string
	partial []byte // the unfinished last line, while the address is unknown
}

func (w *addrWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	if w.addr == "" {
		w.partial = append(w.partial, b...)
		for {
			i := bytes.IndexByte(w.partial, '\n')
			if i < 0 {
				break
			}
			var l struct{ Msg, Addr string }
			if json.Unmarshal(w.partial[:i], &l) == nil && l.Msg == "rolegate started" && l.Addr != "" {
				w.addr, w.partial = l.Addr, nil
				break
			}
			w.partial = w.partial[i+1:]
		}
	}
	w.mu.Unlock()
	return w.next.Write(b)
}
