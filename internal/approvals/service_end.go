package approvals

import (
	"context"
	"fmt"
	"time"
)

// mayEnd reports whether user may revoke or extend r: its requester, or an
// approver of its rule as the policy says now.
func (s *Service) mayEnd(ctx context.Context, r Request, user string) (bool, error) {
	if user == r.Requester {
		return true, nil
	}
	timeout := s.LookupTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := s.approversFor(r).Allows(lctx, user)
	if err != nil {
		return false, fmt.Errorf("check approver: %w", err)
	}
	return ok, nil
}

// Revoke ends applied grant id now, for actor: its requester or an
// approver of its rule. The role is DELETEd by the Worker, unless it must
// stay (see EndGrant). channel is where a click came from ("" for the
// command, which works anywhere). Errors: ErrNotFound, ErrWrongChannel,
// *NotPendingError (not an active grant: ended already, or never applied),
// ErrCannotRevoke, a wrapped lookup error.
func (s *Service) Revoke(ctx context.Context, id uint64, actor, channel string) (Request, error) {
	r, err := s.Store.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	if channel != "" && channel != r.ChannelID {
		return Request{}, ErrWrongChannel
	}
	if !r.Active() {
		return r, &NotPendingError{Request: r}
	}
	ok, err := s.mayEnd(ctx, r, actor)
	if err != nil {
		return r, err
	}
	now := s.Now().UTC()
	return s.Store.UpdateGrant(ctx, id, 0, func(r *Request, others []Request) (Transition, error) {
		return EndGrant(r, End{Actor: actor, Eligible: ok, At: now}, others)
	})
}

// Extend asks for more time on applied time-bound grant id: a new request
// (Extends: id, the same target and channel) that goes through the checks
// and the approvals like any other. Only the grant's requester or an
// approver of its rule may ask. Errors: as for Create, and ErrNotFound,
// *NotPendingError, ErrCannotRevoke, ErrInvalid for a permanent grant.
func (s *Service) Extend(ctx context.Context, id uint64, n NewRequest) (Request, bool, error) {
	orig, err := s.Store.Get(ctx, id)
	if err != nil {
		return Request{}, false, err
	}
	if !orig.Active() {
		return orig, false, &NotPendingError{Request: orig}
	}
	if orig.EndsAt.IsZero() {
		return orig, false, fmt.Errorf("%w: grant #%d is permanent: there is no end to move", ErrInvalid, id)
	}
	ok, err := s.mayEnd(ctx, orig, n.Requester)
	if err != nil {
		return orig, false, err
	}
	if !ok {
		return orig, false, ErrCannotRevoke
	}
	n.Extends, n.Target, n.Ask, n.ChannelID, n.BreakGlass = id, orig.Target, AskFor(orig.Target), orig.ChannelID, false
	return s.Create(ctx, n)
}

// Review records that actor, an approver of break-glass grant id's rule,
// reviewed it. Errors: ErrNotFound, ErrWrongChannel, *NotPendingError (not
// break-glass, or reviewed already), ErrNotApprover.
func (s *Service) Review(ctx context.Context, id uint64, actor, channel string) (Request, error) {
	r, err := s.Store.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	if channel != "" && channel != r.ChannelID {
		return Request{}, ErrWrongChannel
	}
	ok, err := s.CanDecide(ctx, r, actor)
	if err != nil {
		return r, err
	}
	now := s.Now().UTC()
	return s.Store.Update(ctx, id, 0, func(r *Request) (Transition, error) { return Review(r, actor, ok, now) })
}
