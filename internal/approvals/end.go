package approvals

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file holds the pure transitions of a grant after it is applied: its
// end (by time or by someone's revoke), the revocation's outcome, the
// warning before the end, extensions and the review of a break-glass grant.
// Several of them need the other applied grants of the same project, group
// and role ("others"): the Store reads them in the same transaction
// (Store.UpdateGrant), so two grants ending at once cannot both believe the
// other still holds the role.

// Active reports whether r is an applied grant whose end has not been
// decided yet: the grants that keep a role in place.
// An applied extension request grants nothing of its own and is never
// active.
func (r *Request) Active() bool { return r.State == StateApplied && !r.Ending && r.Extends == 0 }

// activeOthers returns the ids of the active grants among others, other
// than r itself, of r's target.
func activeOthers(r *Request, others []Request) []Request {
	var out []Request
	for _, o := range others {
		if o.ID != r.ID && o.Target == r.Target && o.Active() {
			out = append(out, o)
		}
	}
	return out
}

// heldBefore decides, when a grant is applied, whether the group held the
// role before rolegate granted it: the check before the POST found it
// (a.AlreadyAssigned), no earlier attempt of this request may have POSTed
// (mayHavePosted false), and no other active rolegate grant explains it.
// When other rolegate grants are active, the role is rolegate's unless
// one of them found it held before: that knowledge is inherited, so the
// last grant to end never removes a role the group had of its own.
func heldBefore(r *Request, a Assignment, mayHavePosted bool, others []Request) bool {
	if act := activeOthers(r, others); len(act) > 0 {
		return slices.ContainsFunc(act, func(o Request) bool { return o.HeldBefore })
	}
	return a.AlreadyAssigned && !mayHavePosted
}

// EndsAfter fixes the end of a grant applied at now, from its Duration.
func (r *Request) endsAfter(now time.Time) {
	r.EndsAt = time.Time{}
	if r.Duration > 0 {
		r.EndsAt = now.Add(r.Duration)
	}
	// A grant no longer than the warning's lead gets no warning: it would
	// arrive with the grant itself.
	r.Warned = r.Duration <= WarnBefore
}

// End is a request to end an applied grant now: by its time (Actor
// SystemActor) or by someone's revoke.
type End struct {
	Actor string
	// Eligible says whether a person revoking may: the requester or an
	// approver of the grant's rule. The time's own end needs no say.
	Eligible bool
	At       time.Time
}

// EndGrant decides the end of an applied grant r. When the role must stay
// (the group held it before rolegate granted it, or another active
// rolegate grant of the same role still grants it) r is revoked at once
// with the reason kept and nothing is DELETEd; otherwise r is marked
// Ending and a JobRevoke queued. Errors: *NotPendingError when r is not an
// active grant (ended already: a replayed click), ErrCannotRevoke when a
// person who may not revoke asks.
func EndGrant(r *Request, e End, others []Request) (Transition, error) {
	if !r.Active() {
		return Transition{}, &NotPendingError{Request: *r}
	}
	if e.Actor != SystemActor && !e.Eligible {
		return Transition{}, ErrCannotRevoke
	}
	r.EndedBy, r.EndedAt = e.Actor, e.At
	detail := "the grant's time ended"
	if e.Actor != SystemActor {
		detail = "revoked by " + e.Actor
	}
	if kept := keptBecause(r, others); kept != "" {
		r.Revocation = &RevokeOutcome{Kept: true, Note: kept}
		r.State, r.FinishedAt = StateRevoked, e.At
		return Transition{Event: Event{Actor: e.Actor, Action: ActionRevoked, At: e.At, Detail: detail + "; " + kept},
			Jobs: []JobKind{JobUpdateApproval, JobPostRevocation, NotifyRequester(StateRevoked)}}, nil
	}
	r.Ending = true
	return Transition{Event: Event{Actor: e.Actor, Action: ActionRevoke, At: e.At, Detail: detail},
		Jobs: []JobKind{JobRevoke}}, nil
}

// keptBecause says why the end of r must leave the role in place, or "".
func keptBecause(r *Request, others []Request) string {
	if r.HeldBefore {
		return "kept: the group held the role before rolegate granted it"
	}
	act := activeOthers(r, others)
	if len(act) == 0 {
		return ""
	}
	ids := make([]string, len(act))
	for i, o := range act {
		ids[i] = "#" + strconv.FormatUint(o.ID, 10)
	}
	if len(ids) == 1 {
		return "kept: request " + ids[0] + " still grants it"
	}
	return "kept: requests " + strings.Join(ids, ", ") + " still grant it"
}

// RecordRevocation records the outcome of the DELETE of an ending grant.
func RecordRevocation(r *Request, rv Revocation, now time.Time) (Transition, error) {
	if r.State != StateApplied || !r.Ending {
		return Transition{}, &NotPendingError{Request: *r}
	}
	out := &RevokeOutcome{Deleted: !rv.Absent, Absent: rv.Absent, DryRun: rv.DryRun}
	detail := "deleted"
	switch {
	case rv.DryRun && rv.Absent:
		detail, out.Note = "dry run: the group did not hold the role", "Dry run: nothing to DELETE, the group did not hold the role"
	case rv.DryRun:
		detail, out.Note = "dry run: would have deleted", "Dry run: the assignment would have been DELETEd"
	case rv.Absent:
		detail, out.Note = "already gone", "the group no longer held the role: nothing to DELETE"
	default:
		out.Note = "the assignment was DELETEd"
	}
	r.Revocation, r.RevokeFailure = out, nil
	r.State, r.FinishedAt = StateRevoked, now
	return Transition{Event: Event{Actor: SystemActor, Action: ActionRevoked, At: now, Detail: detail},
		Jobs: []JobKind{JobUpdateApproval, JobPostRevocation, NotifyRequester(StateRevoked)}}, nil
}

// RecordRevokeFailure records a permanent failure of the revocation of an
// ending grant: the grant stays applied (the role is still held), the
// failure is shown in the channel and the job is retried on the slow
// schedule. Only the first failure of a run is announced.
func RecordRevokeFailure(r *Request, f Failure, now time.Time) (Transition, error) {
	if r.State != StateApplied || !r.Ending {
		return Transition{}, &NotPendingError{Request: *r}
	}
	first := r.RevokeFailure == nil
	r.RevokeFailure = &f
	tr := Transition{Event: Event{Actor: SystemActor, Action: ActionFail, At: now, Detail: "revocation failed: " + f.Message}}
	if first {
		tr.Jobs = []JobKind{JobUpdateApproval, JobPostRevocation}
	}
	return tr, nil
}

// Warn tells the requester a grant ends soon (once).
func Warn(r *Request, now time.Time) Transition {
	r.Warned = true
	return Transition{Event: Event{Actor: SystemActor, Action: ActionWarn, At: now, Detail: "ends " + r.EndsAt.UTC().Format(time.RFC3339)},
		Jobs: []JobKind{JobWarnRequester}}
}

// TickGrant does what time makes due for an applied grant: the warning
// before its end, then its end. It returns a zero Transition when nothing
// is due.
func TickGrant(r *Request, now time.Time, others []Request) Transition {
	if !r.Active() || r.EndsAt.IsZero() {
		return Transition{}
	}
	if !now.Before(r.EndsAt) {
		tr, _ := EndGrant(r, End{Actor: SystemActor, At: now}, others)
		return tr
	}
	if !r.Warned && !now.Before(r.EndsAt.Add(-WarnBefore)) {
		return Warn(r, now)
	}
	return Transition{}
}

// Extend moves the end of the applied grant r by ext's duration, once per
// extension (a repeated call changes nothing). It refuses, with an error
// that explains it, a grant that is no longer active or has already ended
// by now.
func Extend(r *Request, ext Request, now time.Time) (Transition, error) {
	if slices.Contains(r.Extensions, ext.ID) {
		return Transition{}, nil
	}
	switch {
	case !r.Active():
		return Transition{}, fmt.Errorf("%w: grant #%d already ended (%s), so it cannot be extended: ask for a new grant", ErrInvalid, r.ID, r.State)
	case r.EndsAt.IsZero():
		return Transition{}, fmt.Errorf("%w: grant #%d is permanent: there is no end to move", ErrInvalid, r.ID)
	case !now.Before(r.EndsAt):
		return Transition{}, fmt.Errorf("%w: grant #%d ended at %s, before this extension was approved: ask for a new grant", ErrInvalid, r.ID, r.EndsAt.UTC().Format(time.RFC3339))
	}
	from := r.EndsAt
	r.EndsAt = r.EndsAt.Add(ext.Duration)
	r.Warned = false
	r.Extensions = append(r.Extensions, ext.ID)
	return Transition{Event: Event{Actor: SystemActor, Action: ActionExtend, At: now,
		Detail: fmt.Sprintf("extended by #%d for %s: ends %s instead of %s", ext.ID, FormatDuration(ext.Duration), r.EndsAt.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339))},
		Jobs: []JobKind{JobUpdateApproval}}, nil
}

// RecordExtension ends an approved extension request: applied with a note
// when the original grant's end moved, failed with the reason when it
// could not (why non-empty).
func RecordExtension(r *Request, endsAt time.Time, why string, now time.Time) (Transition, error) {
	if r.State != StateApproved {
		return Transition{}, &NotPendingError{Request: *r}
	}
	if why != "" {
		r.Failure = &Failure{Message: why}
		r.Note = why
		r.State, r.FinishedAt = StateFailed, now
		return Transition{Event: Event{Actor: SystemActor, Action: ActionFail, At: now, Detail: why},
			Jobs: []JobKind{JobUpdateApproval, JobPostResult, NotifyRequester(StateFailed)}}, nil
	}
	r.Note = fmt.Sprintf("grant #%d now ends %s", r.Extends, endsAt.UTC().Format(time.RFC3339))
	r.EndsAt = endsAt
	r.State, r.FinishedAt = StateApplied, now
	return Transition{Event: Event{Actor: SystemActor, Action: ActionApply, At: now, Detail: "extension: " + r.Note},
		Jobs: []JobKind{JobUpdateApproval, JobPostResult, NotifyRequester(StateApplied)}}, nil
}

// Review records that an approver reviewed a break-glass grant (once).
func Review(r *Request, actor string, eligible bool, now time.Time) (Transition, error) {
	switch {
	case !r.BreakGlass || r.ReviewedBy != "":
		return Transition{}, &NotPendingError{Request: *r}
	case !eligible || actor == r.Requester:
		return Transition{}, ErrNotApprover
	}
	r.ReviewedBy, r.ReviewedAt = actor, now
	return Transition{Event: Event{Actor: actor, Action: ActionReview, At: now, Detail: "break-glass grant reviewed"},
		Jobs: []JobKind{JobUpdateApproval}}, nil
}
