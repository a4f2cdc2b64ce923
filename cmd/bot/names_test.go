package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

// hasApprovalMessage reports whether request id reached approvers.
func (b *bot) hasApprovalMessage(id uint64) bool {
	header := fmt.Sprintf("Role assignment request #%d\n", id)
	for _, m := range b.slack.Messages(testChannel) {
		if strings.Contains(m.VisibleText(), header) {
			return true
		}
	}
	return false
}

// privateAnswer waits for the requester's private follow-up on request id
// that contains want.
func (b *bot) privateAnswer(id uint64, want string) string {
	b.t.Helper()
	var found string
	prefix := fmt.Sprintf("Request #%d ", id)
	b.waitFor(fmt.Sprintf("a private answer on request %d saying %q", id, want), func() bool {
		for _, e := range b.slack.Ephemerals() {
			if e.User == requester && strings.Contains(e.Text, prefix) && strings.Contains(e.Text, want) {
				found = e.Text
				return true
			}
		}
		return false
	})
	return found
}

func TestRequestsByName(t *testing.T) {
	b := newBot(t, nil)
	seedCatalog(b)
	b.openai.AddGroup("group_tw1", "Twins", false)
	b.openai.AddGroup("group_tw2", "twins", false)
	b.openai.AddProject("proj_old", "Old Project")
	b.openai.AddRole("proj_old", openaitest.Role{ID: "role_old", Name: "Old Role"})
	b.openai.ArchiveProject("proj_old")
	b.openai.AddProject("proj_held", "Held Project")
	b.openai.AddRole("proj_held", openaitest.Role{ID: "role_held", Name: "Held Role"})
	b.openai.AddAssignment("proj_held", "group_01", "role_held")

	granted := []struct {
		name, text string
	}{
		{"names in straight quotes", `"Support Project" "Support Team" "Key Manager" straight quotes`},
		{"names in curly quotes", `“support project” “SUPPORT TEAM” “key manager” curly quotes`},
		{"a one-word name among ids", `proj_abc Sales role_01 one word`},
	}
	for _, tt := range granted {
		t.Run(tt.name, func(t *testing.T) {
			id := b.request(requester, tt.text)
			r := b.waitState(id, approvals.StatePending)
			if r.Preview == nil {
				t.Fatalf("pending without a preview: %+v", r)
			}
			text := b.approvalMessage(id).VisibleText()
			for _, want := range []string{r.Preview.Project.Name, "`" + r.ProjectID + "`", r.Preview.Group.Name, "`" + r.GroupID + "`", r.Preview.Role.Name, "`" + r.RoleID + "`"} {
				if !strings.Contains(text, want) {
					t.Errorf("approval message lacks %q:\n%s", want, text)
				}
			}
		})
	}

	refused := []struct {
		name, text string
		want       []string
	}{
		{"ambiguous group", `"Support Project" Twins "Key Manager" which twin`, []string{`"Twins" names several groups`, "group_tw1", "group_tw2"}},
		{"missing project", `"Nope Project" "Support Team" "Key Manager" nothing`, []string{`No project has the name or id "Nope Project"`}},
		{"archived project by name", `"Old Project" "Support Team" "Old Role" archived`, []string{`No project has the name or id "Old Project"`}},
		{"archived project by id", `proj_old group_01 role_old archived`, []string{"is archived"}},
		{"role of another project", `proj_sup group_01 role_eng_km wrong project`, []string{`is not a role of project "Support Project"`}},
		{"role already held", `"Held Project" "Support Team" "Held Role" held`, []string{"already has role", "nothing to approve"}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			id := b.request(requester, tt.text)
			b.waitState(id, approvals.StateRejected)
			got := b.privateAnswer(id, "was not put to approvers")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("private answer lacks %q:\n%s", w, got)
				}
			}
			if b.hasApprovalMessage(id) {
				t.Errorf("request %d reached approvers", id)
			}
		})
	}
}

func TestStatusAndListThroughTheBot(t *testing.T) {
	b := newBot(t, map[string]string{"ROLEGATE_APPROVERS": approverAna})
	seedCatalog(b)
	id := b.request(requester, `"Support Project" "Support Team" "Key Manager" status please`)
	msg := b.approvalMessage(id)
	// The message's ts is recorded just after it is posted; until then the
	// list names the channel instead of linking.
	b.waitFor("the approval message's ts to be stored", func() bool { return b.stored(id).MessageTS == msg.TS })

	for _, who := range []string{requester, approverAna} {
		_, reply := b.command(who, fmt.Sprintf("status %d", id))
		for _, want := range []string{"(pending)", "*Support Project* (`proj_sup`)", "*Key Manager* (`role_km`)", "*Rule* default", "0 of 1", "status please", "*History*", "*create*", "*check*"} {
			if !strings.Contains(reply.Text, want) {
				t.Errorf("status for %s lacks %q:\n%s", who, want, reply.Text)
			}
		}
		_, list := b.command(who, "list")
		if !strings.Contains(list.Text, fmt.Sprintf("|#%d> pending", id)) || !strings.Contains(list.Text, "/archives/"+testChannel+"/p"+strings.Replace(msg.TS, ".", "", 1)) {
			t.Errorf("list for %s:\n%s", who, list.Text)
		}
	}
	_, reply := b.command(stranger, fmt.Sprintf("status %d", id))
	if !strings.Contains(reply.Text, fmt.Sprintf("There is no request #%d you can see", id)) || strings.Contains(reply.Text, "Support") {
		t.Errorf("a stranger was told %q", reply.Text)
	}
	if _, list := b.command(stranger, "list"); strings.Contains(list.Text, "Support") || !strings.Contains(list.Text, "no open requests") {
		t.Errorf("a stranger's list: %q", list.Text)
	}
}
