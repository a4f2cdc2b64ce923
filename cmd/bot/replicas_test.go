package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/pgstore"
	"github.com/rolegate/rolegate/internal/pgtest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// replicas is n in-process bots sharing one PostgreSQL database, one fake
// Slack and one fake OpenAI, as replicas behind a load balancer share
// Slack's and OpenAI's real ones.
type replicas struct {
	bots  []*bot
	slack *slackfake.Server
	oa    *openaitest.Server
	store *pgstore.Store // the test's own view of the database
}

func newReplicas(t *testing.T, n int) *replicas {
	t.Helper()
	return newReplicasWith(t, n, nil)
}

// newReplicasWith is newReplicas with extra's overrides of the
// environment; with SLACK_APP_TOKEN in it, each replica runs in Socket
// Mode on its own connection to the one fake Slack.
func newReplicasWith(t *testing.T, n int, extra map[string]string) *replicas {
	t.Helper()
	url := pgtest.URL(t)
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	oa := openaitest.NewServer(testAdminKey)
	t.Cleanup(oa.Close)
	if tok := extra["SLACK_APP_TOKEN"]; tok != "" {
		sl.SetAppToken(tok)
	}
	env := testEnv(t, sl, oa, map[string]string{"ROLEGATE_DATABASE_URL": url})
	for k, v := range extra {
		env[k] = v
	}
	rs := &replicas{slack: sl, oa: oa}
	for i := range n {
		e := make(map[string]string, len(env))
		for k, v := range env {
			e[k] = v
		}
		b := &bot{t: t, slack: sl, openai: oa, logs: &syncBuffer{}, env: e}
		b.seq.Store(int64(i) * 1_000_000) // distinct trigger ids per replica
		b.start()
		t.Cleanup(b.stop)
		rs.bots = append(rs.bots, b)
	}
	s, err := pgstore.Open(t.Context(), url, pgstore.Options{NoListen: true, NoRenew: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rs.store = s
	return rs
}

func (rs *replicas) get(t *testing.T, id uint64) approvals.Request {
	t.Helper()
	r, err := rs.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return r
}

// settled waits until every request in want is in its wanted state and
// the outbox is empty.
func (rs *replicas) settled(t *testing.T, want map[uint64]approvals.State) {
	t.Helper()
	rs.bots[0].waitFor("every request to settle and the outbox to empty", func() bool {
		for id, st := range want {
			if rs.get(t, id).State != st {
				return false
			}
		}
		c, err := rs.store.Counts(context.Background())
		return err == nil && c.Jobs == 0
	})
}

// approvalMessages counts the top-level messages of request id.
func (rs *replicas) approvalMessages(id uint64) int {
	header := fmt.Sprintf("Role assignment request #%d\n", id)
	n := 0
	for _, m := range rs.slack.Messages(testChannel) {
		if m.ThreadTS == "" && strings.Contains(m.VisibleText(), header) {
			n++
		}
	}
	return n
}

// TestReplicasServeOneBurstTogether: three replicas on one database; each
// command goes to one replica and its click to another (as a load
// balancer spreads them). Every request ends right, each approved one is
// assigned by exactly one POST, each approval message is posted once and
// kept up to date, and the audit trail has one decision per request.
func TestReplicasServeOneBurstTogether(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 3)
	const n = 24
	for i := range n {
		rs.oa.AddGroup(fmt.Sprintf("group_r%02d", i), fmt.Sprintf("Replica team %d", i), false)
	}
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range n {
		wg.Go(func() {
			b := rs.bots[i%len(rs.bots)]
			form := b.commandForm(requester, testChannel, fmt.Sprintf("proj_abc group_r%02d role_01 burst %d", i, i))
			resp, err := b.driver().Command(context.Background(), form)
			mu.Lock()
			defer mu.Unlock()
			var id uint64
			if err != nil || resp.Status != http.StatusOK {
				failures = append(failures, fmt.Sprintf("command %d: %v %+v", i, err, resp))
				return
			}
			if _, err := fmt.Sscanf(string(resp.Body), `{"response_type":"ephemeral","text":"Request #%d is being checked`, &id); err != nil {
				failures = append(failures, fmt.Sprintf("command %d answered %s", i, resp.Body))
				return
			}
			ids[i] = id
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("commands failed: %v", failures)
	}

	want := map[uint64]approvals.State{}
	for i, id := range ids {
		b := rs.bots[(i+1)%len(rs.bots)] // the click reaches another replica
		msg := b.approvalMessage(id)
		action, state := slackapp.ActionApprove, approvals.StateApplied
		if i%4 == 3 {
			action, state = slackapp.ActionDeny, approvals.StateDenied
		}
		want[id] = state
		wg.Go(func() {
			// Two approvers click at once on two more replicas: one decision.
			for k, who := range []string{approverAna, approverBob} {
				c := rs.bots[(i+1+k)%len(rs.bots)]
				cb := clickPayload(who, testChannel, action, strconv.FormatUint(id, 10), msg.TS, rs.slack.NewResponseURLFor(testChannel, who, msg.TS))
				if action == slackapp.ActionDeny {
					// The deny modal's submission, where a Deny is decided.
					cb = denySubmissionPayload(who, testChannel, id, "not during the freeze")
				}
				if resp, err := c.driver().Interaction(context.Background(), cb); err != nil || resp.Status != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("click on %d: %v %+v", id, err, resp))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("clicks failed: %v", failures)
	}
	rs.settled(t, want)

	applied := 0
	for i, id := range ids {
		r := rs.get(t, id)
		if got := rs.approvalMessages(id); got != 1 {
			t.Errorf("request %d has %d approval messages, want 1", id, got)
		}
		evs, err := rs.store.Audit(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		decisions := 0
		for _, e := range evs {
			if e.Action == approvals.ActionApprove || e.Action == approvals.ActionDeny {
				decisions++
			}
		}
		if decisions != 1 {
			t.Errorf("request %d audit has %d decisions, want 1: %+v", id, decisions, evs)
		}
		if r.State == approvals.StateApplied {
			applied++
			if got := rs.oa.Assignments("proj_abc", fmt.Sprintf("group_r%02d", i)); len(got) != 1 {
				t.Errorf("request %d: group holds %v, want role_01 once", id, got)
			}
		}
	}
	if got := rs.oa.AssignPOSTs(); got != applied {
		t.Errorf("%d assignment POSTs for %d applied requests, want exactly one each", got, applied)
	}
	if applied != n-n/4 {
		t.Errorf("%d requests applied, want %d", applied, n-n/4)
	}
}

// TestSocketReplicasActOnceOnAnEnvelopeDeliveredToBoth: two replicas in
// Socket Mode, each on its own connection, and Slack delivers the Deny
// click and then the deny modal's submission to both (a late ack,
// redelivered on the other connection). One replica acts on each: one
// views.open (the other would fail on the used trigger_id and tell the
// approver to click again), one decision, and neither ack carries an
// error into the modal.
func TestSocketReplicasActOnceOnAnEnvelopeDeliveredToBoth(t *testing.T) {
	t.Parallel()
	rs := newReplicasWith(t, 2, map[string]string{"SLACK_APP_TOKEN": testAppToken, "SLACK_SIGNING_SECRET": ""})
	b := rs.bots[0]
	b.waitFor("both replicas' connections", func() bool { return rs.slack.Connected() == 2 })
	reply := b.socketCommand(requester, defaultTarget+" asked over two connections")
	id, ok := requestID(reply.Text)
	if !ok {
		t.Fatalf("command answered %+v", reply)
	}
	msg := b.approvalMessage(id)

	// sendToBoth sends payload and has Slack deliver it to the other
	// connection too, then waits for both acks.
	sendToBoth := func(what string, payload any) slackfake.Envelope {
		t.Helper()
		env, err := rs.slack.SendInteraction(payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.slack.Redeliver(env); err != nil {
			t.Fatal(err)
		}
		var got slackfake.Envelope
		b.waitFor("both acks of the "+what, func() bool {
			for _, e := range rs.slack.Envelopes() {
				if e.ID == env && e.Acks == 2 {
					got = e
					return true
				}
			}
			return false
		})
		if got.Deliveries != 2 {
			t.Fatalf("the %s went out %d times, want once on each connection", what, got.Deliveries)
		}
		return got
	}

	views := rs.slack.Calls("views.open")
	click := slackfake.ClickPayload(slackfake.Click{
		User: approverAna, Channel: testChannel, ActionID: slackapp.ActionDeny, BlockID: "rolegate_decision",
		Value: strconv.FormatUint(id, 10), MessageTS: msg.TS, TriggerID: "4000.5000.denyonce",
		ResponseURL: rs.slack.NewResponseURLFor(testChannel, approverAna, msg.TS),
	})
	sendToBoth("Deny click", click)
	if got := rs.slack.Calls("views.open") - views; got != 1 {
		t.Errorf("the Deny click delivered to both replicas called views.open %d times, want 1", got)
	}
	opened := rs.slack.OpenedViews()
	if v := opened[len(opened)-1]; v.CallbackID != slackapp.DenyModalID || v.TriggerID != "4000.5000.denyonce" {
		t.Fatalf("the Deny click opened %+v", v)
	}

	sub := sendToBoth("deny submission", denySubmissionPayload(approverAna, testChannel, id, "not during the freeze"))
	for i, p := range sub.AckPayloads {
		if p != nil {
			t.Errorf("submission ack %d = %s, want none: the deny was recorded, the modal closes", i, p)
		}
	}
	rs.settled(t, map[uint64]approvals.State{id: approvals.StateDenied})
	evs, err := rs.store.Audit(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	decisions := 0
	for _, e := range evs {
		if e.Action == approvals.ActionApprove || e.Action == approvals.ActionDeny {
			decisions++
		}
	}
	if decisions != 1 {
		t.Errorf("audit has %d decisions, want 1: %+v", decisions, evs)
	}
	if r := rs.get(t, id); r.DenyReason != "not during the freeze" {
		t.Errorf("stored deny reason %q", r.DenyReason)
	}
	if n := len(b.ephemeralsTo(approverAna)); n != 0 {
		t.Errorf("the approver got %d private notices, want none: %+v", n, b.ephemeralsTo(approverAna))
	}
}

// TestReplicaStoppedMidBurstHandsOverItsWork: a replica that stops while
// requests wait on it (a rolling deploy) leaves nothing behind: the others
// take its jobs, every request ends right, and no approval message is
// posted twice.
func TestReplicaStoppedMidBurstHandsOverItsWork(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2)
	const n = 8
	for i := range n {
		rs.oa.AddGroup(fmt.Sprintf("group_s%02d", i), fmt.Sprintf("Stop team %d", i), false)
	}
	var ids []uint64
	for i := range n {
		ids = append(ids, rs.bots[0].request(requester, fmt.Sprintf("proj_abc group_s%02d role_01 stop %d", i, i)))
	}
	want := map[uint64]approvals.State{}
	for i, id := range ids {
		if i == n/2 {
			rs.bots[0].stop() // mid-burst: the rest is clicked on the survivor
		}
		b := rs.bots[1]
		msg := b.approvalMessage(id)
		cb := clickPayload(approverAna, testChannel, slackapp.ActionApprove, strconv.FormatUint(id, 10), msg.TS, rs.slack.NewResponseURLFor(testChannel, approverAna, msg.TS))
		if resp, err := b.driver().Interaction(context.Background(), cb); err != nil || resp.Status != http.StatusOK {
			t.Fatalf("click on %d: %v %+v", id, err, resp)
		}
		want[id] = approvals.StateApplied
	}
	rs.settled(t, want)
	// The stop may cut a post short after Slack took it; the survivor is
	// told it took the job over and looks for the message before posting,
	// so each approval message is posted once and is the one stored.
	for _, id := range ids {
		if got := rs.approvalMessages(id); got != 1 {
			t.Errorf("request %d has %d approval messages, want 1", id, got)
		}
		if ts := rs.get(t, id).MessageTS; ts == "" {
			t.Errorf("request %d has no message ts stored", id)
		} else if m, ok := rs.slack.Message(testChannel, ts); !ok || m.ThreadTS != "" {
			t.Errorf("request %d's stored ts %s names no approval message", id, ts)
		}
	}
	if got := rs.oa.AssignPOSTs(); got != n {
		t.Errorf("%d assignment POSTs, want %d", got, n)
	}
}

// TestReadyzFailsWhileTheDatabaseIsUnreachable: a replica whose database
// goes away stops taking traffic (/readyz 503, so the load balancer sends
// Slack to the others) and is ready again once it is back.
func TestReadyzFailsWhileTheDatabaseIsUnreachable(t *testing.T) {
	t.Parallel()
	srv, err := pgtest.Start() // a server of its own: this test stops it
	if err != nil {
		if errors.Is(err, pgtest.ErrNoServer) && os.Getenv("CI") != "true" {
			t.Skipf("SKIPPING: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	url, err := srv.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b := newBot(t, map[string]string{"ROLEGATE_DATABASE_URL": url})
	readyz := func() int {
		resp, err := http.Get("http://" + b.addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("/readyz = %d with the database up", got)
	}
	srv.Stop()
	b.waitFor("/readyz to fail without the database", func() bool { return readyz() == http.StatusServiceUnavailable })
}
