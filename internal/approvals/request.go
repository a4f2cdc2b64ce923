package approvals

import (
	"fmt"
	"slices"
	"time"
)

// State is where a request is in its life.
type State string

// The states of a request, as DESIGN.md draws them:
//
//	checking ──checks pass──▶ pending ──quorum──▶ approved ──assigned──▶ applied ──end / revoke──▶ revoked
//	   └──checks fail──▶ rejected    ├─deny──▶ denied        └─permanent error─▶ failed
//	                                 ├─ttl──▶ expired
//	                                 └─requester cancels──▶ cancelled
const (
	StateChecking  State = "checking"
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateApplied   State = "applied"
	StateRevoked   State = "revoked"
	StateFailed    State = "failed"
	StateDenied    State = "denied"
	StateExpired   State = "expired"
	StateCancelled State = "cancelled"
	StateRejected  State = "rejected"
)

// States lists every state, in the order of a request's life.
var States = []State{StateChecking, StatePending, StateApproved, StateApplied, StateRevoked,
	StateFailed, StateDenied, StateExpired, StateCancelled, StateRejected}

// Open reports whether s is still on its way to a decision (checking,
// pending) or to its assignment (approved). Open requests count against the
// requester's limit while checking or pending (see Awaiting).
func (s State) Open() bool { return s == StateChecking || s == StatePending || s == StateApproved }

// Awaiting reports whether s is waiting on a check or on approvers: the
// requests a person may have only so many of at once.
func (s State) Awaiting() bool { return s == StateChecking || s == StatePending }

// Final reports whether no further transition can leave s. An applied grant
// is not final: it can still be revoked.
func (s State) Final() bool { return !s.Open() && s != StateApplied }

// Valid reports whether s is one of States.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Action is what an actor does to a request, as the audit trail records it.
type Action string

// The actions recorded in the audit trail.
const (
	ActionCreate     Action = "create"
	ActionCheck      Action = "check"  // the checks passed: the request is pending
	ActionReject     Action = "reject" // the checks failed
	ActionApprove    Action = "approve"
	ActionDeny       Action = "deny"
	ActionCancel     Action = "cancel"
	ActionExpire     Action = "expire"
	ActionApply      Action = "apply"
	ActionFail       Action = "fail"
	ActionPosted     Action = "posted"
	ActionRemind     Action = "remind"
	ActionRevoke     Action = "revoke" // a revocation was asked for, or the grant ended
	ActionRevoked    Action = "revoked"
	ActionReview     Action = "review"
	ActionExtend     Action = "extend"
	ActionWarn       Action = "warn" // the requester was told the grant ends soon
	ActionBreakGlass Action = "break_glass"
)

// SystemActor is the actor recorded for transitions rolegate makes itself
// (checks, expiry, assignment results).
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
	// Ask is what the requester typed; Target is what it resolved to. A
	// request made with ids has both from the start; one made with names
	// gets its Target when the checks resolve it.
	Ask Ask
	Target
	// Preview is what the checks found at OpenAI (names, permissions); nil
	// until the checks pass.
	Preview *Preview

	Reason      string
	Requester   string // Slack user id
	TeamID      string
	ChannelID   string
	ResponseURL string // Slack response_url of the command, for private follow-ups
	MessageTS   string // ts of the approval message, once posted

	// Rule is the name of the policy rule the request matched; Approvers
	// and Required are that rule's, fixed when it matched (the approvers
	// are still checked as they are now at every click).
	Rule      string
	Approvers []string
	Required  int // distinct approvals needed

	CreatedAt time.Time
	ExpiresAt time.Time // a pending request expires then
	Approvals []Vote
	Decider   string    // who moved it out of pending; empty while pending
	DecidedAt time.Time // when it left pending
	Note      string    // why it ended, when rolegate ended it or refused it
	// DenyReason is the approver's reason for a deny.
	DenyReason string
	// RemindAt is when the approvers who have not acted are reminded, once
	// (zero: the rule asks for no reminder); Reminded records that it was
	// done, so a restart does not remind twice.
	RemindAt   time.Time
	Reminded   bool
	Assignment *Assignment
	Failure    *Failure
	FinishedAt time.Time // when it reached applied or a final state

	// Duration is how long the grant lasts once applied: what the
	// requester asked for until the checks pass, then what the rule
	// grants (0: permanent).
	Duration time.Duration
	// EndsAt is when an applied time-bound grant ends: fixed when the
	// grant is applied (applied time + Duration), moved by extensions.
	EndsAt time.Time
	// Warned records that the requester was told the grant ends soon.
	Warned bool
	// HeldBefore records that the group held the role before rolegate
	// granted it (see RecordAssignment): its end never DELETEs.
	HeldBefore bool
	// Ending is set when the end of an applied grant was decided (its
	// time came, or someone revoked it) and the revoke job is under way:
	// EndedBy says who (SystemActor for the end), EndedAt when.
	Ending  bool
	EndedBy string
	EndedAt time.Time
	// Revocation is how the grant ended, once revoked.
	Revocation *RevokeOutcome
	// RevokeFailure is the last permanent failure of the revocation,
	// while it is retried on the slow schedule.
	RevokeFailure *Failure
	// Extends is, for an extension request, the id of the grant whose end
	// it moves; Extensions lists the approved extensions of a grant.
	Extends    uint64
	Extensions []uint64
	// BreakGlass marks a grant applied without approval; ReviewedBy and
	// ReviewedAt record the approver who reviewed it afterwards.
	BreakGlass bool
	ReviewedBy string
	ReviewedAt time.Time
}

// RevokeOutcome is how a grant ended.
type RevokeOutcome struct {
	// Deleted is true when rolegate's DELETE removed the assignment;
	// Absent when the group no longer held the role; Kept (with Note)
	// when rolegate left it in place on purpose.
	Deleted bool
	Absent  bool
	Kept    bool
	DryRun  bool
	Note    string
}

// NewRequest is what a requester asks for.
type NewRequest struct {
	// Ask is what was typed. When Target is set instead (ids only), Ask
	// may be left empty and is filled from it.
	Ask Ask
	Target
	Reason      string
	Requester   string
	TeamID      string
	ChannelID   string
	ResponseURL string
	// TriggerID identifies one invocation of the slash command; a replayed
	// delivery with the same TriggerID returns the request already made.
	TriggerID string
	// Duration is the grant's asked duration (0: none named: the rule
	// decides).
	Duration time.Duration
	// BreakGlass asks for the grant at once, without approval (only under
	// a rule with break_glass).
	BreakGlass bool
	// Extends names the applied grant an extension request is for.
	Extends uint64
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

// normalize fills Ask from Target and trims the reason, so every entry
// point stores the same thing.
func (n NewRequest) normalize() (NewRequest, error) {
	if n.Ask == (Ask{}) {
		if err := n.Target.Validate(); err != nil {
			return n, err
		}
		n.Ask = AskFor(n.Target)
	}
	if err := n.Ask.Validate(); err != nil {
		return n, err
	}
	if n.Target != (Target{}) {
		if err := n.Target.Validate(); err != nil {
			return n, err
		}
	}
	reason, err := CleanReason(n.Reason)
	if err != nil {
		return n, err
	}
	n.Reason = reason
	switch {
	case n.Duration < 0 || n.Duration > MaxDuration:
		return n, fmt.Errorf("%w: the duration is out of range", ErrInvalid)
	case n.BreakGlass && n.Extends != 0:
		return n, fmt.Errorf("%w: an extension cannot be break-glass", ErrInvalid)
	case n.Requester == "":
		return n, fmt.Errorf("%w: requester is missing", ErrInvalid)
	case n.ChannelID == "":
		return n, fmt.Errorf("%w: channel is missing", ErrInvalid)
	}
	return n, nil
}

// Validate checks a new request before it is stored.
func (n NewRequest) Validate() error {
	_, err := n.normalize()
	return err
}

// Approved reports whether user's approval is counted.
func (r *Request) Approved(user string) bool {
	return slices.ContainsFunc(r.Approvals, func(v Vote) bool { return v.User == user })
}

// WarnBefore is how long before a time-bound grant's end the requester is
// told (with an Extend button).
const WarnBefore = 15 * time.Minute

// NextWake is when rolegate must next look at r by itself: a pending
// request's reminder, then its expiry; an applied time-bound grant's
// warning, then its end; zero when nothing is due by time alone.
func (r *Request) NextWake() time.Time {
	if r.State == StateApplied {
		if r.EndsAt.IsZero() || !r.Active() {
			return time.Time{}
		}
		if !r.Warned {
			return r.EndsAt.Add(-WarnBefore)
		}
		return r.EndsAt
	}
	if r.State != StatePending {
		return time.Time{}
	}
	if r.reminderDue(r.RemindAt) {
		return r.RemindAt
	}
	return r.ExpiresAt
}

// reminderDue reports whether a pending r's reminder is due at now: it is
// scheduled, not yet sent, and falls before the expiry (a request that
// expires gets no reminder).
func (r *Request) reminderDue(now time.Time) bool {
	return !r.RemindAt.IsZero() && !r.Reminded && r.RemindAt.Before(r.ExpiresAt) && !now.Before(r.RemindAt)
}

// Event is one line of the audit trail, written in the same transaction as
// the transition it records. The store sets ID (the event's place in the
// global sequence), Prev and Hash; see ChainHash for how Hash is computed.
type Event struct {
	ID        uint64
	RequestID uint64
	Actor     string
	Action    Action
	At        time.Time
	Detail    string
	// Prev is the Hash of the event before this one in the global
	// sequence, or GenesisHash for the first.
	Prev string
	// Hash is "sha256:" and the hex SHA-256 of the event's canonical
	// encoding (ChainHash), which covers Prev.
	Hash string
}
