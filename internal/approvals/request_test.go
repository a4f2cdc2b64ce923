package approvals

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTargetValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 129)
	tests := []struct {
		name    string
		target  Target
		wantErr string // substring naming the bad field; empty for valid
	}{
		{"plain ids", Target{"proj_abc", "group_01", "role_01"}, ""},
		{"dashes and digits", Target{"proj-ABC-123", "g", "R_9"}, ""},
		{"128 chars", Target{strings.Repeat("p", 128), "group_01", "role_01"}, ""},
		{"path traversal", Target{"../x", "group_01", "role_01"}, "project_id"},
		{"encoded slash", Target{"proj_abc", "a%2Fb", "role_01"}, "group_id"},
		{"space", Target{"proj_abc", "group_01", "a b"}, "role_id"},
		{"slash", Target{"proj_abc", "group/01", "role_01"}, "group_id"},
		{"query", Target{"proj_abc", "group_01", "role?x=1"}, "role_id"},
		{"non-ascii", Target{"projé", "group_01", "role_01"}, "project_id"},
		{"trailing newline", Target{"proj_abc\n", "group_01", "role_01"}, "project_id"},
		{"empty project", Target{"", "group_01", "role_01"}, "project_id is missing"},
		{"empty group", Target{"proj_abc", "", "role_01"}, "group_id is missing"},
		{"empty role", Target{"proj_abc", "group_01", ""}, "role_id is missing"},
		{"129 chars", Target{"proj_abc", "group_01", long}, "role_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.target.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.target, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalid", tt.target, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate(%+v) = %q, want it to mention %q", tt.target, err, tt.wantErr)
			}
		})
	}
}

func TestNewRequestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mod     func(*NewRequest)
		wantErr string
	}{
		{"valid", func(*NewRequest) {}, ""},
		{"reason at the limit", func(n *NewRequest) { n.Reason = strings.Repeat("é", MaxReasonLen) }, ""},
		{"reason padded beyond the limit with spaces", func(n *NewRequest) { n.Reason = "  " + strings.Repeat("x", MaxReasonLen) + "  " }, ""},
		{"bad target", func(n *NewRequest) { n.ProjectID = "../x" }, "project_id"},
		{"encoded slash in target", func(n *NewRequest) { n.RoleID = "a%2Fb" }, "role_id"},
		{"empty reason", func(n *NewRequest) { n.Reason = "" }, "reason is required"},
		{"whitespace reason", func(n *NewRequest) { n.Reason = " \t\n " }, "reason is required"},
		{"reason too long", func(n *NewRequest) { n.Reason = strings.Repeat("x", MaxReasonLen+1) }, "keep it to 1000"},
		{"reason invalid utf-8", func(n *NewRequest) { n.Reason = "bad \xff byte" }, "UTF-8"},
		{"no requester", func(n *NewRequest) { n.Requester = "" }, "requester"},
		{"no channel", func(n *NewRequest) { n.ChannelID = "" }, "channel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newRequest(tt.mod)
			err := n.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want ErrInvalid mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	type step struct {
		actor    string
		action   Action
		channel  string        // default C1
		notElig  bool          // actor is not a configured approver
		after    time.Duration // since t0; default 1m
		wantErr  error         // errors.Is target
		wantNP   State         // a *NotPendingError carrying this state
		state    State         // stored state afterwards
		votes    []string      // stored votes afterwards
		unchange bool          // the stored request must be unchanged by this step
	}
	tests := []struct {
		name        string
		required    int
		steps       []step
		wantDecider string
		wantDecided time.Duration // DecidedAt since t0
		wantAudit   []string
		wantJobs    []JobKind
	}{
		{
			name:     "approve with quorum 1",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionApprove, state: StateApproved, votes: []string{"UANA"}},
			},
			wantDecider: "UANA", wantDecided: time.Minute,
			wantAudit: []string{"UREQ create", "UANA approve"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)},
		},
		{
			name:     "quorum 2 counts distinct approvers",
			required: 2,
			steps: []step{
				{actor: "UANA", action: ActionApprove, state: StatePending, votes: []string{"UANA"}},
				{actor: "UANA", action: ActionApprove, after: 2 * time.Minute, wantErr: ErrAlreadyVoted, state: StatePending, votes: []string{"UANA"}, unchange: true},
				{actor: "UBEN", action: ActionApprove, after: 3 * time.Minute, state: StateApproved, votes: []string{"UANA", "UBEN"}},
			},
			wantDecider: "UBEN", wantDecided: 3 * time.Minute,
			wantAudit: []string{"UREQ create", "UANA approve", "UBEN approve"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)},
		},
		{
			name:     "one deny ends a quorum request",
			required: 2,
			steps: []step{
				{actor: "UANA", action: ActionApprove, state: StatePending, votes: []string{"UANA"}},
				{actor: "UBEN", action: ActionDeny, after: 2 * time.Minute, state: StateDenied, votes: []string{"UANA"}},
			},
			wantDecider: "UBEN", wantDecided: 2 * time.Minute,
			wantAudit: []string{"UREQ create", "UANA approve", "UBEN deny"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobUpdateApproval, JobPostDenial, NotifyRequester(StateDenied)},
		},
		{
			name:     "requester cannot approve even when eligible",
			required: 1,
			steps: []step{
				{actor: "UREQ", action: ActionApprove, wantErr: ErrSelfApproval, state: StatePending, unchange: true},
			},
			wantAudit: []string{"UREQ create"},
			wantJobs:  []JobKind{JobPostApproval},
		},
		{
			name:     "requester cannot approve when not eligible either",
			required: 1,
			steps: []step{
				{actor: "UREQ", action: ActionApprove, notElig: true, wantErr: ErrSelfApproval, state: StatePending, unchange: true},
			},
			wantAudit: []string{"UREQ create"},
			wantJobs:  []JobKind{JobPostApproval},
		},
		{
			name:     "non-approver can neither approve nor deny",
			required: 1,
			steps: []step{
				{actor: "UEVE", action: ActionApprove, notElig: true, wantErr: ErrNotApprover, state: StatePending, unchange: true},
				{actor: "UEVE", action: ActionDeny, notElig: true, wantErr: ErrNotApprover, state: StatePending, unchange: true},
			},
			wantAudit: []string{"UREQ create"},
			wantJobs:  []JobKind{JobPostApproval},
		},
		{
			name:     "deny",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionDeny, after: 5 * time.Minute, state: StateDenied},
			},
			wantDecider: "UANA", wantDecided: 5 * time.Minute,
			wantAudit: []string{"UREQ create", "UANA deny"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobPostDenial, NotifyRequester(StateDenied)},
		},
		{
			name:     "requester cancels",
			required: 1,
			steps: []step{
				{actor: "UREQ", action: ActionCancel, notElig: true, state: StateCancelled},
			},
			wantDecider: "UREQ", wantDecided: time.Minute,
			wantAudit: []string{"UREQ create", "UREQ cancel"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, NotifyRequester(StateCancelled)},
		},
		{
			name:     "only the requester cancels",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionCancel, wantErr: ErrNotRequester, state: StatePending, unchange: true},
			},
			wantAudit: []string{"UREQ create"},
			wantJobs:  []JobKind{JobPostApproval},
		},
		{
			name:     "decision on a final request",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionDeny, state: StateDenied},
				{actor: "UBEN", action: ActionApprove, after: 2 * time.Minute, wantNP: StateDenied, state: StateDenied, unchange: true},
				{actor: "UREQ", action: ActionCancel, after: 3 * time.Minute, wantNP: StateDenied, state: StateDenied, unchange: true},
			},
			wantDecider: "UANA", wantDecided: time.Minute,
			wantAudit: []string{"UREQ create", "UANA deny"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobPostDenial, NotifyRequester(StateDenied)},
		},
		{
			name:     "decision on an approved request",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionApprove, state: StateApproved, votes: []string{"UANA"}},
				{actor: "UBEN", action: ActionDeny, after: 2 * time.Minute, wantNP: StateApproved, state: StateApproved, votes: []string{"UANA"}, unchange: true},
			},
			wantDecider: "UANA", wantDecided: time.Minute,
			wantAudit: []string{"UREQ create", "UANA approve"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)},
		},
		{
			name:     "click from another channel",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionApprove, channel: "C2", wantErr: ErrWrongChannel, state: StatePending, unchange: true},
				{actor: "UREQ", action: ActionCancel, channel: "C2", wantErr: ErrWrongChannel, state: StatePending, unchange: true},
			},
			wantAudit: []string{"UREQ create"},
			wantJobs:  []JobKind{JobPostApproval},
		},
		{
			name:     "approval after expiry expires the request",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionApprove, after: ttl + time.Hour, wantErr: ErrExpired, state: StateExpired},
				{actor: "UBEN", action: ActionApprove, after: ttl + 2*time.Hour, wantNP: StateExpired, state: StateExpired, unchange: true},
			},
			wantDecider: SystemActor, wantDecided: ttl + time.Hour,
			wantAudit: []string{"UREQ create", "rolegate expire"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, NotifyRequester(StateExpired)},
		},
		{
			name:     "expiry is exclusive of the deadline",
			required: 1,
			steps: []step{
				{actor: "UREQ", action: ActionCancel, after: ttl, wantErr: ErrExpired, state: StateExpired},
			},
			wantDecider: SystemActor, wantDecided: ttl,
			wantAudit: []string{"UREQ create", "rolegate expire"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, NotifyRequester(StateExpired)},
		},
		{
			name:     "non-approver click after expiry still expires it",
			required: 1,
			steps: []step{
				{actor: "UEVE", action: ActionDeny, notElig: true, after: ttl + time.Second, wantErr: ErrExpired, state: StateExpired},
			},
			wantDecider: SystemActor, wantDecided: ttl + time.Second,
			wantAudit: []string{"UREQ create", "rolegate expire"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, NotifyRequester(StateExpired)},
		},
		{
			name:     "approval just before expiry counts",
			required: 1,
			steps: []step{
				{actor: "UANA", action: ActionApprove, after: ttl - time.Nanosecond, state: StateApproved, votes: []string{"UANA"}},
			},
			wantDecider: "UANA", wantDecided: ttl - time.Nanosecond,
			wantAudit: []string{"UREQ create", "UANA approve"},
			wantJobs:  []JobKind{JobPostApproval, JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			created := mustCreate(t, s, newRequest(), tt.required)
			for i, st := range tt.steps {
				channel := st.channel
				if channel == "" {
					channel = "C1"
				}
				after := st.after
				if after == 0 {
					after = time.Minute
				}
				before := mustGet(t, s, created.ID)
				got, err := storeDecide(s, t.Context(), created.ID, st.actor, st.action, channel, !st.notElig, t0.Add(after))
				switch {
				case st.wantNP != "":
					var np *NotPendingError
					if !errors.As(err, &np) {
						t.Fatalf("step %d (%s %s): err = %v, want *NotPendingError", i, st.actor, st.action, err)
					}
					if np.Request.State != st.wantNP || np.Request.ID != created.ID {
						t.Errorf("step %d: NotPendingError carries request %d in %s, want %d in %s", i, np.Request.ID, np.Request.State, created.ID, st.wantNP)
					}
					if np.Request.Decider != before.Decider || !np.Request.DecidedAt.Equal(before.DecidedAt) {
						t.Errorf("step %d: NotPendingError says decided by %q at %v, stored %q at %v", i, np.Request.Decider, np.Request.DecidedAt, before.Decider, before.DecidedAt)
					}
				case st.wantErr != nil:
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d (%s %s): err = %v, want %v", i, st.actor, st.action, err, st.wantErr)
					}
				default:
					if err != nil {
						t.Fatalf("step %d (%s %s): %v", i, st.actor, st.action, err)
					}
				}
				stored := mustGet(t, s, created.ID)
				if got.ID != created.ID || got.State != stored.State {
					t.Errorf("step %d: Decide returned request %d in %s, stored is %s", i, got.ID, got.State, stored.State)
				}
				if stored.State != st.state {
					t.Errorf("step %d: stored state = %s, want %s", i, stored.State, st.state)
				}
				var votes []string
				for _, v := range stored.Approvals {
					votes = append(votes, v.User)
				}
				if !slices.Equal(votes, st.votes) {
					t.Errorf("step %d: votes = %v, want %v", i, votes, st.votes)
				}
				if st.unchange {
					b1, _ := marshalRequest(&before)
					b2, _ := marshalRequest(&stored)
					if string(b1) != string(b2) {
						t.Errorf("step %d changed the request:\nbefore %s\nafter  %s", i, b1, b2)
					}
				}
			}

			r := mustGet(t, s, created.ID)
			if r.Decider != tt.wantDecider {
				t.Errorf("Decider = %q, want %q", r.Decider, tt.wantDecider)
			}
			if tt.wantDecider == "" {
				if !r.DecidedAt.IsZero() {
					t.Errorf("DecidedAt = %v for an undecided request", r.DecidedAt)
				}
			} else if want := t0.Add(tt.wantDecided); !r.DecidedAt.Equal(want) {
				t.Errorf("DecidedAt = %v, want %v", r.DecidedAt, want)
			}
			if r.State.Final() && !r.FinishedAt.Equal(r.DecidedAt) {
				t.Errorf("FinishedAt = %v, want %v (when it was decided)", r.FinishedAt, r.DecidedAt)
			}
			if !r.State.Final() && !r.FinishedAt.IsZero() {
				t.Errorf("FinishedAt = %v for an open request", r.FinishedAt)
			}
			for _, v := range r.Approvals {
				if v.At.Before(t0) || v.At.After(r.ExpiresAt) {
					t.Errorf("vote by %s at %v is outside the request's life", v.User, v.At)
				}
			}
			if got := auditLines(t, s, created.ID); !slices.Equal(got, tt.wantAudit) {
				t.Errorf("audit = %q, want %q", got, tt.wantAudit)
			}
			if got := drainJobs(t, s, created.ID); !slices.Equal(got, tt.wantJobs) {
				t.Errorf("jobs = %v, want %v", got, tt.wantJobs)
			}
		})
	}
}

func TestDecideAuditEvents(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r := mustCreate(t, s, newRequest(), 2)
	mustDecide(t, s, r.ID, "UANA", ActionApprove, t0.Add(time.Minute))
	mustDecide(t, s, r.ID, "UBEN", ActionApprove, t0.Add(2*time.Minute))
	evs, err := s.Audit(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		actor  string
		action Action
		at     time.Time
		detail string
	}{
		{"UREQ", ActionCreate, t0, "need key rotation for incident 42"},
		{"UANA", ActionApprove, t0.Add(time.Minute), "1 of 2"},
		{"UBEN", ActionApprove, t0.Add(2 * time.Minute), "2 of 2"},
	}
	if len(evs) != len(want) {
		t.Fatalf("audit has %d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		e := evs[i]
		if e.Actor != w.actor || e.Action != w.action || !e.At.Equal(w.at) || e.Detail != w.detail {
			t.Errorf("event %d = %s %s at %v %q, want %s %s at %v %q", i, e.Actor, e.Action, e.At, e.Detail, w.actor, w.action, w.at, w.detail)
		}
		if i > 0 && e.ID <= evs[i-1].ID {
			t.Errorf("event ids not increasing: %d after %d", e.ID, evs[i-1].ID)
		}
	}
}

func TestDecideUnknownRequest(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mustCreate(t, s, newRequest(), 1)
	for _, action := range []Action{ActionApprove, ActionDeny, ActionCancel} {
		t.Run(string(action), func(t *testing.T) {
			_, err := storeDecide(s, t.Context(), 99, "UANA", action, "C1", true, t0)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Decide on request 99 = %v, want ErrNotFound", err)
			}
		})
	}
	if _, err := s.Get(t.Context(), 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(99) = %v, want ErrNotFound", err)
	}
}

func TestDecideUnknownAction(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r := mustCreate(t, s, newRequest(), 1)
	_, err := storeDecide(s, t.Context(), r.ID, "UANA", ActionApply, "C1", true, t0.Add(time.Minute))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Decide with action %q = %v, want ErrInvalid", ActionApply, err)
	}
	if got := mustGet(t, s, r.ID); got.State != StatePending {
		t.Errorf("state = %s, want pending", got.State)
	}
}
