package approvals

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// revoke carries out a JobRevoke: the DELETE of an ending grant, with the
// same attempts, deadline and back-off as an assignment. Revoker.Revoke
// lists first, so a job run again after a crash between its DELETE and the
// record finds the role gone and DELETEs nothing. A permanent failure (or
// attempts run out) is recorded and shown once, alerted, and the job is
// tried again after RevokeRetry, for as long as it takes: a grant must end.
func (w *Worker) revoke(ctx context.Context, log *slog.Logger, j Job, r Request) {
	if r.State != StateApplied || !r.Ending {
		w.complete(ctx, log, j)
		return
	}
	if e, ok := w.effect(j.ID); ok && e.revocation != nil {
		w.recordRevocation(ctx, log, j, r, *e.revocation)
		return
	}
	if w.Revoker == nil {
		log.ErrorContext(ctx, "No revoker is configured; the grant's end waits")
		w.reschedule(ctx, log, j, w.RevokeRetry)
		return
	}
	deadline, passed := w.callDeadline(&j)
	if passed {
		w.revokeFailed(ctx, log, j, Failure{Message: j.LastError})
		return
	}
	cctx, cancel := context.WithTimeout(ctx, w.CallTimeout)
	rv, err := w.Revoker.Revoke(cctx, r.Target)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		w.recordRevocation(ctx, log, j, r, rv)
		return
	}
	f := failureOf(err)
	j.Attempts++
	j.LastError = f.Message
	if !IsTemporary(err) {
		w.revokeFailed(ctx, log, j, f)
		return
	}
	delay, ok := w.nextAttempt(j, err, deadline)
	if !ok {
		w.revokeFailed(ctx, log, j, f)
		return
	}
	w.Observer.Revoke("retry", f.Status)
	log.WarnContext(ctx, "Revocation attempt failed; retrying", "attempt", j.Attempts, "retry_in", delay.String(), "status", f.Status, "message", f.Message)
	w.reschedule(ctx, log, j, delay)
}

func (w *Worker) recordRevocation(ctx context.Context, log *slog.Logger, j Job, r Request, rv Revocation) {
	now := w.Now().UTC()
	if _, ok := w.record(ctx, log, j, &effect{revocation: &rv}, func(r *Request) (Transition, error) { return RecordRevocation(r, rv, now) }); !ok {
		return
	}
	outcome := "deleted"
	if rv.Absent {
		outcome = "absent"
	}
	w.Observer.Revoke(outcome, 200)
	log.InfoContext(ctx, "Grant revoked", "project_id", r.ProjectID, "group_id", r.GroupID, "role_id", r.RoleID, "outcome", outcome, "dry_run", rv.DryRun, "ended_by", r.EndedBy)
}

// revokeFailed records a revocation that failed for good this round and
// schedules the next round after RevokeRetry. The job stays in the outbox
// all along (the record does not complete it), so a crash between the two
// writes only brings the next round forward.
func (w *Worker) revokeFailed(ctx context.Context, log *slog.Logger, j Job, f Failure) {
	now := w.Now().UTC()
	_, err := w.Store.Update(ctx, j.RequestID, 0, func(r *Request) (Transition, error) { return RecordRevokeFailure(r, f, now) })
	var np *NotPendingError
	switch {
	case errors.As(err, &np), errors.Is(err, ErrNotFound):
		w.complete(ctx, log, j)
		return
	case err != nil:
		w.storeFailed(ctx, log, j, "record the revocation failure", err)
		return
	}
	w.Observer.Revoke("failed", f.Status)
	log.ErrorContext(ctx, "Revoking a grant failed; retrying on the slow schedule (revoke it by hand at OpenAI if it keeps failing)",
		"status", f.Status, "type", f.Type, "code", f.Code, "openai_request_id", f.RequestID, "message", f.Message, "attempts", j.Attempts, "retry_in", w.RevokeRetry.String())
	j.Attempts, j.FirstTry, j.Ambiguous = 0, time.Time{}, false
	w.reschedule(ctx, log, j, w.RevokeRetry)
}

// extend carries out an approved extension request (JobAssign of a request
// with Extends): one transaction moves the end of the original grant, a
// second records the extension applied. A crash between them is safe: the
// original lists the extensions it took, so the job run again does not
// move the end twice. An original that ended before the approval is not
// extended (nor granted again): the extension fails with the reason.
func (w *Worker) extend(ctx context.Context, log *slog.Logger, j Job, r Request) {
	if r.State != StateApproved {
		w.complete(ctx, log, j)
		return
	}
	now := w.Now().UTC()
	orig, err := w.Store.Update(ctx, r.Extends, 0, func(o *Request) (Transition, error) { return Extend(o, r, now) })
	why := ""
	switch {
	case errors.Is(err, ErrInvalid):
		why = err.Error()[len(ErrInvalid.Error())+2:]
	case errors.Is(err, ErrNotFound):
		why = "the grant it extends does not exist"
	case err != nil:
		w.storeFailed(ctx, log, j, "extend the grant", err)
		return
	}
	if _, ok := w.record(ctx, log, j, nil, func(x *Request) (Transition, error) { return RecordExtension(x, orig.EndsAt, why, now) }); !ok {
		return
	}
	if why != "" {
		log.InfoContext(ctx, "Extension refused", "extends", r.Extends, "reason", why)
		return
	}
	log.InfoContext(ctx, "Grant extended", "extends", r.Extends, "ends_at", orig.EndsAt)
}
