package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rolegate/rolegate/internal/testbin"
)

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
	var o testbin.BuildOptions
	if profiling {
		src := filepath.Join(dir, "loadgen_pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return "", err
		}
		o.Overlay = map[string]string{"zz_loadgen_pprof.go": src}
	}
	return testbin.Build(ctx, dir, o)
}

// botProc is a running bot, its log going to a file.
type botProc struct {
	*testbin.Proc
	addr    string
	logPath string
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

// startBot starts bin with env (plus ROLEGATE_ADDR on a free loopback port,
// chosen here so it is known whatever log format env asks for) and its log
// going to logPath. The caller stops it.
func startBot(bin string, env map[string]string, logPath string) (*botProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	full := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "ROLEGATE_ADDR": addr}
	// Runtime knobs pass through, so a run can try GOGC, GOMEMLIMIT or
	// GODEBUG without rebuilding.
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			full[k] = v
		}
	}
	for k, v := range env {
		full[k] = v
	}
	p, err := testbin.Start(bin, testbin.Options{Env: full, Output: logf})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start bot: %w", err)
	}
	go func() { <-p.Done(); logf.Close() }() // the output is copied until the exit
	return &botProc{Proc: p, addr: addr, logPath: logPath}, nil
}

// waitHealthy polls /healthz until it answers 200 and returns the time since
// the process was started.
func (b *botProc) waitHealthy(ctx context.Context, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	d, err := b.WaitHTTP(ctx, "/healthz", 500*time.Microsecond)
	if err != nil {
		return 0, fmt.Errorf("bot not healthy: %w; log:\n%s", err, b.logTail())
	}
	return d, nil
}

// stop asks the bot to shut down (SIGTERM) and waits for it, killing it
// after 15 seconds.
func (b *botProc) stop() error {
	if err := b.Stop(15 * time.Second); err != nil {
		return fmt.Errorf("bot: %w", err)
	}
	return nil
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

func (b *botProc) mem() (memStat, error) { return readMem(b.Pid()) }

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
