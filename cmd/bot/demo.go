package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/blockview"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

const demoHelp = `Usage: bot demo [--html DIR]

Shows rolegate's whole flow on this machine, with nothing to set up: it
starts a fake Slack and a fake OpenAI Admin API on 127.0.0.1, runs the real
bot against them (the same wiring as ` + "`bot`" + `, with a database in a temporary
directory), and plays two people in the channel #access-requests:

  1. the fake OpenAI holds the project "Support Project", the group
     "Support Team" and the role "Key Manager"
  2. @ana asks: /assign-role "Support Project" "Support Team" "Key Manager" …
  3. rolegate checks the request at OpenAI and posts the approval message
  4. @ana tries to approve her own request and is refused
  5. @bob approves; rolegate assigns the role and posts the summary
  6. a time-bound grant ends
  7. bot audit verify checks the audit chain (skipped until this build has it)

Every message Slack would show is printed as text, one line per block. The
environment is not read: the demo configures the bot itself and never
reaches Slack or OpenAI. It exits 0 when the flow completed, and removes the
temporary directory; nothing is left behind.

  --html DIR   also write each message as a page styled like Slack
               (DIR/approval.html, DIR/summary.html, …) and DIR/pictures.sha256,
               the hash of the blocks behind README's pictures. To regenerate
               docs/*.png and docs/pictures.sha256: scripts/pictures.sh
`

// Who and where the demo plays. Ana is an approver too, to show that
// nobody approves their own request.
const (
	demoRequester = "U0DEMOANA"
	demoApprover  = "U0DEMOBOB"
	demoChannel   = slackfake.DefaultChannel
	demoProject   = "proj_8r2KxT4vLm9Qa1Zc"
	demoGroup     = "group_01HZX4W9K2QF7M3N"
	demoOnCall    = "group_01HZX52T6PRVJ8WD"
	demoRole      = "role_01HZX5B7D2C8E4FG"
	// demoWait bounds each wait for the bot; the flow takes well under a
	// second, so reaching it means something is broken.
	demoWait = 30 * time.Second
)

// demoDirectory names the demo's people and channel in printed messages.
var demoDirectory = blockview.Directory{
	Users:    map[string]string{demoRequester: "ana", demoApprover: "bob", slackfake.BotUserID: "rolegate"},
	Channels: map[string]string{demoChannel: "access-requests"},
}

// pictureNames are the messages README shows as pictures (docs/<name>.png),
// in the order pictures.sha256 lists them. A name the demo did not produce
// (revocation, before revocations exist) is left out of the hash file.
var pictureNames = []string{"approval", "summary", "revocation"}

// demoStep is one step of the demo. Steps run in order; to show a new
// feature, add a step. A step that needs a feature this build lacks
// detects that and returns a skip, so the demo still runs to the end.
type demoStep struct {
	Heading string
	Run     func(d *demo, ctx context.Context) error
}

// skip is returned by a step whose feature is not in this build; note is
// printed as one line.
type skip struct{ note string }

func (s skip) Error() string { return "skipped: " + s.note }

// demoSteps is the demo's script.
func demoSteps() []demoStep {
	return []demoStep{
		{"The fake OpenAI organization", (*demo).showOrganization},
		{"@ana asks for a role, by name", (*demo).askByName},
		{"rolegate checks the request at OpenAI and asks the approvers", (*demo).waitForApprovers},
		{"@ana tries to approve her own request", (*demo).selfApproval},
		{"@bob approves: rolegate assigns the role and posts the summary", (*demo).approve},
		{"A time-bound grant ends", (*demo).timeBoundGrant},
		{"bot audit verify", (*demo).auditVerify},
	}
}

// demo is one run: the fakes, the bot, and what has been printed so far.
type demo struct {
	out    io.Writer
	slack  *slackfake.Server
	openai *openaitest.Server
	driver *slackfake.Driver
	env    map[string]string
	logs   *lockedBuffer
	stop   func() error // stops the bot; idempotent

	requestID uint64
	shown     map[string]int // message key → versions printed
	ephemeral int            // ephemerals printed
	pictures  map[string]picture
}

// picture is a message kept for --html and the picture hashes.
type picture struct {
	msg    blockview.Message
	blocks json.RawMessage
}

// runDemo is `bot demo`.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	htmlDir, err := parseDemoArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "rolegate: %v\n\n%s", err, demoHelp)
		return exitError{err.Error()}
	}
	d, err := startDemo(ctx, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "rolegate demo: %v\n", err)
		return exitError{err.Error()}
	}
	err = d.play(ctx)
	if err == nil && htmlDir != "" {
		err = d.writeHTML(htmlDir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "rolegate demo failed: %v\nThe bot's log:\n%s", err, d.logs.String())
		return exitError{err.Error()}
	}
	return nil
}

func parseDemoArgs(args []string) (htmlDir string, err error) {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--html" || a == "-html":
			if i+1 >= len(args) {
				return "", errors.New("--html needs a directory")
			}
			htmlDir = args[i+1]
			i++
		case strings.HasPrefix(a, "--html="):
			htmlDir = strings.TrimPrefix(a, "--html=")
		default:
			return "", fmt.Errorf("bot demo: unknown argument %q", a)
		}
	}
	return htmlDir, nil
}

// lockedBuffer collects the bot's log, written from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDemo is the setup every step relies on: the fakes, seeded, and the
// bot serving against them.
func startDemo(ctx context.Context, out io.Writer) (*demo, error) {
	d := &demo{out: out, logs: &lockedBuffer{}, shown: map[string]int{}, pictures: map[string]picture{}, stop: func() error { return nil }}
	botToken, adminKey := "xoxb-demo-"+randomHex(12), "sk-admin-demo-"+randomHex(12)
	d.slack = slackfake.New(botToken)
	d.openai = openaitest.NewServer(adminKey)
	seedDemoOrganization(d.openai)
	return d, d.startBot(ctx, botToken, adminKey)
}

// seedDemoOrganization gives the fake OpenAI the names the demo asks for.
// The fake's own seed has a group named "Support Team" too: it is renamed,
// since two groups with one name would make the request ambiguous (as it
// would be in a real organization).
func seedDemoOrganization(oa *openaitest.Server) {
	oa.AddGroup(openaitest.DefaultGroupID, "Engineering", false)
	oa.AddProject(demoProject, "Support Project")
	oa.AddGroup(demoGroup, "Support Team", false)
	oa.AddGroup(demoOnCall, "On-call Team", true)
	oa.AddRole(demoProject, openaitest.Role{
		ID:          demoRole,
		Name:        "Key Manager",
		Description: "Creates, rotates and revokes the project's API keys and service accounts",
		Permissions: []string{
			"api.organization.projects.api_keys.read",
			"api.organization.projects.api_keys.write",
			"api.organization.projects.service_accounts.read",
			"api.organization.projects.service_accounts.write",
		},
		CreatedAt: time.Unix(1711471533, 0).UTC(),
		CreatedBy: "user_demo",
	})
}

// startBot runs serve, exactly as `bot` does, with a configuration of the
// demo's own (the caller's environment is never read), and waits until it
// is ready. The database lives in a temporary directory that stop removes.
func (d *demo) startBot(ctx context.Context, botToken, adminKey string) error {
	dir, err := os.MkdirTemp("", "rolegate-demo-*")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	secret := randomHex(16)
	d.env = map[string]string{
		"SLACK_BOT_TOKEN":      botToken,
		"SLACK_SIGNING_SECRET": secret,
		"SLACK_API_URL":        d.slack.APIURL(),
		"OPENAI_ADMIN_KEY":     adminKey,
		"OPENAI_BASE_URL":      d.openai.URL(),
		"ROLEGATE_DB":          filepath.Join(dir, "rolegate.db"),
		"ROLEGATE_ADDR":        addr,
		"ROLEGATE_APPROVERS":   demoRequester + "," + demoApprover,
		"ROLEGATE_LOG_FORMAT":  "text",
	}
	cfg, err := loadConfig(func(k string) string { return d.env[k] })
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("the demo's own configuration: %w", err)
	}
	d.driver = &slackfake.Driver{BaseURL: "http://" + addr, Secret: secret}

	botCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serve(botCtx, cfg, d.logs) }()
	var once sync.Once
	var stopErr error
	d.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			d.slack.Close()
			d.openai.Close()
			if err := os.RemoveAll(dir); err != nil && stopErr == nil {
				stopErr = err
			}
		})
		return stopErr
	}
	if err := waitReady(ctx, addr, done); err != nil {
		return errors.Join(err, d.stop())
	}
	return nil
}

// waitReady polls /readyz until it answers 200, serve returns, or demoWait
// passes.
func waitReady(ctx context.Context, addr string, done <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("the bot stopped while starting: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("the bot was not ready after %s", demoWait)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freeLoopbackAddr picks a free port on 127.0.0.1. Another process could
// take it before serve listens; serve then says so and the demo fails.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// play runs every step, then stops the bot and removes its files.
func (d *demo) play(ctx context.Context) (err error) {
	defer func() { err = errors.Join(err, d.stop()) }()
	fmt.Fprintf(d.out, "rolegate demo: the real bot, wired as `bot` runs it, against a fake Slack and a fake\n"+
		"OpenAI on 127.0.0.1. Nothing reaches Slack or OpenAI, and nothing is kept.\n")
	for i, s := range demoSteps() {
		fmt.Fprintf(d.out, "\n== %d. %s\n", i+1, s.Heading)
		err := s.Run(d, ctx)
		var sk skip
		if errors.As(err, &sk) {
			fmt.Fprintf(d.out, "   %s\n", sk.Error())
			continue
		}
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s.Heading, err)
		}
	}
	fmt.Fprintf(d.out, "\nDone. To try it in your workspace, see README.md: Quick start.\n")
	return nil
}

func (d *demo) showOrganization(_ context.Context) error {
	p, _ := d.openai.Project(demoProject)
	g, _ := d.openai.Group(demoGroup)
	r, _ := d.openai.Role(demoProject, demoRole)
	fmt.Fprintf(d.out, "   project %q (%s)\n   group   %q (%s)\n   role    %q (%s): %s\n",
		p.Name, p.ID, g.Name, g.ID, r.Name, r.ID, r.Description)
	for _, perm := range r.Permissions {
		fmt.Fprintf(d.out, "             %s\n", perm)
	}
	fmt.Fprintf(d.out, "   Approvers: @ana and @bob. rolegate knows them by Slack user id (ROLEGATE_APPROVERS).\n")
	return nil
}

// command types a slash command as user in the demo channel and prints the
// private answer. It returns the answer's text.
func (d *demo) command(ctx context.Context, user, text string) (string, error) {
	fmt.Fprintf(d.out, "   @%s types in #access-requests:\n   > /assign-role %s\n", demoDirectory.Users[user], text)
	form := slackfake.CommandForm(slackfake.Command{
		Channel: demoChannel, User: user, Text: text,
		ResponseURL: d.slack.NewResponseURLFor(demoChannel, user, ""),
		TriggerID:   "1000.2000.demo" + randomHex(4),
	})
	reply, err := d.driver.Command(ctx, form)
	if err != nil {
		return "", fmt.Errorf("slash command: %w", err)
	}
	if reply.Status != http.StatusOK {
		return "", fmt.Errorf("slash command answered HTTP %d: %s", reply.Status, reply.Body)
	}
	var r slackapp.Reply
	if err := json.Unmarshal(reply.Body, &r); err != nil {
		return "", fmt.Errorf("slash command answer: %w", err)
	}
	d.print("private answer to @"+demoDirectory.Users[user], blockview.Message{Text: r.Text})
	return r.Text, nil
}

func (d *demo) askByName(ctx context.Context) error {
	text, err := d.command(ctx, demoRequester, `"Support Project" "Support Team" "Key Manager" rotating the support bot's keys, INC-42`)
	if err != nil {
		return err
	}
	if _, err := fmt.Sscanf(text, "Request #%d is being checked", &d.requestID); err != nil {
		return fmt.Errorf("the request was not accepted: %s", text)
	}
	return nil
}

func (d *demo) waitForApprovers(ctx context.Context) error {
	if err := d.waitSettled(ctx, d.requestID, approvals.StatePending); err != nil {
		return err
	}
	if err := d.waitEphemerals(ctx, 1); err != nil {
		return err
	}
	msg, err := d.approvalMessage()
	if err != nil {
		return err
	}
	d.keep("approval", msg.History[0], "")
	d.showNew()
	return nil
}

func (d *demo) selfApproval(ctx context.Context) error {
	before := len(d.slack.Ephemerals())
	if err := d.click(ctx, demoRequester, slackapp.ActionApprove); err != nil {
		return err
	}
	if err := d.waitEphemerals(ctx, before+1); err != nil {
		return err
	}
	d.showNew()
	return nil
}

func (d *demo) approve(ctx context.Context) error {
	if err := d.click(ctx, demoApprover, slackapp.ActionApprove); err != nil {
		return err
	}
	if err := d.waitSettled(ctx, d.requestID, approvals.StateApplied); err != nil {
		return err
	}
	parent, err := d.approvalMessage()
	if err != nil {
		return err
	}
	reply, ok := d.lastReply(parent.TS)
	if !ok {
		return errors.New("no summary in the approval message's thread")
	}
	d.keep("summary", reply.History[len(reply.History)-1], "replied to a thread · also sent to #access-requests")
	d.keep("approval-applied", parent.History[len(parent.History)-1], "")
	d.showNew()
	return nil
}

// timeBoundGrant asks for a grant of a few seconds, and shows its end.
// Builds without time-bound grants refuse `for <duration>`: the step is
// then skipped, quoting their answer.
func (d *demo) timeBoundGrant(ctx context.Context) error {
	form := `"Support Project" "On-call Team" "Key Manager" for 5s rotating keys during INC-42`
	answer, err := d.probe(ctx, demoRequester, form)
	if err != nil {
		return err
	}
	var id uint64
	if _, err := fmt.Sscanf(answer, "Request #%d is being checked", &id); err != nil {
		return skip{"this build has no time-bound grants yet; to `/assign-role … for 5s …` it answers: " + firstLine(blockview.Text(answer, demoDirectory))}
	}
	fmt.Fprintf(d.out, "   @ana types in #access-requests:\n   > /assign-role %s\n", form)
	d.print("private answer to @ana", blockview.Message{Text: answer})
	if err := d.waitSettled(ctx, id, approvals.StatePending); err != nil {
		return err
	}
	d.requestID = id
	if err := d.click(ctx, demoApprover, slackapp.ActionApprove); err != nil {
		return err
	}
	if err := d.waitSettled(ctx, id, approvals.StateApplied); err != nil {
		return err
	}
	d.showNew()
	fmt.Fprintf(d.out, "   … the grant's 5 seconds pass …\n")
	wctx, cancel := context.WithTimeout(ctx, demoWait+5*time.Second)
	defer cancel()
	if err := d.openai.WaitRevokeDELETEs(wctx, 1); err != nil {
		return fmt.Errorf("the grant did not end: %w", err)
	}
	if err := d.waitSettled(ctx, id, approvals.StateRevoked); err != nil {
		return err
	}
	if parent, err := d.approvalMessage(); err == nil {
		if reply, ok := d.lastReply(parent.TS); ok {
			d.keep("revocation", reply.History[len(reply.History)-1], "replied to a thread")
		}
	}
	d.showNew()
	return nil
}

// probe sends a slash command without printing it, for a step that first
// finds out whether this build can do what it shows.
func (d *demo) probe(ctx context.Context, user, text string) (string, error) {
	form := slackfake.CommandForm(slackfake.Command{
		Channel: demoChannel, User: user, Text: text,
		ResponseURL: d.slack.NewResponseURLFor(demoChannel, user, ""),
		TriggerID:   "1000.2000.demo" + randomHex(4),
	})
	reply, err := d.driver.Command(ctx, form)
	if err != nil {
		return "", fmt.Errorf("slash command: %w", err)
	}
	var r slackapp.Reply
	if err := json.Unmarshal(reply.Body, &r); err != nil {
		return "", fmt.Errorf("slash command answered HTTP %d: %w", reply.Status, err)
	}
	return r.Text, nil
}

// auditVerify runs `bot audit verify` on the demo's database, once the bot
// has stopped (bbolt lets one process open the file).
func (d *demo) auditVerify(ctx context.Context) error {
	if _, ok := findCommand("audit"); !ok {
		return skip{"this build has no `bot audit` command yet"}
	}
	db := d.env["ROLEGATE_DB"]
	// Copy the database before stop removes it.
	data, err := os.ReadFile(db)
	if err != nil {
		return err
	}
	if err := d.stop(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rolegate-demo-audit-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	copyPath := filepath.Join(dir, "rolegate.db")
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		return err
	}
	env := map[string]string{}
	for k, v := range d.env {
		env[k] = v
	}
	env["ROLEGATE_DB"] = copyPath
	var out bytes.Buffer
	fmt.Fprintf(d.out, "   $ bot audit verify\n")
	err = run(ctx, []string{"audit", "verify"}, func(k string) string { return env[k] }, &out, &out)
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		fmt.Fprintf(d.out, "   %s\n", line)
	}
	if err != nil {
		return fmt.Errorf("bot audit verify: %w", err)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// click presses the button actionID on the current request's approval
// message as user, with the block id and value the message carries, as
// Slack would send them.
func (d *demo) click(ctx context.Context, user, actionID string) error {
	msg, err := d.approvalMessage()
	if err != nil {
		return err
	}
	blockID, value, ok := findButton(msg.Blocks, actionID)
	if !ok {
		return fmt.Errorf("the approval message has no %s button", actionID)
	}
	label := map[string]string{slackapp.ActionApprove: "Approve", slackapp.ActionDeny: "Deny"}[actionID]
	fmt.Fprintf(d.out, "   @%s clicks [%s]\n", demoDirectory.Users[user], label)
	cb := slackfake.ClickPayload(slackfake.Click{
		User: user, Channel: demoChannel, ActionID: actionID, BlockID: blockID, Value: value,
		MessageTS: msg.TS, ResponseURL: d.slack.NewResponseURLFor(demoChannel, user, msg.TS),
	})
	reply, err := d.driver.Interaction(ctx, cb)
	if err != nil {
		return fmt.Errorf("click: %w", err)
	}
	if reply.Status != http.StatusOK {
		return fmt.Errorf("click answered HTTP %d", reply.Status)
	}
	return nil
}

// findButton finds the button actionID in blocks: its block's id and value.
func findButton(blocks []map[string]any, actionID string) (blockID, value string, ok bool) {
	for _, b := range blocks {
		els, _ := b["elements"].([]any)
		for _, e := range els {
			m, _ := e.(map[string]any)
			if m["type"] == "button" && m["action_id"] == actionID {
				blockID, _ = b["block_id"].(string)
				value, _ = m["value"].(string)
				return blockID, value, true
			}
		}
	}
	return "", "", false
}

// approvalMessage is the current request's approval message: the
// top-level message in the channel with a button whose value is its id
// (while pending), or, once decided, the one posted for it.
func (d *demo) approvalMessage() (slackfake.Message, error) {
	id := strconv.FormatUint(d.requestID, 10)
	for _, m := range d.slack.Messages(demoChannel) {
		if m.ThreadTS != "" {
			continue
		}
		for _, v := range m.History {
			if _, value, ok := findButton(v.Blocks, slackapp.ActionApprove); ok && value == id {
				return m, nil
			}
		}
	}
	return slackfake.Message{}, fmt.Errorf("no approval message for request #%d", d.requestID)
}

// lastReply is the newest reply in the thread of ts.
func (d *demo) lastReply(ts string) (slackfake.Message, bool) {
	var found slackfake.Message
	ok := false
	for _, m := range d.slack.Messages(demoChannel) {
		if m.ThreadTS == ts && m.TS != ts {
			found, ok = m, true
		}
	}
	return found, ok
}

// waitSettled waits until request id is in state want and the bot has no
// work left (the outbox is empty: every message is posted, every OpenAI
// call made). It reads snapshots of the database, as `bot requests` does.
func (d *demo) waitSettled(ctx context.Context, id uint64, want approvals.State) error {
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	var last approvals.State
	for {
		settled, state, err := d.settled(ctx, id, want)
		if err != nil {
			return err
		}
		if settled {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("request #%d is %s, not %s, after %s", id, last, want, demoWait)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *demo) settled(ctx context.Context, id uint64, want approvals.State) (bool, approvals.State, error) {
	s, cleanup, err := approvals.OpenSnapshot(d.env["ROLEGATE_DB"])
	if err != nil {
		return false, "", err
	}
	defer cleanup()
	r, err := s.Get(ctx, id)
	if errors.Is(err, approvals.ErrNotFound) {
		return false, "not stored yet", nil
	}
	if err != nil {
		return false, "", err
	}
	c, err := s.Counts(ctx)
	if err != nil {
		return false, "", err
	}
	return r.State == want && c.Jobs == 0, r.State, nil
}

// waitEphemerals waits until the fake holds n private messages.
func (d *demo) waitEphemerals(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	return d.slack.WaitFor(ctx, func(s *slackfake.Server) bool { return len(s.Ephemerals()) >= n })
}

// keep records a message version for --html and the picture hashes.
func (d *demo) keep(name string, v slackfake.Version, note string) {
	d.pictures[name] = picture{
		msg:    blockview.Message{Text: v.Text, Blocks: v.BlocksJSON, Author: "rolegate", Time: v.At.Format("3:04 PM"), Note: note},
		blocks: v.BlocksJSON,
	}
}

// showNew prints what changed in Slack since the last call: new private
// messages, new channel messages and DMs, and messages updated in place
// (their current version).
func (d *demo) showNew() {
	eph := d.slack.Ephemerals()
	for _, e := range eph[d.ephemeral:] {
		d.print("private message to @"+demoDirectory.Users[e.User]+" (only they see it)", blockview.Message{Text: e.Text, Blocks: e.BlocksJSON})
		if e.User != "" && len(e.BlocksJSON) == 0 {
			d.keepText("private-"+demoDirectory.Users[e.User]+"-"+strconv.Itoa(d.ephemeral), e.Text, "Only visible to you")
		}
		d.ephemeral++
	}
	type place struct{ key, where string }
	places := []place{{demoChannel, "#access-requests"}}
	for _, u := range []string{demoRequester, demoApprover} {
		places = append(places, place{u, "direct message to @" + demoDirectory.Users[u]})
	}
	for _, p := range places {
		for _, m := range d.slack.Messages(p.key) {
			key := m.Channel + "/" + m.TS
			n, seen := d.shown[key]
			if seen && n == len(m.History) {
				continue
			}
			d.shown[key] = len(m.History)
			what := "new message"
			switch {
			case seen:
				what = "the message above, updated in place"
			case m.ThreadTS != "" && m.ReplyBroadcast:
				what = "reply in the request's thread, also sent to the channel"
			case m.ThreadTS != "":
				what = "reply in the request's thread"
			}
			d.print(p.where+", "+what, blockview.Message{Text: m.Text, Blocks: m.BlocksJSON})
		}
	}
}

func (d *demo) keepText(name, text, note string) {
	d.pictures[name] = picture{msg: blockview.Message{Text: text, Author: "rolegate", Time: time.Now().Format("3:04 PM"), Note: note}}
}

// print writes one message, framed, each line of its blocks on a line.
func (d *demo) print(where string, m blockview.Message) {
	lines, err := blockview.TextLines(m, demoDirectory)
	if err != nil {
		lines = []string{"(unreadable blocks: " + err.Error() + ")"}
	}
	fmt.Fprintf(d.out, "   ┌ %s\n", where)
	for _, l := range lines {
		fmt.Fprintf(d.out, "   │ %s\n", l)
	}
	fmt.Fprintf(d.out, "   └\n")
}

// writeHTML writes every kept message as DIR/<name>.html, and
// DIR/pictures.sha256 for the ones README shows.
func (d *demo) writeHTML(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range d.pictures {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		page, err := blockview.Page("access-requests", []blockview.Message{d.pictures[name].msg}, demoDirectory)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".html"), page, 0o644); err != nil {
			return err
		}
	}
	sums, err := d.pictureHashes()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "pictures.sha256"), []byte(sums), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nWrote %d pages and pictures.sha256 to %s\n", len(names), dir)
	return nil
}

// pictureHashes is the content of docs/pictures.sha256: for each picture
// README shows, the SHA-256 of the canonical JSON of its blocks, with what
// changes from run to run (dates) normalized. A test compares it with the
// committed file, so the pictures cannot drift from the code unnoticed.
func (d *demo) pictureHashes() (string, error) {
	var b strings.Builder
	b.WriteString("# SHA-256 of the Block Kit JSON behind each picture (canonical, dates normalized).\n" +
		"# Written by `bot demo --html DIR`. Regenerate the pictures and this file: scripts/pictures.sh\n")
	for _, name := range pictureNames {
		p, ok := d.pictures[name]
		if !ok {
			continue
		}
		canon, err := canonicalBlocks(p.blocks)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		sum := sha256.Sum256(canon)
		fmt.Fprintf(&b, "%s  %s.png\n", hex.EncodeToString(sum[:]), name)
	}
	return b.String(), nil
}

// dateEntity matches Slack's <!date^unix^format|fallback>, whose time and
// fallback change with every run.
var dateEntity = regexp.MustCompile(`<!date\^\d+\^([^|>]*)(\|[^>]*)?>`)

// canonicalBlocks is blocks decoded and re-encoded (object keys sorted, no
// insignificant space), dates replaced by a fixed one.
func canonicalBlocks(raw json.RawMessage) ([]byte, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	v = normalize(v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var auditHash = regexp.MustCompile(`sha256:[0-9a-f]+`)

func normalize(v any) any {
	switch t := v.(type) {
	case string:
		// Dates and audit hashes (which cover the events' times) change
		// from run to run; the wording around them is what the pictures show.
		return auditHash.ReplaceAllString(dateEntity.ReplaceAllString(t, "<!date^0^$1|DATE>"), "sha256:HASH")
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = normalize(t[k])
		}
	}
	return v
}
