package approvals

import (
	"errors"
	"fmt"
)

// Errors returned by the Store and the Service. Callers map them to what the
// user sees once, at the edge (slackapp).
var (
	// ErrNotFound means no request has the given id.
	ErrNotFound = errors.New("request not found")
	// ErrWrongChannel means a decision arrived from a channel other than the
	// one the request lives in: a button copied or forged into another place.
	ErrWrongChannel = errors.New("request belongs to another channel")
	// ErrSelfApproval means the requester tried to approve their own request.
	ErrSelfApproval = errors.New("requester cannot approve their own request")
	// ErrNotApprover means the actor is not one of the configured approvers.
	ErrNotApprover = errors.New("not an approver")
	// ErrNotRequester means someone other than the requester tried to cancel.
	ErrNotRequester = errors.New("only the requester can cancel")
	// ErrCannotRevoke means someone other than the requester or an
	// approver of the grant's rule tried to revoke it.
	ErrCannotRevoke = errors.New("only the requester or an approver can revoke")
	// ErrGrantEnding means an assignment found the role held by another
	// rolegate grant whose revocation is under way: it must be made again
	// once that grant has ended.
	ErrGrantEnding = errors.New("another grant of the role is ending")
	// ErrAlreadyVoted means this approver's approval is already counted.
	ErrAlreadyVoted = errors.New("approval already recorded")
	// ErrExpired means the request passed its expiry before the decision.
	ErrExpired = errors.New("request expired")
	// ErrInvalid means a request's fields are malformed; the wrapped message
	// says which.
	ErrInvalid = errors.New("invalid request")
)

// NotPendingError is returned when a decision reaches a request that has
// already left StatePending. It carries the request as stored so the caller
// can say who decided and when.
type NotPendingError struct {
	Request Request
}

func (e *NotPendingError) Error() string {
	return fmt.Sprintf("request %d is already %s", e.Request.ID, e.Request.State)
}

// TooManyOpenError refuses a new request from someone who already has Limit
// requests checking or pending.
type TooManyOpenError struct {
	Limit int
	Open  []uint64 // the requester's open request ids, oldest first
}

func (e *TooManyOpenError) Error() string {
	return fmt.Sprintf("%d requests are already open (the limit is %d)", len(e.Open), e.Limit)
}

// CorruptError means a stored record could not be decoded: a newer schema
// version written before a rollback, or a damaged value. The Worker moves
// such a record aside (Store.Quarantine) so everything else carries on.
type CorruptError struct {
	Kind string // "request" or "job"
	Key  uint64
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("stored %s %d cannot be read: %v", e.Kind, e.Key, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }
