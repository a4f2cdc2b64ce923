package slackapp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// seed stores a request by requester and, when checked, passes its checks
// with names, so it is pending under the default rule.
func (r *modalRig) seed(t *testing.T, requester, reason string, checked bool) approvals.Request {
	t.Helper()
	ctx := t.Context()
	c, _, err := r.app.Service.Create(ctx, approvals.NewRequest{
		Ask: approvals.Ask{Project: "Support Project", Group: "Support Team", Role: "Key Manager"}, Reason: reason,
		Requester: requester, ChannelID: slackfake.DefaultChannel,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !checked {
		return c
	}
	v := approvals.Verdict{Rule: r.app.Service.Policy.Rules[0], Preview: approvals.Preview{
		Project: approvals.Project{ID: "proj_sup", Name: "Support Project"}, Group: approvals.Group{ID: "group_01", Name: "Support Team"},
		Role: approvals.Role{ID: "role_km", Name: "Key Manager", Permissions: []string{"api.keys.read"}}}}
	p, err := r.store.Update(ctx, c.ID, 0, func(q *approvals.Request) (approvals.Transition, error) { return approvals.Pass(q, v, time.Now()) })
	if err != nil {
		t.Fatal(err)
	}
	// The approval message was posted.
	_, ts, err := r.app.Slack.PostMessageContext(ctx, slackfake.DefaultChannel, slack.MsgOptionText(Summary(p), false))
	if err != nil {
		t.Fatal(err)
	}
	p, err = r.store.Update(ctx, c.ID, 0, func(q *approvals.Request) (approvals.Transition, error) {
		q.MessageTS = ts
		return approvals.Transition{Event: approvals.Event{Action: approvals.ActionPosted, At: time.Now()}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *modalRig) ask(t *testing.T, user, text string) string {
	t.Helper()
	reply := r.app.Command(t.Context(), slack.SlashCommand{Command: "/assign-role", UserID: user, ChannelID: slackfake.DefaultChannel, Text: text})
	if reply.ResponseType != "ephemeral" {
		t.Fatalf("%q answered %+v", text, reply)
	}
	if len(reply.Text) > 8000 {
		t.Errorf("%q answered %d characters", text, len(reply.Text))
	}
	return reply.Text
}

func TestStatusIsForTheRequesterAndApproversOnly(t *testing.T) {
	r := newModalRig(t, 50) // approvers: UANA
	pending := r.seed(t, "UREQ", "rotating <!channel> keys", true)
	checking := r.seed(t, "UREQ", "still checking", false)
	for _, who := range []string{"UREQ", "UANA"} {
		got := r.ask(t, who, fmt.Sprintf("status %d", pending.ID))
		for _, want := range []string{
			fmt.Sprintf("*Request #%d* (pending)", pending.ID), "Waiting for approval", "*Support Project* (`proj_sup`)",
			"*Key Manager* (`role_km`)", "*Rule* default", "0 of 1", "rotating &lt;!channel&gt; keys",
			"|approval message>", "*History* (3 events)", "*create*", "*check*", "*posted*",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("status for %s lacks %q:\n%s", who, want, got)
			}
		}
	}
	if got := r.ask(t, "UREQ", fmt.Sprintf("status %d", checking.ID)); !strings.Contains(got, "Being checked") || !strings.Contains(got, "`Support Project`") {
		t.Errorf("status of a request being checked:\n%s", got)
	}
	// A stranger learns nothing: the answer is the one for a missing id.
	stranger := r.ask(t, "USTRANGER", fmt.Sprintf("status %d", pending.ID))
	missing := r.ask(t, "USTRANGER", fmt.Sprintf("status %d", 999))
	if stranger != strings.Replace(missing, "#999", fmt.Sprintf("#%d", pending.ID), 1) || strings.Contains(stranger, "Support") || strings.Contains(stranger, "UREQ") {
		t.Errorf("a stranger was told %q (missing id: %q)", stranger, missing)
	}
}

func TestStatusHistoryStaysWithinLimits(t *testing.T) {
	events := make([]approvals.Event, 500)
	for i := range events {
		events[i] = approvals.Event{Actor: "UANA", Action: approvals.ActionRemind, At: time.Unix(1_800_000_000+int64(i), 0), Detail: strings.Repeat("<x>", 50)}
	}
	r := approvals.Request{ID: 7, State: approvals.StatePending, Reason: strings.Repeat("r", approvals.MaxReasonLen), Requester: "U1", ChannelID: "C1"}
	got := StatusText(r, events, "")
	if len(got) > 4000 || !strings.Contains(got, "earlier events not shown") || !strings.Contains(got, "<!date^1800000499^") {
		t.Fatalf("%d chars, most recent shown: %v\n%s", len(got), strings.Contains(got, "1800000499"), got)
	}
}

func TestListShowsOwnAndDecidableRequests(t *testing.T) {
	r := newModalRig(t, 50)
	mine := r.seed(t, "UREQ", "mine", true)
	r.seed(t, "UREQ", "mine too", false)
	for i := range 25 {
		r.seed(t, fmt.Sprintf("UOTHER%d", i), "theirs", true)
	}
	got := r.ask(t, "UREQ", "list")
	if !strings.Contains(got, "*Your open requests* (2)") || !strings.Contains(got, fmt.Sprintf("|#%d> pending", mine.ID)) || strings.Contains(got, "Waiting for your decision") {
		t.Errorf("requester's list:\n%s", got)
	}
	if !strings.Contains(got, fmt.Sprintf("<%s|#%d>", slackfake.Permalink(slackfake.DefaultChannel, mine.MessageTS), mine.ID)) {
		t.Errorf("no link to the approval message:\n%s", got)
	}
	got = r.ask(t, "UANA", "list")
	// The requester's pending request is one the approver decides too.
	if !strings.Contains(got, "*Waiting for your decision* (26)") || !strings.Contains(got, "…and 6 more") || !strings.Contains(got, fmt.Sprintf("from <@UOTHER%d>", 24)) {
		t.Errorf("approver's list:\n%s", got)
	}
	if n := strings.Count(got, "<https://"); n != 20 {
		t.Errorf("approver's list shows %d links, want 20:\n%s", n, got)
	}
	if got := r.ask(t, "USTRANGER", "list"); got != "You have no open requests, and none is waiting for your decision." {
		t.Errorf("stranger's list: %s", got)
	}
}
