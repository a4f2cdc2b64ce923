package slackapp

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

func TestEscape(t *testing.T) {
	tests := map[string]string{
		"plain":                     "plain",
		"<!channel> hi":             "&lt;!channel&gt; hi",
		"<@U123|boss>":              "&lt;@U123|boss&gt;",
		"a & b":                     "a &amp; b",
		"&lt; already":              "&amp;lt; already",
		"<https://evil.example|ok>": "&lt;https://evil.example|ok&gt;",
	}
	for in, want := range tests {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func sampleRequest() approvals.Request {
	return approvals.Request{
		ID: 42, State: approvals.StatePending,
		Target:    approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
		Reason:    "need key rotation <!channel> & <https://evil.example|click> for incident 42",
		Requester: "U0REQ", ChannelID: "C0001", Required: 2,
		CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour),
	}
}

// blockText collects every piece of text a person sees in blocks.
func blockText(t *testing.T, blocks []slack.Block) string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	var generic []map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["text"].(string); ok {
				sb.WriteString(s + "\n")
			}
			for k, c := range x {
				if k != "text" || fmt.Sprint(c) != c {
					walk(c)
				}
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	for _, b := range generic {
		walk(b)
	}
	return sb.String()
}

// checkLimits fails when blocks break a Block Kit limit Slack enforces.
func checkLimits(t *testing.T, blocks []slack.Block) {
	t.Helper()
	if len(blocks) > 50 {
		t.Fatalf("%d blocks; Slack allows 50", len(blocks))
	}
	primaries := 0
	for _, b := range blocks {
		switch b := b.(type) {
		case *slack.SectionBlock:
			if b.Text != nil && len(b.Text.Text) > 3000 {
				t.Fatalf("section text of %d chars; Slack allows 3000", len(b.Text.Text))
			}
			if len(b.Fields) > 10 {
				t.Fatalf("%d fields; Slack allows 10", len(b.Fields))
			}
			for _, f := range b.Fields {
				if len(f.Text) > 2000 {
					t.Fatalf("field of %d chars; Slack allows 2000", len(f.Text))
				}
			}
		case *slack.HeaderBlock:
			if len(b.Text.Text) > 150 {
				t.Fatalf("header of %d chars; Slack allows 150", len(b.Text.Text))
			}
		case *slack.ActionBlock:
			for _, e := range b.Elements.ElementSet {
				btn, ok := e.(*slack.ButtonBlockElement)
				if !ok {
					continue
				}
				if len(btn.Text.Text) > 75 || len(btn.ActionID) > 255 || len(btn.Value) > 2000 {
					t.Fatalf("button over a limit: %+v", btn)
				}
				if btn.Style == slack.StylePrimary {
					primaries++
				}
				if c := btn.Confirm; c != nil && (len(c.Title.Text) > 100 || len(c.Text.Text) > 300) {
					t.Fatalf("confirm dialog over a limit: %q / %q", c.Title.Text, c.Text.Text)
				}
			}
		}
	}
	if primaries > 1 {
		t.Fatalf("%d primary buttons; use one at most", primaries)
	}
}

func buttons(blocks []slack.Block) []*slack.ButtonBlockElement {
	var out []*slack.ButtonBlockElement
	for _, b := range blocks {
		if a, ok := b.(*slack.ActionBlock); ok {
			for _, e := range a.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok {
					out = append(out, btn)
				}
			}
		}
	}
	return out
}

func TestApprovalBlocksPending(t *testing.T) {
	r := sampleRequest()
	blocks := ApprovalBlocks(r)
	checkLimits(t, blocks)
	text := blockText(t, blocks)
	for _, want := range []string{"#42", "<@U0REQ>", "proj_abc", "group_01", "role_01", "need key rotation", "0 of 2", "<!date^1795856400^"} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"<!channel>", "<https://evil.example|click>"} {
		if strings.Contains(text, bad) {
			t.Errorf("approval message lets user text through unescaped: %q", bad)
		}
	}
	if !strings.Contains(text, "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;") {
		t.Errorf("reason not escaped as expected:\n%s", text)
	}
	bs := buttons(blocks)
	if len(bs) != 3 {
		t.Fatalf("%d buttons, want Approve, Deny and Cancel", len(bs))
	}
	approve, deny, cancel := bs[0], bs[1], bs[2]
	if cancel.ActionID != ActionCancel || cancel.Value != "42" || cancel.Style != "" {
		t.Errorf("Cancel button = %+v", cancel)
	}
	if approve.Text.Text != "Approve" || approve.ActionID != ActionApprove || approve.Value != "42" || approve.Style != slack.StylePrimary || approve.Confirm == nil {
		t.Errorf("Approve button = %+v", approve)
	}
	if deny.Text.Text != "Deny" || deny.ActionID != ActionDeny || deny.Value != "42" || deny.Style != slack.StyleDanger {
		t.Errorf("Deny button = %+v", deny)
	}
}

func TestApprovalBlocksAfterDecision(t *testing.T) {
	decided := t0.Add(time.Hour)
	tests := []struct {
		name string
		edit func(*approvals.Request)
		want []string
	}{
		{"one of two", func(r *approvals.Request) {
			r.Approvals = []approvals.Vote{{User: "U0ANA", At: decided}}
		}, []string{"1 of 2, by <@U0ANA>", "Waiting for approval"}},
		{"approved", func(r *approvals.Request) {
			r.State, r.Decider, r.DecidedAt = approvals.StateApproved, "U0BOB", decided
			r.Approvals = []approvals.Vote{{User: "U0ANA", At: decided}, {User: "U0BOB", At: decided}}
		}, []string{"Approved", "<@U0BOB>", "2 of 2, by <@U0ANA>, <@U0BOB>", "<!date^1795773600^"}},
		{"applied", func(r *approvals.Request) {
			r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateApplied, "U0BOB", decided, decided
			r.Assignment = &approvals.Assignment{}
		}, []string{"Role assigned", "<@U0BOB>"}},
		{"denied", func(r *approvals.Request) {
			r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateDenied, "U0ANA", decided, decided
			r.DenyReason = "not during the <!here> freeze"
		}, []string{"Denied", "<@U0ANA>", "<!date^1795773600^", "> not during the &lt;!here&gt; freeze"}},
		{"expired", func(r *approvals.Request) {
			r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateExpired, approvals.SystemActor, decided, decided
		}, []string{"Expired"}},
		{"cancelled by requester", func(r *approvals.Request) {
			r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateCancelled, "U0REQ", decided, decided
		}, []string{"Cancelled", "requester"}},
		{"failed", func(r *approvals.Request) {
			r.State, r.Decider, r.DecidedAt, r.FinishedAt = approvals.StateFailed, "U0BOB", decided, decided
			r.Failure = &approvals.Failure{Message: "nope"}
		}, []string{"assignment failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleRequest()
			tt.edit(&r)
			blocks := ApprovalBlocks(r)
			checkLimits(t, blocks)
			text := blockText(t, blocks)
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("message lacks %q:\n%s", w, text)
				}
			}
			if got := len(buttons(blocks)); (r.State == approvals.StatePending) != (got == 3) {
				t.Errorf("state %s shows %d buttons", r.State, got)
			}
		})
	}
}

func TestResultBlocks(t *testing.T) {
	r := sampleRequest()
	r.State = approvals.StateApplied
	r.Assignment = &approvals.Assignment{
		Group: approvals.Group{ID: "group_01", Name: "Support <Team>", CreatedAt: time.Unix(1711471533, 0), SCIMManaged: true},
		Role: approvals.Role{ID: "role_01", Name: "API Group Manager", Description: "Allows managing organization groups",
			Permissions: []string{"api.groups.read", "api.groups.write"}, ResourceType: "api.project", Predefined: false},
	}
	blocks := ResultBlocks(r)
	checkLimits(t, blocks)
	text := blockText(t, blocks)
	for _, want := range []string{"Support &lt;Team&gt;", "group_01", "<!date^1711471533^", "SCIM-managed*\nyes",
		"API Group Manager", "role_01", "Allows managing organization groups", "api.project", "Predefined*\nno",
		"api.groups.read", "api.groups.write"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}

	t.Run("many permissions stay within limits and are all listed or counted", func(t *testing.T) {
		r := r
		a := *r.Assignment
		for i := range 5000 {
			a.Role.Permissions = append(a.Role.Permissions, fmt.Sprintf("api.some.long.permission.name.number.%04d", i))
		}
		r.Assignment = &a
		blocks := ResultBlocks(r)
		checkLimits(t, blocks)
		text := blockText(t, blocks)
		if !strings.Contains(text, "number.0000") || !strings.Contains(text, "more") {
			t.Errorf("long permission list not rendered as expected")
		}
	})

	t.Run("failure shows the API's error", func(t *testing.T) {
		r := sampleRequest()
		r.State = approvals.StateFailed
		r.Failure = &approvals.Failure{Status: 400, Message: "Group <x> is not in project", Type: "invalid_request_error", Code: "group_not_in_project", RequestID: "req_123"}
		blocks := ResultBlocks(r)
		checkLimits(t, blocks)
		text := blockText(t, blocks)
		for _, want := range []string{"failed", "Group &lt;x&gt; is not in project", "invalid_request_error", "group_not_in_project", "req_123", "400"} {
			if !strings.Contains(text, want) {
				t.Errorf("failure lacks %q:\n%s", want, text)
			}
		}
	})
}

func TestApprovalBlocksLongReasonWithinLimits(t *testing.T) {
	r := sampleRequest()
	r.Reason = strings.Repeat("<&>", approvals.MaxReasonLen/3) // escapes to 4-5x its length
	checkLimits(t, ApprovalBlocks(r))
}

// previewed is sampleRequest after its checks found names and permissions.
func previewed(perms int) approvals.Request {
	r := sampleRequest()
	r.Rule = "key <managers>"
	r.Preview = &approvals.Preview{
		Project: approvals.Project{ID: "proj_abc", Name: "Support <!here> Project"},
		Group:   approvals.Group{ID: "group_01", Name: "Support & Team", SCIMManaged: true},
		Role:    approvals.Role{ID: "role_01", Name: "Key Manager", Description: "Manages <@U0BOSS> API keys"},
	}
	for i := range perms {
		r.Preview.Role.Permissions = append(r.Preview.Role.Permissions, fmt.Sprintf("api.organization.projects.permission.number.%04d", i))
	}
	return r
}

func TestApprovalBlocksNameWhatApproveGrants(t *testing.T) {
	r := previewed(120)
	blocks := ApprovalBlocks(r)
	checkLimits(t, blocks)
	text := blockText(t, blocks)
	for _, want := range []string{
		"*Support &lt;!here&gt; Project* `proj_abc`", "*Support &amp; Team* `group_01`", "SCIM-managed: yes",
		"*Key Manager* `role_01`", "Manages &lt;@U0BOSS&gt; API keys", "*Permissions* (120)",
		"key &lt;managers&gt;", "need key rotation", "0 of 2", "Expires", "permanent",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	for _, p := range r.Preview.Role.Permissions {
		if !strings.Contains(text, p) {
			t.Fatalf("approval message lacks permission %q", p)
		}
	}
	if strings.Contains(text, "more") {
		t.Errorf("120 permissions fit in Block Kit, yet some are left out")
	}
	raw, _ := json.Marshal(blocks)
	if strings.Contains(string(raw), `"verbatim":false`) {
		t.Errorf("a mrkdwn text without verbatim: %s", raw)
	}
	// The buttons stay last, below everything they grant.
	if _, ok := blocks[len(blocks)-1].(*slack.ActionBlock); !ok {
		t.Errorf("the last block is %T, want the buttons", blocks[len(blocks)-1])
	}
}

func TestApprovalBlocksCountWhatDoesNotFit(t *testing.T) {
	r := previewed(6000)
	blocks := ApprovalBlocks(r)
	checkLimits(t, blocks)
	text := blockText(t, blocks)
	shown := strings.Count(text, "api.organization.projects.permission.number.")
	var more int
	if i := strings.Index(text, "…and "); i < 0 {
		t.Fatalf("no count of the permissions left out")
	} else {
		fmt.Sscanf(text[i:], "…and %d more", &more)
	}
	if shown+more != 6000 || shown < 1000 {
		t.Fatalf("%d shown + %d counted, want all 6000 accounted for and as many shown as fit", shown, more)
	}
	if len(blocks) != 50 {
		t.Errorf("%d blocks: the permissions should use all 50", len(blocks))
	}
}

func TestConfirmNamesTheRoleAndTheGroup(t *testing.T) {
	r := previewed(1)
	if got := confirmText(r); !strings.Contains(got, "*Support &amp; Team*") || !strings.Contains(got, "*Key Manager*") || !strings.Contains(got, "`role_01`") {
		t.Errorf("confirm text %q", got)
	}
	long := previewed(1)
	long.Preview.Group.Name = strings.Repeat("Very long group name ", 20)
	long.Preview.Role.Name = strings.Repeat("Ünïcode role ", 30)
	long.GroupID, long.RoleID = "group_"+strings.Repeat("g", 120), "role_"+strings.Repeat("r", 120)
	got := confirmText(long)
	if utf8.RuneCountInString(got) > 300 || !strings.Contains(got, "*Very long group") || !strings.Contains(got, "*Ünïcode role") || !strings.Contains(got, "project") {
		t.Errorf("confirm text for long names (%d chars): %q", utf8.RuneCountInString(got), got)
	}
	checkLimits(t, ApprovalBlocks(long))
}
