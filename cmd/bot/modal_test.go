package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// seedCatalog gives the fake OpenAI a project whose Key Manager role has
// 120 permissions, and another project with a role of the same name.
func seedCatalog(b *bot) []string {
	var perms []string
	for i := range 120 {
		perms = append(perms, fmt.Sprintf("api.organization.projects.keys.permission.%03d", i))
	}
	b.openai.AddProject("proj_sup", "Support Project")
	b.openai.AddRole("proj_sup", openaitest.Role{ID: "role_km", Name: "Key Manager", Description: "Manages the project's API keys", Permissions: perms})
	b.openai.AddProject("proj_eng", "Engineering")
	b.openai.AddRole("proj_eng", openaitest.Role{ID: "role_eng_km", Name: "Key Manager", Permissions: []string{"api.x"}})
	return perms
}

// over sends Slack's side of the bot's endpoints over HTTP or Socket Mode
// and returns what came back in the answer (HTTP body, or ack payload).
type over struct {
	b      *bot
	socket bool
}

func (o over) command(form url.Values) []byte {
	o.b.t.Helper()
	if !o.socket {
		resp, err := o.b.driver().Command(context.Background(), form)
		if err != nil || resp.Status != http.StatusOK {
			o.b.t.Fatalf("command answered %d, %v", resp.Status, err)
		}
		return resp.Body
	}
	env, err := o.b.slack.SendSlashCommand(form)
	if err != nil {
		o.b.t.Fatal(err)
	}
	return o.ack(env)
}

func (o over) interaction(cb *slack.InteractionCallback) []byte {
	o.b.t.Helper()
	if !o.socket {
		resp, err := o.b.driver().Interaction(context.Background(), cb)
		if err != nil || resp.Status != http.StatusOK {
			o.b.t.Fatalf("interaction answered %d, %v", resp.Status, err)
		}
		return resp.Body
	}
	env, err := o.b.slack.SendInteraction(cb)
	if err != nil {
		o.b.t.Fatal(err)
	}
	return o.ack(env)
}

func (o over) ack(env string) []byte {
	o.b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	payload, err := o.b.slack.WaitAck(ctx, env)
	if err != nil {
		o.b.t.Fatalf("no ack: %v\n%s", err, o.b.logs.String())
	}
	return payload
}

// empty reports an answer that shows nothing (an empty HTTP body, or an
// ack without payload).
func empty(body []byte) bool {
	s := strings.TrimSpace(string(body))
	return s == "" || s == "null" || s == "{}"
}

// openModal runs `/assign-role` alone as user and returns the modal opened.
func (o over) openModal(user string) slackfake.OpenedView {
	o.b.t.Helper()
	form := o.b.commandForm(user, testChannel, "")
	if body := o.command(form); !empty(body) {
		o.b.t.Fatalf("opening the modal answered %s", body)
	}
	for _, v := range o.b.slack.Views() {
		if v.TriggerID == form.Get("trigger_id") {
			return v
		}
	}
	o.b.t.Fatalf("no view opened with the command's trigger_id %s: %+v", form.Get("trigger_id"), o.b.slack.Views())
	return slackfake.OpenedView{}
}

func modalState(values map[string]string) map[string]map[string]slack.BlockAction {
	out := map[string]map[string]slack.BlockAction{}
	for id, v := range values {
		a := slack.BlockAction{ActionID: id, BlockID: id, Type: "external_select", SelectedOption: slack.OptionBlockObject{Value: v}}
		switch id {
		case slackapp.ModalReason:
			a = slack.BlockAction{ActionID: id, BlockID: id, Type: "plain_text_input", Value: v}
		case slackapp.ModalDuration:
			a.Type = "static_select"
		}
		out[id] = map[string]slack.BlockAction{id: a}
	}
	return out
}

func viewOf(v slackfake.OpenedView, values map[string]string) slackfake.View {
	return slackfake.View{ID: v.ID, CallbackID: v.CallbackID, PrivateMetadata: v.PrivateMetadata, Values: modalState(values)}
}

// suggest types typed into menu of view v and returns the options offered.
func (o over) suggest(user string, v slackfake.OpenedView, menu, typed string, values map[string]string) []string {
	o.b.t.Helper()
	body := o.interaction(slackfake.SuggestionPayload(slackfake.Suggestion{User: user, ActionID: menu, BlockID: menu, Value: typed, View: viewOf(v, values)}))
	var resp slack.OptionsResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		o.b.t.Fatalf("suggestions %s: %v", body, err)
	}
	var out []string
	for _, opt := range resp.Options {
		out = append(out, opt.Text.Text+"="+opt.Value)
	}
	return out
}

func (o over) submit(user string, v slackfake.OpenedView, values map[string]string) []byte {
	o.b.t.Helper()
	return o.interaction(slackfake.SubmissionPayload(slackfake.Submission{User: user, View: viewOf(v, values)}))
}

func TestModalRoundTrip(t *testing.T) {
	for _, socket := range []bool{false, true} {
		name := "http"
		if socket {
			name = "socket"
		}
		t.Run(name, func(t *testing.T) {
			var b *bot
			if socket {
				b = newSocketBot(t)
			} else {
				b = newBot(t, nil)
			}
			perms := seedCatalog(b)
			o := over{b: b, socket: socket}
			v := o.openModal(requester)

			if got := o.suggest(requester, v, slackapp.ModalProject, "support", nil); strings.Join(got, ",") != "Support Project (proj_sup)=proj_sup" {
				t.Errorf("projects for %q: %v", "support", got)
			}
			if got := o.suggest(requester, v, slackapp.ModalGroup, "SUPPORT", nil); strings.Join(got, ",") != "Support Team (group_01)=group_01" {
				t.Errorf("groups for %q: %v", "SUPPORT", got)
			}
			// Two projects have a Key Manager: the menu offers the chosen one's.
			chosen := map[string]string{slackapp.ModalProject: "proj_sup"}
			if got := o.suggest(requester, v, slackapp.ModalRole, "key", chosen); strings.Join(got, ",") != "Key Manager (role_km)=role_km" {
				t.Errorf("roles of proj_sup for %q: %v", "key", got)
			}

			// An empty reason comes back inline, next to the field.
			values := map[string]string{slackapp.ModalProject: "proj_sup", slackapp.ModalGroup: "group_01", slackapp.ModalRole: "role_km", slackapp.ModalReason: "  "}
			var inline slack.ViewSubmissionResponse
			if err := json.Unmarshal(o.submit(requester, v, values), &inline); err != nil || inline.ResponseAction != slack.RAErrors ||
				!strings.Contains(inline.Errors[slackapp.ModalReason], "reason is required") {
				t.Fatalf("empty reason answered %+v (%v)", inline, err)
			}
			if n := b.storedCount(); n != 0 {
				t.Fatalf("%d requests after an inline error", n)
			}

			values[slackapp.ModalReason] = "rotating keys, INC-42"
			if body := o.submit(requester, v, values); !empty(body) {
				t.Fatalf("a good submission answered %s", body)
			}
			msg := b.approvalMessage(1)
			text := msg.VisibleText()
			for _, want := range append([]string{"Support Project", "`proj_sup`", "Support Team", "`group_01`", "SCIM-managed: no",
				"Key Manager", "`role_km`", "Manages the project's API keys", "*Permissions* (120)", "*Rule*\ndefault", "rotating keys, INC-42", "<@" + requester + ">"}, perms...) {
				if !strings.Contains(text, want) {
					t.Errorf("approval message lacks %q", want)
				}
			}
			if strings.Contains(text, "…and") {
				t.Errorf("120 permissions are not all shown:\n%s", text)
			}
			if r := b.stored(1); r.ChannelID != testChannel || r.Requester != requester {
				t.Errorf("stored %+v", r)
			}
			b.waitFor("the private word that request #1 is being checked", func() bool {
				for _, e := range b.ephemeralsTo(requester) {
					if e.Channel == testChannel && strings.Contains(e.Text, "Request #1 is being checked") {
						return true
					}
				}
				return false
			})
			// The follow-up goes by DM: a modal has no response_url.
			b.waitFor("the DM saying request #1 waits for approval", func() bool {
				for _, m := range b.slack.Messages(requester) {
					if strings.Contains(m.Text, "Request #1 is waiting for approval") {
						return true
					}
				}
				return false
			})
		})
	}
}

func TestForgedModalInteractionsChangeNothing(t *testing.T) {
	b := newBot(t, nil)
	seedCatalog(b)
	o := over{b: b}
	v := o.openModal(requester)
	good := map[string]string{slackapp.ModalProject: "proj_sup", slackapp.ModalGroup: "group_01", slackapp.ModalRole: "role_km", slackapp.ModalReason: "forged"}

	// Unsigned: 401, whatever it carries.
	for _, cb := range []*slack.InteractionCallback{
		slackfake.SuggestionPayload(slackfake.Suggestion{User: requester, ActionID: slackapp.ModalProject, BlockID: slackapp.ModalProject, View: viewOf(v, nil)}),
		slackfake.SubmissionPayload(slackfake.Submission{User: requester, View: viewOf(v, good)}),
	} {
		raw, _ := json.Marshal(cb)
		d := b.driver()
		d.Secret = "not-the-secret"
		resp, err := d.Post(context.Background(), slackfake.InteractionsPath, slackfake.InteractionBody(raw))
		if err != nil || resp.Status != http.StatusUnauthorized {
			t.Fatalf("unsigned %s answered %d, %v", cb.Type, resp.Status, err)
		}
	}

	// Signed, but another user's view, or metadata naming a channel the
	// user never typed in: refused inline, nothing stored or posted.
	elsewhere := v
	elsewhere.PrivateMetadata = strings.Replace(v.PrivateMetadata, "|"+testChannel+"|", "|C0ELSEWHERE|", 1)
	for name, send := range map[string]func() []byte{
		"another user's view":            func() []byte { return o.submit(stranger, v, good) },
		"a channel the user never typed": func() []byte { return o.submit(requester, elsewhere, good) },
	} {
		var resp slack.ViewSubmissionResponse
		if err := json.Unmarshal(send(), &resp); err != nil || resp.ResponseAction != slack.RAErrors {
			t.Errorf("%s answered %+v, %v", name, resp, err)
		}
	}
	if got := o.suggest(stranger, v, slackapp.ModalProject, "", nil); len(got) != 0 {
		t.Errorf("another user's view got suggestions %v", got)
	}
	if n := b.storedCount(); n != 0 {
		t.Fatalf("forged submissions stored %d requests", n)
	}
	if n := len(b.slack.Messages(testChannel)) + len(b.slack.Ephemerals()); n != 0 {
		t.Fatalf("forged submissions posted %d messages", n)
	}
}

// TestModalDurationUnderTheRule: the duration chosen in the modal is
// granted, the rule's default applies when none is chosen, and one above
// the rule's maximum is refused privately naming it (by DM: a modal has no
// response_url).
func TestModalDurationUnderTheRule(t *testing.T) {
	t.Parallel()
	b := newGrantsBot(t)
	o := over{b: b}
	ask := func(group, duration string) uint64 {
		t.Helper()
		before := b.storedCount()
		v := o.openModal(requester)
		values := map[string]string{slackapp.ModalProject: "proj_abc", slackapp.ModalGroup: group, slackapp.ModalRole: "role_01",
			slackapp.ModalReason: "from the form", slackapp.ModalDuration: duration}
		if body := o.submit(requester, v, values); !empty(body) {
			t.Fatalf("submitting %s answered %s", duration, body)
		}
		if n := b.storedCount(); n != before+1 {
			t.Fatalf("%d requests after the submission, want %d", n, before+1)
		}
		return uint64(before + 1)
	}

	tooLong := ask("group_timed", "1d")
	b.waitState(tooLong, approvals.StateRejected)
	b.waitDM(requester, fmt.Sprintf("Request #%d", tooLong), "1d is longer than rule timed allows: at most 8h")

	chosen := ask("group_timed", "4h")
	b.click(approverAna, slackapp.ActionApprove, chosen)
	r := b.waitState(chosen, approvals.StateApplied)
	if r.Duration != 4*time.Hour || !r.EndsAt.Equal(r.FinishedAt.Add(4*time.Hour)) {
		t.Errorf("chose 4h, granted %s ending %v (applied %v)", r.Duration, r.EndsAt, r.FinishedAt)
	}
	b.say(requester, fmt.Sprintf("revoke %d", chosen))
	b.waitState(chosen, approvals.StateRevoked)

	byDefault := ask("group_timed", slackapp.ModalDefaultDuration)
	b.click(approverAna, slackapp.ActionApprove, byDefault)
	if r := b.waitState(byDefault, approvals.StateApplied); r.Duration != 3*time.Hour {
		t.Errorf("left to the rule, granted %s; want its default 3h", r.Duration)
	}
	permanent := ask("group_r2", slackapp.ModalDefaultDuration)
	b.click(approverAna, slackapp.ActionApprove, permanent)
	if r := b.waitState(permanent, approvals.StateApplied); r.Duration != 0 || !r.EndsAt.IsZero() {
		t.Errorf("left to a rule without a default, granted %s ending %v; want permanent", r.Duration, r.EndsAt)
	}
}
