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
