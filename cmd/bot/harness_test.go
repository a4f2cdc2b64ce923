package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
	"github.com/rolegate/rolegate/internal/testbin"
)

// Secrets the end-to-end tests configure; no output may ever contain them.
const (
	testBotToken  = "xoxb-e2e-bot-token-0123456789"
	testAppToken  = "xapp-1-e2e-app-token-0123456789"
	testSecret    = "e2e-signing-secret-0123456789abcdef"
	testAdminKey  = "sk-admin-e2e-key-0123456789"
	testChannel   = slackfake.DefaultChannel
	requester     = "U0REQ"
	approverAna   = "U0ANA"
	approverBob   = "U0BOB"
	stranger      = "U0STRANGER"
	waitTimeout   = 30 * time.Second // generous: CI machines are shared and 2-core
	defaultTarget = "proj_abc group_01 role_01"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bot is rolegate running in-process, wired exactly as `bot` runs it, against
// a fake Slack and a fake OpenAI.
type bot struct {
	t      *testing.T
	slack  *slackfake.Server
	openai *openaitest.Server
	env    map[string]string
	addr   string
	logs   *syncBuffer

	cancel context.CancelFunc
	done   chan error
	seq    atomic.Int64
}

// newBot starts the fakes and the bot. extra overrides the environment.
func newBot(t *testing.T, extra map[string]string) *bot {
	t.Helper()
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	oa := openaitest.NewServer(testAdminKey)
	t.Cleanup(oa.Close)
	if tok := extra["SLACK_APP_TOKEN"]; tok != "" {
		sl.SetAppToken(tok)
	}
	b := &bot{t: t, slack: sl, openai: oa, logs: &syncBuffer{}, env: testEnv(t, sl, oa, extra)}
	b.start()
	t.Cleanup(func() {
		b.stop()
		for _, s := range []string{testBotToken, testAppToken, testSecret, testAdminKey} {
			if strings.Contains(b.logs.String(), s) {
				t.Errorf("a secret appears in the logs")
			}
		}
		b.checkSlackHasNoSecrets()
	})
	return b
}

// testEnv is the environment the tests run the bot with, against the fakes,
// with extra's overrides.
func testEnv(t *testing.T, sl *slackfake.Server, oa *openaitest.Server, extra map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{
		"SLACK_BOT_TOKEN":      testBotToken,
		"SLACK_SIGNING_SECRET": testSecret,
		"SLACK_API_URL":        sl.APIURL(),
		"OPENAI_ADMIN_KEY":     testAdminKey,
		"OPENAI_BASE_URL":      oa.URL(),
		"ROLEGATE_DB":          filepath.Join(t.TempDir(), "rolegate.db"),
		"ROLEGATE_APPROVERS":   approverAna + "," + approverBob + "," + requester,
		"ROLEGATE_LOG_LEVEL":   "debug",
		// The tests fire bursts from one requester; the flood limit has
		// its own test.
		"ROLEGATE_MAX_OPEN_PER_REQUESTER": "1000",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the bot and waits until /readyz answers 200.
func (b *bot) start() {
	b.t.Helper()
	b.addr = freeAddr(b.t)
	b.env["ROLEGATE_ADDR"] = b.addr
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan error, 1)
	env := make(map[string]string, len(b.env))
	for k, v := range b.env {
		env[k] = v
	}
	go func() { b.done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, b.logs) }()
	b.waitReady()
}

func (b *bot) waitReady() {
	b.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-b.done:
			b.t.Fatalf("bot stopped while starting: %v\n%s", err, b.logs.String())
		default:
		}
		resp, err := http.Get("http://" + b.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.t.Fatalf("bot not ready after %s\n%s", waitTimeout, b.logs.String())
}

// stop shuts the bot down gracefully and waits for it.
func (b *bot) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	select {
	case err := <-b.done:
		if err != nil {
			b.t.Errorf("bot stopped with %v", err)
		}
	case <-time.After(waitTimeout):
		b.t.Errorf("bot did not stop within %s", waitTimeout)
	}
	b.cancel = nil
}

func (b *bot) restart() {
	b.t.Helper()
	b.stop()
	b.start()
}

// driver is Slack's side of the bot's HTTP endpoints, signing with the
// bot's secret at the current time.
func (b *bot) driver() *slackfake.Driver {
	return &slackfake.Driver{BaseURL: "http://" + b.addr, Secret: testSecret}
}

// post sends body to path signed as Slack signs it, at time at.
func (b *bot) post(path, body string, at time.Time) slackfake.Reply {
	b.t.Helper()
	d := b.driver()
	d.Now = func() time.Time { return at }
	reply, err := d.Post(context.Background(), path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	return reply
}

// commandForm is a slash command exactly as Slack posts it.
func (b *bot) commandForm(user, channel, text string) url.Values {
	n := b.seq.Add(1)
	return slackfake.CommandForm(slackfake.Command{
		Channel: channel, User: user, Text: text,
		ResponseURL: b.slack.NewResponseURLFor(channel, user, ""),
		TriggerID:   fmt.Sprintf("%d.%d.trigger%d", 1000+n, 2000+n, n),
	})
}

// command runs a slash command and returns Slack's view of the answer.
func (b *bot) command(user, text string) (int, slackapp.Reply) {
	b.t.Helper()
	return b.commandForm2(b.commandForm(user, testChannel, text))
}

func (b *bot) commandForm2(form url.Values) (int, slackapp.Reply) {
	b.t.Helper()
	resp, err := b.driver().Command(context.Background(), form)
	if err != nil {
		b.t.Fatal(err)
	}
	var r slackapp.Reply
	if resp.Status == http.StatusOK {
		if err := json.Unmarshal(resp.Body, &r); err != nil {
			b.t.Fatalf("command answer is not JSON: %v", err)
		}
	}
	return resp.Status, r
}

// request creates a request and returns its id, failing the test otherwise.
func (b *bot) request(user, text string) uint64 {
	b.t.Helper()
	status, reply := b.command(user, text)
	if status != http.StatusOK || reply.ResponseType != "ephemeral" {
		b.t.Fatalf("command answered %d %+v", status, reply)
	}
	id, ok := requestID(reply.Text)
	if !ok {
		b.t.Fatalf("unexpected answer %q", reply.Text)
	}
	return id
}

// requestID reads the request number from the private answer to a
// request: "Request #N is being checked…", after the dry-run banner if
// there is one.
func requestID(text string) (uint64, bool) {
	text = strings.TrimPrefix(text, slackapp.DryRunBanner+"\n")
	var id uint64
	_, err := fmt.Sscanf(text, "Request #%d is being checked", &id)
	return id, err == nil
}

// clickPayload is a block_actions payload as Slack sends it for a button on
// the approval message.
func clickPayload(user, channel, actionID, value, messageTS, responseURL string) *slack.InteractionCallback {
	return slackfake.ClickPayload(slackfake.Click{
		User: user, Channel: channel, ActionID: actionID, BlockID: "rolegate_decision",
		Value: value, MessageTS: messageTS, ResponseURL: responseURL,
	})
}

// click presses a button on request id's approval message as user.
func (b *bot) click(user, actionID string, id uint64) int {
	b.t.Helper()
	msg := b.approvalMessage(id)
	cb := clickPayload(user, testChannel, actionID, strconv.FormatUint(id, 10), msg.TS, b.slack.NewResponseURLFor(testChannel, user, msg.TS))
	resp, err := b.driver().Interaction(context.Background(), cb)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.Status
}

// waitFor polls cond until it holds or the test's patience runs out.
func (b *bot) waitFor(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s\nlogs:\n%s", what, b.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// approvalMessage waits for request id's approval message in the channel.
func (b *bot) approvalMessage(id uint64) slackfake.Message {
	b.t.Helper()
	var found slackfake.Message
	header := fmt.Sprintf("Role assignment request #%d\n", id) // the header block is a line of its own
	b.waitFor("the approval message of request "+strconv.FormatUint(id, 10), func() bool {
		for _, m := range b.slack.Messages(testChannel) {
			if m.ThreadTS == "" && strings.Contains(m.VisibleText(), header) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// resultMessage waits for the result reply in request id's thread.
func (b *bot) resultMessage(id uint64) slackfake.Message {
	b.t.Helper()
	parent := b.approvalMessage(id)
	var found slackfake.Message
	b.waitFor("the result of request "+strconv.FormatUint(id, 10), func() bool {
		for _, m := range b.slack.Messages(testChannel) {
			if m.ThreadTS == parent.TS {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// stored reads request id from a snapshot of the bot's database.
func (b *bot) stored(id uint64) approvals.Request {
	b.t.Helper()
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		b.t.Fatal(err)
	}
	defer cleanup()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// outboxLen counts the jobs (OpenAI calls, Slack messages) not yet done.
func (b *bot) outboxLen() int {
	b.t.Helper()
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		b.t.Fatal(err)
	}
	defer cleanup()
	n, err := pendingJobs(s, context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return n
}

// storedCount counts the requests in the bot's database.
func (b *bot) storedCount() int {
	b.t.Helper()
	s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
	if err != nil {
		b.t.Fatal(err)
	}
	defer cleanup()
	rs, err := s.List(context.Background(), approvals.ListOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	return len(rs)
}

func (b *bot) waitState(id uint64, want approvals.State) approvals.Request {
	b.t.Helper()
	var r approvals.Request
	b.waitFor(fmt.Sprintf("request %d to be %s", id, want), func() bool {
		r = b.stored(id)
		return r.State == want
	})
	return r
}

// notices returns every private notice about clicks and commands, leaving
// out the follow-ups that tell requesters their requests passed the checks.
func (b *bot) notices() []slackfake.Ephemeral {
	var out []slackfake.Ephemeral
	for _, e := range b.slack.Ephemerals() {
		if !strings.HasPrefix(e.Text, ":hourglass_flowing_sand: Request #") {
			out = append(out, e)
		}
	}
	return out
}

// ephemeralsTo returns the private notices user got about clicks and
// commands, leaving out the private follow-up that tells a requester their
// request passed its checks.
func (b *bot) ephemeralsTo(user string) []slackfake.Ephemeral {
	var out []slackfake.Ephemeral
	for _, e := range b.slack.Ephemerals() {
		if e.User == user && !strings.HasPrefix(e.Text, ":hourglass_flowing_sand: Request #") {
			out = append(out, e)
		}
	}
	return out
}

func (b *bot) checkSlackHasNoSecrets() {
	b.t.Helper()
	var all []string
	for _, m := range b.slack.Messages(testChannel) {
		for _, v := range m.History {
			all = append(all, string(v.BlocksJSON), v.Text)
		}
	}
	for _, e := range b.slack.Ephemerals() {
		all = append(all, e.Text, string(e.BlocksJSON))
	}
	text := strings.Join(all, "\n")
	for _, s := range []string{testBotToken, testAppToken, testSecret, testAdminKey} {
		if strings.Contains(text, s) {
			b.t.Errorf("a secret was posted to Slack")
		}
	}
}

func hasButtons(m slackfake.Message) bool {
	return strings.Contains(string(m.BlocksJSON), `"type":"button"`)
}

func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// pendingJobs is how many jobs s's outbox holds.
func pendingJobs(s approvals.Store, ctx context.Context) (int, error) {
	c, err := s.Counts(ctx)
	return c.Jobs, err
}

// TestMain removes the binaries the tests built (testbin.BuildOnce) once
// they have all run.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveBuilt()
	os.Exit(code)
}
