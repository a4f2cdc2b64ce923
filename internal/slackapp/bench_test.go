package slackapp_test

// Benchmarks of the work on every Slack request and message: signature
// verification and Block Kit rendering with its JSON encoding. Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/slackapp/
//
// The figures are measurements, never assertions.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
)

var benchAt = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func benchPending() approvals.Request {
	return approvals.Request{
		ID: 4242, State: approvals.StatePending,
		Target:    approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
		Reason:    "need key rotation for incident 42 <!channel> & friends",
		Requester: "U0REQ", ChannelID: "C0001", Required: 2,
		Approvals: []approvals.Vote{{User: "U0ANA", At: benchAt.Add(time.Minute)}},
		CreatedAt: benchAt, ExpiresAt: benchAt.Add(24 * time.Hour),
	}
}

func benchApplied(permissions int) approvals.Request {
	r := benchPending()
	r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateApplied, "U0BOB", benchAt.Add(2*time.Minute), benchAt.Add(2*time.Minute+300*time.Millisecond)
	perms := make([]string, permissions)
	for i := range perms {
		perms[i] = fmt.Sprintf("api.organization.projects.resource_%02d.write", i)
	}
	r.Assignment = &approvals.Assignment{
		Group: approvals.Group{ID: "group_01", Name: "Support Team", CreatedAt: benchAt.Add(-365 * 24 * time.Hour)},
		Role: approvals.Role{ID: "role_01", Name: "API Project Key Manager", Description: "Allows managing API keys for the project",
			Permissions: perms, ResourceType: "api.project"},
	}
	return r
}

// BenchmarkApprovalBlocks renders the approval message and encodes it as
// chat.postMessage sends it, pending (with buttons) and decided.
func BenchmarkApprovalBlocks(b *testing.B) {
	for _, tc := range []struct {
		name string
		r    approvals.Request
	}{{"pending", benchPending()}, {"applied", benchApplied(2)}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := json.Marshal(slackapp.ApprovalBlocks(tc.r)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResultBlocks renders and encodes the result message: a role with
// 2 permissions (typical) and with 200 (packed into sections).
func BenchmarkResultBlocks(b *testing.B) {
	for _, n := range []int{2, 200} {
		r := benchApplied(n)
		b.Run(fmt.Sprintf("permissions%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := json.Marshal(slackapp.ResultBlocks(r)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchBodies are request bodies as Slack sends them: a slash command and a
// block_actions click payload.
func benchBodies(b *testing.B) map[string][]byte {
	b.Helper()
	command := url.Values{
		"token": {"legacy-verification-token"}, "team_id": {"T0TEAM"}, "team_domain": {"rolegate"},
		"channel_id": {"C0001"}, "channel_name": {"access-requests"}, "user_id": {"U0REQ"}, "user_name": {"u0req"},
		"command": {"/assign-role"}, "text": {"proj_abc group_01 role_01 need key rotation for incident 42"},
		"api_app_id": {"A0APP"}, "response_url": {"https://hooks.slack.com/commands/T0TEAM/397700885554/96rGlfmibIGlgcZRskXaIFfN"},
		"trigger_id": {"398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"},
	}.Encode()
	cb := slack.InteractionCallback{
		Type: slack.InteractionTypeBlockActions, Team: slack.Team{ID: "T0TEAM"}, User: slack.User{ID: "U0ANA", Name: "u0ana"},
		Channel:   slack.Channel{GroupConversation: slack.GroupConversation{Conversation: slack.Conversation{ID: "C0001"}}},
		APIAppID:  "A0APP",
		Container: slack.Container{Type: "message", MessageTs: "1700000000.000100", ChannelID: "C0001"},
		ActionCallback: slack.ActionCallbacks{BlockActions: []*slack.BlockAction{{
			ActionID: slackapp.ActionApprove, BlockID: "rolegate_decision", Value: "4242", Type: "button", ActionTs: "1700000000.000001",
		}}},
	}
	raw, err := json.Marshal(cb)
	if err != nil {
		b.Fatal(err)
	}
	return map[string][]byte{"command": []byte(command), "click": []byte(url.Values{"payload": {string(raw)}}.Encode())}
}

// BenchmarkVerify checks Slack's signature over a slash command and a click
// payload, as every HTTP request from Slack is checked.
func BenchmarkVerify(b *testing.B) {
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	for _, name := range []string{"command", "click"} {
		body := benchBodies(b)[name]
		b.Run(fmt.Sprintf("%s_%dB", name, len(body)), func(b *testing.B) {
			now := time.Now()
			ts := strconv.FormatInt(now.Unix(), 10)
			h := http.Header{}
			h.Set("X-Slack-Request-Timestamp", ts)
			h.Set("X-Slack-Signature", slackapp.Sign(secret, ts, body))
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := slackapp.Verify(secret, h, body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseCommand parses a slash command's text.
func BenchmarkParseCommand(b *testing.B) {
	text := "proj_abc group_01 role_01 " + strings.Repeat("need key rotation for incident 42 ", 3)
	for b.Loop() {
		if _, err := slackapp.ParseCommand(text); err != nil {
			b.Fatal(err)
		}
	}
}
