package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// newSocketBot runs the bot in Socket Mode: no signing secret, no public URL.
func newSocketBot(t *testing.T) *bot {
	t.Helper()
	return newBot(t, map[string]string{"SLACK_APP_TOKEN": testAppToken, "SLACK_SIGNING_SECRET": ""})
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
	if reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "Request #1 is waiting for approval") {
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

func TestSocketModeNotReadyWhileDisconnected(t *testing.T) {
	b := newSocketBot(t)
	b.slack.ServerErrorNext("apps.connections.open", 3, http.StatusServiceUnavailable)
	b.slack.DropConnections()
	b.waitFor("/readyz to say not ready", func() bool {
		resp, err := http.Get("http://" + b.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp, err := http.Get("http://" + b.addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz while disconnected: %v %v", resp, err)
	}
	b.waitReady() // reconnects once Slack answers again
	reply := b.socketCommand(requester, defaultTarget+" after reconnect")
	if !strings.Contains(reply.Text, fmt.Sprintf("Request #%d", 1)) {
		t.Fatalf("reply = %+v", reply)
	}
}
