package slackapp

import (
	"strings"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

func TestApprovalMessageMentionsTheApprovers(t *testing.T) {
	r := sampleRequest()
	r.Rule, r.Approvers = "owners", []string{"U0ANA", "S0PLATFORM", "U0REQ", "W0BEN"}
	r.Approvals = []approvals.Vote{{User: "W0BEN", At: t0}}
	text := blockText(t, ApprovalBlocks(r))
	for _, want := range []string{"<@U0ANA>", "<!subteam^S0PLATFORM>", "rule `owners`"} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	// The requester cannot decide and Ben has voted: neither is pinged.
	for _, bad := range []string{"<@U0REQ>, ", "<@W0BEN>,", "from <@W0BEN>"} {
		if strings.Contains(text, bad) {
			t.Errorf("approval message mentions %q:\n%s", bad, text)
		}
	}
	r.State = approvals.StateApproved
	if text := blockText(t, ApprovalBlocks(r)); strings.Contains(text, "<!subteam^") {
		t.Errorf("a decided request still pings the approvers:\n%s", text)
	}
}

func TestRemindTextMentionsThoseWhoHaveNotActed(t *testing.T) {
	r := sampleRequest()
	r.Approvers = []string{"U0ANA", "S0PLATFORM", "U0REQ", "U0BOB"}
	r.Approvals = []approvals.Vote{{User: "U0ANA", At: t0}}
	got := RemindText(r)
	for _, want := range []string{"<@U0BOB>", "<!subteam^S0PLATFORM>", "1 more approval", "#42"} {
		if !strings.Contains(got, want) {
			t.Errorf("reminder lacks %q: %s", want, got)
		}
	}
	if strings.Contains(got, "<@U0ANA>,") || strings.Contains(got, "<@U0ANA> ") || strings.Count(got, "<@U0REQ>") != 1 {
		t.Errorf("reminder pings someone who acted or cannot act: %s", got)
	}
}

func TestDMTextSaysWhatHappened(t *testing.T) {
	decided := t0.Add(time.Hour)
	base := sampleRequest()
	base.Preview = &approvals.Preview{Project: approvals.Project{ID: "proj_abc", Name: "Support"},
		Group: approvals.Group{ID: "group_01", Name: "Responders"}, Role: approvals.Role{ID: "role_01", Name: "Owner"}}
	base.Decider, base.DecidedAt, base.FinishedAt = "U0ANA", decided, decided
	tests := []struct {
		state approvals.State
		edit  func(*approvals.Request)
		link  string
		want  []string
	}{
		{approvals.StatePending, nil, "https://rolegate-test.slack.com/archives/C0001/p1700000000000100",
			[]string{"waiting for approval", "<https://rolegate-test.slack.com/archives/C0001/p1700000000000100|in the approval message>", "<#C0001>", "*Owner*"}},
		{approvals.StatePending, nil, "", []string{"waiting for approval", "in <#C0001>"}},
		{approvals.StateApproved, nil, "", []string{"approved by <@U0ANA>", "assigning"}},
		{approvals.StateApplied, func(r *approvals.Request) {
			r.Assignment = &approvals.Assignment{Group: approvals.Group{ID: "group_01", Name: "Responders"},
				Role: approvals.Role{ID: "role_01", Name: "Owner", Permissions: []string{"api.keys.write"}}}
		}, "", []string{"applied", "*Responders*", "*Owner*", "`api.keys.write`"}},
		{approvals.StateDenied, func(r *approvals.Request) { r.DenyReason = "not <!here> during the freeze" }, "",
			[]string{"denied by <@U0ANA>", "> not &lt;!here&gt; during the freeze"}},
		{approvals.StateFailed, func(r *approvals.Request) {
			r.Failure = &approvals.Failure{Status: 403, Message: "Group is not in project", Type: "invalid_request_error", RequestID: "req_1"}
		}, "", []string{"did not assign", "Group is not in project", "`invalid_request_error`", "`req_1`", "403"}},
		{approvals.StateExpired, nil, "", []string{"expired", "without a decision"}},
		{approvals.StateCancelled, func(r *approvals.Request) { r.Decider = "U0REQ" }, "", []string{"cancelled, as you asked"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			r := base
			if tt.edit != nil {
				tt.edit(&r)
			}
			r.State = approvals.StateApplied // a late DM says what it was queued for
			got := DMText(r, tt.state, tt.link)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("DM for %s lacks %q: %s", tt.state, w, got)
				}
			}
			if !strings.Contains(got, "#42") {
				t.Errorf("DM does not name the request: %s", got)
			}
		})
	}
}
