//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
	"github.com/rolegate/rolegate/internal/testbin"
)

// Crash recovery: the real binary, built once with the test-only crash hook
// (-tags rolegate_crashhook), runs as a subprocess in HTTP mode against the
// in-process fakes and is SIGKILLed at each point where a crash could lose or
// repeat work. After every kill the database must pass bbolt's consistency
// check and its audit chain must verify; after a restart on the same file
// every request must end in the right state, with at most one effective
// assignment and every message delivered.

func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	bin := buildCrashBot(t)

	t.Run("request stored, Slack not answered", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		// Hold the approval message so the kill lands before it is posted.
		c.slack.SetDelay("chat.postMessage", time.Minute)
		c.start("command_answer")
		form := c.commandForm(requester, testChannel, defaultTarget+" crash before the ack")
		status, _, err := c.send("/slack/commands", form.Encode())
		if err == nil {
			t.Fatalf("the command was answered (%d) although the bot was to die first", status)
		}
		c.waitExit()
		c.checkDB(func(s *approvals.BoltStore) {
			r, err := s.Get(context.Background(), 1)
			if err != nil || (r.State != approvals.StateChecking && r.State != approvals.StatePending) || r.MessageTS != "" {
				t.Fatalf("after the kill: %+v %v, want request 1 stored (checking or pending), not yet posted", r, err)
			}
		})
		if n := len(c.slack.Messages(testChannel)); n != 0 {
			t.Fatalf("%d messages posted before the kill", n)
		}

		c.slack.SetDelay("chat.postMessage", 0)
		c.start("")
		c.approvalMessage(1)
		// Slack does not retry, but a replayed delivery (same trigger) is
		// answered with the stored request, not a second one.
		if _, reply := c.commandForm2(form); !strings.Contains(reply.Text, "Request #1 ") {
			t.Fatalf("replayed command answered %q", reply.Text)
		}
		c.click(approverAna, slackapp.ActionApprove, 1)
		c.finish(map[uint64]approvals.State{1: approvals.StateApplied})
		c.wantMessagesOnce(1)
	})

	t.Run("approval message posted, ts not stored", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		c.start("")
		// Slack accepts the approval message; the bot dies before reading
		// its ts. chat.postMessage has no idempotency key: the restart
		// finds the message in the channel instead of posting it again.
		c.killOnSlack(func(method string, v url.Values) bool {
			return method == "chat.postMessage" && v.Get("channel") == testChannel && v.Get("thread_ts") == ""
		})
		id := c.request(requester, defaultTarget+" crash after the post")
		c.waitExit()
		c.slack.OnCall(nil)
		posted := c.approvalMessage(id)
		c.checkDB(func(s *approvals.BoltStore) {
			if r, _ := s.Get(context.Background(), id); r.State != approvals.StatePending || r.MessageTS != "" {
				t.Fatalf("after the kill: %s with ts %q, want pending with the post not recorded", r.State, r.MessageTS)
			}
		})
		c.start("")
		c.waitFor("the restart to record the message", func() bool { return c.stored(id).MessageTS != "" })
		if got := c.stored(id).MessageTS; got != posted.TS {
			t.Fatalf("the restart recorded ts %q, want the message posted before the kill (%s)", got, posted.TS)
		}
		if c.slack.Calls("conversations.history") == 0 {
			t.Error("the restart did not look in the channel before deciding")
		}
		c.click(approverAna, slackapp.ActionApprove, id)
		c.finish(map[uint64]approvals.State{id: approvals.StateApplied})
		c.wantMessagesOnce(id)
	})

	t.Run("result posted, not recorded", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		c.start("")
		id := c.request(requester, defaultTarget+" crash after the result")
		c.approvalPosted(id)
		// Slack accepts the result in the thread; the bot dies before it
		// completes the job. The restart finds it (conversations.replies).
		c.killOnSlack(func(method string, v url.Values) bool {
			return method == "chat.postMessage" && v.Get("channel") == testChannel && v.Get("thread_ts") != ""
		})
		c.sendClick(approverAna, slackapp.ActionApprove, id)
		c.waitExit()
		c.slack.OnCall(nil)
		c.start("")
		c.finish(map[uint64]approvals.State{id: approvals.StateApplied})
		c.wantMessagesOnce(id)
		if c.slack.Calls("conversations.replies") == 0 {
			t.Error("the restart did not look in the thread before posting the result")
		}
	})

	t.Run("decision stored, POST not made", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		c.start("")
		id := c.request(requester, defaultTarget+" crash after the decision")
		c.approvalPosted(id)
		// The worker checks the role list right before POSTing: die there.
		c.killOnOpenAI(func(rec openaitest.Recorded) bool {
			return rec.Op == openaitest.OpListGroupRoles
		})
		c.sendClick(approverAna, slackapp.ActionApprove, id)
		c.waitExit()
		c.openai.OnServed(nil)
		c.checkDB(func(s *approvals.BoltStore) {
			r, _ := s.Get(context.Background(), id)
			if r.State != approvals.StateApproved || r.Decider != approverAna {
				t.Fatalf("after the kill: %s decided by %q, want the approval stored", r.State, r.Decider)
			}
		})
		if n := c.openai.AssignPOSTs(); n != 0 {
			t.Fatalf("%d POSTs before the kill", n)
		}
		c.start("")
		r := c.finish(map[uint64]approvals.State{id: approvals.StateApplied})[id]
		if r.Assignment.AlreadyAssigned {
			t.Error("reported as already assigned, but nothing was POSTed before the crash")
		}
		c.wantMessagesOnce(id)
	})

	t.Run("POST made, result not stored", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		c.start("")
		id := c.request(requester, defaultTarget+" crash after the POST")
		c.approvalPosted(id)
		// OpenAI assigns the role; the bot dies before reading the answer.
		c.killOnOpenAI(func(rec openaitest.Recorded) bool {
			return rec.Op == openaitest.OpAssign && rec.Status == http.StatusOK
		})
		c.sendClick(approverAna, slackapp.ActionApprove, id)
		c.waitExit()
		c.openai.OnServed(nil)
		if got := c.openai.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 1 {
			t.Fatalf("assignments %v after the kill, want the POST to have taken effect", got)
		}
		c.checkDB(func(s *approvals.BoltStore) {
			if r, _ := s.Get(context.Background(), id); r.State != approvals.StateApproved {
				t.Fatalf("after the kill: %s, want approved (result not stored)", r.State)
			}
		})
		c.start("")
		c.finish(map[uint64]approvals.State{id: approvals.StateApplied})
		c.wantMessagesOnce(id)
	})

	t.Run("result stored, Slack not told", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		c.start("")
		id := c.request(requester, defaultTarget+" crash after the result")
		c.approvalPosted(id)
		// The first chat.update after the POST is the one reporting the
		// result: die as it arrives, and Slack does not carry it out.
		var once sync.Once
		c.slack.OnCall(func(method string, v url.Values) {
			if method == "chat.update" && strings.Contains(v.Get("blocks"), "Role assigned") {
				once.Do(func() {
					c.kill()
					c.slack.DropNext("chat.update", 1)
				})
			}
		})
		c.sendClick(approverAna, slackapp.ActionApprove, id)
		c.waitExit()
		c.slack.OnCall(nil)
		c.checkDB(func(s *approvals.BoltStore) {
			r, _ := s.Get(context.Background(), id)
			n, _ := pendingJobs(s, context.Background())
			// At least the update, the result and the requester's DM are
			// owed; earlier DMs may still be queued on a slow machine.
			if r.State != approvals.StateApplied || n < 3 {
				t.Fatalf("after the kill: %s with %d jobs, want applied with the update, the result and the requester's DM owed", r.State, n)
			}
		})
		if m := c.approvalMessage(id); strings.Contains(m.VisibleText(), "Role assigned") {
			t.Fatal("Slack was told before the kill")
		}
		c.start("")
		c.finish(map[uint64]approvals.State{id: approvals.StateApplied})
		c.wantMessagesOnce(id)
	})

	t.Run("DELETE made, revocation not stored", func(t *testing.T) {
		t.Parallel()
		c := newCrashRig(t, bin, nil)
		c.start("")
		id := c.request(requester, defaultTarget+" for 2s crash after the DELETE")
		c.approvalPosted(id)
		// At the grant's end OpenAI removes the role; the bot dies before
		// reading the answer.
		c.killOnOpenAI(func(rec openaitest.Recorded) bool {
			return rec.Op == openaitest.OpUnassign && rec.Status == http.StatusOK
		})
		c.sendClick(approverAna, slackapp.ActionApprove, id)
		c.waitExit()
		c.openai.OnServed(nil)
		if got := c.openai.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 0 || c.openai.RevokeDELETEs() != 1 {
			t.Fatalf("assignments %v after %d DELETEs before the kill, want the DELETE to have taken effect", got, c.openai.RevokeDELETEs())
		}
		c.checkDB(func(s *approvals.BoltStore) {
			if r, _ := s.Get(context.Background(), id); r.State != approvals.StateApplied || !r.Ending {
				t.Fatalf("after the kill: %s, ending %v; want applied and ending (revocation not stored)", r.State, r.Ending)
			}
		})
		lists := c.openai.Calls(openaitest.OpListGroupRoles)
		c.start("")
		r := c.finish(map[uint64]approvals.State{id: approvals.StateRevoked})[id]
		if n := c.openai.RevokeDELETEs(); n != 1 {
			t.Errorf("%d DELETEs in all, want 1: the restart DELETEd again", n)
		}
		if c.openai.Calls(openaitest.OpListGroupRoles) == lists {
			t.Error("the restart did not list the group's roles before deciding")
		}
		if r.Revocation == nil || !r.Revocation.Absent || r.EndedBy != approvals.SystemActor {
			t.Errorf("revoked by %q with %+v; want the end found the role gone", r.EndedBy, r.Revocation)
		}
		c.wantMessagesOnce(id)
		ended := 0
		for _, m := range c.slack.Messages(testChannel) {
			if strings.Contains(m.Text, fmt.Sprintf("Request #%d: :lock: *Grant ended*", id)) {
				ended++
			}
		}
		if ended != 1 {
			t.Errorf("the thread says %d times that the grant ended, want once", ended)
		}
	})

	t.Run("random kills during a burst", func(t *testing.T) {
		if testing.Short() {
			t.Skip("the randomized crash soak does not run with -short")
		}
		t.Parallel()
		crashSoak(t, bin)
	})
}

// crashSoak kills the bot at random moments while requests and clicks
// arrive, restarts it on the same file each time, then lets it finish.
func crashSoak(t *testing.T, bin string) {
	const (
		rounds      = 25
		budget      = 20 * time.Second
		perRound    = 3 // new requests per round
		maxRequests = rounds * perRound
	)
	c := newCrashRig(t, bin, map[string]string{"ROLEGATE_APPROVALS_REQUIRED": "2"})
	for i := range maxRequests {
		c.openai.AddGroup(soakGroup(i), fmt.Sprintf("Soak group %d", i), false)
	}
	// Slow the fakes a little, so kills often land with a call in flight.
	c.slack.SetDelay(slackfake.AnyMethod, 2*time.Millisecond)
	c.openai.SetDelay(3 * time.Millisecond)
	var duplicates atomic.Int32 // POSTs for an assignment that already existed
	c.openai.OnAssign(func(tg approvals.Target, _ time.Time) {
		for _, held := range c.openai.Assignments(tg.ProjectID, tg.GroupID) {
			if held == tg.RoleID {
				duplicates.Add(1)
			}
		}
	})

	var (
		acks      ackLog
		created   int
		seed      = uint64(time.Now().UnixNano())
		rng       = rand.New(rand.NewPCG(seed, 42))
		pending   []uint64
		startedAt = time.Now()
		round     int
	)
	t.Logf("kill offsets from seed %d", seed)
	for round = 0; round < rounds && time.Since(startedAt) < budget; round++ {
		c.start("")
		var wg sync.WaitGroup
		for range perRound {
			i := created
			created++
			wg.Go(func() {
				text := fmt.Sprintf("%s %s %s soak %d", openaitest.DefaultProjectID, soakGroup(i), openaitest.DefaultRoleID, i)
				form := c.commandForm(requester, testChannel, text)
				if status, body, err := c.send("/slack/commands", form.Encode()); err == nil && status == http.StatusOK {
					acks.command(body)
				}
			})
		}
		for _, id := range pending {
			for _, who := range []string{approverAna, approverBob} {
				action := slackapp.ActionApprove
				if id%7 == 0 {
					action = slackapp.ActionDeny
				}
				wg.Go(func() {
					if status, _, err := c.sendClick(who, action, id); err == nil && status == http.StatusOK {
						acks.click(id, who, action)
					}
				})
			}
		}
		time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond)
		c.kill()
		c.waitExit()
		wg.Wait()
		pending = nil
		c.checkDB(func(s *approvals.BoltStore) {
			rs, err := s.List(context.Background(), approvals.ListOptions{State: approvals.StatePending})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				pending = append(pending, r.ID)
			}
		})
	}

	// Let it finish: people click again where their click was lost.
	c.start("")
	var all []approvals.Request
	c.waitFor("every request to be decided", func() bool {
		s, cleanup, err := approvals.OpenSnapshot(c.env["ROLEGATE_DB"])
		if err != nil {
			return false
		}
		defer cleanup()
		all, err = s.List(context.Background(), approvals.ListOptions{})
		if err != nil {
			return false
		}
		undecided := false
		for _, r := range all {
			if r.State == approvals.StateChecking {
				undecided = true // not yet put to approvers: wait, then click
				continue
			}
			if r.State != approvals.StatePending {
				continue
			}
			undecided = true
			for _, who := range []string{approverAna, approverBob} {
				if !r.Approved(who) {
					action := slackapp.ActionApprove
					if r.ID%7 == 0 {
						action = slackapp.ActionDeny
					}
					c.sendClick(who, action, r.ID)
				}
			}
		}
		return !undecided
	})
	want := map[uint64]approvals.State{}
	for _, r := range all {
		want[r.ID] = approvals.StateApplied
		if r.ID%7 == 0 {
			want[r.ID] = approvals.StateDenied
		}
	}
	final := c.finish(want)

	// No acknowledged command or click was lost.
	lostCommands, lostClicks := 0, 0
	for _, id := range acks.commandIDs() {
		if _, ok := final[id]; !ok {
			lostCommands++
			t.Errorf("request #%d was acknowledged to Slack but is not stored", id)
		}
	}
	s := c.openStore()
	for _, k := range acks.clicks() {
		r := final[k.id]
		events, err := s.Audit(context.Background(), k.id)
		if err != nil {
			t.Fatal(err)
		}
		recorded := false
		for _, e := range events {
			if e.Actor == k.user && !e.At.After(k.at) && (e.Action == approvals.ActionApprove || e.Action == approvals.ActionDeny) {
				recorded = true
			}
		}
		if !recorded && (r.DecidedAt.IsZero() || r.DecidedAt.After(k.at)) {
			lostClicks++
			t.Errorf("%s's click on request #%d was acknowledged at %s but not recorded (request decided %s)", k.user, k.id, k.at, r.DecidedAt)
		}
	}
	s.Close()

	dupApproval, dupResult, dupOther := c.messageCounts(final)
	if n := duplicates.Load(); n != 0 {
		t.Errorf("%d POSTs for assignments that already existed", n)
	}
	// A post in flight at a kill is looked for after the restart, so even
	// these kills repeat no approval message and no result. Other replies
	// (a denial) are at least once.
	if dupApproval+dupResult != 0 {
		t.Errorf("%d approval messages and %d results posted again after kills", dupApproval, dupResult)
	}
	t.Logf("crash soak: %d rounds, %d kills survived, %d requests (%d applied), %d commands and %d clicks acknowledged before kills; "+
		"lost: %d commands, %d clicks; duplicate assignment POSTs: %d; repeated Slack messages: %d approval, %d result, %d other (at least once)",
		round, c.kills.Load(), len(final), countState(final, approvals.StateApplied), len(acks.commandIDs()), len(acks.clicks()),
		lostCommands, lostClicks, duplicates.Load(), dupApproval, dupResult, dupOther)
}

func soakGroup(i int) string { return fmt.Sprintf("group_s%03d", i) }

func countState(rs map[uint64]approvals.Request, st approvals.State) int {
	n := 0
	for _, r := range rs {
		if r.State == st {
			n++
		}
	}
	return n
}

// ackLog remembers what the bot acknowledged to "Slack" before dying.
type ackLog struct {
	mu   sync.Mutex
	ids  []uint64
	acks []ackedClick
}

type ackedClick struct {
	id         uint64
	user, kind string
	at         time.Time
}

func (a *ackLog) command(body string) {
	var id uint64
	if i := strings.Index(body, "Request #"); i >= 0 {
		fmt.Sscanf(body[i:], "Request #%d", &id)
	}
	if id != 0 {
		a.mu.Lock()
		a.ids = append(a.ids, id)
		a.mu.Unlock()
	}
}

func (a *ackLog) click(id uint64, user, kind string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acks = append(a.acks, ackedClick{id: id, user: user, kind: kind, at: time.Now()})
}

func (a *ackLog) commandIDs() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint64(nil), a.ids...)
}

func (a *ackLog) clicks() []ackedClick {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ackedClick(nil), a.acks...)
}

// crashRig runs the built bot as a subprocess against in-process fakes.
// It embeds the end-to-end harness's bot, so its helpers (request, click,
// approvalMessage, stored, waitFor) talk to whichever process runs now.
type crashRig struct {
	*bot
	bin   string
	kills atomic.Int32

	mu   sync.Mutex // the fakes' hooks kill from their own goroutines
	proc *testbin.Proc
}

func (c *crashRig) running() *testbin.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc
}

func newCrashRig(t *testing.T, bin string, extra map[string]string) *crashRig {
	t.Helper()
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	oa := openaitest.NewServer(testAdminKey)
	t.Cleanup(oa.Close)
	b := &bot{t: t, slack: sl, openai: oa, logs: &syncBuffer{}, env: testEnv(t, sl, oa, extra)}
	c := &crashRig{bot: b, bin: bin}
	t.Cleanup(func() {
		if c.running() != nil {
			c.kill()
			c.waitExit()
		}
		logs := c.logs.String()
		if strings.Contains(logs, "DATA RACE") {
			t.Errorf("the bot reported a data race:\n%s", logs)
		}
		checkNoSecrets(t, "the bot's logs", logs)
		c.checkSlackHasNoSecrets()
	})
	return c
}

// start runs the binary, ROLEGATE_TEST_CRASH_AT=crashAt, and waits until it
// is ready.
func (c *crashRig) start(crashAt string) {
	c.t.Helper()
	// Port 0: the bot picks a free port and logs it, so no other test can
	// take the port between choosing it and listening on it.
	c.env["ROLEGATE_ADDR"] = "127.0.0.1:0"
	env := map[string]string{"ROLEGATE_TEST_CRASH_AT": crashAt}
	for k, v := range c.env {
		env[k] = v
	}
	p, err := testbin.Start(c.bin, testbin.Options{Env: env, Output: c.logs})
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.proc = p
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := p.WaitHTTP(ctx, "/readyz", 5*time.Millisecond); err != nil {
		c.t.Fatalf("the bot was not ready: %v\n%s", err, c.logs.String())
	}
	c.addr = p.Addr()
}

// kill SIGKILLs the running process and returns once it is gone, so a
// fake's hook that calls it answers only a dead client. Safe from any
// goroutine.
// killOnSlack kills the bot at the first Web API call match accepts, as
// it arrives at the fake Slack (which then carries it out). The caller
// removes the hook once the bot is gone (OnCall(nil)).
func (c *crashRig) killOnSlack(match func(method string, v url.Values) bool) {
	var once sync.Once
	c.slack.OnCall(func(method string, v url.Values) {
		if match(method, v) {
			once.Do(c.kill)
		}
	})
}

// killOnOpenAI kills the bot once the fake OpenAI has served a call match
// accepts, before the bot reads the answer. The caller removes the hook
// once the bot is gone (OnServed(nil)).
func (c *crashRig) killOnOpenAI(match func(openaitest.Recorded) bool) {
	var once sync.Once
	c.openai.OnServed(func(rec openaitest.Recorded) {
		if match(rec) {
			once.Do(c.kill)
		}
	})
}

func (c *crashRig) kill() {
	if p := c.running(); p != nil {
		p.Kill(waitTimeout)
	}
}

// waitExit waits until the process is gone and checks that SIGKILL ended
// it, whoever sent it (the rig, or the bot's own crash hook): not a clean
// exit, not a panic.
func (c *crashRig) waitExit() {
	c.t.Helper()
	p := c.running()
	select {
	case <-p.Done():
	case <-time.After(waitTimeout):
		c.t.Fatal("the bot did not exit")
	}
	if ws, ok := p.State().Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		c.t.Fatalf("the bot ended with %v, want killed by SIGKILL\n%s", p.State(), c.logs.String())
	}
	c.kills.Add(1)
	c.mu.Lock()
	c.proc = nil
	c.mu.Unlock()
}

// stop asks the process to stop (SIGTERM) and waits for a clean exit.
func (c *crashRig) stop() {
	c.t.Helper()
	if err := c.running().Stop(waitTimeout); err != nil {
		c.t.Errorf("the bot: %v", err)
	}
	c.mu.Lock()
	c.proc = nil
	c.mu.Unlock()
}

func (c *crashRig) openStore() *approvals.BoltStore {
	c.t.Helper()
	s, err := approvals.Open(c.env["ROLEGATE_DB"])
	if err != nil {
		c.t.Fatalf("reopen after the kill: %v", err)
	}
	return s
}

// checkDB opens the file the dead process left, runs bbolt's consistency
// check, and hands the store to inspect.
func (c *crashRig) checkDB(inspect func(*approvals.BoltStore)) {
	c.t.Helper()
	s := c.openStore()
	defer s.Close()
	if err := s.Check(); err != nil {
		c.t.Fatalf("database inconsistent after kill %d: %v", c.kills.Load(), err)
	}
	if res, err := s.VerifyChain(context.Background()); err != nil || !res.Intact() {
		c.t.Fatalf("audit chain broken after kill %d: %v %v", c.kills.Load(), res.Problem, err)
	}
	if inspect != nil {
		inspect(s)
	}
}

// send posts a signed body and tolerates a process that dies meanwhile.
func (c *crashRig) send(path, body string) (int, string, error) {
	d := c.driver()
	d.HTTP = &http.Client{Timeout: waitTimeout}
	resp, err := d.Post(context.Background(), path, body)
	return resp.Status, string(resp.Body), err
}

// sendClick clicks a button of request id without needing its message: the
// bot reads only the value, the user and the channel. A Deny is sent as the
// submission of the modal its click opens, which is where the deny happens.
func (c *crashRig) sendClick(user, actionID string, id uint64) (int, string, error) {
	cb := clickPayload(user, testChannel, actionID, strconv.FormatUint(id, 10), "1700000000.000100", "")
	if actionID == slackapp.ActionDeny {
		cb = denySubmissionPayload(user, testChannel, id, "crash soak")
	}
	raw, err := json.Marshal(cb)
	if err != nil {
		return 0, "", err
	}
	return c.send(slackfake.InteractionsPath, slackfake.InteractionBody(raw))
}

// finish waits for every request in want to settle in its wanted state with
// nothing left in the outbox, stops the bot cleanly, checks the file, and
// checks what OpenAI and Slack saw. It returns the requests as stored.
func (c *crashRig) finish(want map[uint64]approvals.State) map[uint64]approvals.Request {
	c.t.Helper()
	c.waitFor("every request to settle and the outbox to empty", func() bool {
		s, cleanup, err := approvals.OpenSnapshot(c.env["ROLEGATE_DB"])
		if err != nil {
			return false
		}
		defer cleanup()
		for id := range want {
			r, err := s.Get(context.Background(), id)
			if err != nil || !(r.State.Final() || r.State == approvals.StateApplied) {
				return false
			}
		}
		n, err := pendingJobs(s, context.Background())
		return err == nil && n == 0
	})
	c.stop()
	got := map[uint64]approvals.Request{}
	c.checkDB(func(s *approvals.BoltStore) {
		rs, err := s.List(context.Background(), approvals.ListOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		for _, r := range rs {
			got[r.ID] = r
		}
		if n, _ := pendingJobs(s, context.Background()); n != 0 {
			c.t.Errorf("%d jobs left in the outbox", n)
		}
	})
	if len(got) != len(want) {
		c.t.Errorf("%d requests stored, want %d", len(got), len(want))
	}
	posts := map[approvals.Target][]openaitest.Recorded{}
	for _, rec := range openaiCalls(c.openai, openaitest.OpAssign) {
		tg := targetOfPath(rec.Path)
		posts[tg] = append(posts[tg], rec)
	}
	for id, st := range want {
		r := got[id]
		if r.State != st {
			c.t.Errorf("request #%d is %s, want %s", id, r.State, st)
			continue
		}
		effective := 0
		for _, p := range posts[approvals.Target{ProjectID: r.ProjectID, GroupID: r.GroupID}] {
			if p.Status == http.StatusOK {
				effective++
			}
		}
		held := false
		for _, role := range c.openai.Assignments(r.ProjectID, r.GroupID) {
			held = held || role == r.RoleID
		}
		switch st {
		case approvals.StateApplied:
			if effective != 1 || !held || r.Assignment == nil {
				c.t.Errorf("request #%d: %d effective POSTs, role held %v; want exactly one assignment", id, effective, held)
			}
		case approvals.StateRevoked:
			if effective != 1 || held || r.Assignment == nil {
				c.t.Errorf("request #%d (revoked): %d effective POSTs, role held %v; want one assignment, since removed", id, effective, held)
			}
		default:
			if effective != 0 || held {
				c.t.Errorf("request #%d is %s but OpenAI saw %d effective POSTs", id, st, effective)
			}
		}
	}
	c.wantMessagesShowState(got)
	return got
}

// targetOfPath reads project and group from /v1/projects/{p}/groups/{g}/roles.
func targetOfPath(path string) approvals.Target {
	segs := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	if len(segs) < 4 {
		return approvals.Target{}
	}
	return approvals.Target{ProjectID: segs[1], GroupID: segs[3]}
}

// wantMessagesShowState checks that every request's approval message (the
// one its ts points to) shows its final state, with the result in its
// thread when it was applied, posted after the message's last update.
func (c *crashRig) wantMessagesShowState(rs map[uint64]approvals.Request) {
	c.t.Helper()
	for id, r := range rs {
		m, ok := c.slack.Message(testChannel, r.MessageTS)
		if !ok {
			c.t.Errorf("request #%d: no approval message (ts %q)", id, r.MessageTS)
			continue
		}
		text := m.VisibleText()
		wantText := map[approvals.State]string{approvals.StateApplied: "*Role ", approvals.StateDenied: "*Denied*", approvals.StateRevoked: "*Grant ended*"}[r.State]
		if hasButtons(m) || !strings.Contains(text, wantText) {
			c.t.Errorf("request #%d (%s): approval message does not show it:\n%s", id, r.State, text)
		}
		if r.State != approvals.StateApplied && r.State != approvals.StateRevoked {
			continue
		}
		// The last word in the thread comes after the message's last
		// update: the summary of an applied grant, the end of a revoked one
		// (whose summary must be there too).
		var result, ended *slackfake.Message
		for _, reply := range c.slack.Messages(testChannel) {
			switch {
			case reply.ThreadTS != r.MessageTS:
			case strings.HasPrefix(reply.Text, fmt.Sprintf("Request #%d ", id)):
				result = &reply
			case strings.HasPrefix(reply.Text, fmt.Sprintf("Request #%d: :lock:", id)):
				ended = &reply
			}
		}
		last := result
		if r.State == approvals.StateRevoked {
			last = ended
		}
		switch {
		case result == nil:
			c.t.Errorf("request #%d: no result posted", id)
		case last == nil:
			c.t.Errorf("request #%d: the thread does not say the grant ended", id)
		case last.History[0].At.Before(m.History[len(m.History)-1].At):
			c.t.Errorf("request #%d: the thread's last word posted before the approval message showed the outcome", id)
		}
	}
}

// wantMessagesOnce checks that request id has exactly one approval message
// and at most one result: a post cut short by a kill is looked for in the
// channel before it is posted again.
func (c *crashRig) wantMessagesOnce(id uint64) {
	c.t.Helper()
	approval, result, other := c.messageCounts(map[uint64]approvals.Request{id: c.stored(id)})
	if approval != 0 || result != 0 || other != 0 {
		c.t.Errorf("request #%d: %d repeated approval messages, %d repeated results, %d other repeated replies", id, approval, result, other)
	}
}

// messageCounts counts messages sent more than once: approval messages
// beyond the first per request, results (the summary or the error) beyond
// the first, and other replies about the request in its thread (a
// denial) beyond the one expected. Approval messages and results are
// known by their metadata; they are posted once even across kills, the
// other replies at least once.
func (c *crashRig) messageCounts(rs map[uint64]approvals.Request) (approval, result, other int) {
	msgs := c.slack.Messages(testChannel)
	for id, r := range rs {
		results, others := 0, 0
		for _, m := range msgs {
			switch {
			case m.ThreadTS == "" && markedAs(m, slackapp.ApprovalEventType, id) && m.TS != r.MessageTS:
				approval++
			case markedAs(m, slackapp.ResultEventType, id):
				results++
			case m.ThreadTS != "" && strings.Contains(m.Text, fmt.Sprintf("Request #%d ", id)):
				others++
			}
		}
		if r.State == approvals.StateApplied || r.State == approvals.StateRevoked || r.State == approvals.StateFailed {
			results-- // the one expected: the summary, or the error
		}
		if r.State == approvals.StateDenied {
			others-- // who denied and why
		}
		result, other = result+max(results, 0), other+max(others, 0)
	}
	return approval, result, other
}

// markedAs reports whether m's metadata marks it as request id's message
// of eventType (slackapp.RequestMetadata).
func markedAs(m slackfake.Message, eventType string, id uint64) bool {
	var md struct {
		EventType    string            `json:"event_type"`
		EventPayload map[string]string `json:"event_payload"`
	}
	return json.Unmarshal(m.Metadata, &md) == nil && md.EventType == eventType && md.EventPayload["request_id"] == strconv.FormatUint(id, 10)
}

// approvalPosted waits until request id's approval message is in the
// channel and its ts is stored, so a precise kill after it lands where it
// means to (a kill before the commit is the "ts not stored" case).
func (c *crashRig) approvalPosted(id uint64) {
	c.t.Helper()
	c.approvalMessage(id)
	c.waitFor("the approval message's ts to be stored", func() bool { return c.stored(id).MessageTS != "" })
}

// buildCrashBot builds the bot with the crash hook, once for the test
// process, with the race detector when the tests run with it.
func buildCrashBot(t *testing.T) string {
	t.Helper()
	bin, err := testbin.BuildOnce(testbin.BuildOptions{Tags: []string{"rolegate_crashhook"}, Race: testbin.RaceEnabled()})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
