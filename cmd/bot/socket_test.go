package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// newSocketBot runs the bot in Socket Mode: no signing secret, no public URL.
func newSocketBot(t *testing.T) *bot {
	t.Helper()
	b := newBot(t, map[string]string{"SLACK_APP_TOKEN": testAppToken, "SLACK_SIGNING_SECRET": ""})
	// The bot is ready once the WebSocket upgrade answers; the fake lists
	// the connection a moment later. A DropConnections in that moment
	// finds nothing to drop, and the bot stays connected (seen once under
	// a loaded CI run): wait until the fake lists it too.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := b.slack.WaitFor(ctx, func(s *slackfake.Server) bool { return s.Connected() > 0 }); err != nil {
		t.Fatalf("the fake never listed the bot's connection: %v", err)
	}
	return b
}

// socketCommand sends a slash command envelope and returns the ack's reply.
func (b *bot) socketCommand(user, text string) slackapp.Reply {
	b.t.Helper()
	form := b.commandForm(user, testChannel, text)
	env, err := b.slack.SendSlashCommand(form)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	payload, err := b.slack.WaitAck(ctx, env)
	if err != nil {
		b.t.Fatalf("no ack for the command envelope: %v\n%s", err, b.logs.String())
	}
	var r slackapp.Reply
	if err := json.Unmarshal(payload, &r); err != nil {
		b.t.Fatalf("ack payload %s: %v", payload, err)
	}
	return r
}

// socketClick sends a button click envelope and waits for its ack.
func (b *bot) socketClick(user, actionID string, id uint64) {
	b.t.Helper()
	msg := b.approvalMessage(id)
	env, err := b.slack.SendInteraction(clickPayload(user, testChannel, actionID, strconv.FormatUint(id, 10), msg.TS, b.slack.NewResponseURLFor(testChannel, user, msg.TS)))
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := b.slack.WaitAck(ctx, env); err != nil {
		b.t.Fatalf("no ack for the click envelope: %v", err)
	}
}

func TestSocketModeFlow(t *testing.T) {
	b := newSocketBot(t)
	resp, err := http.Post("http://"+b.addr+"/slack/commands", "application/x-www-form-urlencoded", strings.NewReader("x=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("Socket Mode serves /slack/commands: %d", resp.StatusCode)
	}

	reply := b.socketCommand(requester, defaultTarget+" over the socket")
	if reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "Request #1 is being checked") {
		t.Fatalf("ack reply = %+v", reply)
	}
	if help := b.socketCommand(requester, "help"); !strings.Contains(help.Text, "<project_id>") {
		t.Fatalf("help over the socket = %+v", help)
	}
	b.socketClick(requester, slackapp.ActionApprove, 1)
	b.waitFor("the requester's refusal notice", func() bool { return len(b.ephemeralsTo(requester)) == 1 })

	b.slack.DropConnections() // a network drop mid-flow
	b.socketClick(approverAna, slackapp.ActionApprove, 1)
	b.waitState(1, approvals.StateApplied)
	b.resultMessage(1)
	if n := b.openai.AssignPOSTs(); n != 1 {
		t.Fatalf("%d POSTs", n)
	}
	for id, n := range b.slack.Acks() {
		if n != 1 {
			t.Errorf("envelope %s acked %d times", id, n)
		}
	}
}

func TestSocketModeRepeatedCommandIsStoredOnce(t *testing.T) {
	b := newSocketBot(t)
	form := b.commandForm(requester, testChannel, defaultTarget+" sent twice")
	// The same command (same trigger_id) arriving in two envelopes, as after
	// a redelivery on a new connection, makes one request.
	for range 2 {
		payload := map[string]string{}
		for k := range form {
			payload[k] = form.Get(k)
		}
		if _, err := b.slack.SendEnvelope("slash_commands", payload, true); err != nil {
			t.Fatal(err)
		}
	}
	b.approvalMessage(1)
	b.waitFor("both envelopes acked", func() bool { return len(b.slack.Acks()) == 2 })
	if n := b.storedCount(); n != 1 {
		t.Fatalf("%d requests from one command delivered twice", n)
	}
}

// TestSocketModeNotReadyWhileDisconnected: /readyz says 503 with the cause
// while the connection is down, /healthz stays 200, and the bot serves again
// once Slack answers. The reconnection is held at the fake until the test has
// seen /readyz say so, so no timing decides the outcome, however loaded the
// machine.
func TestSocketModeNotReadyWhileDisconnected(t *testing.T) {
	b := newSocketBot(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(open) // before the fake's Close, which waits for held calls
	var opens atomic.Int32
	b.slack.OnCall(func(method string, _ url.Values) {
		// The first reconnection attempt fails with a 503 (queued below);
		// the second waits here until the test lets it through.
		if method == "apps.connections.open" && opens.Add(1) >= 2 {
			<-release
		}
	})
	b.slack.ServerErrorNext("apps.connections.open", 1, http.StatusServiceUnavailable)
	b.slack.DropConnections()

	body := waitReadyz(t, b.addr, http.StatusServiceUnavailable, "503 Service Unavailable")
	if !strings.HasPrefix(body, "not ready: socket mode not connected: ") {
		t.Fatalf("/readyz body %q", body)
	}
	if resp, err := http.Get("http://" + b.addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz while disconnected: %v %v", resp, err)
	}
	if warn := logLines(b.logs.String(), "WARN", "Socket Mode connection attempt failed"); len(warn) == 0 || warn[0]["retry_in"] == nil {
		t.Fatalf("no Warn with the retry delay for the failed attempt:\n%s", b.logs.String())
	}

	open()
	b.waitReady() // reconnects once Slack answers again
	reply := b.socketCommand(requester, defaultTarget+" after reconnect")
	if !strings.Contains(reply.Text, fmt.Sprintf("Request #%d", 1)) {
		t.Fatalf("reply = %+v", reply)
	}
}

// readyzPatience bounds the polling of /readyz; the polls end on what it
// says, not on time.
const readyzPatience = 30 * time.Second

// readyz returns /readyz's status and body.
func readyz(addr string) (int, string, error) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}

// waitReadyz polls /readyz until it answers code with a body containing
// want, and returns the body.
func waitReadyz(t *testing.T, addr string, code int, want string) string {
	t.Helper()
	deadline := time.Now().Add(readyzPatience)
	var last string
	for time.Now().Before(deadline) {
		status, body, err := readyz(addr)
		if err == nil && status == code && strings.Contains(body, want) {
			return body
		}
		last = fmt.Sprintf("%d %q %v", status, body, err)
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("/readyz never answered %d with %q; last: %s", code, want, last)
	return ""
}

// logLines returns the JSON log lines at level whose message contains msg.
func logLines(logs, level, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) != nil {
			continue
		}
		if m, _ := line["msg"].(string); line["level"] == level && strings.Contains(m, msg) {
			out = append(out, line)
		}
	}
	return out
}

// runUnready runs the bot in Socket Mode against sl without waiting for it
// to be ready, for the cases where it never is. done receives run's result.
func runUnready(t *testing.T, sl *slackfake.Server, extra map[string]string) (addr string, logs *syncBuffer, done chan error) {
	t.Helper()
	oa := openaitest.NewServer(testAdminKey)
	t.Cleanup(oa.Close)
	env := testEnv(t, sl, oa, map[string]string{"SLACK_APP_TOKEN": testAppToken, "SLACK_SIGNING_SECRET": ""})
	for k, v := range extra {
		env[k] = v
	}
	addr = freeAddr(t)
	env["ROLEGATE_ADDR"] = addr
	logs = &syncBuffer{}
	done = make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- run(ctx, nil, envFrom(env), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			done <- err
		case <-time.After(readyzPatience):
			t.Errorf("bot did not stop")
		}
		for _, s := range []string{testBotToken, testAppToken, testSecret, testAdminKey} {
			if strings.Contains(logs.String(), s) {
				t.Errorf("a secret appears in the logs")
			}
		}
	})
	return addr, logs, done
}

func TestSocketModeReadyzNamesTheTeam(t *testing.T) {
	b := newSocketBot(t)
	want := "ready: socket mode connected to team " + slackfake.TeamName + " (" + slackfake.TeamID + ")"
	if body := waitReadyz(t, b.addr, http.StatusOK, slackfake.TeamID); body != want {
		t.Fatalf("/readyz body %q, want %q", body, want)
	}
	b.waitFor("the connected line", func() bool { return len(logLines(b.logs.String(), "INFO", "Socket Mode connected")) > 0 })
	line := logLines(b.logs.String(), "INFO", "Socket Mode connected")[0]
	if line["team"] != slackfake.TeamName || line["team_id"] != slackfake.TeamID {
		t.Fatalf("connected line %v lacks the team", line)
	}
}

// TestSocketModeRefusedAppTokenNamesIt: Slack's invalid_auth for the
// app-level token stops the bot with SLACK_APP_TOKEN named, not a bare code.
func TestSocketModeRefusedAppTokenNamesIt(t *testing.T) {
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	sl.SetAppToken("xapp-1-the-token-slack-knows-000000")
	_, logs, done := runUnready(t, sl, nil)
	var err error
	select {
	case err = <-done:
		done <- err
	case <-time.After(readyzPatience):
		t.Fatalf("bot kept running with a refused app token:\n%s", logs.String())
	}
	want := "Slack refused SLACK_APP_TOKEN (invalid_auth)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("run returned %v, want it to say %q", err, want)
	}
	if len(logLines(logs.String(), "ERROR", want)) == 0 {
		t.Fatalf("no Error line %q:\n%s", want, logs.String())
	}
}

func TestSocketModeRefusedBotTokenNotReady(t *testing.T) {
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	sl.SetAppToken(testAppToken)
	sl.InvalidateToken()
	addr, logs, _ := runUnready(t, sl, nil)
	body := waitReadyz(t, addr, http.StatusServiceUnavailable, "SLACK_BOT_TOKEN")
	if !strings.Contains(body, "Slack refused SLACK_BOT_TOKEN (invalid_auth)") || strings.Contains(body, "SLACK_APP_TOKEN") {
		t.Fatalf("/readyz body %q", body)
	}
	if len(logLines(logs.String(), "ERROR", "Slack refused SLACK_BOT_TOKEN (invalid_auth)")) == 0 {
		t.Fatalf("no Error line naming SLACK_BOT_TOKEN:\n%s", logs.String())
	}
}

// TestSocketModeUnreachableSlackSaysSo: with nothing listening at
// SLACK_API_URL, each attempt is a Warn with the cause and the next delay,
// and /readyz says the same.
func TestSocketModeUnreachableSlackSaysSo(t *testing.T) {
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/api/"
	ln.Close()
	addr, logs, _ := runUnready(t, sl, map[string]string{"SLACK_API_URL": closed})

	body := waitReadyz(t, addr, http.StatusServiceUnavailable, "(next attempt in ")
	if !strings.HasPrefix(body, "not ready: socket mode not connected: ") || !strings.Contains(body, "connection refused") {
		t.Fatalf("/readyz body %q", body)
	}
	warns := logLines(logs.String(), "WARN", "Socket Mode connection attempt failed")
	if len(warns) == 0 {
		t.Fatalf("no Warn per failed attempt:\n%s", logs.String())
	}
	for _, w := range warns {
		if d, err := time.ParseDuration(fmt.Sprint(w["retry_in"])); err != nil || d <= 0 || !strings.Contains(fmt.Sprint(w["err"]), "connection refused") {
			t.Errorf("Warn line %v lacks the cause or the retry delay", w)
		}
	}
}
