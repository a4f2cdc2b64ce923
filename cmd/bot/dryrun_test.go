package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

const dryRunWords = "*Dry run* — rolegate will not change anything at OpenAI"

// wantDryRunFlow checks what a dry-run bot did with request applied, once
// approved: the flow ran to the end, every message said "Dry run", and
// OpenAI saw no write.
func wantDryRunFlow(t *testing.T, b *bot, applied uint64) {
	t.Helper()
	r := b.waitSettled(applied)
	if r.State != approvals.StateApplied || r.Assignment == nil {
		t.Fatalf("dry-run request ended %s (%+v), want applied with the would-be assignment", r.State, r.Assignment)
	}
	wantNoWrites(t, b)
	if b.openai.Calls(openaitest.OpListGroupRoles) == 0 {
		t.Error("dry run skipped the read-only calls it should still make")
	}
	approval := b.approvalMessage(applied)
	result := b.resultMessage(applied)
	for what, m := range map[string]slackfake.Message{"approval message": approval, "result": result} {
		if !strings.Contains(m.VisibleText(), dryRunWords) {
			t.Errorf("the %s does not say Dry run:\n%s", what, m.VisibleText())
		}
		for _, v := range m.History {
			if !strings.HasPrefix(v.Text, slackapp.DryRunBanner) {
				t.Errorf("a version of the %s does not start with the banner: %q", what, v.Text)
			}
		}
	}
	if len(approval.History) < 2 {
		t.Errorf("the approval message was never updated (%d versions)", len(approval.History))
	}
	if !strings.Contains(result.VisibleText(), r.Assignment.Role.Name) || !strings.Contains(result.VisibleText(), "would have given") {
		t.Errorf("the result does not say what would have been assigned:\n%s", result.VisibleText())
	}
	followUp := fmt.Sprintf("Request #%d is waiting for approval", applied)
	told := false
	for _, e := range b.slack.Ephemerals() {
		if strings.Contains(e.Text, followUp) {
			told = true
			if !strings.HasPrefix(e.Text, slackapp.DryRunBanner) {
				t.Errorf("the requester's private follow-up does not say Dry run: %q", e.Text)
			}
		}
	}
	if !told {
		t.Error("the requester was not told privately that the request waits for approval")
	}

	resp, err := http.Get("http://" + b.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\nrolegate_dry_run 1\n") {
		t.Error("/metrics lacks rolegate_dry_run 1")
	}
	started := logLines(b.logs.String(), "INFO", "rolegate started")
	if len(started) == 0 || started[0]["dry_run"] != true {
		t.Errorf("the start-up log line lacks dry_run true: %v", started)
	}
	if len(logLines(b.logs.String(), "WARN", "Dry run (ROLEGATE_DRY_RUN=true): rolegate will never POST or DELETE at OpenAI; every message says what would have been done")) != 1 {
		t.Error("no start-up warning about the dry run")
	}
}

func TestDryRunOverHTTPNeverWritesAtOpenAI(t *testing.T) {
	b := newBot(t, map[string]string{"ROLEGATE_DRY_RUN": "true"})
	id := b.request(requester, defaultTarget+" trying rolegate out, INC-7")
	if status := b.click(approverAna, slackapp.ActionApprove, id); status != http.StatusOK {
		t.Fatalf("click answered %d", status)
	}
	wantDryRunFlow(t, b, id)
	// A role the group already holds, and a cancelled request: still
	// nothing written.
	b.openai.AddAssignment("proj_abc", "group_02", "role_01")
	held := b.request(requester, "proj_abc group_02 role_01 already there")
	cancelled := b.request(requester, defaultTarget+" never mind")
	b.approvalMessage(cancelled)
	b.command(requester, fmt.Sprintf("cancel %d", cancelled))
	b.waitSettled(held)
	b.waitSettled(cancelled)
	wantNoWrites(t, b)
}

// wantNoWrites fails unless every request OpenAI received was a read.
func wantNoWrites(t *testing.T, b *bot) {
	t.Helper()
	if n, d := b.openai.AssignPOSTs(), b.openai.RevokeDELETEs(); n != 0 || d != 0 {
		t.Fatalf("dry run sent %d POSTs and %d DELETEs to OpenAI", n, d)
	}
	for _, rec := range b.openai.Requests() {
		if rec.Method != http.MethodGet {
			t.Errorf("dry run sent %s %s to OpenAI", rec.Method, rec.Path)
		}
	}
}

func TestDryRunOverSocketModeNeverWritesAtOpenAI(t *testing.T) {
	b := newBot(t, map[string]string{"SLACK_APP_TOKEN": testAppToken, "SLACK_SIGNING_SECRET": "", "ROLEGATE_DRY_RUN": "true"})
	reply := b.socketCommand(requester, defaultTarget+" trying rolegate over the socket")
	id, ok := requestID(reply.Text)
	if !ok || !strings.HasPrefix(reply.Text, slackapp.DryRunBanner) {
		t.Fatalf("ack reply = %+v, want the request's number after the dry-run banner", reply)
	}
	b.socketClick(approverAna, slackapp.ActionApprove, id)
	wantDryRunFlow(t, b, id)
}

func TestCheckSaysDryRun(t *testing.T) {
	sl := slackfake.New(testBotToken)
	t.Cleanup(sl.Close)
	oa := openaitest.NewServer(testAdminKey)
	t.Cleanup(oa.Close)
	env := map[string]string{
		"SLACK_BOT_TOKEN": testBotToken, "SLACK_SIGNING_SECRET": testSecret, "SLACK_API_URL": sl.APIURL(),
		"OPENAI_ADMIN_KEY": testAdminKey, "OPENAI_BASE_URL": oa.URL(), "ROLEGATE_APPROVERS": approverAna,
	}
	for _, dry := range []string{"true", "false"} {
		env["ROLEGATE_DRY_RUN"] = dry
		out, _, err := runBot(t, env, "check")
		if err != nil {
			t.Fatalf("check: %v\n%s", err, out)
		}
		says := strings.Contains(out, "NOTE dry run: ROLEGATE_DRY_RUN=true, so rolegate will never POST or DELETE at OpenAI")
		if says != (dry == "true") {
			t.Errorf("ROLEGATE_DRY_RUN=%s: check output:\n%s", dry, out)
		}
	}
}
