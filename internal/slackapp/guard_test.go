package slackapp

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

func TestResponseURLsOnlySlack(t *testing.T) {
	t.Parallel()
	p := ResponseURLs{APIURL: "http://127.0.0.1:4567/api/"}
	for _, tt := range []struct {
		url  string
		want bool
	}{
		{"https://hooks.slack.com/commands/T1/123/abc", true},
		{"https://HOOKS.slack.com/actions/T1/1/x", true},
		{"http://hooks.slack.com/commands/T1/123/abc", false}, // not https
		{"https://hooks.slack.com.evil.example/commands", false},
		{"https://evil.example/hooks.slack.com", false},
		{"https://user:pw@hooks.slack.com/commands", false},
		{"http://127.0.0.1:4567/response/1", true}, // the configured (test) Slack host
		{"http://127.0.0.1:9999/response/1", false},
		{"javascript:alert(1)", false},
		{"", false},
	} {
		if got := p.Allowed(tt.url); got != tt.want {
			t.Errorf("Allowed(%q) = %v, want %v", tt.url, got, tt.want)
		}
	}
}

// texts collects every text object of blocks.
func texts(t *testing.T, blocks []slack.Block) []map[string]any {
	t.Helper()
	b, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["type"] == "mrkdwn" || x["type"] == "plain_text" {
				out = append(out, x)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}

func guardRequest() approvals.Request {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t := approvals.Target{ProjectID: "proj_" + strings.Repeat("P", 120) + "END", GroupID: "group_" + strings.Repeat("G", 121), RoleID: "role_" + strings.Repeat("R", 122)}
	return approvals.Request{ID: 7, State: approvals.StatePending, Target: t, Ask: approvals.AskFor(t), Reason: "see https://evil.example and #general @here",
		Requester: "UREQ", ChannelID: "C1", CreatedAt: now, ExpiresAt: now.Add(time.Hour), Required: 1, Rule: "default"}
}

// TestUserTextIsVerbatim: every mrkdwn text rolegate sends is verbatim, so
// Slack does not turn a bare URL, #channel or @word in a reason or an API
// name into a link or a mention.
func TestUserTextIsVerbatim(t *testing.T) {
	t.Parallel()
	r := guardRequest()
	applied := r
	applied.State = approvals.StateApplied
	applied.Assignment = &approvals.Assignment{Group: approvals.Group{ID: r.GroupID, Name: "@here team"}, Role: approvals.Role{ID: r.RoleID, Name: "Owner"}}
	for name, blocks := range map[string][]slack.Block{"approval": ApprovalBlocks(r), "result": ResultBlocks(applied)} {
		for _, tx := range texts(t, blocks) {
			if tx["type"] == "mrkdwn" && tx["verbatim"] != true {
				t.Errorf("%s: mrkdwn text without verbatim: %v", name, tx["text"])
			}
		}
	}
}

// TestConfirmDialogKeepsTheProject: with ids at the 128-character limit,
// the Approve confirm dialog stays within Slack's 300 characters by
// shortening ids in the middle, and never cuts the project away.
func TestConfirmDialogKeepsTheProject(t *testing.T) {
	t.Parallel()
	text := confirmText(guardRequest())
	if n := len(text); n > 300 {
		t.Fatalf("confirm text is %d characters, over Slack's 300", n)
	}
	for _, want := range []string{"in project", "proj_", "END`", "group_", "role_"} {
		if !strings.Contains(text, want) {
			t.Errorf("confirm text %q lacks %q", text, want)
		}
	}
}

// TestFinishedMessageHasNoExpiry: once decided, the approval message no
// longer shows when the request would have expired.
func TestFinishedMessageHasNoExpiry(t *testing.T) {
	t.Parallel()
	r := guardRequest()
	pending, _ := json.Marshal(ApprovalBlocks(r))
	if !strings.Contains(string(pending), "Expires") {
		t.Fatalf("a pending request does not show its expiry")
	}
	r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateDenied, "UANA", r.CreatedAt.Add(time.Minute), r.CreatedAt.Add(time.Minute)
	denied, _ := json.Marshal(ApprovalBlocks(r))
	if strings.Contains(string(denied), "Expires") {
		t.Errorf("a denied request still shows Expires")
	}
}

// TestAlreadyAssignedSummaryShowsWhatIsKnown: when the group look-up after
// finding the role failed, the summary shows the group id, not an empty
// name or a year-1 date.
func TestAlreadyAssignedSummaryShowsWhatIsKnown(t *testing.T) {
	t.Parallel()
	r := guardRequest()
	r.State = approvals.StateApplied
	r.Assignment = &approvals.Assignment{Group: approvals.Group{ID: r.GroupID}, Role: approvals.Role{ID: r.RoleID, Name: "Owner"}, AlreadyAssigned: true}
	b, _ := json.Marshal(ResultBlocks(r))
	s := string(b)
	for _, bad := range []string{"0001", "Group created", "*Group*\\n\\n", "**"} {
		if strings.Contains(s, bad) {
			t.Errorf("summary shows %q for what the failed look-up did not learn:\n%s", bad, s)
		}
	}
	if !strings.Contains(s, r.GroupID[:20]) {
		t.Errorf("summary does not show the group id")
	}
}
