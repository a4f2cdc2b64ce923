package approvals

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Target names the assignment a request asks for: the role RoleID in project
// ProjectID for the group GroupID.
type Target struct {
	ProjectID string
	GroupID   string
	RoleID    string
}

// Group is the group summary the OpenAI Admin API returns with an assignment.
type Group struct {
	ID          string
	Name        string
	CreatedAt   time.Time
	SCIMManaged bool
}

// Role is the role summary the OpenAI Admin API returns with an assignment.
type Role struct {
	ID           string
	Name         string
	Description  string // empty when the API sends null
	Permissions  []string
	ResourceType string
	Predefined   bool
}

// Assignment is what a successful grant produced. AlreadyAssigned is true when
// the group was found holding the role by a check (before a POST, or after a
// POST that failed), rather than by a POST's own success.
type Assignment struct {
	Group           Group
	Role            Role
	AlreadyAssigned bool
	// DryRun is true when the Granter runs in dry-run mode: nothing was
	// POSTed, and the assignment is what would have been made (group and
	// role as OpenAI describes them now).
	DryRun bool
}

// Failure is an error reported by the OpenAI API, kept verbatim so it can be
// shown in the channel.
type Failure struct {
	Status    int    // HTTP status; 0 when no response arrived
	Message   string // the API's error.message, or the transport error
	Type      string
	Code      string
	Param     string
	RequestID string // the x-request-id response header
}

// GrantError is the error a Granter returns when an assignment did not
// happen. Temporary errors may be retried; permanent ones end the request in
// StateFailed.
type GrantError struct {
	Failure Failure
	// Temporary is true for 408, 409, 429, 5xx, timeouts and connection errors.
	Temporary bool
	// RetryAfter is the server's Retry-After, zero when it sent none.
	RetryAfter time.Duration
	// Ambiguous is true when the POST may have taken effect even though no
	// success was seen (timeout, dropped connection, 5xx after sending).
	Ambiguous bool
}

func (e *GrantError) Error() string {
	f := e.Failure
	msg := f.Message
	if f.Status != 0 {
		msg = fmt.Sprintf("%d %s", f.Status, msg)
	}
	if f.Code != "" {
		msg += " (" + f.Code + ")"
	}
	return "openai: " + msg
}

// IsTemporary reports whether err is worth retrying. Errors that are not a
// *GrantError (a cancelled context, say) count as temporary: nothing was
// decided about the assignment.
func IsTemporary(err error) bool {
	var ge *GrantError
	if errors.As(err, &ge) {
		return ge.Temporary
	}
	return true
}

// Granter performs the assignment. Assign must be safe to call again after
// any failure: it first lists the group's roles in the project and returns
// the existing assignment (AlreadyAssigned) instead of POSTing when the group
// already holds the role. After a permanent (4xx) POST error it checks once
// more, so an assignment made by an earlier ambiguous attempt is reported as
// success. Assign makes exactly one attempt: the Worker owns retries.
type Granter interface {
	Assign(ctx context.Context, t Target) (Assignment, error)
}
