package slackapp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// fakeSuggester answers from a fixed list and records what it was asked.
type fakeSuggester struct {
	mu    sync.Mutex
	items map[string][]approvals.Candidate // by kind, or "role:"+project
	asked []string
}

func (f *fakeSuggester) Suggest(_ context.Context, kind, projectID, query string, limit int) []approvals.Candidate {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, kind+"/"+projectID+"/"+query)
	key := kind
	if kind == "role" {
		key = "role:" + projectID
	}
	return approvals.Matching(query, f.items[key], limit)
}

type modalRig struct {
	app   *App
	slack *slackfake.Server
	store *approvals.BoltStore
	cat   *fakeSuggester
}

func newModalRig(t *testing.T, maxOpen int) *modalRig {
	t.Helper()
	fake := slackfake.New("xoxb-modal")
	t.Cleanup(fake.Close)
	store, err := approvals.Open(filepath.Join(t.TempDir(), "rolegate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cat := &fakeSuggester{items: map[string][]approvals.Candidate{
		"project":       {{ID: "proj_sup", Name: "Support Project"}, {ID: "proj_eng", Name: "Engineering"}},
		"group":         {{ID: "group_01", Name: "Support Team"}},
		"role:proj_sup": {{ID: "role_km", Name: "Key Manager"}},
		"role:proj_eng": {{ID: "role_eng", Name: "Key Manager"}, {ID: "role_x", Name: "Other"}},
	}}
	for i := range 150 {
		cat.items["group"] = append(cat.items["group"], approvals.Candidate{ID: fmt.Sprintf("group_bulk_%03d", i), Name: "Bulk " + strings.Repeat("long name ", 10)})
	}
	app := &App{
		Service: &approvals.Service{Store: store, Policy: approvals.DefaultPolicy([]string{"UANA"}, 1, time.Hour), IsGroup: IsUserGroup, MaxOpen: maxOpen, Now: time.Now},
		Catalog: cat,
		Slack:   slack.New("xoxb-modal", slack.OptionAPIURL(fake.APIURL())),
		Logger:  slog.New(slog.DiscardHandler),
	}
	t.Cleanup(app.Wait)
	return &modalRig{app: app, slack: fake, store: store, cat: cat}
}

// open runs `/assign-role` alone as user in channel and returns the view.
func (r *modalRig) open(t *testing.T, user, channel, trigger string) slackfake.OpenedView {
	t.Helper()
	reply := r.app.Command(t.Context(), slack.SlashCommand{Command: "/assign-role", UserID: user, ChannelID: channel, TeamID: slackfake.TeamID, TriggerID: trigger})
	if reply != (Reply{}) {
		t.Fatalf("opening the modal answered %+v, want nothing", reply)
	}
	views := r.slack.Views()
	if len(views) == 0 {
		t.Fatal("no view opened")
	}
	return views[len(views)-1]
}

func state(values map[string]string) map[string]map[string]slack.BlockAction {
	out := map[string]map[string]slack.BlockAction{}
	for id, v := range values {
		a := slack.BlockAction{ActionID: id, BlockID: id}
		switch id {
		case ModalReason:
			a.Type, a.Value = "plain_text_input", v
		case ModalDuration:
			a.Type, a.SelectedOption = "static_select", slack.OptionBlockObject{Value: v}
		default:
			a.Type, a.SelectedOption = "external_select", slack.OptionBlockObject{Value: v}
		}
		out[id] = map[string]slack.BlockAction{id: a}
	}
	return out
}

func (r *modalRig) suggest(t *testing.T, user string, v slackfake.OpenedView, actionID, typed string, values map[string]string) []string {
	t.Helper()
	cb := slackfake.SuggestionPayload(slackfake.Suggestion{User: user, ActionID: actionID, BlockID: actionID, Value: typed,
		View: slackfake.View{ID: v.ID, CallbackID: v.CallbackID, PrivateMetadata: v.PrivateMetadata, Values: state(values)}})
	raw, err := json.Marshal(r.app.Interaction(t.Context(), *cb))
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Options []struct {
			Text  struct{ Text string } `json:"text"`
			Value string                `json:"value"`
		} `json:"options"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil || !strings.Contains(string(raw), `"options":[`) {
		t.Fatalf("suggestion answer %s: %v", raw, err)
	}
	var out []string
	for _, o := range resp.Options {
		if utf8.RuneCountInString(o.Text.Text) > 75 || len(o.Value) > 150 {
			t.Errorf("option over Slack's limits: %q = %q", o.Text.Text, o.Value)
		}
		out = append(out, o.Text.Text+"="+o.Value)
	}
	return out
}

func (r *modalRig) submit(t *testing.T, user string, v slackfake.OpenedView, values map[string]string) *slack.ViewSubmissionResponse {
	t.Helper()
	cb := slackfake.SubmissionPayload(slackfake.Submission{User: user,
		View: slackfake.View{ID: v.ID, CallbackID: v.CallbackID, PrivateMetadata: v.PrivateMetadata, Values: state(values)}})
	resp := r.app.Interaction(t.Context(), *cb)
	r.app.Wait()
	if resp == nil {
		return nil
	}
	vs, ok := resp.(*slack.ViewSubmissionResponse)
	if !ok {
		t.Fatalf("submission answered %T %+v", resp, resp)
	}
	return vs
}

func (r *modalRig) requests(t *testing.T) []approvals.Request {
	t.Helper()
	rs, err := r.store.List(t.Context(), approvals.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

var goodValues = map[string]string{ModalProject: "proj_sup", ModalGroup: "group_01", ModalRole: "role_km", ModalReason: "  rotating keys, INC-42 "}

func TestRequestModalOpensWithTheCommandsTrigger(t *testing.T) {
	r := newModalRig(t, 5)
	v := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.modal")
	if v.TriggerID != "1.2.modal" || v.CallbackID != RequestModalID {
		t.Fatalf("view %+v", v)
	}
	if utf8.RuneCountInString(v.Title) > 24 {
		t.Errorf("title %q is longer than Slack allows", v.Title)
	}
	for _, id := range []string{ModalProject, ModalGroup, ModalRole} {
		b := v.Block(id)
		el, _ := b["element"].(map[string]any)
		if b["type"] != "input" || el["type"] != "external_select" || el["action_id"] != id || el["min_query_length"] != float64(0) {
			t.Errorf("block %s = %v", id, b)
		}
	}
	dur, _ := v.Block(ModalDuration)["element"].(map[string]any)
	var offered []string
	if opts, ok := dur["options"].([]any); ok {
		for _, o := range opts {
			m, _ := o.(map[string]any)
			offered = append(offered, fmt.Sprint(m["value"]))
		}
	}
	initial, _ := dur["initial_option"].(map[string]any)
	if dur["type"] != "static_select" || strings.Join(offered, ",") != "default,1h,4h,8h,1d,7d" || initial["value"] != ModalDefaultDuration {
		t.Errorf("duration element = %v", dur)
	}
	reason, _ := v.Block(ModalReason)["element"].(map[string]any)
	if reason["type"] != "plain_text_input" || reason["multiline"] != true || reason["max_length"] != float64(approvals.MaxReasonLen) {
		t.Errorf("reason element = %v", reason)
	}
	o, err := verifyMetadata(r.app.modalKey(), v.PrivateMetadata, time.Now())
	if err != nil || o.Channel != slackfake.DefaultChannel || o.User != "UREQ" {
		t.Fatalf("metadata %q → %+v, %v", v.PrivateMetadata, o, err)
	}

	// A trigger works once: the answer says so, and how to ask instead.
	reply := r.app.Command(t.Context(), slack.SlashCommand{Command: "/assign-role", UserID: "UREQ", ChannelID: slackfake.DefaultChannel, TriggerID: "1.2.modal"})
	if reply.ResponseType != "ephemeral" || !strings.Contains(reply.Text, "could not open the request form") || !strings.Contains(reply.Text, "<project> <group> <role>") {
		t.Fatalf("reused trigger answered %+v", reply)
	}
	if n := len(r.requests(t)); n != 0 {
		t.Fatalf("opening the modal stored %d requests", n)
	}
}

func TestSuggestionsComeFromTheCatalog(t *testing.T) {
	r := newModalRig(t, 5)
	v := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.s")
	if got := r.suggest(t, "UREQ", v, ModalProject, "supp", nil); len(got) != 1 || got[0] != "Support Project (proj_sup)=proj_sup" {
		t.Errorf("project suggestions for %q: %v", "supp", got)
	}
	if got := r.suggest(t, "UREQ", v, ModalGroup, "", nil); len(got) != 100 {
		t.Errorf("%d group suggestions for an empty query, want Slack's 100", len(got))
	}
	if got := r.suggest(t, "UREQ", v, ModalRole, "key", nil); len(got) != 0 {
		t.Errorf("roles offered before a project is chosen: %v", got)
	}
	got := r.suggest(t, "UREQ", v, ModalRole, "", map[string]string{ModalProject: "proj_eng"})
	if strings.Join(got, ",") != "Key Manager (role_eng)=role_eng,Other (role_x)=role_x" {
		t.Errorf("roles of the chosen project: %v", got)
	}

	// A view rolegate did not open for this person gets nothing, and the
	// catalog is not even asked.
	before := len(r.cat.asked)
	forged := v
	forged.PrivateMetadata = signMetadata([]byte("another key"), modalOrigin{Channel: "C9", User: "UREQ", At: time.Now()})
	if got := r.suggest(t, "UREQ", forged, ModalProject, "", nil); len(got) != 0 {
		t.Errorf("forged metadata got suggestions %v", got)
	}
	if got := r.suggest(t, "USTRANGER", v, ModalProject, "", nil); len(got) != 0 {
		t.Errorf("another user's view got suggestions %v", got)
	}
	if len(r.cat.asked) != before {
		t.Errorf("the catalog was asked for a refused suggestion: %v", r.cat.asked[before:])
	}
}

func TestOptionText(t *testing.T) {
	long := approvals.Candidate{ID: "proj_" + strings.Repeat("x", 100), Name: strings.Repeat("Ünïcode ", 20)}
	for _, c := range []approvals.Candidate{long, {ID: "role_01"}, {ID: "g", Name: "Support Team"}} {
		got := optionText(c)
		if utf8.RuneCountInString(got) > 75 || !strings.Contains(got, shortID(c.ID, 40)) {
			t.Errorf("optionText(%+v) = %q", c, got)
		}
	}
}

func TestModalSubmissionCreatesTheRequest(t *testing.T) {
	r := newModalRig(t, 5)
	r.slack.AddChannel("C0REQUESTS", true)
	v := r.open(t, "UREQ", "C0REQUESTS", "1.2.sub")
	if resp := r.submit(t, "UREQ", v, goodValues); resp != nil {
		t.Fatalf("a good submission answered %+v", resp)
	}
	rs := r.requests(t)
	if len(rs) != 1 {
		t.Fatalf("%d requests", len(rs))
	}
	got := rs[0]
	if got.State != approvals.StateChecking || got.Requester != "UREQ" || got.ChannelID != "C0REQUESTS" || got.ResponseURL != "" ||
		got.Ask != (approvals.Ask{Project: "proj_sup", Group: "group_01", Role: "role_km"}) || got.Reason != "rotating keys, INC-42" {
		t.Fatalf("stored %+v", got)
	}
	// The same submission again (a redelivery, a double press) makes no
	// second request.
	if resp := r.submit(t, "UREQ", v, goodValues); resp != nil || len(r.requests(t)) != 1 {
		t.Fatalf("a repeated submission answered %+v and stored %d requests", resp, len(r.requests(t)))
	}
	// The requester is told privately in the channel the form came from.
	eph := r.slack.Ephemerals()
	if len(eph) != 1 || eph[0].User != "UREQ" || eph[0].Channel != "C0REQUESTS" || !strings.Contains(eph[0].Text, fmt.Sprintf("Request #%d is being checked", got.ID)) {
		t.Fatalf("ephemerals %+v", eph)
	}
}

// TestModalDurationReachesTheRequest: the duration chosen in the modal is
// the request's asked duration; the default (or no choice, from a client
// that sends none) leaves it to the rule.
func TestModalDurationReachesTheRequest(t *testing.T) {
	for _, tt := range []struct {
		chosen string
		want   time.Duration
	}{{"4h", 4 * time.Hour}, {"1d", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {ModalDefaultDuration, 0}, {"", 0}} {
		t.Run("chosen "+tt.chosen, func(t *testing.T) {
			r := newModalRig(t, 5)
			v := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.dur")
			values := map[string]string{ModalDuration: tt.chosen}
			for k, x := range goodValues {
				values[k] = x
			}
			if tt.chosen == "" {
				delete(values, ModalDuration)
			}
			if resp := r.submit(t, "UREQ", v, values); resp != nil {
				t.Fatalf("answered %+v", resp)
			}
			rs := r.requests(t)
			if len(rs) != 1 {
				t.Fatalf("%d requests stored", len(rs))
			}
			if rs[0].Duration != tt.want {
				t.Errorf("the request asks for %v, want %v", rs[0].Duration, tt.want)
			}
		})
	}
}

func TestModalSubmissionErrorsAreInline(t *testing.T) {
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range goodValues {
			m[a] = b
		}
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name   string
		values map[string]string
		block  string
		want   string
	}{
		{"empty reason", with(ModalReason, "   "), ModalReason, "A reason is required"},
		{"reason too long", with(ModalReason, strings.Repeat("é", approvals.MaxReasonLen+1)), ModalReason, "keep it to 1000"},
		{"no project", with(ModalProject, "-"), ModalProject, "Choose a project"},
		{"a role value that is no id", with(ModalRole, "../../admin"), ModalRole, "Choose a role"},
		{"a duration the menu does not offer", with(ModalDuration, "366d"), ModalDuration, "Choose a duration"},
		{"a duration that is no duration", with(ModalDuration, "forever"), ModalDuration, "Choose a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newModalRig(t, 5)
			v := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.err")
			resp := r.submit(t, "UREQ", v, tt.values)
			if resp == nil || resp.ResponseAction != slack.RAErrors || !strings.Contains(resp.Errors[tt.block], tt.want) {
				t.Fatalf("answer %+v, want an inline error on %s saying %q", resp, tt.block, tt.want)
			}
			if n := len(r.requests(t)); n != 0 {
				t.Fatalf("%d requests stored", n)
			}
		})
	}

	t.Run("too many open requests", func(t *testing.T) {
		r := newModalRig(t, 1)
		first := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.a")
		if resp := r.submit(t, "UREQ", first, goodValues); resp != nil {
			t.Fatalf("first answered %+v", resp)
		}
		second := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.b")
		second.ID = "V0SECOND"
		resp := r.submit(t, "UREQ", second, goodValues)
		if resp == nil || !strings.Contains(resp.Errors[ModalReason], "You already have 1 open requests (#1)") {
			t.Fatalf("answer %+v", resp)
		}
		if n := len(r.requests(t)); n != 1 {
			t.Fatalf("%d requests stored", n)
		}
	})
}

func TestForgedModalSubmissionsChangeNothing(t *testing.T) {
	r := newModalRig(t, 5)
	v := r.open(t, "UREQ", slackfake.DefaultChannel, "1.2.f")
	tests := []struct {
		name string
		user string
		edit func(*slackfake.OpenedView)
	}{
		{"another user submits the view", "USTRANGER", func(*slackfake.OpenedView) {}},
		{"metadata naming a channel the user never typed in", "UREQ", func(v *slackfake.OpenedView) {
			v.PrivateMetadata = strings.Replace(v.PrivateMetadata, "|"+slackfake.DefaultChannel+"|", "|C0ELSEWHERE|", 1)
		}},
		{"metadata signed with another key", "UREQ", func(v *slackfake.OpenedView) {
			v.PrivateMetadata = signMetadata([]byte("guess"), modalOrigin{Channel: "C0ELSEWHERE", User: "UREQ", At: time.Now()})
		}},
		{"metadata older than a day", "UREQ", func(v *slackfake.OpenedView) {
			v.PrivateMetadata = signMetadata(r.app.modalKey(), modalOrigin{Channel: slackfake.DefaultChannel, User: "UREQ", At: time.Now().Add(-25 * time.Hour)})
		}},
		{"no metadata", "UREQ", func(v *slackfake.OpenedView) { v.PrivateMetadata = "" }},
		{"another view's callback_id", "UREQ", func(v *slackfake.OpenedView) { v.CallbackID = "someone_elses" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forged := v
			tt.edit(&forged)
			r.submit(t, tt.user, forged, goodValues)
			if n := len(r.requests(t)); n != 0 {
				t.Fatalf("a forged submission stored %d requests", n)
			}
			if n := len(r.slack.Ephemerals()); n != 0 {
				t.Fatalf("a forged submission sent %d notices", n)
			}
		})
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	key := DeriveModalKey("xoxb-secret")
	now := time.Unix(1_800_000_000, 0)
	md := signMetadata(key, modalOrigin{Channel: "C1", User: "U1", Team: "T1", At: now})
	if len(md) > 3000 {
		t.Fatalf("metadata of %d chars", len(md))
	}
	o, err := verifyMetadata(key, md, now.Add(time.Hour))
	if err != nil || o.Channel != "C1" || o.User != "U1" || o.Team != "T1" {
		t.Fatalf("%+v, %v", o, err)
	}
	if _, err := verifyMetadata(DeriveModalKey("xoxb-other"), md, now); err == nil {
		t.Fatal("metadata verified with another key")
	}
	for i := range md {
		if _, err := verifyMetadata(key, md[:i]+"x"+md[i+1:], now); err == nil && md[i] != 'x' {
			t.Fatalf("metadata changed at %d still verifies", i)
		}
	}
}
