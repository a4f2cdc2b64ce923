package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Notifier delivers what happens to a request to the people concerned. Each
// method renders the request as given (its current stored state), so a
// retried or repeated delivery shows the latest truth. A method's error
// should be a *DeliveryError; any other error counts as temporary.
type Notifier interface {
	// PostApproval posts the approval message and returns its ts.
	PostApproval(ctx context.Context, r Request) (ts string, err error)
	// UpdateApproval rewrites the approval message to r's state.
	UpdateApproval(ctx context.Context, r Request) error
	// PostResult posts the assignment summary or the API's error.
	PostResult(ctx context.Context, r Request) error
	// TellRequester tells the requester privately why the request ended
	// without a decision (r.Note).
	TellRequester(ctx context.Context, r Request) error
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

// Observer is told what the Worker did, for metrics. Methods must not block.
type Observer interface {
	// Grant reports one OpenAI attempt: outcome is "applied",
	// "already_assigned", "retry" or "failed"; status is the HTTP status
	// of the failing call (0 when no response arrived), 200 on success.
	Grant(outcome string, status int)
	// Delivery reports one Notifier call: outcome is "ok", "retry" or
	// "dropped".
	Delivery(kind JobKind, outcome string)
}

type nopObserver struct{}

func (nopObserver) Grant(string, int)        {}
func (nopObserver) Delivery(JobKind, string) {}

// Worker carries out the outbox: it assigns roles for approved requests and
// delivers messages, each in order per request (see Job.Lane), driven only by what is stored, so
// a restart picks up exactly where the last process stopped. It also expires
// pending requests.
type Worker struct {
	Store    *Store
	Granter  Granter
	Notifier Notifier
	Logger   *slog.Logger
	Now      func() time.Time
	Observer Observer

	// MaxAttempts bounds the OpenAI attempts for one request (default 5).
	MaxAttempts int
	// Deadline bounds the time from the first attempt to giving up (default 10m).
	Deadline time.Duration
	// CallTimeout bounds one Assign call, its list and POST together (default 30s).
	CallTimeout time.Duration
	// BaseBackoff and MaxBackoff shape the capped exponential backoff with
	// full jitter between attempts (defaults 500ms and 30s).
	BaseBackoff, MaxBackoff time.Duration
	// DeliveryGiveUp is how long a message keeps being retried while Slack
	// fails temporarily (default 24h).
	DeliveryGiveUp time.Duration
	// Concurrency is how many jobs run at once, each for a different request
	// (default 8).
	Concurrency int
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
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Observer == nil {
		w.Observer = nopObserver{}
	}
}

// idleWake bounds how long the worker sleeps with nothing scheduled.
const idleWake = 30 * time.Second

// Run works until ctx is cancelled, then waits for the jobs under way to stop
// (they see the cancelled context) and returns nil. It returns an error only
// when the store fails.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		busy     = map[uint64]bool{}
		done     = make(chan struct{}, 1)
		sweepAt  time.Time
		timer    = time.NewTimer(0)
		failures int
	)
	defer timer.Stop()
	defer wg.Wait()
	for {
		now := w.Now()
		var next time.Time
		if !now.Before(sweepAt) {
			expired, nextExp, err := w.Store.ExpireDue(ctx, now)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("expire requests: %w", err)
			}
			for _, id := range expired {
				w.Logger.InfoContext(ctx, "Request expired", "request_id", id)
			}
			sweepAt = now.Add(time.Minute)
			if !nextExp.IsZero() && nextExp.Before(sweepAt) {
				sweepAt = nextExp
			}
		}
		next = sweepAt

		mu.Lock()
		free := w.Concurrency - len(busy)
		snapshot := make(map[uint64]bool, len(busy))
		for k := range busy {
			snapshot[k] = true
		}
		mu.Unlock()
		// Once ctx is cancelled nothing more is dispatched: a job abandoned
		// by the shutdown is back in the outbox (and out of busy), and
		// handing it out again would call OpenAI or Slack after the stop.
		if free > 0 && ctx.Err() == nil {
			jobs, nextJob, err := w.Store.DueJobs(ctx, now, snapshot, free)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				failures++
				if failures > 3 {
					return fmt.Errorf("read outbox: %w", err)
				}
				w.Logger.ErrorContext(ctx, "Reading the outbox failed", "err", err)
				nextJob = now.Add(time.Second)
			} else {
				failures = 0
			}
			if !nextJob.IsZero() && nextJob.Before(next) {
				next = nextJob
			}
			for _, j := range jobs {
				mu.Lock()
				busy[j.Lane()] = true
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					w.runJob(ctx, j)
					mu.Lock()
					delete(busy, j.Lane())
					mu.Unlock()
					select {
					case done <- struct{}{}:
					default:
					}
				}()
			}
		}

		wait := min(max(next.Sub(w.Now()), 0), idleWake)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-w.Store.Changes():
		case <-done:
		case <-timer.C:
		}
	}
}

func (w *Worker) runJob(ctx context.Context, j Job) {
	log := w.Logger.With("request_id", j.RequestID, "job", string(j.Kind))
	r, err := w.Store.Get(ctx, j.RequestID)
	if errors.Is(err, ErrNotFound) {
		log.ErrorContext(ctx, "Dropping a job for a request that does not exist")
		w.complete(ctx, log, j)
		return
	}
	if err != nil {
		log.ErrorContext(ctx, "Reading the request failed", "err", err)
		return
	}
	if j.Kind == JobAssign {
		w.assign(ctx, log, j, r)
		return
	}
	w.deliver(ctx, log, j, r)
}

func (w *Worker) assign(ctx context.Context, log *slog.Logger, j Job, r Request) {
	if r.State != StateApproved {
		w.complete(ctx, log, j)
		return
	}
	now := w.Now()
	if j.FirstTry.IsZero() {
		j.FirstTry = now
	}
	cctx, cancel := context.WithTimeout(ctx, w.CallTimeout)
	a, err := w.Granter.Assign(cctx, r.Target)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the job stays in the outbox for the next start
	}
	if err == nil {
		if _, err := w.Store.Applied(ctx, j.ID, r.ID, a, w.Now()); err != nil {
			log.ErrorContext(ctx, "Recording the assignment failed; it will be reconciled", "err", err)
			return
		}
		outcome := "applied"
		if a.AlreadyAssigned {
			outcome = "already_assigned"
		}
		w.Observer.Grant(outcome, 200)
		log.InfoContext(ctx, "Role assigned", "project_id", r.ProjectID, "group_id", r.GroupID, "role_id", r.RoleID, "already_assigned", a.AlreadyAssigned)
		return
	}

	f := failureOf(err)
	var ge *GrantError
	if errors.As(err, &ge) && ge.Ambiguous {
		j.Ambiguous = true
	}
	j.Attempts++
	j.LastError = f.Message
	if !IsTemporary(err) || j.Attempts >= w.MaxAttempts || now.Sub(j.FirstTry) >= w.Deadline {
		if IsTemporary(err) {
			f.Message = fmt.Sprintf("gave up after %d attempts in %s: %s", j.Attempts, now.Sub(j.FirstTry).Round(time.Second), f.Message)
			if j.Ambiguous {
				f.Message += " (an earlier attempt may have reached OpenAI: check the group's project roles before asking again)"
			}
		}
		if _, err := w.Store.Failed(ctx, j.ID, r.ID, f, w.Now()); err != nil {
			log.ErrorContext(ctx, "Recording the failure failed", "err", err)
			return
		}
		w.Observer.Grant("failed", f.Status)
		log.WarnContext(ctx, "Assignment failed", "status", f.Status, "type", f.Type, "code", f.Code, "openai_request_id", f.RequestID, "message", f.Message, "attempts", j.Attempts)
		return
	}
	delay := w.backoff(j.Attempts)
	if ge != nil && ge.RetryAfter > delay {
		delay = ge.RetryAfter
	}
	// Retry-After counts from the answer, not from when the attempt began.
	j.NotBefore = w.Now().Add(delay)
	if err := w.Store.RetryJob(ctx, j); err != nil {
		log.ErrorContext(ctx, "Rescheduling the assignment failed", "err", err)
		return
	}
	w.Observer.Grant("retry", f.Status)
	log.WarnContext(ctx, "Assignment attempt failed; retrying", "attempt", j.Attempts, "retry_in", delay.String(), "status", f.Status, "message", f.Message, "ambiguous", j.Ambiguous)
}

func (w *Worker) deliver(ctx context.Context, log *slog.Logger, j Job, r Request) {
	now := w.Now()
	if j.FirstTry.IsZero() {
		j.FirstTry = now
	}
	var err error
	switch j.Kind {
	case JobPostApproval:
		var ts string
		ts, err = w.Notifier.PostApproval(ctx, r)
		if err == nil {
			if _, err := w.Store.Posted(ctx, j.ID, r.ID, ts, w.Now()); err != nil {
				log.ErrorContext(ctx, "Recording the approval message failed", "err", err)
				return
			}
			w.Observer.Delivery(j.Kind, "ok")
			return
		}
	case JobUpdateApproval:
		if r.MessageTS == "" {
			w.complete(ctx, log, j) // never posted: nothing to update
			return
		}
		err = w.Notifier.UpdateApproval(ctx, r)
	case JobPostResult:
		err = w.Notifier.PostResult(ctx, r)
	case JobTellRequester:
		err = w.Notifier.TellRequester(ctx, r)
	default:
		log.ErrorContext(ctx, "Dropping a job of unknown kind")
		w.complete(ctx, log, j)
		return
	}
	if err == nil {
		w.Observer.Delivery(j.Kind, "ok")
		w.complete(ctx, log, j)
		return
	}
	if ctx.Err() != nil {
		return
	}
	var de *DeliveryError
	temporary := !errors.As(err, &de) || de.Temporary
	if !temporary || now.Sub(j.FirstTry) >= w.DeliveryGiveUp {
		w.Observer.Delivery(j.Kind, "dropped")
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
			if _, err := w.Store.Unseen(ctx, j.ID, r.ID, why, w.Now()); err != nil {
				log.ErrorContext(ctx, "Cancelling the unseen request failed", "err", err)
			}
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
	j.NotBefore = w.Now().Add(delay) // from the answer, as for OpenAI
	if err := w.Store.RetryJob(ctx, j); err != nil {
		log.ErrorContext(ctx, "Rescheduling the message failed", "err", err)
		return
	}
	w.Observer.Delivery(j.Kind, "retry")
	log.WarnContext(ctx, "Slack delivery failed; retrying", "attempt", j.Attempts, "retry_in", delay.String(), "err", err)
}

func (w *Worker) complete(ctx context.Context, log *slog.Logger, j Job) {
	if err := w.Store.CompleteJob(ctx, j.ID); err != nil {
		log.ErrorContext(ctx, "Removing a finished job failed", "err", err)
	}
}

// backoff is capped exponential backoff with full jitter: a random delay in
// [base·2^(n-1)/2, base·2^(n-1)], never above MaxBackoff.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.BaseBackoff << min(attempt-1, 20)
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
