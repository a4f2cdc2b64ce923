package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3/option"

	"github.com/rolegate/rolegate/internal/approvals"
)

var _ approvals.Revoker = (*Client)(nil)

// Revoke takes the role t.RoleID in project t.ProjectID away from
// t.GroupID, making exactly one attempt as approvals.Revoker requires: it
// lists the group's roles first and returns Absent without a DELETE when
// the role is not there. After a DELETE that failed for good (4xx) or
// ambiguously (5xx, dropped connection, timeout) it lists once more and
// returns Absent when the role is gone. In dry-run mode it never DELETEs
// and returns DryRun with Absent saying whether the role was held.
//
// Failures are *approvals.GrantError wrapped with the failing step,
// classified as for Assign (Ambiguous means the DELETE may have taken
// effect). Ids outside [A-Za-z0-9_-]{1,128} are refused before any call.
func (c *Client) Revoke(ctx context.Context, t approvals.Target) (approvals.Revocation, error) {
	if err := c.ready(t); err != nil {
		return approvals.Revocation{}, fmt.Errorf("revoke role: %w", err)
	}
	_, held, err := c.findAssigned(ctx, t)
	if err != nil {
		return approvals.Revocation{}, fmt.Errorf("revoke role: %w", err)
	}
	if !held || c.dryRun {
		return approvals.Revocation{Absent: !held, DryRun: c.dryRun}, nil
	}

	var resp *http.Response
	res, err := c.roles.Delete(ctx, t.ProjectID, t.GroupID, t.RoleID, option.WithResponseInto(&resp))
	if err == nil && res != nil && res.Deleted {
		return approvals.Revocation{}, nil
	}
	if err == nil {
		// A 2xx that does not say deleted: only a list can tell.
		err = errors.New("the answer did not confirm the deletion")
	}
	if ctx.Err() != nil {
		return approvals.Revocation{}, fmt.Errorf("revoke role: %w", ctx.Err())
	}
	delErr := c.classify(err, resp, true)
	if delErr.Temporary && !delErr.Ambiguous {
		// 408, 409, 429, or OpenAI never reached: nothing was done, the
		// worker retries.
		return approvals.Revocation{}, fmt.Errorf("revoke role: %w", delErr)
	}

	// A 4xx may mean "not assigned any more" (what a DELETE of a missing
	// assignment returns is undocumented), and an ambiguous failure may
	// have removed it: look again.
	_, held, err = c.findAssigned(ctx, t)
	switch {
	case err != nil && ctx.Err() != nil:
		return approvals.Revocation{}, fmt.Errorf("revoke role: %w", err)
	case err != nil:
		var ge *approvals.GrantError
		if errors.As(err, &ge) && ge.Temporary && !delErr.Temporary {
			// Cannot tell whether the role is gone: failing for good could
			// leave a grant in place that the worker would retry.
			return approvals.Revocation{}, fmt.Errorf("revoke role: %s; recheck %w", delErr.Error(), err)
		}
		return approvals.Revocation{}, fmt.Errorf("revoke role: %w", delErr)
	case !held:
		return approvals.Revocation{Absent: true}, nil
	}
	return approvals.Revocation{}, fmt.Errorf("revoke role: %w", delErr)
}
