package slackapp

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// DenyModalID is the callback_id of the modal that asks an approver for
// the reason of a Deny.
const DenyModalID = "rolegate_deny"

// The deny modal's reason input.
const (
	denyReasonBlock  = "rolegate_deny_reason"
	denyReasonAction = "reason"
)

// DenyModal is the modal a Deny click opens: it names the request and asks
// for a reason (required). private_metadata carries the request id and the
// channel of the click ("42:C0001"), since a view submission has no
// channel; submitDeny trusts neither without the stored request.
func DenyModal(r approvals.Request, channel string) slack.ModalViewRequest {
	input := slack.NewPlainTextInputBlockElement(plain("Why is it denied? The requester sees this."), denyReasonAction)
	input.Multiline = true
	input.MaxLength = approvals.MaxReasonLen
	reason := slack.NewInputBlock(denyReasonBlock, plain("Reason"), nil, input)
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      DenyModalID,
		Title:           plain(truncate(fmt.Sprintf("Deny request #%d", r.ID), 24)),
		Submit:          plain("Deny"),
		Close:           plain("Back"),
		PrivateMetadata: strconv.FormatUint(r.ID, 10) + ":" + channel,
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section(fmt.Sprintf("%s\n*Reason given*\n%s", Summary(r), quote(Escape(r.Reason)))),
			reason,
		}},
	}
}

// parseDenyMetadata reads DenyModal's private_metadata.
func parseDenyMetadata(s string) (id uint64, channel string, ok bool) {
	idText, channel, found := strings.Cut(s, ":")
	id, err := strconv.ParseUint(idText, 10, 64)
	if !found || err != nil || id == 0 || !ValidChannelID(channel) {
		return 0, "", false
	}
	return id, channel, true
}

// requesterOf returns who asked for request id, or "" when it cannot be read
// (the decision that follows reports why).
func (a *App) requesterOf(ctx context.Context, id uint64) string {
	r, err := a.Service.Store.Get(ctx, id)
	if err != nil {
		return ""
	}
	return r.Requester
}

// openDenyModal answers an approver's Deny click: it opens the modal that
// asks for the reason, and changes nothing. A click that could never
// become a deny (no such request in this channel, no longer pending, not
// an approver) is refused at once with the usual private notice instead.
// The approver lookup is bounded so the modal still opens within the
// trigger id's 3 seconds; whatever it could not settle is checked again at
// submission, as is everything else.
func (a *App) openDenyModal(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback, id uint64) {
	r, err := a.Service.Store.Get(ctx, id)
	switch {
	case err == nil && r.ChannelID != cb.Channel.ID:
		err = approvals.ErrWrongChannel
	case err == nil && r.State != approvals.StatePending:
		err = &approvals.NotPendingError{Request: r}
	case err == nil:
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		ok, lerr := a.Service.CanDecide(lctx, r, cb.User.ID)
		cancel()
		if lerr == nil && !ok {
			err = approvals.ErrNotApprover
		}
	}
	if err != nil {
		a.metrics().Decision(string(approvals.ActionDeny), outcome(err))
		a.notice(cb, a.refusal(ctx, log, id, approvals.ActionDeny, err))
		return
	}
	if a.Slack == nil {
		log.ErrorContext(ctx, "Cannot ask for a deny reason without a Slack client")
		return
	}
	if _, err := a.Slack.OpenViewContext(ctx, cb.TriggerID, DenyModal(r, cb.Channel.ID)); err != nil {
		a.metrics().SlackError("views.open", errorCode(err))
		log.WarnContext(ctx, "Could not open the deny modal", "err", err)
		a.notice(cb, fmt.Sprintf("rolegate could not open the form for a reason to deny request #%d, so nothing was changed. Please click Deny again.", id))
		return
	}
	a.metrics().Decision(string(approvals.ActionDeny), "asked_reason")
}

// submitDeny records a Deny with the reason the modal asked for. Everything
// is checked again as for a click: the request named by the metadata must
// be stored with the channel the metadata names (a forged view naming
// another request or channel is refused), still pending, and the
// submitting user an approver of its rule now. Refusals come back inline
// on the reason field; the modal closes only once the deny is recorded.
func (a *App) submitDeny(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	id, channel, ok := parseDenyMetadata(cb.View.PrivateMetadata)
	if !ok || cb.User.ID == "" {
		log.WarnContext(ctx, "Refusing a deny submission without a request id, channel or user")
		a.metrics().Decision(string(approvals.ActionDeny), "refused_malformed")
		return denyError("This form does not name a request rolegate knows. Nothing was changed.")
	}
	log = log.With("request_id", id)
	var text string
	if cb.View.State != nil {
		text = cb.View.State.Values[denyReasonBlock][denyReasonAction].Value
	}
	reason, err := approvals.CleanReason(text)
	if err != nil {
		a.metrics().Decision(string(approvals.ActionDeny), "refused_no_reason")
		msg := strings.TrimPrefix(err.Error(), approvals.ErrInvalid.Error()+": ")
		return denyError(strings.ToUpper(msg[:1]) + msg[1:] + ".")
	}
	r, err := a.Service.Store.Get(ctx, id)
	if err == nil && r.ChannelID != channel {
		err = approvals.ErrWrongChannel
	}
	if err == nil {
		r, err = a.Service.Decide(ctx, approvals.Decision{RequestID: id, Actor: cb.User.ID, Action: approvals.ActionDeny, Reason: reason, ChannelID: r.ChannelID})
	}
	if err != nil {
		a.metrics().Decision(string(approvals.ActionDeny), outcome(err))
		return denyError(a.refusal(ctx, log, id, approvals.ActionDeny, err))
	}
	if r.State == approvals.StateCancelled {
		a.metrics().Decision(string(approvals.ActionDeny), "cancelled_by_requester")
		log.InfoContext(ctx, "The requester withdrew their request with Deny")
		return nil
	}
	a.metrics().Decision(string(approvals.ActionDeny), "recorded")
	log.InfoContext(ctx, "Request denied", "state", string(r.State))
	return nil
}

// denyError shows msg under the deny modal's reason field.
func denyError(msg string) *slack.ViewSubmissionResponse {
	return slack.NewErrorsViewSubmissionResponse(map[string]string{denyReasonBlock: truncate(msg, 2000)})
}
