package approvals

import (
	"context"
	"strings"
	"time"
)

// JobKind names a piece of outgoing work recorded with the transition that
// causes it.
type JobKind string

// The kinds of outgoing work. Jobs of one request run in the order they were
// recorded, in two lanes (see Job.Lane).
const (
	JobPostApproval    JobKind = "post_approval"    // chat.postMessage the approval message
	JobUpdateApproval  JobKind = "update_approval"  // chat.update it to the current state
	JobCheck           JobKind = "check"            // resolve and check a new request at OpenAI
	JobAssign          JobKind = "assign"           // call the OpenAI Admin API
	JobPostResult      JobKind = "post_result"      // post the assignment summary or the error
	JobTellRequester   JobKind = "tell_requester"   // tell the requester privately where the request stands
	JobPostDenial      JobKind = "post_denial"      // reply in the thread who denied and why
	JobRemind          JobKind = "remind"           // remind the approvers who have not acted, in the thread
	JobRevoke          JobKind = "revoke"           // DELETE an ending grant's assignment at OpenAI
	JobPostRevocation  JobKind = "post_revocation"  // reply in the thread how the grant ended (or why it could not)
	JobWarnRequester   JobKind = "warn_requester"   // DM the requester that the grant ends soon, with Extend
	JobNotifyApprovers JobKind = "notify_approvers" // DM every approver of a break-glass grant
	// JobNotifyRequester is the family of the direct messages that tell the
	// requester of a state change; each job is NotifyRequester(state).
	JobNotifyRequester JobKind = "notify_requester"
)

// NotifyRequester is the job that sends the requester a direct message
// saying their request reached s. The state is part of the kind, so it is
// stored with the job: a message queued for "approved" says approved even
// when it is delivered after the request moved on (say, to applied).
func NotifyRequester(s State) JobKind { return JobNotifyRequester + ":" + JobKind(s) }

// Reports returns the state a NotifyRequester job reports, and whether k is
// one.
func (k JobKind) Reports() (State, bool) {
	s, ok := strings.CutPrefix(string(k), string(JobNotifyRequester)+":")
	if !ok || !State(s).Valid() {
		return "", false
	}
	return State(s), true
}

// Family is k without what a job of k carries along: JobNotifyRequester for
// every NotifyRequester(s), k itself otherwise. Metrics count by family.
func (k JobKind) Family() JobKind {
	if _, ok := k.Reports(); ok {
		return JobNotifyRequester
	}
	return k
}

// Calls reports whether jobs of kind call OpenAI (rather than Slack). They
// run in a lane and a queue of their own.
func (k JobKind) Calls() bool { return k == JobAssign || k == JobCheck || k == JobRevoke }

// Job is one entry of the outbox.
type Job struct {
	ID        uint64
	Kind      JobKind
	RequestID uint64
	Attempts  int       // failed attempts so far
	NotBefore time.Time // do not try before this; zero means now
	FirstTry  time.Time // when the first attempt started
	LastError string
	// LastFailure is the last OpenAI failure in full, so a request that
	// runs out of time before its next attempt reports it as it was.
	LastFailure *Failure
	// Ambiguous is set once an attempt may have taken effect unseen.
	Ambiguous bool
	// Tries counts the attempts started, stored before each assignment
	// attempt: more tries than Attempts+1 means a process stopped during
	// an attempt whose outcome nobody saw (it may have POSTed).
	Tries int
	// Corrupt is set (and nothing else but ID) when the stored job could
	// not be decoded; the Worker moves it aside with Store.Quarantine. It
	// is never stored.
	Corrupt *CorruptError
	// TakenOver is set by Store.DueJobs when another process (or an
	// earlier run of this one) may have been running the job when it
	// stopped: its effect may have happened without being recorded, such
	// as a message Slack accepted just before a SIGKILL. Slack's
	// chat.postMessage has no idempotency key, so the Worker tells the
	// Notifier, which looks for the message before posting it again. It
	// is known at claim time and never stored, so it costs no write per
	// message.
	TakenOver bool
	// Request, when not nil, is the job's request as Store.DueJobs read it
	// while handing the job out, saving the Worker a read per job (an
	// engine across a network fills it: pgstore). The Worker decides from
	// it what to do; every record it makes still goes through Update's
	// compare-and-set. Never stored.
	Request *Request
	// storeFails counts the store failures in a row the Worker met running
	// it; kept in memory only.
	storeFails int
}

// Lane is the ordering key of j: the jobs of one lane run one at a time,
// oldest first. A request has two lanes, its Slack messages and its OpenAI
// calls, so a Slack outage does not hold up the assignment (the result
// message is only queued once the call is done, so it still comes after).
func (j Job) Lane() uint64 {
	if j.Kind.Calls() {
		return j.RequestID<<1 | 1
	}
	return j.RequestID << 1
}

// JobLimit bounds how many jobs Store.DueJobs hands out: OpenAI calls and
// Slack messages each have their own budget, so a backlog of one never
// starves the other.
type JobLimit struct {
	Calls    int
	Messages int
}

// Each is the JobLimit of n calls and n messages.
func Each(n int) JobLimit { return JobLimit{Calls: n, Messages: n} }

// ListOptions filters Store.List.
type ListOptions struct {
	State     State  // empty for every state
	Requester string // empty for everyone
	Limit     int    // 0 for no limit
	// Open lists only open requests (checking, pending, approved), from an
	// index: it costs nothing for a long finished history.
	Open bool
}

// Quarantined is a stored record the code could not read, moved aside so
// the rest carries on.
type Quarantined struct {
	Kind   string // "request" or "job"
	Key    uint64
	Reason string
	At     time.Time
	Value  []byte
}

// Store keeps requests, their audit trail and the outbox. Every method is
// one transaction; every write that changes a request also appends its
// audit event and queues its jobs in that transaction. Implementations are
// safe for concurrent use. The bbolt engine (*BoltStore) is the default;
// internal/pgstore keeps the same guarantees in PostgreSQL for several
// processes at once.
//
// Leases. An engine shared by several processes (replicas) hands each job
// to one of them at a time: DueJobs claims the jobs it returns for a lease
// (pgstore: 15 s, renewed while the process lives), and RetryJob,
// CompleteJob and Update with the job as doneJob release it (RetryJob
// keeps it when the job records an attempt under way, Tries > Attempts,
// as the Worker stores before an assignment's first attempt). While a job is
// leased no other process is handed it or any later job of its lane; when
// the holder dies its leases lapse and another process takes the jobs over.
// The claiming process itself is handed its own leased jobs again unless
// their lanes are in skip (the Worker passes the lanes it is running), so a
// job it dropped without releasing is not stuck. A job is still run at
// least once, not exactly once: a holder cut off from the database past its
// lease may finish a job another process has taken over, which is why jobs
// check before they act (Granter lists before it POSTs). bbolt serves one
// process, so it has nothing to lease.
type Store interface {
	// Create stores a new request built from n by start (which sets its
	// state, rule and expiry and returns the creation's transition), unless
	// n.TriggerID was seen in the last few minutes: then the request made
	// then is returned with created false and nothing is written. When
	// maxOpen > 0 and the requester already has that many requests
	// checking or pending, it returns a *TooManyOpenError. n is validated
	// first (ErrInvalid).
	Create(ctx context.Context, n NewRequest, now time.Time, maxOpen int, start func(*Request) Transition) (r Request, created bool, err error)
	// Update runs change on request id in one write transaction. When the
	// returned Transition records a change, the request is written with
	// its event and jobs; change's error is returned either way (a refusal
	// may still record a change, as expiry does). When doneJob is not 0,
	// that job is removed from the outbox in the same transaction, whatever
	// change decided. Errors: ErrNotFound, *CorruptError, change's error,
	// or the storage's.
	Update(ctx context.Context, id, doneJob uint64, change func(*Request) (Transition, error)) (Request, error)
	// UpdateGrant is Update for a change that needs the other applied
	// grants of the request's project, group and role (others, which may
	// include the request itself), read in the same transaction: ends and
	// assignments decide with them whether a role stays in place.
	UpdateGrant(ctx context.Context, id, doneJob uint64, change func(r *Request, others []Request) (Transition, error)) (Request, error)
	// Get returns request id: ErrNotFound, *CorruptError.
	Get(ctx context.Context, id uint64) (Request, error)
	// List returns requests newest first, skipping (and not failing on)
	// records it cannot decode.
	List(ctx context.Context, opt ListOptions) ([]Request, error)
	// Audit returns request id's audit trail, oldest first.
	Audit(ctx context.Context, id uint64) ([]Event, error)
	// DueWakes returns up to limit requests whose Request.NextWake is at
	// or before now, and the earliest wake still ahead (zero if none).
	DueWakes(ctx context.Context, now time.Time, limit int) (ids []uint64, next time.Time, err error)
	// DueJobs returns up to limit.Calls OpenAI calls and limit.Messages
	// Slack messages that may run at now, each oldest first and at most one
	// per lane; lanes in skip are passed over. next is the earliest NotBefore
	// of a job scanned but not yet due (zero if none). A job that cannot
	// be decoded comes back with Corrupt set. A shared engine claims the
	// jobs it returns (see Leases above) and also counts, in next, the end
	// of the earliest lease another process holds. A job another process
	// (or an earlier run of this one) may have been running when it
	// stopped comes back with TakenOver set: pgstore, one whose lease by
	// another owner lapsed or was released at its close; bbolt, one that
	// was in the file when it was opened.
	DueJobs(ctx context.Context, now time.Time, skip map[uint64]bool, limit JobLimit) (jobs []Job, next time.Time, err error)
	// RetryJob stores j back (attempts, error, NotBefore updated by the
	// caller), unless it was completed meanwhile.
	RetryJob(ctx context.Context, j Job) error
	// CompleteJob removes a job from the outbox.
	CompleteJob(ctx context.Context, jobID uint64) error
	// Quarantine moves the undecodable record err names out of the way,
	// keeping its bytes for an operator, and removes what refers to it.
	Quarantine(ctx context.Context, err *CorruptError, now time.Time) error
	// Quarantined lists the records moved aside.
	Quarantined(ctx context.Context) ([]Quarantined, error)
	// Sweep forgets what no longer needs remembering (trigger ids older
	// than a few minutes).
	Sweep(ctx context.Context, now time.Time) error
	// Counts returns how many requests are in each open state and how many
	// jobs wait, for metrics.
	Counts(ctx context.Context) (Counts, error)
	// Changes is signalled (without blocking) after every commit that
	// queues work or changes a wake-up, so the Worker wakes without polling.
	// A shared engine also signals it for other processes' commits
	// (pgstore: LISTEN/NOTIFY), best effort: the Worker still polls.
	Changes() <-chan struct{}
	// Ping reports whether the store can be read.
	Ping(ctx context.Context) error
}

// Counts is a snapshot of the store for metrics.
type Counts struct {
	Open        map[State]int
	Jobs        int
	Quarantined int
}

// Rememberer is implemented by engines that can deduplicate deliveries
// across processes (pgstore): Socket Mode may hand the same envelope to
// more than one replica's connection. Remember records key for ttl and
// reports whether it was the first time; a key seen again within ttl
// returns false. A single-process engine does not need it: an in-memory
// set does the same.
type Rememberer interface {
	Remember(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// Turner is implemented by engines shared by several processes (pgstore):
// it hands each turn of a periodic task, such as the drift check, to one
// of them, so the task runs once across replicas, not once on each. Turn
// reports whether the caller has the turn of task name: true for the first
// caller once the task is due, and then for no one until the next turn,
// every from this one (less a tenth, so a process whose own timer runs a
// little early is not always skipped). A single-process engine does not
// need it: its one process always has the turn.
type Turner interface {
	Turn(ctx context.Context, name string, every time.Duration) (mine bool, err error)
}

type workerKey struct{}

// AsWorker marks ctx as the Worker's (see ByWorker); Run does.
func AsWorker(ctx context.Context) context.Context { return context.WithValue(ctx, workerKey{}, true) }

// ByWorker reports whether ctx is the Worker's (Run marks it): a write
// made with it is the record of work done in the background, with nobody
// waiting on Slack for it. An engine may let writes that someone waits for
// (a slash command's request, a click's decision) go first (pgstore does).
func ByWorker(ctx context.Context) bool {
	by, _ := ctx.Value(workerKey{}).(bool)
	return by
}
