package approvals

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCreate(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r, created, err := s.Create(t.Context(), newRequest(), t0, 0, pendingStart(t0, ttl, 2))
	if err != nil || !created {
		t.Fatalf("Create = %v, created %v", err, created)
	}
	want := Request{
		ID: 1, State: StatePending, Target: Target{"proj_abc", "group_01", "role_01"}, Ask: Ask{"proj_abc", "group_01", "role_01"},
		Rule: DefaultRule, Approvers: []string{"UANA", "UBEN"},
		Reason: "need key rotation for incident 42", Requester: "UREQ", TeamID: "T1", ChannelID: "C1",
		ResponseURL: "https://hooks.slack.test/commands/1", CreatedAt: t0, ExpiresAt: t0.Add(ttl), Required: 2,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("Create returned\n%+v\nwant\n%+v", r, want)
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create"}) {
		t.Errorf("audit = %q", got)
	}
	if got := drainJobs(t, s, r.ID); !slices.Equal(got, []JobKind{JobPostApproval}) {
		t.Errorf("jobs = %v, want [post_approval]", got)
	}
	select {
	case <-s.Changes():
	default:
		t.Errorf("Create did not signal Changes, so the worker would not wake")
	}
}

func TestCreateRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		n        NewRequest
		required int
	}{
		{"bad project id", newRequest(func(n *NewRequest) { n.ProjectID = "../x" }), 1},
		{"empty reason", newRequest(func(n *NewRequest) { n.Reason = "   " }), 1},
		{"reason too long", newRequest(func(n *NewRequest) { n.Reason = strings.Repeat("x", MaxReasonLen+1) }), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			_, created, err := s.Create(t.Context(), tt.n, t0, 0, pendingStart(t0, ttl, tt.required))
			if !errors.Is(err, ErrInvalid) || created {
				t.Fatalf("Create = %v, created %v; want ErrInvalid", err, created)
			}
			if n := mustPendingJobs(t, s); n != 0 {
				t.Errorf("%d jobs queued for a refused request", n)
			}
			if rs, _ := s.List(t.Context(), ListOptions{}); len(rs) != 0 {
				t.Errorf("a refused request was stored: %+v", rs)
			}
		})
	}
}

func TestCreateTriggerReplay(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	first := mustCreate(t, s, newRequest(func(n *NewRequest) { n.TriggerID = "trig.1" }), 1)

	// Slack retries the same command delivery.
	again, created, err := s.Create(t.Context(), newRequest(func(n *NewRequest) { n.TriggerID = "trig.1" }), t0.Add(3*time.Second), 0, pendingStart(t0.Add(3*time.Second), ttl, 1))
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Errorf("replay: created = true, want false")
	}
	if !reflect.DeepEqual(again, first) {
		t.Errorf("replay returned\n%+v\nwant the first request\n%+v", again, first)
	}
	if rs, _ := s.List(t.Context(), ListOptions{}); len(rs) != 1 {
		t.Errorf("replay stored another request: %d requests", len(rs))
	}
	if n := mustPendingJobs(t, s); n != 1 {
		t.Errorf("outbox has %d jobs after a replay, want 1 (one approval message)", n)
	}
	if got := auditLines(t, s, first.ID); len(got) != 1 {
		t.Errorf("audit after replay = %q, want one create", got)
	}

	// Another invocation is another request.
	other := mustCreate(t, s, newRequest(func(n *NewRequest) { n.TriggerID = "trig.2" }), 1)
	if other.ID == first.ID {
		t.Errorf("a different trigger returned request %d again", first.ID)
	}
	// So is a command without a trigger id.
	none := mustCreate(t, s, newRequest(), 1)
	if none.ID == first.ID || none.ID == other.ID {
		t.Errorf("a command without trigger id reused request %d", none.ID)
	}

	// Trigger ids are forgotten by the sweep after a few minutes.
	if _, _, err := expireDue(s, t.Context(), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	late, created, err := s.Create(t.Context(), newRequest(func(n *NewRequest) { n.TriggerID = "trig.1" }), t0.Add(time.Hour), 0, pendingStart(t0.Add(time.Hour), ttl, 1))
	if err != nil || !created || late.ID == first.ID {
		t.Errorf("trigger reuse an hour later: request %d, created %v, err %v; want a new request", late.ID, created, err)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	openStore(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("new database file mode = %v, want -rw-------", fi.Mode())
	}
}

func TestOpenLockedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	held := openStore(t, path)
	start := time.Now()
	s, err := Open(path)
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("a second Open of a held file succeeded")
	}
	if elapsed > 3*time.Second {
		t.Errorf("Open took %v to give up, want about a second", elapsed)
	}
	if !strings.Contains(err.Error(), "locked") {
		t.Errorf("Open error = %q, want it to say the file is locked", err)
	}
	if err := held.Check(); err != nil {
		t.Errorf("the holder's store is broken after a refused Open: %v", err)
	}
}

func TestConcurrentApprovals(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r := mustCreate(t, s, newRequest(), 1)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = storeDecide(s, t.Context(), r.ID, fmt.Sprintf("UAPP%02d", i), ActionApprove, "C1", true, t0.Add(time.Minute))
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		var np *NotPendingError
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("approvers %d and %d both succeeded", winner, i)
			}
			winner = i
		case errors.As(err, &np):
			if np.Request.State != StateApproved {
				t.Errorf("approver %d: NotPendingError carries state %s, want approved", i, np.Request.State)
			}
		default:
			t.Errorf("approver %d: %v, want success or *NotPendingError", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no approval succeeded")
	}
	got := mustGet(t, s, r.ID)
	if want := fmt.Sprintf("UAPP%02d", winner); got.Decider != want || len(got.Approvals) != 1 || got.Approvals[0].User != want {
		t.Errorf("stored decider %q votes %+v, want only %s", got.Decider, got.Approvals, want)
	}
	if got := auditLines(t, s, r.ID); len(got) != 2 {
		t.Errorf("audit = %q, want create and one approve", got)
	}
	assigns := 0
	for _, k := range drainJobs(t, s, r.ID) {
		if k == JobAssign {
			assigns++
		}
	}
	if assigns != 1 {
		t.Errorf("%d assign jobs queued, want exactly 1", assigns)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	s := openStore(t, path)
	r := mustCreate(t, s, newRequest(), 2)
	if _, err := s.Update(t.Context(), r.ID, 1, func(r *Request) (Transition, error) { return RecordPosted(r, "1700000000.000001", t0.Add(time.Second)) }); err != nil {
		t.Fatal(err)
	}
	mustDecide(t, s, r.ID, "UANA", ActionApprove, t0.Add(time.Minute))
	want := mustDecide(t, s, r.ID, "UBEN", ActionApprove, t0.Add(2*time.Minute))
	denied := mustCreate(t, s, newRequest(), 1)
	mustDecide(t, s, denied.ID, "UANA", ActionDeny, t0.Add(3*time.Minute))
	wantAudit, err := s.Audit(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)

	s = openStore(t, path)
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen\n%+v\nwant\n%+v", got, want)
	}
	if got.State != StateApproved || len(got.Approvals) != 2 || got.MessageTS != "1700000000.000001" {
		t.Errorf("after reopen: state %s, %d votes, ts %q", got.State, len(got.Approvals), got.MessageTS)
	}
	gotAudit, err := s.Audit(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotAudit, wantAudit) {
		t.Errorf("audit after reopen\n%+v\nwant\n%+v", gotAudit, wantAudit)
	}
	if got := auditLines(t, s, r.ID); !slices.Equal(got, []string{"UREQ create", "rolegate posted", "UANA approve", "UBEN approve"}) {
		t.Errorf("audit after reopen = %q", got)
	}
	if p, a, err := countOpen(s, t.Context()); err != nil || p != 0 || a != 1 {
		t.Errorf("CountOpen after reopen = %d pending, %d approved, %v; want 0, 1", p, a, err)
	}
	if got := drainJobs(t, s, r.ID); !slices.Equal(got, []JobKind{NotifyRequester(StatePending), JobUpdateApproval, JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)}) {
		t.Errorf("jobs after reopen = %v", got)
	}
	if got := drainJobs(t, s, denied.ID); !slices.Equal(got, []JobKind{JobPostApproval, JobUpdateApproval, JobPostDenial, NotifyRequester(StateDenied)}) {
		t.Errorf("denied request's jobs after reopen = %v", got)
	}
	// Ids keep counting from where they were.
	if next := mustCreate(t, s, newRequest(), 1); next.ID != 3 {
		t.Errorf("first request after reopen got id %d, want 3", next.ID)
	}
}

func fullRequest() Request {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	return Request{
		ID: 42, State: StateFailed,
		Ask:    Ask{Project: "Support Project", Group: "support team", Role: "Key Manager"},
		Target: Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"},
		Preview: &Preview{
			Project: Project{ID: "proj_abc", Name: "Support Project"},
			Group:   Group{ID: "group_01", Name: "Support Team", SCIMManaged: true, CreatedAt: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
			Role:    Role{ID: "role_01", Name: "Key Manager", Permissions: []string{"a.read"}, ResourceType: "api.project"},
		},
		Rule: "owners", Approvers: []string{"UANA", "SPLATFORM"}, DenyReason: "not during the freeze",
		RemindAt: at(1).Add(987654321), Reminded: true,
		Reason: "rotate <keys> & \"tokens\" — ünïcode", Requester: "UREQ", TeamID: "T1", ChannelID: "C1",
		ResponseURL: "https://hooks.slack.test/commands/1", MessageTS: "1700000000.000042",
		CreatedAt: t0, ExpiresAt: t0.Add(ttl), Required: 2,
		Approvals: []Vote{{User: "UANA", At: at(1).Add(123456789)}, {User: "WBEN", At: at(2)}},
		Decider:   "WBEN", DecidedAt: at(2), Note: "a note",
		Assignment: &Assignment{
			Group: Group{ID: "group_01", Name: "Responders", CreatedAt: time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC), SCIMManaged: true},
			Role: Role{ID: "role_01", Name: "Owner", Description: "Full access", Permissions: []string{"a.read", "a.write", "b.admin"},
				ResourceType: "api.project", Predefined: true},
			AlreadyAssigned: true, DryRun: true,
		},
		Failure: &Failure{Status: 429, Message: "Rate limit reached", Type: "rate_limit_error", Code: "rate_limit_exceeded",
			Param: "role_id", RequestID: "req_abc123"},
		FinishedAt: at(3),
		Duration:   4 * time.Hour, EndsAt: at(4).Add(5), Warned: true, HeldBefore: true,
		Ending: true, EndedBy: "UANA", EndedAt: at(5),
		Revocation:    &RevokeOutcome{Deleted: true, Absent: true, Kept: true, DryRun: true, Note: "kept: request #7 still grants it"},
		RevokeFailure: &Failure{Status: 400, Message: "bad", Type: "invalid_request_error", Code: "x", Param: "p", RequestID: "req_1"},
		Extends:       7, Extensions: []uint64{8, 9}, BreakGlass: true, ReviewedBy: "UBEN", ReviewedAt: at(6),
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	full := fullRequest()
	// Guard the test itself: a field added to Request and not filled here
	// would otherwise escape the round trip.
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullRequest leaves %s empty", v.Type().Field(i).Name)
		}
	}
	tests := []struct {
		name string
		r    Request
	}{
		{"fully populated", full},
		{"fresh", Request{ID: 1, State: StatePending, Target: full.Target, Ask: AskFor(full.Target), Reason: "r", Requester: "U1", ChannelID: "C1", CreatedAt: t0, ExpiresAt: t0.Add(ttl), Required: 1}},
		{"applied, empty description and permissions", func() Request {
			r := full
			r.Failure = nil
			r.Assignment = &Assignment{Group: Group{ID: "g"}, Role: Role{ID: "r", Permissions: []string{}}}
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := marshalRequest(&tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.r) {
				t.Errorf("round trip lost data\n got %+v\nwant %+v\njson %s", got, tt.r, b)
			}
		})
	}

	t.Run("through the store", func(t *testing.T) {
		s := newStore(t)
		r := full
		r.ID = 1
		if err := s.db.Update(func(tx *bolt.Tx) error { return putRequest(tx, &r) }); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, s, 1); !reflect.DeepEqual(got, r) {
			t.Errorf("stored and read back\n got %+v\nwant %+v", got, r)
		}
	})

	t.Run("event", func(t *testing.T) {
		e := Event{ID: 7, RequestID: 42, Actor: "UANA", Action: ActionApprove, At: t0.Add(time.Nanosecond), Detail: "1 of 2"}
		b, err := marshalEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := unmarshalEvent(b); err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("event round trip = %+v, %v; want %+v", got, err, e)
		}
	})

	t.Run("job", func(t *testing.T) {
		j := Job{ID: 9, Kind: JobAssign, RequestID: 42, Attempts: 3, NotBefore: t0.Add(time.Second), FirstTry: t0, LastError: "503 overloaded", Ambiguous: true,
			LastFailure: &Failure{Status: 503, Message: "overloaded", Type: "server_error", Code: "engine_overloaded", RequestID: "req_1"}}
		b, err := marshalJob(j)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := unmarshalJob(b); err != nil || !reflect.DeepEqual(got, j) {
			t.Errorf("job round trip = %+v, %v; want %+v", got, err, j)
		}
	})
}

func TestCodecRefusesUnknownVersion(t *testing.T) {
	t.Parallel()
	withVersion := func(t *testing.T, b []byte, v any) []byte {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if v == nil {
			delete(m, "v")
		} else {
			m["v"] = v
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	full := fullRequest()
	rb, _ := marshalRequest(&full)
	eb, _ := marshalEvent(Event{ID: 1, RequestID: 42, Actor: "U1", Action: ActionCreate, At: t0})
	jb, _ := marshalJob(Job{ID: 1, Kind: JobAssign, RequestID: 42})
	decoders := []struct {
		name   string
		b      []byte
		decode func([]byte) error
	}{
		{"request", rb, func(b []byte) error { _, err := unmarshalRequest(b); return err }},
		{"event", eb, func(b []byte) error { _, err := unmarshalEvent(b); return err }},
		{"job", jb, func(b []byte) error { _, err := unmarshalJob(b); return err }},
	}
	for _, d := range decoders {
		if err := d.decode(d.b); err != nil {
			t.Fatalf("%s: current version refused: %v", d.name, err)
		}
		for _, v := range []any{schemaVersion + 1, 0, nil} {
			t.Run(fmt.Sprintf("%s v=%v", d.name, v), func(t *testing.T) {
				err := d.decode(withVersion(t, d.b, v))
				if err == nil || !strings.Contains(err.Error(), "schema version") {
					t.Errorf("decode = %v, want an unknown schema version error", err)
				}
			})
		}
	}

	t.Run("store refuses to read it", func(t *testing.T) {
		s := newStore(t)
		r := mustCreate(t, s, newRequest(), 1)
		b, _ := marshalRequest(&r)
		future := withVersion(t, b, schemaVersion+1)
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRequests).Put(itob(r.ID), future) }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(t.Context(), r.ID); err == nil || !strings.Contains(err.Error(), "schema version") {
			t.Errorf("Get of a v2 record = %v, want an unknown schema version error", err)
		}
		if _, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionApprove, "C1", true, t0.Add(time.Minute)); err == nil {
			t.Errorf("Decide on a v2 record succeeded")
		}
		if err := s.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketRequests).Get(itob(r.ID)); string(v) != string(future) {
				t.Errorf("the v2 record was overwritten")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExpireDue(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	create := func(created time.Time) Request { return mustCreateAt(t, s, newRequest(), created, 1) }
	old := create(t0)                      // expires t0+24h
	approved := create(t0)                 // expires t0+24h, but approved
	edge := create(t0.Add(time.Hour))      // expires t0+25h: exactly now
	later := create(t0.Add(3 * time.Hour)) // expires t0+27h
	soon := create(t0.Add(2 * time.Hour))  // expires t0+26h
	mustDecide(t, s, approved.ID, "UANA", ActionApprove, t0.Add(time.Minute))
	denied := create(t0)
	mustDecide(t, s, denied.ID, "UANA", ActionDeny, t0.Add(time.Minute))

	now := t0.Add(ttl + time.Hour)
	expired, next, err := expireDue(s, t.Context(), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{old.ID, edge.ID}; !slices.Equal(expired, want) {
		t.Errorf("expired %v, want %v", expired, want)
	}
	if want := soon.ExpiresAt; !next.Equal(want) {
		t.Errorf("next expiry = %v, want %v", next, want)
	}
	wantState := map[uint64]State{old.ID: StateExpired, edge.ID: StateExpired, approved.ID: StateApproved,
		later.ID: StatePending, soon.ID: StatePending, denied.ID: StateDenied}
	for id, want := range wantState {
		if got := mustGet(t, s, id); got.State != want {
			t.Errorf("request %d is %s, want %s", id, got.State, want)
		}
	}
	for _, id := range expired {
		r := mustGet(t, s, id)
		if r.Decider != SystemActor || !r.DecidedAt.Equal(now) || !r.FinishedAt.Equal(now) {
			t.Errorf("expired request %d: decider %q at %v, finished %v", id, r.Decider, r.DecidedAt, r.FinishedAt)
		}
		if got := auditLines(t, s, id); !slices.Equal(got, []string{"UREQ create", "rolegate expire"}) {
			t.Errorf("request %d audit = %q", id, got)
		}
		if got := drainJobs(t, s, id); !slices.Equal(got, []JobKind{JobPostApproval, JobUpdateApproval, NotifyRequester(StateExpired)}) {
			t.Errorf("request %d jobs = %v, want the message updated and the requester told", id, got)
		}
	}
	if got := auditLines(t, s, approved.ID); !slices.Equal(got, []string{"UREQ create", "UANA approve"}) {
		t.Errorf("approved request audit = %q", got)
	}

	// A second sweep at the same time finds nothing more.
	again, next2, err := expireDue(s, t.Context(), now)
	if err != nil || len(again) != 0 || !next2.Equal(next) {
		t.Errorf("second sweep: expired %v, next %v, %v", again, next2, err)
	}
	// When everything pending has expired there is no next expiry.
	_, next3, err := expireDue(s, t.Context(), t0.Add(100*ttl))
	if err != nil || !next3.IsZero() {
		t.Errorf("final sweep: next %v, %v; want zero", next3, err)
	}
	if p, _, _ := countOpen(s, t.Context()); p != 0 {
		t.Errorf("%d requests still pending after the final sweep", p)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for range 6 {
		mustCreate(t, s, newRequest(), 1)
	}
	mustDecide(t, s, 2, "UANA", ActionApprove, t0.Add(time.Minute))
	mustDecide(t, s, 3, "UANA", ActionDeny, t0.Add(time.Minute))
	mustDecide(t, s, 5, "UREQ", ActionCancel, t0.Add(time.Minute))

	tests := []struct {
		opt  ListOptions
		want []uint64
	}{
		{ListOptions{}, []uint64{6, 5, 4, 3, 2, 1}},
		{ListOptions{Limit: 2}, []uint64{6, 5}},
		{ListOptions{State: StatePending}, []uint64{6, 4, 1}},
		{ListOptions{State: StatePending, Limit: 2}, []uint64{6, 4}},
		{ListOptions{State: StateApproved}, []uint64{2}},
		{ListOptions{State: StateDenied}, []uint64{3}},
		{ListOptions{State: StateCancelled, Limit: 5}, []uint64{5}},
		{ListOptions{State: StateApplied}, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s limit %d", tt.opt.State, tt.opt.Limit), func(t *testing.T) {
			rs, err := s.List(t.Context(), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			for _, r := range rs {
				ids = append(ids, r.ID)
				if tt.opt.State != "" && r.State != tt.opt.State {
					t.Errorf("request %d in %s listed for %s", r.ID, r.State, tt.opt.State)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("List(%+v) = %v, want %v", tt.opt, ids, tt.want)
			}
		})
	}

	t.Run("a request leaving pending leaves the pending list", func(t *testing.T) {
		mustDecide(t, s, 4, "UANA", ActionApprove, t0.Add(2*time.Minute))
		rs, err := s.List(t.Context(), ListOptions{State: StatePending})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.ID == 4 {
				t.Errorf("approved request 4 still listed as pending")
			}
		}
		if p, a, err := countOpen(s, t.Context()); err != nil || p != 2 || a != 2 {
			t.Errorf("CountOpen = %d pending, %d approved, %v; want 2, 2", p, a, err)
		}
		if _, err := s.Update(t.Context(), 4, 0, func(r *Request) (Transition, error) {
			return RecordAssignment(r, assignmentFor(Target{}, false), t0.Add(3*time.Minute))
		}); err != nil {
			t.Fatal(err)
		}
		rs, _ = s.List(t.Context(), ListOptions{State: StateApproved})
		if len(rs) != 1 || rs[0].ID != 2 {
			t.Errorf("approved list after request 4 was applied = %+v, want only request 2", rs)
		}
	})

	t.Run("pending list reads only the open index", func(t *testing.T) {
		// A finished request whose record says pending (as a corrupt or
		// hand-edited file might) is not in the open index, so it is not
		// listed: proof the listing did not scan every request.
		stale := mustGet(t, s, 3)
		stale.State = StatePending
		b, _ := marshalRequest(&stale)
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRequests).Put(itob(3), b) }); err != nil {
			t.Fatal(err)
		}
		rs, _ := s.List(t.Context(), ListOptions{State: StatePending})
		for _, r := range rs {
			if r.ID == 3 {
				t.Errorf("pending list scanned the whole history")
			}
		}
	})
}

func TestOpenSnapshot(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rolegate.db")
	s := openStore(t, path)
	for range 3 {
		mustCreate(t, s, newRequest(), 1)
	}
	mustDecide(t, s, 2, "UANA", ActionApprove, t0.Add(time.Minute))

	snap, cleanup, err := OpenSnapshot(path)
	if err != nil {
		t.Fatalf("OpenSnapshot of a file held open: %v", err)
	}
	copyPath := snap.Path()
	if copyPath == path {
		t.Errorf("snapshot opened the live file")
	}
	rs, err := snap.List(t.Context(), ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[1].State != StateApproved {
		t.Errorf("snapshot lists %+v, want 3 requests with request 2 approved", rs)
	}
	if err := snap.Check(); err != nil {
		t.Errorf("snapshot check: %v", err)
	}
	// The live store keeps working while the snapshot is open.
	mustCreate(t, s, newRequest(), 1)
	cleanup()
	if _, err := os.Stat(copyPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cleanup left the copy %s behind (%v)", copyPath, err)
	}

	t.Run("not a database", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.db")
		if err := os.WriteFile(junk, []byte(strings.Repeat("not bolt ", 2000)), 0o600); err != nil {
			t.Fatal(err)
		}
		if snap, cleanup, err := OpenSnapshot(junk); err == nil {
			cleanup()
			snap.Close()
			t.Fatal("OpenSnapshot of a junk file succeeded")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, _, err := OpenSnapshot(filepath.Join(t.TempDir(), "none.db")); err == nil {
			t.Fatal("OpenSnapshot of a missing file succeeded")
		}
	})
}

func TestDueJobs(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a := mustCreate(t, s, newRequest(), 1)
	b := mustCreate(t, s, newRequest(), 1)
	mustDecide(t, s, a.ID, "UANA", ActionApprove, t0.Add(time.Minute))

	jobs, next, err := s.DueJobs(t.Context(), t0, nil, Each(10))
	if err != nil {
		t.Fatal(err)
	}
	// OpenAI calls first, then one message per request, oldest first; a's
	// update waits for its post.
	if len(jobs) != 3 || jobs[0].RequestID != a.ID || jobs[0].Kind != JobAssign ||
		jobs[1].RequestID != a.ID || jobs[1].Kind != JobPostApproval || jobs[2].RequestID != b.ID || !next.IsZero() {
		t.Fatalf("DueJobs = %+v next %v, want a's call, then one message per request, oldest first", jobs, next)
	}
	// Busy lanes are skipped entirely; the limit is honoured.
	callA := Job{RequestID: a.ID, Kind: JobAssign}.Lane()
	messagesA := Job{RequestID: a.ID}.Lane()
	if jobs, _, _ := s.DueJobs(t.Context(), t0, map[uint64]bool{callA: true, messagesA: true}, Each(10)); len(jobs) != 1 || jobs[0].RequestID != b.ID {
		t.Errorf("DueJobs with request %d busy = %+v", a.ID, jobs)
	}
	if jobs, _, _ := s.DueJobs(t.Context(), t0, map[uint64]bool{messagesA: true}, Each(10)); len(jobs) != 2 || jobs[0].Kind != JobAssign || jobs[1].RequestID != b.ID {
		t.Errorf("DueJobs with request %d's messages busy = %+v, want its OpenAI call still handed out", a.ID, jobs)
	}
	if jobs, _, _ := s.DueJobs(t.Context(), t0, nil, JobLimit{Calls: 1}); len(jobs) != 1 || jobs[0].Kind != JobAssign {
		t.Errorf("DueJobs limit 1 = %+v, want the OpenAI call before any message", jobs)
	}
	// A job waiting for a retry holds back its lane's later jobs, not other
	// lanes or requests.
	j := jobs[1]
	j.Attempts, j.NotBefore, j.LastError = 1, t0.Add(time.Minute), "ratelimited"
	if err := s.RetryJob(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	jobs, next, _ = s.DueJobs(t.Context(), t0, nil, Each(10))
	if len(jobs) != 2 || jobs[0].Kind != JobAssign || jobs[1].RequestID != b.ID || !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("DueJobs with request %d's post waiting = %+v next %v", a.ID, jobs, next)
	}
	jobs, _, _ = s.DueJobs(t.Context(), t0.Add(time.Minute), nil, Each(10))
	if len(jobs) != 3 || jobs[1].ID != j.ID || jobs[1].Attempts != 1 || jobs[1].LastError != "ratelimited" {
		t.Errorf("DueJobs after the wait = %+v, want the retried job with its attempt recorded", jobs)
	}
	// RetryJob of a completed job does not bring it back.
	if err := s.CompleteJob(t.Context(), j.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryJob(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	if got := drainJobs(t, s, a.ID); !slices.Equal(got, []JobKind{JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)}) {
		t.Errorf("request %d jobs = %v after its post job completed", a.ID, got)
	}
}
