package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// Notifier delivers what happens to a request to the people concerned. Each
// method renders the request as given (its current stored state), so a
// retried or repeated delivery shows the latest truth. A method's error
// should be a *DeliveryError; any other error counts as temporary. Each
// call is one attempt; the Worker owns retries.
type Notifier interface {
	// PostApproval posts the approval message and returns its ts. When
	// p.MayHavePosted, it first looks for the message an earlier attempt
	// may have posted and returns that one's ts instead; when it cannot
	// look, it posts (a message twice rather than none).
	PostApproval(ctx context.Context, r Request, p Posting) (ts string, err error)
	// UpdateApproval rewrites the approval message to r's state.
	UpdateApproval(ctx context.Context, r Request) error
	// PostResult posts the assignment summary or the API's error; with
	// p.MayHavePosted, only when it cannot find one posted before, as
	// PostApproval.
	PostResult(ctx context.Context, r Request, p Posting) error
	// TellRequester tells the requester privately why the request ended
	// without a decision (r.Note).
	TellRequester(ctx context.Context, r Request) error
	// DMRequester sends the requester a direct message saying r reached
	// state, which may be behind r.State when the message was delayed:
	// it says what happened then (pending with a link to the approval
	// message, approved, applied with the summary, denied with the reason,
	// failed with the error, expired, cancelled).
	DMRequester(ctx context.Context, r Request, state State) error
	// PostDenial replies in the approval message's thread who denied r
	// and why; with p.MayHavePosted, only when it cannot find one posted
	// before, as PostApproval.
	PostDenial(ctx context.Context, r Request, p Posting) error
	// Remind replies in the approval message's thread, mentioning the
	// approvers of a pending r who have not acted yet; p as PostDenial.
	Remind(ctx context.Context, r Request, p Posting) error
	// PostRevocation replies in the approval message's thread how r's
	// grant ended (who or what ended it, when, the DELETE's outcome), or,
	// for a grant still applied, why its revocation keeps failing; p as
	// PostDenial for the reply that it ended (a failure may be reported
	// again on a later failure).
	PostRevocation(ctx context.Context, r Request, p Posting) error
	// WarnRequester tells the requester by direct message that r's grant
	// ends soon, with an Extend button.
	WarnRequester(ctx context.Context, r Request) error
	// NotifyApprovers tells every approver of r's rule by direct message
	// that r was applied break-glass, without approval.
	NotifyApprovers(ctx context.Context, r Request) error
}

// Posting is what the Worker knows of a message's earlier attempts when it
// asks a Notifier to post it.
type Posting struct {
	// MayHavePosted: an earlier attempt may have reached Slack without its
	// outcome being recorded (the job was taken over from a process that
	// stopped while running it, Job.TakenOver), so the message may be
	// there already.
	MayHavePosted bool
}

// DeliveryError is a Notifier failure, classified.
type DeliveryError struct {
	Code       string // the platform's error code, e.g. "not_in_channel"
	Temporary  bool   // worth retrying: rate limits, 5xx, network errors
	RetryAfter time.Duration
	Hint       string // what an operator should do about a permanent error
	Err        error
}

func (e *DeliveryError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Code
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// RoleLister lists the roles a group holds in a project. The Worker uses it
// for one last look after an ambiguous assignment attempt before it gives
// up (an approvals.Catalog is one).
type RoleLister interface {
	GroupRoles(ctx context.Context, projectID, groupID string) ([]Role, error)
}

// Observer is told what the Worker did, for metrics. Methods must not block.
type Observer interface {
	// Grant reports one OpenAI attempt: outcome is "applied",
	// "already_assigned", "retry" or "failed"; status is the HTTP status
	// of the failing call (0 when no response arrived), 200 on success.
	Grant(outcome string, status int)
	// Delivery reports one Notifier call: outcome is "ok", "retry" or
	// "dropped".
	Delivery(kind JobKind, outcome string)
	// Store reports a failed store operation the Worker will retry.
	Store(op string)
	// Quarantine reports a record moved aside.
	Quarantine(kind string)
	// Revoke reports one revocation attempt or decision: outcome is
	// "deleted", "absent", "kept", "retry" or "failed" (a permanent
	// failure: alert on it); status as for Grant.
	Revoke(outcome string, status int)
}

type nopObserver struct{}

func (nopObserver) Grant(string, int)        {}
func (nopObserver) Delivery(JobKind, string) {}
func (nopObserver) Store(string)             {}
func (nopObserver) Quarantine(string)        {}
func (nopObserver) Revoke(string, int)       {}

// Worker carries out the outbox: it assigns roles for approved requests and
// delivers messages, each in order per request (see Job.Lane), driven only
// by what is stored, so a restart picks up exactly where the last process
// stopped. It also acts on what time makes due (Request.NextWake).
//
// Nothing that fails makes it spin: every failure, the store's included,
// backs off (capped exponential with jitter). When the store cannot record
// a retry, the Worker remembers the job's state in memory; when it cannot
// record a side effect that succeeded (a posted message, an assignment), it
// remembers the effect and only retries the record, so Slack and OpenAI are
// not called again for it while the process lives.
type Worker struct {
	Store    Store
	Checker  *Checker // checks new requests (StateChecking)
	Granter  Granter
	Revoker  Revoker    // ends grants; without it, ending grants wait
	Roles    RoleLister // optional: the last look after an ambiguous attempt
	Notifier Notifier
	Logger   *slog.Logger
	Now      func() time.Time
	Observer Observer

	// MaxAttempts bounds the OpenAI attempts for one request (default 5).
	MaxAttempts int
	// Deadline bounds the time from the first attempt to the last one
	// (default 10m): no attempt starts after FirstTry + Deadline.
	Deadline time.Duration
	// CallTimeout bounds one Assign call, its list and POST together (default 30s).
	CallTimeout time.Duration
	// BaseBackoff and MaxBackoff shape the capped exponential backoff with
	// full jitter between attempts (defaults 500ms and 30s).
	BaseBackoff, MaxBackoff time.Duration
	// DeliveryGiveUp is how long a message keeps being retried while Slack
	// fails temporarily (default 24h).
	DeliveryGiveUp time.Duration
	// Concurrency is how many Slack messages are delivered at once, each
	// for a different request (default 8); Slack paces a channel at about
	// a message a second anyway.
	Concurrency int
	// CallConcurrency is how many OpenAI calls (checks, assignments,
	// revocations) run at once, each for a different request (default
	// 128): a call mostly waits on the network, so a burst of checks or
	// approvals reaches OpenAI at once instead of queueing (measured with
	// cmd/loadgen, 100 in flight: burst click → POST p99 560–660 ms at 16,
	// 280–310 ms at 64, 84–122 ms at 128). OpenAI's 429s pace it beyond.
	CallConcurrency int
	// RevokeRetry is how long the Worker waits before it tries again a
	// revocation that failed for good (default 1h): the grant must end,
	// so it is never given up, only slowed down.
	RevokeRetry time.Duration

	mu      sync.Mutex
	busy    map[uint64]bool      // lanes with a job running
	held    map[uint64]time.Time // lanes waiting out a back-off the store could not record
	jobs    map[uint64]Job       // job id → its latest state, when the store could not record it
	effects map[uint64]effect    // job id → a side effect done but not yet recorded
	wg      sync.WaitGroup
	done    chan struct{}
}

// effect is a side effect that succeeded but whose record failed.
type effect struct {
	ts         string      // a posted approval message
	assignment *Assignment // an assignment made
	revocation *Revocation // a revocation made
	verdict    *Verdict    // a check done
	delivered  bool        // any other message
}

func (w *Worker) defaults() {
	if w.MaxAttempts <= 0 {
		w.MaxAttempts = 5
	}
	if w.Deadline <= 0 {
		w.Deadline = 10 * time.Minute
	}
	if w.CallTimeout <= 0 {
		w.CallTimeout = 30 * time.Second
	}
	if w.BaseBackoff <= 0 {
		w.BaseBackoff = 500 * time.Millisecond
	}
	if w.MaxBackoff <= 0 {
		w.MaxBackoff = 30 * time.Second
	}
	if w.DeliveryGiveUp <= 0 {
		w.DeliveryGiveUp = 24 * time.Hour
	}
	if w.Concurrency <= 0 {
		w.Concurrency = 8
	}
	if w.CallConcurrency <= 0 {
		w.CallConcurrency = 128
	}
	if w.RevokeRetry <= 0 {
		w.RevokeRetry = time.Hour
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Observer == nil {
		w.Observer = nopObserver{}
	}
	w.busy, w.held = map[uint64]bool{}, map[uint64]time.Time{}
	w.jobs, w.effects = map[uint64]Job{}, map[uint64]effect{}
	w.done = make(chan struct{}, 1)
}

// wakeRescan bounds how often a busy worker reads the wakes index when
// nothing it knows of is due.
const wakeRescan = time.Second

// deadlineMargin keeps the last attempt's start inside the deadline.
const deadlineMargin = 10 * time.Millisecond

// idleWake bounds how long the worker sleeps with nothing scheduled.
const idleWake = 30 * time.Second

// sweepEvery is how often trigger ids are forgotten.
const sweepEvery = time.Minute

// Run works until ctx is cancelled, then waits for the jobs under way to stop
// (they see the cancelled context) and returns nil. A failing store is
// retried with back-off for as long as it takes; Run does not give up.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	ctx = AsWorker(ctx)
	defer w.wg.Wait()
	timer := time.NewTimer(idleWake)
	defer timer.Stop()
	var storeFailures int
	var swept time.Time
	var wakeAt, wakeRead time.Time // the next wake known, and when the index was read
	for ctx.Err() == nil {
		now := w.Now()
		// The wakes index is read when a wake is due, and otherwise at most
		// once every wakeRescan while commits keep waking the loop (one
		// may have stored an earlier wake): a burst of finished jobs must
		// not rescan it thousands of times.
		var next time.Time
		var err error
		if !now.Before(wakeAt) || now.Sub(wakeRead) >= wakeRescan {
			next, err = w.wake(ctx, now)
			if err == nil {
				wakeAt, wakeRead = next, now
				if wakeAt.IsZero() {
					wakeAt = now.Add(idleWake)
				}
			}
		} else {
			next = earliest(wakeAt, wakeRead.Add(wakeRescan))
		}
		if err == nil {
			var nextJob time.Time
			nextJob, err = w.dispatch(ctx, now)
			next = earliest(next, nextJob)
		}
		if err == nil && now.Sub(swept) >= sweepEvery {
			if err = w.Store.Sweep(ctx, now); err == nil {
				swept = now
			}
		}
		if err != nil && ctx.Err() == nil {
			storeFailures++
			delay := w.backoff(storeFailures)
			w.Observer.Store("schedule")
			w.Logger.ErrorContext(ctx, "The store failed; retrying", "err", err, "retry_in", delay.String(), "failures", storeFailures)
			next = now.Add(delay)
		} else if err == nil {
			storeFailures = 0
		}
		w.sleep(ctx, timer, next)
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// sleep waits until next (at most idleWake), a store change, a finished
// job, or the end of ctx.
func (w *Worker) sleep(ctx context.Context, timer *time.Timer, next time.Time) {
	wait := idleWake
	if !next.IsZero() {
		wait = min(max(next.Sub(w.Now()), 0), idleWake)
	}
	timer.Reset(wait) // since Go 1.23 Reset and Stop leave no stale tick behind
	select {
	case <-ctx.Done():
	case <-w.Store.Changes():
	case <-w.done:
	case <-timer.C:
	}
	timer.Stop()
}

// wake acts on the requests time has made due and returns the next wake.
func (w *Worker) wake(ctx context.Context, now time.Time) (time.Time, error) {
	const batch = 100
	ids, next, err := w.Store.DueWakes(ctx, now, batch)
	if err != nil {
		return time.Time{}, fmt.Errorf("read due requests: %w", err)
	}
	for _, id := range ids {
		r, err := w.Store.UpdateGrant(ctx, id, 0, func(r *Request, others []Request) (Transition, error) {
			if r.State == StateApplied {
				return TickGrant(r, now, others), nil
			}
			return Tick(r, now), nil
		})
		var ce *CorruptError
		switch {
		case errors.As(err, &ce):
			w.quarantine(ctx, ce)
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return time.Time{}, fmt.Errorf("act on request %d: %w", id, err)
		case r.State == StateExpired && r.FinishedAt.Equal(now):
			w.Logger.InfoContext(ctx, "Request expired", "request_id", id)
		case r.EndedBy == SystemActor && r.EndedAt.Equal(now):
			w.Logger.InfoContext(ctx, "Grant ended", "request_id", id, "kept", r.Revocation != nil)
			if r.Revocation != nil {
				w.Observer.Revoke("kept", 0)
			}
		}
	}
	if len(ids) == batch {
		next = now // more are due: come straight back
	}
	return next, nil
}

// dispatch starts the jobs that are due, up to the free concurrency, and
// returns when the next one not yet due is.
func (w *Worker) dispatch(ctx context.Context, now time.Time) (time.Time, error) {
	w.mu.Lock()
	free := JobLimit{Calls: w.CallConcurrency, Messages: w.Concurrency}
	skip := make(map[uint64]bool, len(w.busy)+len(w.held))
	var next time.Time
	for lane := range w.busy {
		skip[lane] = true
		if lane&1 == 1 { // see Job.Lane
			free.Calls--
		} else {
			free.Messages--
		}
	}
	for lane, until := range w.held {
		if now.Before(until) {
			skip[lane] = true
			next = earliest(next, until)
		} else {
			delete(w.held, lane)
		}
	}
	w.mu.Unlock()
	// Once ctx is cancelled nothing more is dispatched: a job abandoned by
	// the shutdown is back in the outbox (and out of busy), and handing it
	// out again would call OpenAI or Slack after the stop.
	free.Calls, free.Messages = max(free.Calls, 0), max(free.Messages, 0)
	if free == (JobLimit{}) || ctx.Err() != nil {
		return next, nil
	}
	jobs, nextJob, err := w.Store.DueJobs(ctx, now, skip, free)
	if err != nil {
		return time.Time{}, fmt.Errorf("read outbox: %w", err)
	}
	for _, j := range jobs {
		if j.Corrupt != nil {
			w.quarantine(ctx, j.Corrupt)
			continue
		}
		j = w.remembered(j)
		if j.NotBefore.After(now) {
			next = earliest(next, j.NotBefore)
			continue
		}
		if ctx.Err() != nil {
			break
		}
		w.start(ctx, j)
	}
	return earliest(next, nextJob), nil
}

// remembered merges what the Worker knows of j beyond the store's copy (a
// retry the store could not record).
func (w *Worker) remembered(j Job) Job {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.jobs[j.ID]; ok && m.Attempts >= j.Attempts {
		m.TakenOver = m.TakenOver || j.TakenOver // known only from this claim
		m.Request = j.Request                    // as read now, not at an earlier claim
		return m
	}
	return j
}

func (w *Worker) start(ctx context.Context, j Job) {
	w.mu.Lock()
	w.busy[j.Lane()] = true
	w.mu.Unlock()
	w.wg.Go(func() {
		defer func() {
			w.mu.Lock()
			delete(w.busy, j.Lane())
			w.mu.Unlock()
			select {
			case w.done <- struct{}{}:
			default:
			}
		}()
		w.runSafely(ctx, j)
	})
}

// runSafely runs j; a panic is logged with the request id and the job is
// quarantined, so one bad job cannot stop the others or be retried forever.
func (w *Worker) runSafely(ctx context.Context, j Job) {
	defer func() {
		if p := recover(); p != nil {
			w.Logger.ErrorContext(ctx, "A job panicked; moving it aside", "request_id", j.RequestID, "job", string(j.Kind), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			w.quarantine(ctx, &CorruptError{Kind: "job", Key: j.ID, Err: fmt.Errorf("panic while running %s for request %d: %v", j.Kind, j.RequestID, p)})
		}
	}()
	w.runJob(ctx, j)
}

func (w *Worker) quarantine(ctx context.Context, ce *CorruptError) {
	if err := w.Store.Quarantine(ctx, ce, w.Now().UTC()); err != nil {
		w.Observer.Store("quarantine")
		w.Logger.ErrorContext(ctx, "Moving an unreadable record aside failed", "kind", ce.Kind, "key", ce.Key, "err", err)
		return
	}
	w.Observer.Quarantine(ce.Kind)
	w.Logger.ErrorContext(ctx, "Moved an unreadable record aside; everything else carries on", "kind", ce.Kind, "key", ce.Key, "reason", ce.Err.Error())
}

func (w *Worker) runJob(ctx context.Context, j Job) {
	log := w.Logger.With("request_id", j.RequestID, "job", string(j.Kind))
	var r Request
	var err error
	if j.Request != nil {
		r = *j.Request // read with the claim
	} else {
		r, err = w.Store.Get(ctx, j.RequestID)
	}
	var ce *CorruptError
	switch {
	case errors.Is(err, ErrNotFound):
		log.ErrorContext(ctx, "Dropping a job for a request that does not exist")
		w.complete(ctx, log, j)
		return
	case errors.As(err, &ce):
		w.quarantine(ctx, ce)
		w.complete(ctx, log, j)
		return
	case err != nil:
		w.storeFailed(ctx, log, j, "read the request", err)
		return
	}
	switch j.Kind {
	case JobCheck:
		w.check(ctx, log, j, r)
	case JobAssign:
		if r.Extends != 0 {
			w.extend(ctx, log, j, r)
			return
		}
		w.assign(ctx, log, j, r)
	case JobRevoke:
		w.revoke(ctx, log, j, r)
	default:
		w.deliver(ctx, log, j, r)
	}
}

// record applies change to the job's request and completes the job in one
// transaction. A store failure keeps the job (and the effect, if given) in
// memory and backs off; it reports whether the record was made.
func (w *Worker) record(ctx context.Context, log *slog.Logger, j Job, e *effect, change func(*Request) (Transition, error)) (Request, bool) {
	r, err := w.Store.Update(ctx, j.RequestID, j.ID, change)
	return r, w.recorded(ctx, log, j, e, err)
}

// recorded settles a record's outcome: done (the change was written, or
// was moot), or a store failure that keeps the effect in memory and backs
// off.
func (w *Worker) recorded(ctx context.Context, log *slog.Logger, j Job, e *effect, err error) bool {
	var np *NotPendingError
	if err == nil || errors.As(err, &np) || errors.Is(err, ErrNotFound) {
		w.forget(j.ID)
		return true
	}
	if e != nil {
		w.mu.Lock()
		w.effects[j.ID] = *e
		w.mu.Unlock()
	}
	w.storeFailed(ctx, log, j, "record the outcome", err)
	return false
}

// recordGrant is record for a change that needs the target's other grants.
func (w *Worker) recordGrant(ctx context.Context, log *slog.Logger, j Job, e *effect, change func(*Request, []Request) (Transition, error)) (Request, bool) {
	r, err := w.Store.UpdateGrant(ctx, j.RequestID, 0, change)
	if errors.Is(err, ErrGrantEnding) {
		w.forget(j.ID)
		log.InfoContext(ctx, "The role is held by a grant that is ending; assigning again after its revocation")
		w.reschedule(ctx, log, j, w.backoff(j.Attempts+1))
		return r, false
	}
	if err == nil {
		// Completed apart: a refusal (ErrGrantEnding) must keep the job. A
		// crash in between leaves a job that finds the request applied.
		if err = w.Store.CompleteJob(ctx, j.ID); err != nil {
			w.storeFailed(ctx, log, j, "complete the job", err)
			return r, false
		}
	}
	return r, w.recorded(ctx, log, j, e, err)
}

func (w *Worker) forget(jobID uint64) {
	w.mu.Lock()
	delete(w.jobs, jobID)
	delete(w.effects, jobID)
	w.mu.Unlock()
}

func (w *Worker) effect(jobID uint64) (effect, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.effects[jobID]
	return e, ok
}

// storeFailed backs off a job whose store read or write failed. It does not
// count as an OpenAI or Slack attempt, but it backs off like one.
func (w *Worker) storeFailed(ctx context.Context, log *slog.Logger, j Job, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	fails := w.jobs[j.ID].storeFails + 1
	w.mu.Unlock()
	delay := w.backoff(fails)
	w.Observer.Store(what)
	log.ErrorContext(ctx, "The store failed; retrying the job", "op", what, "err", err, "retry_in", delay.String())
	j.LastError = "store: " + err.Error()
	w.hold(j, delay, fails)
}

// hold keeps j out of the dispatch until delay has passed, in memory.
func (w *Worker) hold(j Job, delay time.Duration, storeFails int) {
	j.NotBefore = w.Now().Add(delay)
	j.storeFails = storeFails
	w.mu.Lock()
	w.jobs[j.ID] = j
	w.held[j.Lane()] = j.NotBefore
	w.mu.Unlock()
}

// reschedule is the one retry path for assignments and deliveries: it
// stores j with its next attempt after delay; if the store cannot record
// it, the Worker holds j in memory instead, so the back-off holds anyway.
func (w *Worker) reschedule(ctx context.Context, log *slog.Logger, j Job, delay time.Duration) {
	j.NotBefore = w.Now().Add(delay) // from the answer, not from when the attempt began
	if err := w.Store.RetryJob(ctx, j); err != nil {
		w.Observer.Store("reschedule")
		log.ErrorContext(ctx, "Recording the retry failed; holding it in memory", "err", err, "retry_in", delay.String())
		w.hold(j, delay, 0)
		return
	}
	w.forget(j.ID)
}

func (w *Worker) assign(ctx context.Context, log *slog.Logger, j Job, r Request) {
	if r.State != StateApproved {
		w.complete(ctx, log, j)
		return
	}
	if e, ok := w.effect(j.ID); ok && e.assignment != nil {
		w.recordAssignment(ctx, log, j, r, *e.assignment)
		return
	}
	deadline, passed := w.callDeadline(&j)
	if passed {
		f := Failure{Message: j.LastError}
		if j.LastFailure != nil {
			f = *j.LastFailure
		}
		w.giveUp(ctx, log, j, r, f)
		return
	}
	// The first attempt is recorded before it starts, so a process that
	// stops during it leaves a trace: a role found held afterwards may be
	// its POST's, and is taken as rolegate's, never as the group's own.
	// Later attempts count in memory only (a write before each would push
	// attempts past the deadline); their stored retry carries the count.
	// When the store cannot record it, the attempt goes ahead (the effect
	// memo covers this process) and counts as untraced.
	j.Tries++
	if j.Tries == 1 {
		if err := w.Store.RetryJob(ctx, j); err != nil {
			w.Observer.Store("record the attempt")
			log.WarnContext(ctx, "Recording the start of an assignment attempt failed; going ahead", "err", err)
			j.Tries = j.Attempts + 2
		}
	}
	cctx, cancel := context.WithTimeout(ctx, w.CallTimeout) // the deadline bounds when attempts start, not how long one runs
	a, err := w.Granter.Assign(cctx, r.Target)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the job stays in the outbox for the next start
	}
	if err == nil {
		w.recordAssignment(ctx, log, j, r, a)
		return
	}

	f := failureOf(err)
	var ge *GrantError
	if errors.As(err, &ge) && ge.Ambiguous {
		j.Ambiguous = true
	}
	j.Attempts++
	j.LastError = f.Message
	last := f
	j.LastFailure = &last
	if !IsTemporary(err) {
		w.fail(ctx, log, j, r, f)
		return
	}
	delay, ok := w.nextAttempt(j, err, deadline)
	if !ok {
		w.giveUp(ctx, log, j, r, f)
		return
	}
	w.Observer.Grant("retry", f.Status)
	log.WarnContext(ctx, "Assignment attempt failed; retrying", "attempt", j.Attempts, "retry_in", delay.String(), "status", f.Status, "message", f.Message, "ambiguous", j.Ambiguous)
	w.reschedule(ctx, log, j, delay)
}

// callDeadline is when the OpenAI calls of j must have started by:
// Deadline after its first attempt, which it records in j on the first
// one. passed reports that it is over and no attempt may start.
func (w *Worker) callDeadline(j *Job) (deadline time.Time, passed bool) {
	now := w.Now()
	if j.FirstTry.IsZero() {
		j.FirstTry = now
	}
	deadline = j.FirstTry.Add(w.Deadline)
	return deadline, !now.Before(deadline)
}

// nextAttempt says how long to wait before the next OpenAI attempt of j,
// whose last attempt failed temporarily with err, and whether there is one:
// not when the attempts are used up, when the server's Retry-After reaches
// past the deadline, or when no time is left before it. Backoff that would
// overshoot is cut so the last attempt starts just inside the deadline.
func (w *Worker) nextAttempt(j Job, err error, deadline time.Time) (time.Duration, bool) {
	delay := w.backoff(j.Attempts)
	left := deadline.Sub(w.Now()) - deadlineMargin
	var ge *GrantError
	switch {
	case errors.As(err, &ge) && ge.RetryAfter > delay:
		delay = ge.RetryAfter // the server's word: no attempt before it
	case delay > left:
		delay = left
	}
	if j.Attempts >= w.MaxAttempts || delay > left || left <= 0 {
		return 0, false
	}
	return delay, true
}

// check runs a new request's checks and records the verdict: pending, or
// rejected with the reason. When OpenAI cannot be reached the check is
// retried like an assignment; when that gives up, the request is rejected
// and the requester told so.
func (w *Worker) check(ctx context.Context, log *slog.Logger, j Job, r Request) {
	if r.State != StateChecking || w.Checker == nil {
		w.complete(ctx, log, j)
		return
	}
	if e, ok := w.effect(j.ID); ok && e.verdict != nil {
		w.recordVerdict(ctx, log, j, *e.verdict)
		return
	}
	deadline, passed := w.callDeadline(&j)
	if passed {
		w.recordVerdict(ctx, log, j, Verdict{Rejection: "rolegate could not check the request at OpenAI in time: " + j.LastError})
		return
	}
	cctx, cancel := context.WithTimeout(ctx, w.CallTimeout) // the deadline bounds when attempts start, not how long one runs
	v, err := w.Checker.Check(cctx, r)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		w.recordVerdict(ctx, log, j, v)
		return
	}
	j.Attempts++
	j.LastError = failureOf(err).Message
	delay, ok := w.nextAttempt(j, err, deadline)
	if !IsTemporary(err) || !ok {
		why := fmt.Sprintf("rolegate could not check the request at OpenAI (%d attempts): %s", j.Attempts, j.LastError)
		log.WarnContext(ctx, "Checking the request failed; rejecting it", "attempts", j.Attempts, "err", err)
		w.recordVerdict(ctx, log, j, Verdict{Rejection: why})
		return
	}
	log.WarnContext(ctx, "Checking the request failed; retrying", "attempt", j.Attempts, "retry_in", delay.String(), "err", err)
	w.reschedule(ctx, log, j, delay)
}

func (w *Worker) recordVerdict(ctx context.Context, log *slog.Logger, j Job, v Verdict) {
	now := w.Now().UTC()
	r, ok := w.record(ctx, log, j, &effect{verdict: &v}, func(r *Request) (Transition, error) {
		if v.Rejection != "" {
			return Reject(r, v.Rejection, now)
		}
		return Pass(r, v, now)
	})
	if !ok {
		return
	}
	if v.Rejection != "" {
		log.InfoContext(ctx, "Request rejected by its checks", "reason", v.Rejection)
		return
	}
	log.InfoContext(ctx, "Request checked; waiting for approval", "rule", r.Rule, "project_id", r.ProjectID, "group_id", r.GroupID, "role_id", r.RoleID)
}

// giveUp ends an assignment whose attempts or deadline ran out. After an
// ambiguous attempt it looks once more (a list, not an assignment): the
// role may be there after all.
func (w *Worker) giveUp(ctx context.Context, log *slog.Logger, j Job, r Request, f Failure) {
	if j.Ambiguous && w.Roles != nil {
		cctx, cancel := context.WithTimeout(ctx, w.CallTimeout)
		roles, err := w.Roles.GroupRoles(cctx, r.ProjectID, r.GroupID)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if i := slices.IndexFunc(roles, func(x Role) bool { return x.ID == r.RoleID }); i >= 0 {
				w.recordAssignment(ctx, log, j, r, Assignment{Group: Group{ID: r.GroupID}, Role: roles[i], AlreadyAssigned: true})
				return
			}
		} else {
			log.WarnContext(ctx, "The last look after an ambiguous attempt failed", "err", err)
		}
	}
	f.Message = fmt.Sprintf("gave up after %d attempts in %s: %s", j.Attempts, w.Now().Sub(j.FirstTry).Round(time.Second), f.Message)
	if j.Ambiguous {
		f.Message += " (an earlier attempt may have reached OpenAI: check the group's project roles before asking again)"
	}
	w.fail(ctx, log, j, r, f)
}

func (w *Worker) fail(ctx context.Context, log *slog.Logger, j Job, r Request, f Failure) {
	now := w.Now().UTC()
	if _, ok := w.record(ctx, log, j, nil, func(r *Request) (Transition, error) { return RecordFailure(r, f, now) }); !ok {
		return
	}
	w.Observer.Grant("failed", f.Status)
	log.WarnContext(ctx, "Assignment failed", "status", f.Status, "type", f.Type, "code", f.Code, "openai_request_id", f.RequestID, "message", f.Message, "attempts", j.Attempts)
}

func (w *Worker) recordAssignment(ctx context.Context, log *slog.Logger, j Job, r Request, a Assignment) {
	now := w.Now().UTC()
	mayHavePosted := j.Ambiguous || j.Tries > j.Attempts+1
	if _, ok := w.recordGrant(ctx, log, j, &effect{assignment: &a}, func(r *Request, others []Request) (Transition, error) {
		return RecordGrant(r, Grant{Assignment: a, MayHavePosted: mayHavePosted, Others: others}, now)
	}); !ok {
		return
	}
	outcome := "applied"
	if a.AlreadyAssigned {
		outcome = "already_assigned"
	}
	w.Observer.Grant(outcome, 200)
	log.InfoContext(ctx, "Role assigned", "project_id", r.ProjectID, "group_id", r.GroupID, "role_id", r.RoleID, "already_assigned", a.AlreadyAssigned)
}

func (w *Worker) deliver(ctx context.Context, log *slog.Logger, j Job, r Request) {
	if e, ok := w.effect(j.ID); ok {
		w.delivered(ctx, log, j, e) // done before; only its record is missing
		return
	}
	now := w.Now()
	if j.FirstTry.IsZero() {
		j.FirstTry = now
	}
	var err error
	var e effect
	switch j.Kind {
	case JobPostApproval:
		if r.MessageTS != "" {
			w.complete(ctx, log, j) // posted before a crash lost the job's completion
			return
		}
		e.ts, err = w.Notifier.PostApproval(ctx, r, j.posting())
	case JobUpdateApproval:
		if r.MessageTS == "" {
			w.complete(ctx, log, j) // never posted: nothing to update
			return
		}
		err = w.Notifier.UpdateApproval(ctx, r)
	case JobPostResult:
		err = w.Notifier.PostResult(ctx, r, j.posting())
	case JobTellRequester:
		err = w.Notifier.TellRequester(ctx, r)
	case JobPostDenial:
		err = w.Notifier.PostDenial(ctx, r, j.posting())
	case JobRemind:
		if r.State != StatePending || r.MessageTS == "" {
			w.complete(ctx, log, j) // decided meanwhile, or never posted: nobody to remind
			return
		}
		err = w.Notifier.Remind(ctx, r, j.posting())
	case JobPostRevocation:
		err = w.Notifier.PostRevocation(ctx, r, j.posting())
	case JobWarnRequester:
		if !r.Active() {
			w.complete(ctx, log, j) // ended meanwhile: nothing to extend
			return
		}
		err = w.Notifier.WarnRequester(ctx, r)
	case JobNotifyApprovers:
		err = w.Notifier.NotifyApprovers(ctx, r)
	default:
		if state, ok := j.Kind.Reports(); ok {
			err = w.Notifier.DMRequester(ctx, r, state)
			break
		}
		log.ErrorContext(ctx, "Dropping a job of unknown kind")
		w.complete(ctx, log, j)
		return
	}
	if err == nil {
		e.delivered = true
		w.Observer.Delivery(j.Kind.Family(), "ok")
		w.delivered(ctx, log, j, e)
		return
	}
	if ctx.Err() != nil {
		return
	}
	var de *DeliveryError
	temporary := !errors.As(err, &de) || de.Temporary
	if !temporary || now.Sub(j.FirstTry) >= w.DeliveryGiveUp {
		w.Observer.Delivery(j.Kind.Family(), "dropped")
		attrs := []any{"err", err}
		if de != nil && de.Hint != "" {
			attrs = append(attrs, "hint", de.Hint)
		}
		log.ErrorContext(ctx, "Slack refused a message; not retrying", attrs...)
		if j.Kind == JobPostApproval && r.State == StatePending {
			why := err.Error()
			if de != nil && de.Code != "" {
				why = de.Code
			}
			now := w.Now().UTC()
			w.record(ctx, log, j, nil, func(r *Request) (Transition, error) { return RecordUnseen(r, why, now) })
			return
		}
		w.complete(ctx, log, j)
		return
	}
	j.Attempts++
	j.LastError = err.Error()
	delay := w.backoff(j.Attempts)
	if de != nil && de.RetryAfter > delay {
		delay = de.RetryAfter
	}
	w.Observer.Delivery(j.Kind.Family(), "retry")
	log.WarnContext(ctx, "Slack delivery failed; retrying", "attempt", j.Attempts, "retry_in", delay.String(), "err", err)
	w.reschedule(ctx, log, j, delay)
}

// delivered records a delivery that Slack accepted.
func (w *Worker) delivered(ctx context.Context, log *slog.Logger, j Job, e effect) {
	if j.Kind == JobPostApproval {
		now := w.Now().UTC()
		w.record(ctx, log, j, &e, func(r *Request) (Transition, error) { return RecordPosted(r, e.ts, now) })
		return
	}
	if err := w.Store.CompleteJob(ctx, j.ID); err != nil {
		w.mu.Lock()
		w.effects[j.ID] = e
		w.mu.Unlock()
		w.storeFailed(ctx, log, j, "complete the job", err)
		return
	}
	w.forget(j.ID)
}

func (w *Worker) complete(ctx context.Context, log *slog.Logger, j Job) {
	if err := w.Store.CompleteJob(ctx, j.ID); err != nil {
		w.storeFailed(ctx, log, j, "complete the job", err)
		return
	}
	w.forget(j.ID)
}

// backoff is capped exponential backoff with full jitter: a random delay in
// [base·2^(n-1)/2, base·2^(n-1)], never above MaxBackoff.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.BaseBackoff << min(max(attempt-1, 0), 20)
	if d <= 0 || d > w.MaxBackoff {
		d = w.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func failureOf(err error) Failure {
	var ge *GrantError
	if errors.As(err, &ge) {
		return ge.Failure
	}
	return Failure{Message: err.Error()}
}

// posting is what a post's attempt is told of the ones before it: an
// earlier process may have posted it unrecorded (TakenOver), or an earlier
// attempt of this one failed in a way that may hide a success (Slack timed
// out, or answered 5xx, after accepting the message). Either way the
// Notifier looks for the message before posting; a look-up costs one read
// per retried post.
func (j Job) posting() Posting {
	return Posting{MayHavePosted: j.TakenOver || j.Attempts > 0}
}
