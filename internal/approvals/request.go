package approvals

import (
	"fmt"
	"slices"
	"time"
)

// State is where a request is in its life.
type State string

// The states of a request. Pending and approved are open; the rest are final.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateApplied   State = "applied"
	StateFailed    State = "failed"
	StateDenied    State = "denied"
	StateExpired   State = "expired"
	StateCancelled State = "cancelled"
)

// States lists every state, in the order of the request's life.
var States = []State{StatePending, StateApproved, StateApplied, StateFailed, StateDenied, StateExpired, StateCancelled}

// Final reports whether no further transition can leave s.
func (s State) Final() bool { return s != StatePending && s != StateApproved }

// Valid reports whether s is one of States.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Action is what an actor does to a request.
type Action string

// The actions recorded in the audit trail.
const (
	ActionCreate  Action = "create"
	ActionApprove Action = "approve"
	ActionDeny    Action = "deny"
	ActionCancel  Action = "cancel"
	ActionExpire  Action = "expire"
	ActionApply   Action = "apply"
	ActionFail    Action = "fail"
	ActionPosted  Action = "posted"
)

// SystemActor is the actor recorded for transitions rolegate makes itself
// (expiry, assignment results).
const SystemActor = "rolegate"

// Vote is one approver's approval.
type Vote struct {
	User string
	At   time.Time
}

// Request is one ask for a project role assignment and everything decided
// about it.
type Request struct {
	ID    uint64
	State State
	Target
	Reason      string
	Requester   string // Slack user id
	TeamID      string
	ChannelID   string
	ResponseURL string // Slack response_url of the command, for private follow-ups
	MessageTS   string // ts of the approval message, once posted
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Required    int // distinct approvals needed, fixed at creation
	Approvals   []Vote
	Decider     string    // who moved it out of pending; empty while pending
	DecidedAt   time.Time // when it left pending
	Note        string    // why it ended, when rolegate ended it
	Assignment  *Assignment
	Failure     *Failure
	FinishedAt  time.Time // when it reached a final state
}

// NewRequest is what a requester asks for.
type NewRequest struct {
	Target
	Reason      string
	Requester   string
	TeamID      string
	ChannelID   string
	ResponseURL string
	// TriggerID identifies one invocation of the slash command; a replayed
	// delivery with the same TriggerID returns the request already made.
	TriggerID string
}

// Validate checks a target's ids, naming the first bad one.
func (t Target) Validate() error {
	for _, f := range []struct{ name, v string }{{"project_id", t.ProjectID}, {"group_id", t.GroupID}, {"role_id", t.RoleID}} {
		if err := CheckID(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks a new request before it is stored.
func (n NewRequest) Validate() error {
	if err := n.Target.Validate(); err != nil {
		return err
	}
	if _, err := CleanReason(n.Reason); err != nil {
		return err
	}
	switch {
	case n.Requester == "":
		return fmt.Errorf("%w: requester is missing", ErrInvalid)
	case n.ChannelID == "":
		return fmt.Errorf("%w: channel is missing", ErrInvalid)
	}
	return nil
}

// Approved reports whether user's approval is counted.
func (r *Request) Approved(user string) bool {
	return slices.ContainsFunc(r.Approvals, func(v Vote) bool { return v.User == user })
}

// Event is one line of the audit trail, written in the same transaction as
// the transition it records.
type Event struct {
	ID        uint64
	RequestID uint64
	Actor     string
	Action    Action
	At        time.Time
	Detail    string
}

// transition is the outcome of a pure state change: the event to record and
// the outgoing work it causes.
type transition struct {
	event Event
	jobs  []JobKind
}

// decide applies an approver's or requester's action to r at now. eligible
// says whether actor is a configured approver. It changes r only when it
// returns a nil error, except for expiry: a request found past its expiry is
// moved to StateExpired and ErrExpired is returned with the transition.
func decide(r *Request, actor string, action Action, eligible bool, now time.Time) (transition, error) {
	if r.State != StatePending {
		return transition{}, &NotPendingError{Request: *r}
	}
	if !now.Before(r.ExpiresAt) {
		return expire(r, now), ErrExpired
	}
	switch action {
	case ActionCancel:
		if actor != r.Requester {
			return transition{}, ErrNotRequester
		}
		finish(r, StateCancelled, actor, now)
		return transition{event: Event{Actor: actor, Action: ActionCancel}, jobs: []JobKind{JobUpdateApproval}}, nil
	case ActionApprove:
		if actor == r.Requester {
			return transition{}, ErrSelfApproval
		}
		if !eligible {
			return transition{}, ErrNotApprover
		}
		if r.Approved(actor) {
			return transition{}, ErrAlreadyVoted
		}
		r.Approvals = append(r.Approvals, Vote{User: actor, At: now})
		ev := Event{Actor: actor, Action: ActionApprove, Detail: fmt.Sprintf("%d of %d", len(r.Approvals), r.Required)}
		if len(r.Approvals) < r.Required {
			return transition{event: ev, jobs: []JobKind{JobUpdateApproval}}, nil
		}
		r.State, r.Decider, r.DecidedAt = StateApproved, actor, now
		return transition{event: ev, jobs: []JobKind{JobUpdateApproval, JobAssign}}, nil
	case ActionDeny:
		if !eligible {
			return transition{}, ErrNotApprover
		}
		finish(r, StateDenied, actor, now)
		return transition{event: Event{Actor: actor, Action: ActionDeny}, jobs: []JobKind{JobUpdateApproval}}, nil
	}
	return transition{}, fmt.Errorf("%w: unknown action %q", ErrInvalid, action)
}

func expire(r *Request, now time.Time) transition {
	finish(r, StateExpired, SystemActor, now)
	return transition{event: Event{Actor: SystemActor, Action: ActionExpire}, jobs: []JobKind{JobUpdateApproval}}
}

func finish(r *Request, s State, actor string, now time.Time) {
	r.State, r.FinishedAt = s, now
	if r.DecidedAt.IsZero() {
		r.Decider, r.DecidedAt = actor, now
	}
}

// applied records a successful assignment of an approved request.
func applied(r *Request, a Assignment, now time.Time) (transition, error) {
	if r.State != StateApproved {
		return transition{}, &NotPendingError{Request: *r}
	}
	r.Assignment = &a
	r.State, r.FinishedAt = StateApplied, now
	detail := "assigned"
	if a.AlreadyAssigned {
		detail = "already assigned"
	}
	return transition{event: Event{Actor: SystemActor, Action: ActionApply, Detail: detail}, jobs: []JobKind{JobUpdateApproval, JobPostResult}}, nil
}

// failed records that an approved request could not be carried out.
func failed(r *Request, f Failure, now time.Time) (transition, error) {
	if r.State != StateApproved {
		return transition{}, &NotPendingError{Request: *r}
	}
	r.Failure = &f
	r.State, r.FinishedAt = StateFailed, now
	return transition{event: Event{Actor: SystemActor, Action: ActionFail, Detail: f.Message}, jobs: []JobKind{JobUpdateApproval, JobPostResult}}, nil
}

// unseen ends a pending request whose approval message Slack refused for good,
// so it does not sit pending where nobody can decide it.
func unseen(r *Request, why string, now time.Time) (transition, error) {
	if r.State != StatePending {
		return transition{}, &NotPendingError{Request: *r}
	}
	finish(r, StateCancelled, SystemActor, now)
	r.Note = "the approval message could not be posted: " + why
	return transition{event: Event{Actor: SystemActor, Action: ActionCancel, Detail: r.Note}, jobs: []JobKind{JobTellRequester}}, nil
}
