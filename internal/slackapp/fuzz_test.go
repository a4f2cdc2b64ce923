package slackapp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// The interaction fuzz target drives the signed HTTP handler with arbitrary
// payload JSON against a real bbolt store holding a fixed set of requests,
// and checks, besides "no panic": the answer is 200 or 400, and the store
// changes only when the payload is a valid click, judged independently of
// the handler (see validClick), and then only as that click should change it.

const (
	fuzzSecret = "fuzz-signing-secret"
	fuzzReq    = "UREQ"
	fuzzAna    = "UANA"
	fuzzBob    = "UBOB"
)

// The fixed requests, all asked by UREQ, with a quorum of 2:
//
//	#1 pending in C1, no approvals
//	#2 pending in C2, no approvals
//	#3 denied in C1
//	#4 pending in C1, approved once by UANA
var fuzzChannels = map[uint64]string{1: "C1", 2: "C2", 3: "C1", 4: "C1"}

// fuzzApprovers may decide; UREQ is one too, to exercise self-approval.
var fuzzApprovers = []string{fuzzAna, fuzzBob, fuzzReq}

type interactionRig struct {
	dir     string
	n       int
	store   *approvals.BoltStore
	app     *App
	handler http.Handler
}

func newInteractionRig(tb testing.TB) *interactionRig {
	tb.Helper()
	// Private notices go to a local stand-in for Slack that accepts them,
	// so no payload's response_url is ever called.
	slackAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"message_ts":"1700000000.000900"}`)
	}))
	tb.Cleanup(slackAPI.Close)
	r := &interactionRig{dir: memDir(tb)}
	r.app = &App{
		Slack:  slack.New("xoxb-fuzz", slack.OptionAPIURL(slackAPI.URL+"/")),
		Logger: slog.New(slog.DiscardHandler),
	}
	r.handler = r.app.Handler(fuzzSecret, time.Now)
	r.reset(tb)
	tb.Cleanup(func() { r.app.Wait(); r.store.Close() })
	return r
}

// memDir is a temporary directory in memory when the system has one: every
// decision commits with an fsync, which on a disk would make fuzzing crawl.
func memDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "rolegate-fuzz-")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// reset replaces the store with a fresh one holding the fixed requests.
func (r *interactionRig) reset(tb testing.TB) {
	tb.Helper()
	if r.store != nil {
		r.store.Close()
	}
	r.n++
	s, err := approvals.Open(filepath.Join(r.dir, fmt.Sprintf("fuzz-%d.db", r.n)))
	if err != nil {
		tb.Fatal(err)
	}
	r.store = s
	policy := approvals.DefaultPolicy(fuzzApprovers, 2, time.Hour)
	svc := &approvals.Service{Store: s, Policy: policy, IsGroup: IsUserGroup, Now: time.Now}
	r.app.Service = svc
	ctx := context.Background()
	for id := uint64(1); id <= 4; id++ {
		c, _, err := svc.Create(ctx, approvals.NewRequest{
			Target: approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
			Reason: "fuzz", Requester: fuzzReq, ChannelID: fuzzChannels[id],
		})
		if err != nil {
			tb.Fatal(err)
		}
		v := approvals.Verdict{Rule: policy.Rules[0], Preview: approvals.Preview{
			Project: approvals.Project{ID: c.ProjectID}, Group: approvals.Group{ID: c.GroupID}, Role: approvals.Role{ID: c.RoleID}}}
		if _, err := s.Update(ctx, c.ID, 0, func(r *approvals.Request) (approvals.Transition, error) { return approvals.Pass(r, v, time.Now()) }); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := svc.Decide(ctx, approvals.Decision{RequestID: 3, Actor: fuzzBob, Action: approvals.ActionDeny, ChannelID: "C1"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := svc.Decide(ctx, approvals.Decision{RequestID: 4, Actor: fuzzAna, Action: approvals.ActionApprove, ChannelID: "C1"}); err != nil {
		tb.Fatal(err)
	}
}

// snapshot is the state a click may change: each request's state, voters
// and decider, and the audit trail and outbox lengths.
type snapshot struct {
	reqs   map[uint64]reqState
	audit  int
	outbox int
}

type reqState struct {
	State   approvals.State
	Voters  string
	Decider string
}

func (r *interactionRig) snapshot(tb testing.TB) snapshot {
	tb.Helper()
	ctx := context.Background()
	rs, err := r.store.List(ctx, approvals.ListOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	s := snapshot{reqs: map[uint64]reqState{}}
	for _, q := range rs {
		var voters []string
		for _, v := range q.Approvals {
			voters = append(voters, v.User)
		}
		s.reqs[q.ID] = reqState{State: q.State, Voters: strings.Join(voters, ","), Decider: q.Decider}
		ev, err := r.store.Audit(ctx, q.ID)
		if err != nil {
			tb.Fatal(err)
		}
		s.audit += len(ev)
	}
	if s.outbox, err = pendingJobs(r.store, ctx); err != nil {
		tb.Fatal(err)
	}
	return s
}

// post sends payload to POST /slack/interactions, signed as Slack signs.
func (r *interactionRig) post(payload string) int {
	body := url.Values{"payload": {payload}}.Encode()
	req := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", Sign(fuzzSecret, ts, []byte(body)))
	w := httptest.NewRecorder()
	r.handler.ServeHTTP(w, req)
	r.app.Wait()
	return w.Code
}

// click is what a valid click asks for.
type click struct {
	id     uint64
	user   string
	action approvals.Action
	reason bool // a deny submitted with its reason through the modal
}

// validClick judges payload by the shape Slack sends for a click on the
// approval message's buttons, written from Slack's documentation rather
// than from the handler: a block_actions payload with a user id, a channel
// id and exactly one action, that action carrying a block_id (string), one
// of rolegate's three action ids and a request id in decimal.
func validClick(payload string) (click, bool) {
	if c, ok := validDenySubmission(payload); ok {
		return c, true
	}
	var p struct {
		Type    string              `json:"type"`
		User    struct{ ID string } `json:"user"`
		Channel struct{ ID string } `json:"channel"`
		Actions []json.RawMessage   `json:"actions"`
	}
	if json.Unmarshal([]byte(payload), &p) != nil || p.Type != "block_actions" || p.User.ID == "" || p.Channel.ID == "" || len(p.Actions) != 1 {
		return click{}, false
	}
	var shape map[string]any
	if json.Unmarshal(p.Actions[0], &shape) != nil {
		return click{}, false
	}
	if _, ok := shape["block_id"].(string); !ok {
		return click{}, false
	}
	var a struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	}
	if json.Unmarshal(p.Actions[0], &a) != nil {
		return click{}, false
	}
	c := click{user: p.User.ID}
	switch a.ActionID {
	case ActionApprove:
		c.action = approvals.ActionApprove
	case ActionDeny:
		c.action = approvals.ActionDeny
	case ActionCancel:
		c.action = approvals.ActionCancel
	default:
		return click{}, false
	}
	id, err := strconv.ParseUint(a.Value, 10, 64)
	if err != nil || id == 0 {
		return click{}, false
	}
	c.id = id
	if fuzzChannels[id] != p.Channel.ID {
		return click{}, false // unknown request, or a button from another channel
	}
	return c, true
}

// validDenySubmission judges payload as a submission of the deny modal: a
// view_submission by a user, of a view with callback_id rolegate_deny whose
// private_metadata is "<id>:<channel>" naming a request in the channel it
// lives in, with a reason that is not blank.
func validDenySubmission(payload string) (click, bool) {
	var p struct {
		Type string              `json:"type"`
		User struct{ ID string } `json:"user"`
		View struct {
			CallbackID      string `json:"callback_id"`
			PrivateMetadata string `json:"private_metadata"`
			State           struct {
				Values map[string]map[string]struct {
					Value string `json:"value"`
				} `json:"values"`
			} `json:"state"`
		} `json:"view"`
	}
	if json.Unmarshal([]byte(payload), &p) != nil || p.Type != "view_submission" || p.User.ID == "" || p.View.CallbackID != DenyModalID {
		return click{}, false
	}
	idText, channel, _ := strings.Cut(p.View.PrivateMetadata, ":")
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil || id == 0 || fuzzChannels[id] != channel || strings.TrimSpace(p.View.State.Values["rolegate_deny_reason"]["reason"].Value) == "" {
		return click{}, false
	}
	return click{id: id, user: p.User.ID, action: approvals.ActionDeny, reason: true}, true
}

// expect returns the state after c applied to before, and whether c may
// change anything: an eligible approver approving, on a pending request,
// not voting twice, not approving their own request; or the requester
// withdrawing it with Deny or Cancel. An approver's Deny only opens the
// modal that asks for a reason: the click itself changes nothing.
func expect(before snapshot, c click) (snapshot, bool) {
	q, ok := before.reqs[c.id]
	if !ok || q.State != approvals.StatePending {
		return before, false
	}
	withdraw := (c.action == approvals.ActionDeny || c.action == approvals.ActionCancel) && c.user == fuzzReq
	decides := (c.action == approvals.ActionApprove || c.reason) && slices.Contains(fuzzApprovers, c.user)
	if !withdraw && !decides {
		return before, false
	}
	voters := strings.Split(q.Voters, ",")
	if q.Voters == "" {
		voters = nil
	}
	after := snapshot{reqs: map[uint64]reqState{}, audit: before.audit + 1}
	for k, v := range before.reqs {
		after.reqs[k] = v
	}
	switch c.action {
	case approvals.ActionApprove:
		if c.user == fuzzReq || slices.Contains(voters, c.user) {
			return before, false
		}
		q.Voters = strings.Join(append(voters, c.user), ",")
		after.outbox = before.outbox + 1 // update the message
		if len(voters)+1 >= 2 {
			q.State, q.Decider = approvals.StateApproved, c.user
			after.outbox += 2 // and assign, and tell the requester
		}
	case approvals.ActionDeny, approvals.ActionCancel:
		q.State, q.Decider = approvals.StateCancelled, c.user
		after.outbox = before.outbox + 2 // update the message, tell the requester
		if !withdraw {
			q.State = approvals.StateDenied
			after.outbox++ // and reply in the thread
		}
	}
	after.reqs[c.id] = q
	return after, true
}

// check runs one payload and reports a broken invariant.
func (r *interactionRig) check(t *testing.T, payload string) {
	before := r.snapshot(t)
	status := r.post(payload)
	after := r.snapshot(t)
	if status != http.StatusOK && status != http.StatusBadRequest {
		t.Fatalf("answered %d to %q", status, payload)
	}
	changed := fmt.Sprint(after) != fmt.Sprint(before)
	c, valid := validClick(payload)
	want, allowed := before, false
	if valid {
		want, allowed = expect(before, c)
	}
	switch {
	case changed && !allowed:
		t.Fatalf("payload %q changed the store although it is not a valid click by an eligible approver on a pending request in its channel:\nbefore %+v\nafter  %+v", payload, before, after)
	case changed && fmt.Sprint(after) != fmt.Sprint(want):
		t.Fatalf("payload %q (%+v) changed the store wrongly:\nbefore %+v\nafter  %+v\nwant   %+v", payload, c, before, after, want)
	}
	if changed {
		r.reset(t)
	}
}

// slackClick is a block_actions payload shaped as Slack sends it for a
// click on the approval message.
func slackClick(user, channel, actionID, value string) string {
	return fmt.Sprintf(`{"type":"block_actions","user":{"id":%q,"username":"u","name":"u","team_id":"T1"},"api_app_id":"A1","token":"legacy",`+
		`"container":{"type":"message","message_ts":"1700000000.000100","channel_id":%q,"is_ephemeral":false},"trigger_id":"1.2.abc",`+
		`"team":{"id":"T1","domain":"d"},"enterprise":null,"is_enterprise_install":false,"channel":{"id":%q,"name":"access"},`+
		`"message":{"type":"message","ts":"1700000000.000100","text":"Request #1","user":"UBOT","bot_id":"B1"},"state":{"values":{}},`+
		`"response_url":"https://hooks.slack.com/actions/T1/1/abc",`+
		`"actions":[{"action_id":%q,"block_id":"rolegate_decision","text":{"type":"plain_text","text":"Approve","emoji":true},`+
		`"value":%q,"style":"primary","type":"button","action_ts":"1700000001.000200"}]}`, user, channel, channel, actionID, value)
}

// shortClick is the part of a click payload the handler reads, so the
// fuzzer's mutations land on what matters.
func shortClick(user, channel, actionID, value string) string {
	return fmt.Sprintf(`{"type":"block_actions","user":{"id":%q},"channel":{"id":%q},"actions":[{"action_id":%q,"block_id":"b","value":%q,"type":"button"}]}`,
		user, channel, actionID, value)
}

// denySubmission is the view_submission of the deny modal.
func denySubmission(user, metadata, reason string) string {
	return fmt.Sprintf(`{"type":"view_submission","user":{"id":%q},"view":{"id":"V1","callback_id":"rolegate_deny","private_metadata":%q,`+
		`"state":{"values":{"rolegate_deny_reason":{"reason":{"type":"plain_text_input","value":%q}}}}}}`, user, metadata, reason)
}

// interactionSeeds are real shapes and near misses; the bool says whether
// the click must change the fixed state.
var interactionSeeds = []struct {
	payload string
	changes bool
}{
	{slackClick(fuzzAna, "C1", ActionApprove, "1"), true},
	{shortClick(fuzzBob, "C1", ActionApprove, "4"), true}, // completes the quorum
	{shortClick(fuzzBob, "C1", ActionDeny, "1"), false},   // asks for a reason first
	{shortClick(fuzzReq, "C1", ActionDeny, "1"), true},    // the requester withdraws
	{shortClick(fuzzReq, "C1", ActionCancel, "1"), true},
	{shortClick(fuzzAna, "C1", ActionCancel, "1"), false}, // not hers to cancel
	{shortClick(fuzzReq, "C2", ActionCancel, "1"), false}, // from another channel
	{shortClick(fuzzAna, "C2", ActionApprove, "2"), true},
	{shortClick(fuzzAna, "C1", ActionApprove, "4"), false},  // already voted
	{shortClick(fuzzReq, "C1", ActionApprove, "1"), false},  // own request
	{shortClick("UEVE", "C1", ActionApprove, "1"), false},   // not an approver
	{shortClick(fuzzAna, "C1", ActionApprove, "3"), false},  // already denied
	{shortClick(fuzzAna, "C1", ActionApprove, "2"), false},  // request of another channel
	{shortClick(fuzzAna, "C1", ActionApprove, "99"), false}, // no such request
	{shortClick(fuzzAna, "C1", ActionApprove, "01x"), false},
	{shortClick(fuzzAna, "C1", "rolegate_other", "1"), false},
	{strings.Replace(shortClick(fuzzAna, "C1", ActionApprove, "1"), "block_actions", "view_submission", 1), false},
	{strings.Replace(slackClick(fuzzAna, "C1", ActionApprove, "1"), `"block_id":"rolegate_decision",`, "", 1), false},
	{strings.Replace(slackClick(fuzzAna, "C1", ActionApprove, "1"), `"actions":[`, `"actions":[{"action_id":"rolegate_approve","value":"1","name":"x","type":"button"},`, 1), false},
	{strings.Replace(shortClick(fuzzAna, "C1", ActionApprove, "1"), `"actions":[`, `"actions":[{"action_id":"rolegate_deny","block_id":"b","value":"1","type":"button"},`, 1), false},
	{`{"type":"block_actions","user":{"id":"UANA"},"channel":{"id":"C1"},"actions":[{"action_id":"rolegate_approve","value":"1"}]}`, false},
	{`{"type":"block_suggestion","user":{"id":"UANA"},"channel":{"id":"C1"},"action_id":"rolegate_approve","block_id":"b","value":"1"}`, false},
	{`{"type":"view_submission","user":{"id":"UANA"},"view":{"id":"V1","callback_id":"x","state":{"values":{}}}}`, false},
	// The request modal: suggestions never change anything, and a
	// submission whose metadata rolegate did not sign (the fuzzer cannot
	// forge an HMAC) changes nothing either.
	{`{"type":"block_suggestion","user":{"id":"UREQ"},"action_id":"rolegate_project","block_id":"rolegate_project","value":"proj",` +
		`"view":{"id":"V1","callback_id":"rolegate_request","private_metadata":"v1|C1|UREQ|T1|1800000000|AAAA","state":{"values":{}}}}`, false},
	{`{"type":"view_submission","user":{"id":"UREQ"},"view":{"id":"V1","callback_id":"rolegate_request","private_metadata":"v1|C1|UREQ|T1|1800000000|AAAA",` +
		`"state":{"values":{"rolegate_project":{"rolegate_project":{"type":"external_select","selected_option":{"value":"proj_abc"}}},` +
		`"rolegate_group":{"rolegate_group":{"type":"external_select","selected_option":{"value":"group_01"}}},` +
		`"rolegate_role":{"rolegate_role":{"type":"external_select","selected_option":{"value":"role_01"}}},` +
		`"rolegate_reason":{"rolegate_reason":{"type":"plain_text_input","value":"fuzz"}}}}}}`, false},
	{`{"type":"view_submission","user":{"id":"UREQ"},"view":{"id":"V1","callback_id":"rolegate_request","private_metadata":"","state":{"values":{}}}}`, false},
	{denySubmission(fuzzBob, "1:C1", "not during the freeze"), true},
	{denySubmission(fuzzBob, "1:C2", "not during the freeze"), false}, // forged: request 1 lives in C1
	{denySubmission(fuzzBob, "2:C1", "not during the freeze"), false}, // forged: request 2 lives in C2
	{denySubmission(fuzzBob, "1:C1", "   "), false},                   // no reason
	{denySubmission("UEVE", "1:C1", "not during the freeze"), false},  // not an approver
	{denySubmission(fuzzBob, "3:C1", "not during the freeze"), false}, // already denied
	{denySubmission(fuzzReq, "1:C1", "never mind"), true},             // the requester withdraws
	{`{}`, false},
	{`null`, false},
	{`[]`, false},
	{``, false},
}

func TestInteractionSeeds(t *testing.T) {
	r := newInteractionRig(t)
	for _, s := range interactionSeeds {
		before := r.snapshot(t)
		r.check(t, s.payload)
		changed := r.n > 1
		if changed != s.changes {
			t.Errorf("payload changed the store: %v, want %v\n%s\nbefore %+v", changed, s.changes, s.payload, before)
		}
		if changed {
			r = newInteractionRig(t)
		}
	}
}

func FuzzInteraction(f *testing.F) {
	for _, s := range interactionSeeds {
		f.Add(s.payload)
	}
	r := newInteractionRig(f)
	f.Fuzz(func(t *testing.T, payload string) {
		r.check(t, payload)
	})
}

// pendingJobs is how many jobs s's outbox holds.
func pendingJobs(s approvals.Store, ctx context.Context) (int, error) {
	c, err := s.Counts(ctx)
	return c.Jobs, err
}
