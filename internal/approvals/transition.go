package approvals

import (
	"fmt"
	"slices"
	"time"
)

// This file is the core of rolegate: every change a request can undergo, as
// pure functions of the request as stored and what happened. A Store runs
// one of them inside a write transaction (so it sees the current state: a
// compare-and-set), writes the request, appends the Transition's event and
// queues its jobs, all in that one transaction. Each function changes r only
// when it returns a Transition with an event.

// Transition is the outcome of a change: the audit event to append and the
// outgoing work it causes. A zero Event means nothing changed.
type Transition struct {
	Event Event
	Jobs  []JobKind
}

// Changed reports whether t records a change.
func (t Transition) Changed() bool { return t.Event.Action != "" }

// Decision is one person's click or command on a pending request.
type Decision struct {
	RequestID uint64
	Actor     string
	Action    Action // ActionApprove, ActionDeny or ActionCancel
	// ChannelID is where the click came from; empty for a command (cancel
	// works from any channel), which only the requester may use.
	ChannelID string
	// Reason is a deny's reason.
	Reason string
	// Eligible says whether Actor is an approver of the request's rule now.
	Eligible bool
	// StillApprovers says, for the approvers who voted before, whether each
	// is an approver now. A vote missing from it counts (it was cast after
	// the map was made, by someone eligible then).
	StillApprovers map[string]bool
	At             time.Time
}

// Decide applies d to r. A request found past its expiry is moved to
// StateExpired and ErrExpired is returned with that transition. The
// requester's own Deny cancels the request. When the approvals reach the
// quorum, every vote is counted again against StillApprovers: votes of
// people no longer approvers are dropped, and the request stays pending
// unless the quorum still holds.
func Decide(r *Request, d Decision) (Transition, error) {
	if d.ChannelID != "" && d.ChannelID != r.ChannelID {
		return Transition{}, ErrWrongChannel
	}
	if r.State != StatePending {
		return Transition{}, &NotPendingError{Request: *r}
	}
	if !d.At.Before(r.ExpiresAt) {
		return Expire(r, d.At), ErrExpired
	}
	action := d.Action
	if action == ActionDeny && d.Actor == r.Requester {
		action = ActionCancel // withdrawing one's own request is not a verdict
	}
	if d.ChannelID == "" && action != ActionCancel {
		return Transition{}, fmt.Errorf("%w: only cancel works without the approval message", ErrInvalid)
	}
	switch action {
	case ActionCancel:
		if d.Actor != r.Requester {
			return Transition{}, ErrNotRequester
		}
		finish(r, StateCancelled, d.Actor, d.At)
		return Transition{Event: Event{Actor: d.Actor, Action: ActionCancel, At: d.At}, Jobs: []JobKind{JobUpdateApproval, NotifyRequester(StateCancelled)}}, nil
	case ActionApprove:
		if d.Actor == r.Requester {
			return Transition{}, ErrSelfApproval
		}
		if !d.Eligible {
			return Transition{}, ErrNotApprover
		}
		if r.Approved(d.Actor) {
			return Transition{}, ErrAlreadyVoted
		}
		r.Approvals = append(r.Approvals, Vote{User: d.Actor, At: d.At})
		detail := ""
		if len(r.Approvals) >= r.Required {
			var dropped []string
			r.Approvals, dropped = recount(r.Approvals, d.StillApprovers)
			if len(dropped) > 0 {
				detail = fmt.Sprintf("; no longer approvers, not counted: %v", dropped)
			}
		}
		ev := Event{Actor: d.Actor, Action: ActionApprove, At: d.At, Detail: fmt.Sprintf("%d of %d", len(r.Approvals), r.Required) + detail}
		if len(r.Approvals) < r.Required {
			return Transition{Event: ev, Jobs: []JobKind{JobUpdateApproval}}, nil
		}
		r.State, r.Decider, r.DecidedAt = StateApproved, d.Actor, d.At
		return Transition{Event: ev, Jobs: []JobKind{JobUpdateApproval, JobAssign, NotifyRequester(StateApproved)}}, nil
	case ActionDeny:
		if !d.Eligible {
			return Transition{}, ErrNotApprover
		}
		finish(r, StateDenied, d.Actor, d.At)
		r.DenyReason = d.Reason
		return Transition{Event: Event{Actor: d.Actor, Action: ActionDeny, Detail: d.Reason, At: d.At},
			Jobs: []JobKind{JobUpdateApproval, JobPostDenial, NotifyRequester(StateDenied)}}, nil
	}
	return Transition{}, fmt.Errorf("%w: unknown action %q", ErrInvalid, d.Action)
}

// recount keeps the votes of people who are approvers now.
func recount(votes []Vote, still map[string]bool) (kept []Vote, dropped []string) {
	for _, v := range votes {
		if ok, known := still[v.User]; known && !ok {
			dropped = append(dropped, v.User)
			continue
		}
		kept = append(kept, v)
	}
	return kept, dropped
}

// Expire ends a pending request whose time ran out.
func Expire(r *Request, now time.Time) Transition {
	finish(r, StateExpired, SystemActor, now)
	return Transition{Event: Event{Actor: SystemActor, Action: ActionExpire, At: now}, Jobs: []JobKind{JobUpdateApproval, NotifyRequester(StateExpired)}}
}

// Tick does what time alone makes due for r at now (see Request.NextWake):
// expiring a pending request, or else reminding its approvers once. Both
// happen however late now is (the bot may have been down when they fell
// due); a request found past its expiry is expired without a reminder. It
// returns a zero Transition when nothing is due.
func Tick(r *Request, now time.Time) Transition {
	switch {
	case r.State != StatePending:
		return Transition{}
	case !now.Before(r.ExpiresAt):
		return Expire(r, now)
	case r.reminderDue(now):
		r.Reminded = true
		return Transition{Event: Event{Actor: SystemActor, Action: ActionRemind, At: now, Detail: fmt.Sprintf("%d of %d approvals", len(r.Approvals), r.Required)},
			Jobs: []JobKind{JobRemind}}
	}
	return Transition{}
}

// ScheduleReminder sets when a request that has just become pending under
// a rule with remind_after = after reminds its approvers: after from now,
// or never when after is 0.
func ScheduleReminder(r *Request, after time.Duration, now time.Time) {
	r.RemindAt, r.Reminded = time.Time{}, false
	if after > 0 {
		r.RemindAt = now.Add(after)
	}
}

func finish(r *Request, s State, actor string, now time.Time) {
	r.State, r.FinishedAt = s, now
	if r.DecidedAt.IsZero() {
		r.Decider, r.DecidedAt = actor, now
	}
}

// RecordAssignment records a successful assignment of an approved request
// made in one clean attempt, with no other rolegate grant of the role
// active (see RecordGrant).
func RecordAssignment(r *Request, a Assignment, now time.Time) (Transition, error) {
	return RecordGrant(r, Grant{Assignment: a}, now)
}

// Grant is what the Worker learned applying a request: the assignment, and
// whether an earlier attempt of the request may have POSTed unseen; Others
// are the applied grants of the same target (Store.UpdateGrant).
type Grant struct {
	Assignment    Assignment
	MayHavePosted bool
	Others        []Request
}

// RecordGrant records a successful assignment of an approved request. The
// grant's end is fixed now (Duration from now), and whether the group held
// the role before rolegate granted it (heldBefore): such a role is never
// DELETEd at the end.
func RecordGrant(r *Request, g Grant, now time.Time) (Transition, error) {
	if r.State != StateApproved {
		return Transition{}, &NotPendingError{Request: *r}
	}
	a := g.Assignment
	if a.AlreadyAssigned && slices.ContainsFunc(g.Others, func(o Request) bool {
		return o.ID != r.ID && o.Target == r.Target && o.State == StateApplied && o.Ending && o.Extends == 0
	}) {
		// The role found is one an ending grant is about to DELETE: the
		// assignment is tried again once that grant has ended.
		return Transition{}, ErrGrantEnding
	}
	r.Assignment = &a
	r.State, r.FinishedAt = StateApplied, now
	r.HeldBefore = heldBefore(r, a, g.MayHavePosted, g.Others)
	r.endsAfter(now)
	detail := "assigned"
	if a.AlreadyAssigned {
		detail = "already assigned"
	}
	if r.HeldBefore {
		detail += "; the group held the role before: its end will not remove it"
	}
	if !r.EndsAt.IsZero() {
		detail += "; ends " + r.EndsAt.UTC().Format(time.RFC3339)
	}
	return Transition{Event: Event{Actor: SystemActor, Action: ActionApply, Detail: detail, At: now},
		Jobs: []JobKind{JobUpdateApproval, JobPostResult, NotifyRequester(StateApplied)}}, nil
}

// RecordFailure records that an approved request could not be carried out.
func RecordFailure(r *Request, f Failure, now time.Time) (Transition, error) {
	if r.State != StateApproved {
		return Transition{}, &NotPendingError{Request: *r}
	}
	r.Failure = &f
	r.State, r.FinishedAt = StateFailed, now
	return Transition{Event: Event{Actor: SystemActor, Action: ActionFail, Detail: f.Message, At: now},
		Jobs: []JobKind{JobUpdateApproval, JobPostResult, NotifyRequester(StateFailed)}}, nil
}

// RecordPosted records the approval message's ts. A request still pending
// then has its requester told so, with a link to the message: the link
// exists only now.
func RecordPosted(r *Request, ts string, now time.Time) (Transition, error) {
	if r.MessageTS != "" {
		return Transition{}, nil // already recorded: a repeated delivery
	}
	r.MessageTS = ts
	tr := Transition{Event: Event{Actor: SystemActor, Action: ActionPosted, Detail: ts, At: now}}
	if r.State == StatePending {
		tr.Jobs = []JobKind{NotifyRequester(StatePending)}
	}
	return tr, nil
}

// RecordUnseen ends a pending request whose approval message Slack refused
// for good, so it does not sit pending where nobody can decide it.
func RecordUnseen(r *Request, why string, now time.Time) (Transition, error) {
	if r.State != StatePending {
		return Transition{}, &NotPendingError{Request: *r}
	}
	finish(r, StateCancelled, SystemActor, now)
	r.Note = "the approval message could not be posted: " + why
	// JobTellRequester already tells the requester (by DM once the
	// response_url is stale): a second DM would say the same.
	return Transition{Event: Event{Actor: SystemActor, Action: ActionCancel, Detail: r.Note, At: now}, Jobs: []JobKind{JobTellRequester}}, nil
}
