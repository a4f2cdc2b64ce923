package slackapp_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

const (
	botToken = "xoxb-socket-test-bot-0123456789"
	appToken = "xapp-1-socket-test-app-0123456789"
	// patience bounds every wait; the waits end on events, not on time.
	patience = 20 * time.Second
)

// logSink collects JSON log lines and signals each write.
type logSink struct {
	mu    sync.Mutex
	lines []map[string]any
	wrote chan struct{}
}

func newLogSink() *logSink { return &logSink{wrote: make(chan struct{})} }

func (l *logSink) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(p, &line); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	close(l.wrote)
	l.wrote = make(chan struct{})
	return len(p), nil
}

// find returns the lines at level whose message contains msg.
func (l *logSink) find(level, msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range l.lines {
		if line["level"] == level && strings.Contains(line["msg"].(string), msg) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, _ := json.MarshalIndent(l.lines, "", " ")
	return string(b)
}

// waitLog waits until at least n lines at level contain msg.
func (l *logSink) waitLog(t *testing.T, n int, level, msg string) []map[string]any {
	t.Helper()
	deadline := time.After(patience)
	for {
		l.mu.Lock()
		wrote := l.wrote
		l.mu.Unlock()
		if got := l.find(level, msg); len(got) >= n {
			return got
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("no %d %s lines %q; log:\n%s", n, level, msg, l)
		}
	}
}

type runner struct {
	*slackapp.SocketRunner
	logs *logSink
	done chan error
}

// startRunner runs a SocketRunner against apiURL with the given tokens.
func startRunner(t *testing.T, apiURL, bot, app string) *runner {
	t.Helper()
	return startRunnerWith(t, apiURL, bot, app, nil)
}

// startRunnerWith is startRunner with configure applied to the runner
// before it runs. The runner's App answers with the Slack client but has
// no Service: enough for help, the request modal and type-ahead.
func startRunnerWith(t *testing.T, apiURL, bot, app string, configure func(*slackapp.SocketRunner)) *runner {
	t.Helper()
	logs := newLogSink()
	api := slack.New(bot, slack.OptionAPIURL(apiURL), slack.OptionAppLevelToken(app))
	r := &runner{
		SocketRunner: &slackapp.SocketRunner{
			App:    &slackapp.App{Slack: api, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
			Client: socketmode.New(api),
		},
		logs: logs,
		done: make(chan error, 1),
	}
	if configure != nil {
		configure(r.SocketRunner)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { r.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(patience):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// waitStatus waits until cond holds for the runner's status.
func (r *runner) waitStatus(t *testing.T, what string, cond func(slackapp.SocketStatus) bool) slackapp.SocketStatus {
	t.Helper()
	deadline := time.After(patience)
	for {
		changed := r.StatusChanged()
		if st := r.Status(); cond(st) {
			return st
		}
		select {
		case <-changed:
		case err := <-r.done:
			r.done <- err
			if st := r.Status(); cond(st) {
				return st
			}
			t.Fatalf("Run returned %v before %s; status %q; log:\n%s", err, what, r.Status(), r.logs)
		case <-deadline:
			t.Fatalf("no %s; status %q; log:\n%s", what, r.Status(), r.logs)
		}
	}
}

func TestSocketConnectedNamesTheTeam(t *testing.T) {
	fake := slackfake.New(botToken)
	t.Cleanup(fake.Close)
	fake.SetAppToken(appToken)
	r := startRunner(t, fake.APIURL(), botToken, appToken)

	st := r.waitStatus(t, "a connection with the team known", func(st slackapp.SocketStatus) bool { return st.Ready() && st.TeamID != "" })
	if st.TeamID != slackfake.TeamID || st.TeamName != slackfake.TeamName {
		t.Fatalf("status team = %q %q", st.TeamName, st.TeamID)
	}
	if want := "socket mode connected to team " + slackfake.TeamName + " (" + slackfake.TeamID + ")"; st.String() != want {
		t.Fatalf("status %q, want %q", st, want)
	}
	line := r.logs.waitLog(t, 1, "INFO", "Socket Mode connected")[0]
	if line["team"] != slackfake.TeamName || line["team_id"] != slackfake.TeamID {
		t.Fatalf("connected line %v lacks the team", line)
	}
	if len(r.logs.find("WARN", "")) != 0 || len(r.logs.find("ERROR", "")) != 0 {
		t.Fatalf("warnings on a clean connection:\n%s", r.logs)
	}
}

// TestSocketRefusedAppTokenNamesSLACK_APP_TOKEN: invalid_auth alone does not
// say which of the two tokens is wrong.
func TestSocketRefusedAppTokenNamesSLACK_APP_TOKEN(t *testing.T) {
	tests := []struct {
		name, token, code string
	}{
		// slack-go gives up on this one itself.
		{"wrong app token", "xapp-1-not-the-apps-token-000000", "invalid_auth"},
		// slack-go would retry this one for ever.
		{"bot token as app token", botToken, "not_allowed_token_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := slackfake.New(botToken)
			t.Cleanup(fake.Close)
			fake.SetAppToken(appToken)
			r := startRunner(t, fake.APIURL(), botToken, tt.token)

			var err error
			select {
			case err = <-r.done:
				r.done <- err
			case <-time.After(patience):
				t.Fatalf("Run did not stop on a refused app token; log:\n%s", r.logs)
			}
			want := "Slack refused SLACK_APP_TOKEN (" + tt.code + ")"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run returned %v, want %q", err, want)
			}
			if lines := r.logs.find("ERROR", want); len(lines) != 1 {
				t.Fatalf("want one Error line %q; log:\n%s", want, r.logs)
			}
			st := r.Status()
			if st.Ready() || !strings.HasPrefix(st.String(), "socket mode stopped: "+want) {
				t.Fatalf("status %q", st)
			}
			if strings.Contains(r.logs.String(), tt.token) {
				t.Fatal("the log shows the token")
			}
		})
	}
}

func TestSocketRefusedBotTokenNamesSLACK_BOT_TOKEN(t *testing.T) {
	fake := slackfake.New(botToken)
	t.Cleanup(fake.Close)
	fake.SetAppToken(appToken)
	fake.InvalidateToken() // the bot token only: Socket Mode still connects
	r := startRunner(t, fake.APIURL(), botToken, appToken)

	st := r.waitStatus(t, "a connection and the refusal", func(st slackapp.SocketStatus) bool { return st.Connected && st.Problem != "" })
	want := "Slack refused SLACK_BOT_TOKEN (invalid_auth)"
	if st.Ready() || !strings.Contains(st.String(), want) || strings.Contains(st.String(), "SLACK_APP_TOKEN") {
		t.Fatalf("status %q, want not ready naming SLACK_BOT_TOKEN only", st)
	}
	r.logs.waitLog(t, 1, "ERROR", want)
}

// TestSocketUnreachableWarnsWithRetryDelay: every failed attempt is a Warn
// with its cause and slack-go's next delay, from the first one on.
func TestSocketUnreachableWarnsWithRetryDelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/api/"
	ln.Close() // nothing listens there now: connection refused

	r := startRunner(t, closed, botToken, appToken)
	lines := r.logs.waitLog(t, 3, "WARN", "Socket Mode connection attempt failed")
	var delays []time.Duration
	for i, line := range lines[:3] {
		if !strings.Contains(line["err"].(string), "connection refused") {
			t.Errorf("line %d: err %q lacks the cause", i, line["err"])
		}
		if line["attempt"] != float64(i+1) {
			t.Errorf("line %d: attempt %v", i, line["attempt"])
		}
		d, err := time.ParseDuration(line["retry_in"].(string))
		if err != nil || d <= 0 {
			t.Fatalf("line %d: retry_in %q", i, line["retry_in"])
		}
		delays = append(delays, d)
	}
	if delays[1] <= delays[0] || delays[2] <= delays[1] {
		t.Errorf("retry delays %v do not back off", delays)
	}

	st := r.waitStatus(t, "a status waiting to retry", func(st slackapp.SocketStatus) bool { return st.RetryIn > 0 })
	if st.Ready() || !strings.HasPrefix(st.String(), "socket mode not connected: ") ||
		!strings.Contains(st.String(), "connection refused") || !strings.Contains(st.String(), "(next attempt in ") {
		t.Fatalf("status %q", st)
	}
}

func TestSocketStatusString(t *testing.T) {
	tests := []struct {
		st   slackapp.SocketStatus
		want string
	}{
		{slackapp.SocketStatus{}, "socket mode not started"},
		{slackapp.SocketStatus{Started: true}, "socket mode connecting"},
		{slackapp.SocketStatus{Started: true, Connected: true}, "socket mode connected (team not known yet)"},
		{slackapp.SocketStatus{Started: true, Connected: true, TeamID: "T1", TeamName: "Acme"}, "socket mode connected to team Acme (T1)"},
		{slackapp.SocketStatus{Started: true, Attempt: 3, LastError: "boom", RetryIn: 3600 * time.Millisecond}, "socket mode not connected: boom (next attempt in 4s)"},
		{slackapp.SocketStatus{Started: true, Attempt: 1, LastError: "boom", RetryIn: 96 * time.Millisecond}, "socket mode not connected: boom (next attempt in 100ms)"},
		{slackapp.SocketStatus{Started: true, Attempt: 2, LastError: "boom"}, "socket mode not connected: boom (attempt 3 under way)"},
		{slackapp.SocketStatus{Started: true, Problem: "Slack refused SLACK_APP_TOKEN (invalid_auth)"}, "socket mode stopped: Slack refused SLACK_APP_TOKEN (invalid_auth)"},
		{slackapp.SocketStatus{Started: true, Connected: true, Problem: "Slack refused SLACK_BOT_TOKEN (invalid_auth)"}, "socket mode connected, but Slack refused SLACK_BOT_TOKEN (invalid_auth)"},
	}
	for _, tt := range tests {
		if got := tt.st.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.st, got, tt.want)
		}
		if tt.st.Ready() != (tt.st.Connected && tt.st.Problem == "") {
			t.Errorf("%+v: Ready() = %v", tt.st, tt.st.Ready())
		}
	}
}
