package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// botModule is the package of the real bot binary.
const botModule = "github.com/rolegate/rolegate/cmd/bot"

// pprofOverlay is added to package main of a profiling build of the bot
// (go build -overlay), so the real sources stay untouched: it serves
// net/http/pprof on LOADGEN_PPROF_ADDR when that is set.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("LOADGEN_PPROF_ADDR"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
`

// buildBot builds the bot into dir and returns the binary's path. With
// profiling, the binary also serves pprof (see pprofOverlay).
func buildBot(ctx context.Context, dir string, profiling bool) (string, error) {
	bin := filepath.Join(dir, "rolegate-bot")
	args := []string{"build", "-o", bin}
	if profiling {
		out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", botModule).Output()
		if err != nil {
			return "", fmt.Errorf("find %s: %w", botModule, err)
		}
		src := filepath.Join(dir, "loadgen_pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return "", err
		}
		overlay := filepath.Join(dir, "overlay.json")
		target := filepath.Join(strings.TrimSpace(string(out)), "zz_loadgen_pprof.go")
		js := fmt.Sprintf(`{"Replace":{%q:%q}}`, target, src)
		if err := os.WriteFile(overlay, []byte(js), 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, botModule)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", botModule, err, out)
	}
	return bin, nil
}

// botProc is a running bot.
type botProc struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	done    chan error
	started time.Time
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startBot starts bin with env (plus ROLEGATE_ADDR on a free loopback port)
// and its log going to logPath. The caller stops it.
func startBot(bin string, env map[string]string, logPath string) (*botProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "ROLEGATE_ADDR=" + addr}
	// Runtime knobs pass through, so a run can try GOGC, GOMEMLIMIT or
	// GODEBUG without rebuilding.
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	b := &botProc{cmd: cmd, addr: addr, logPath: logPath, done: make(chan error, 1)}
	b.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bot: %w", err)
	}
	go func() { b.done <- cmd.Wait() }()
	return b, nil
}

// waitHealthy polls /healthz until it answers 200 and returns the time since
// the process was started.
func (b *botProc) waitHealthy(ctx context.Context, limit time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-b.done:
			b.done <- err
			return 0, fmt.Errorf("bot exited while starting (%v); log:\n%s", err, b.logTail())
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		resp, err := client.Get("http://" + b.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(b.started), nil
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	return 0, fmt.Errorf("bot not healthy after %s; log:\n%s", limit, b.logTail())
}

// stop asks the bot to shut down (SIGTERM) and waits for it, killing it
// after 15 seconds.
func (b *botProc) stop() error {
	select {
	case err := <-b.done:
		b.done <- err
		return fmt.Errorf("bot had already exited: %v", err)
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.done:
		b.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		err := <-b.done
		b.done <- err
		return fmt.Errorf("bot did not stop within 15s after SIGTERM")
	}
}

func (b *botProc) logTail() string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// memStat is a process's memory, in bytes, from /proc/<pid>/status.
type memStat struct {
	RSS, HWM, Anon, File int64
}

func readMem(pid int) (memStat, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStat{}, err
	}
	defer f.Close()
	var m memStat
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.HWM, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) == 3 && parts[2] == "kB" {
			if p, ok := fields[parts[0]]; ok {
				kb, _ := strconv.ParseInt(parts[1], 10, 64)
				*p = kb * 1024
			}
		}
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, sc.Err()
}

func (b *botProc) mem() (memStat, error) { return readMem(b.cmd.Process.Pid) }

// cpuTime returns the user+system CPU time pid has used, from
// /proc/<pid>/stat (clock ticks of 1/100 s, Linux's USER_HZ).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	s := string(data)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseInt(rest[11], 10, 64)
	stime, _ := strconv.ParseInt(rest[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
