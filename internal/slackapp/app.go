// Package slackapp is rolegate's Slack adapter: it verifies and parses what
// Slack sends (over HTTP or Socket Mode), turns it into approvals.Service
// calls, and renders requests as Block Kit messages. The logic is shared by
// both transports; only the delivery differs.
package slackapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Suggester offers type-ahead options for the request modal's menus.
// kind is "project", "group" or "role"; roles are those of projectID.
type Suggester interface {
	Suggest(ctx context.Context, kind, projectID, query string, limit int) []approvals.Candidate
}

// Metrics is told what the Slack side did. Methods must not block.
type Metrics interface {
	// Ack records how long answering Slack took; kind is "command" or "interaction".
	Ack(kind string, d time.Duration)
	// Command records a slash command's outcome.
	Command(outcome string)
	// Decision records a click's outcome ("recorded" or why it was refused).
	Decision(action, outcome string)
	// SlackError records a Slack Web API error by method and error code.
	SlackError(method, code string)
}

type nopMetrics struct{}

func (nopMetrics) Ack(string, time.Duration) {}
func (nopMetrics) Command(string)            {}
func (nopMetrics) Decision(string, string)   {}
func (nopMetrics) SlackError(string, string) {}

// App handles slash commands and button clicks.
type App struct {
	Service *approvals.Service
	// Catalog answers the request modal's type-ahead from its cache.
	Catalog Suggester
	// Slack sends the ephemeral notices to people whose clicks are refused.
	Slack   *slack.Client
	Logger  *slog.Logger
	Metrics Metrics
	// NoticeTimeout bounds one ephemeral notice (default 10s).
	NoticeTimeout time.Duration
	// ResponseURLs says which response_url values may be posted to; others
	// are dropped as they arrive.
	ResponseURLs ResponseURLs
	// DryRun starts every private answer with DryRunBanner.
	DryRun bool
	// ModalKey signs the request modal's private_metadata (see modal.go);
	// use DeriveModalKey. Empty: a random key for this process.
	ModalKey []byte

	notices   sync.WaitGroup
	modalKeys modalKeys
}

func (a *App) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func (a *App) metrics() Metrics {
	if a.Metrics == nil {
		return nopMetrics{}
	}
	return a.Metrics
}

// Wait blocks until the ephemeral notices under way are sent or given up.
func (a *App) Wait() { a.notices.Wait() }

// Reply is the private answer to a slash command, sent back in the ack.
type Reply struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

func private(format string, args ...any) Reply {
	return Reply{ResponseType: "ephemeral", Text: fmt.Sprintf(format, args...)}
}

// Command handles one slash command. It stores a new request before it
// returns, so the ack that carries the Reply means the request is durable.
func (a *App) Command(ctx context.Context, cmd slack.SlashCommand) (reply Reply) {
	if a.DryRun {
		defer func() {
			if reply.Text != "" {
				reply.Text = DryRunBanner + "\n" + reply.Text
			}
		}()
	}
	log := a.log().With("user", cmd.UserID, "channel", cmd.ChannelID)
	name := cmd.Command
	if name == "" {
		name = "/assign-role"
	}
	parsed, err := ParseCommand(cmd.Text)
	if err != nil {
		a.metrics().Command("invalid")
		return private(":warning: %s. Nothing was requested.\nUsage: `%s <project_id> <group_id> <role_id> <reason…>` (or `%s help`)", Escape(err.Error()), Escape(name), Escape(name))
	}
	switch parsed.Kind {
	case CommandHelp:
		a.metrics().Command("help")
		return private(Usage, Escape(name))
	case CommandCancel:
		// Cancel works from any channel: only the requester can use it.
		r, err := a.Service.Decide(ctx, approvals.Decision{RequestID: parsed.ID, Actor: cmd.UserID, Action: approvals.ActionCancel})
		if err != nil {
			a.metrics().Command("cancel_refused")
			return private("%s", a.refusal(ctx, log, parsed.ID, approvals.ActionCancel, err))
		}
		a.metrics().Command("cancelled")
		log.InfoContext(ctx, "Request cancelled", "request_id", r.ID)
		return private("Request #%d is cancelled.", r.ID)
	case CommandModal:
		return a.openRequestModal(ctx, log, cmd, name)
	case CommandStatus:
		a.metrics().Command("status")
		return private("%s", a.statusText(ctx, log, parsed.ID, cmd.UserID))
	case CommandList:
		a.metrics().Command("list")
		return private("%s", a.listText(ctx, log, cmd.UserID))
	case CommandRevoke:
		r, err := a.Service.Revoke(ctx, parsed.ID, cmd.UserID, "")
		if err != nil {
			a.metrics().Command("revoke_refused")
			return private("%s", a.revokeRefusal(ctx, log, parsed.ID, err))
		}
		a.metrics().Command("revoked")
		log.InfoContext(ctx, "Grant revoked by command", "request_id", r.ID)
		return private("%s", revokedReply(r))
	case CommandRequest, CommandBreakGlass, CommandExtend:
	default:
		a.metrics().Command("unsupported")
		return private(":warning: `%s %s` is not available in this version of rolegate. Nothing was changed. See `%s help`.", Escape(name), parsed.Kind, Escape(name))
	}
	n := approvals.NewRequest{
		Ask:         parsed.Ask,
		Reason:      parsed.Reason,
		Requester:   cmd.UserID,
		TeamID:      cmd.TeamID,
		ChannelID:   cmd.ChannelID,
		ResponseURL: a.ResponseURLs.filter(cmd.ResponseURL),
		TriggerID:   cmd.TriggerID,
		Duration:    parsed.Duration,
		BreakGlass:  parsed.Kind == CommandBreakGlass,
	}
	var r approvals.Request
	var created bool
	if parsed.Kind == CommandExtend {
		r, created, err = a.Service.Extend(ctx, parsed.ID, n)
		if err != nil && !errors.Is(err, approvals.ErrInvalid) && !isTooMany(err) {
			a.metrics().Command("extend_refused")
			return private("%s", a.revokeRefusal(ctx, log, parsed.ID, err))
		}
	} else {
		r, created, err = a.Service.Create(ctx, n)
	}
	var tooMany *approvals.TooManyOpenError
	if errors.As(err, &tooMany) {
		a.metrics().Command("too_many_open")
		return private(":warning: You already have %d open requests (%s), and rolegate allows %d at a time, so nothing was requested. "+
			"Wait for them to be decided, or withdraw one with `%s cancel <id>`.", len(tooMany.Open), requestList(tooMany.Open), tooMany.Limit, Escape(name))
	}
	if errors.Is(err, approvals.ErrInvalid) {
		a.metrics().Command("invalid")
		return private(":warning: %s. Nothing was requested.", Escape(err.Error()))
	}
	if err != nil {
		a.metrics().Command("error")
		log.ErrorContext(ctx, "Storing a request failed", "err", err)
		return private(":warning: rolegate could not save your request, so nothing was requested. Please try again in a moment.")
	}
	if created {
		a.metrics().Command("created")
		log.InfoContext(ctx, "Request created", "request_id", r.ID, "project", r.Ask.Project, "group", r.Ask.Group, "role", r.Ask.Role)
	} else {
		a.metrics().Command("duplicate")
	}
	return private("%s", Acknowledgement(r))
}

// Interaction handles one interaction payload and returns what goes back
// to Slack in the acknowledgement (nil for an empty 200): block actions on
// rolegate's buttons, type-ahead for the request modal's menus
// (block_suggestion: the options), and modal submissions (view_submission:
// nil to close, or inline errors). Everything else is refused without
// effect. Refusals of clicks reach the clicker as an ephemeral notice, sent
// after this returns so the ack is not delayed.
func (a *App) Interaction(ctx context.Context, cb slack.InteractionCallback) any {
	log := a.log().With("user", cb.User.ID, "channel", cb.Channel.ID)
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		a.blockAction(ctx, log, cb)
		return nil
	case slack.InteractionTypeBlockSuggestion:
		return a.suggest(ctx, log, cb)
	case slack.InteractionTypeViewSubmission:
		return a.submit(ctx, log, cb)
	}
	log.WarnContext(ctx, "Ignoring an interaction rolegate does not handle", "type", string(cb.Type))
	a.metrics().Decision("unknown", "refused_unknown_type")
	return nil
}

// submit routes a modal submission by the view's callback_id.
func (a *App) submit(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	switch cb.View.CallbackID {
	case RequestModalID:
		return a.submitRequest(ctx, log, cb)
	case DenyModalID:
		return a.submitDeny(ctx, log, cb)
	}
	log.WarnContext(ctx, "Ignoring a submission of a view rolegate did not open", "callback_id", cb.View.CallbackID)
	a.metrics().Decision("unknown", "refused_unknown_view")
	return nil
}

// blockAction handles a click on one of rolegate's buttons.
func (a *App) blockAction(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) {
	acts := cb.ActionCallback.BlockActions
	// slack-go files an action without a block_id under AttachmentActions:
	// count those too, so a forged second action cannot ride along.
	if len(acts) != 1 || acts[0] == nil || len(cb.ActionCallback.AttachmentActions) != 0 {
		log.WarnContext(ctx, "Ignoring a block action payload without exactly one action", "actions", len(acts)+len(cb.ActionCallback.AttachmentActions))
		a.metrics().Decision("unknown", "refused_malformed")
		return
	}
	act := acts[0]
	var action approvals.Action
	switch act.ActionID {
	case ActionApprove:
		action = approvals.ActionApprove
	case ActionDeny:
		action = approvals.ActionDeny
	case ActionCancel:
		action = approvals.ActionCancel
	case ActionRevoke, ActionReview, ActionExtend:
		id, err := strconv.ParseUint(act.Value, 10, 64)
		if err != nil || id == 0 || cb.User.ID == "" || (cb.Channel.ID == "" && act.ActionID != ActionExtend) {
			log.WarnContext(ctx, "Ignoring a click without a request id, user or channel", "value", act.Value)
			a.metrics().Decision(act.ActionID, "refused_malformed")
			return
		}
		a.grantAction(ctx, log.With("request_id", id), cb, act.ActionID, id)
		return
	default:
		log.WarnContext(ctx, "Ignoring an unknown action", "action_id", act.ActionID)
		a.metrics().Decision("unknown", "refused_unknown_action")
		return
	}
	id, err := strconv.ParseUint(act.Value, 10, 64)
	if err != nil || id == 0 || cb.User.ID == "" || cb.Channel.ID == "" {
		log.WarnContext(ctx, "Ignoring a click without a request id, user or channel", "value", act.Value)
		a.metrics().Decision(string(action), "refused_malformed")
		return
	}
	log = log.With("request_id", id)
	if action == approvals.ActionDeny && cb.User.ID != a.requesterOf(ctx, id) {
		// An approver's Deny asks for a reason first; the requester's own
		// Deny withdraws the request at once, as Cancel does.
		if cb.TriggerID == "" {
			log.WarnContext(ctx, "Ignoring a Deny click without a trigger_id")
			a.metrics().Decision(string(action), "refused_malformed")
			return
		}
		a.openDenyModal(ctx, log, cb, id)
		return
	}
	r, err := a.Service.Decide(ctx, approvals.Decision{RequestID: id, Actor: cb.User.ID, Action: action, ChannelID: cb.Channel.ID})
	if err != nil {
		a.metrics().Decision(string(action), outcome(err))
		a.notice(cb, a.refusal(ctx, log, id, action, err))
		return
	}
	if r.State == approvals.StateCancelled && action != approvals.ActionCancel {
		a.metrics().Decision(string(action), "cancelled_by_requester")
		log.InfoContext(ctx, "The requester withdrew their request with Deny", "request_id", r.ID)
		return
	}
	a.metrics().Decision(string(action), "recorded")
	log.InfoContext(ctx, "Decision recorded", "action", string(action), "state", string(r.State), "approvals", len(r.Approvals), "required", r.Required)
}

func isTooMany(err error) bool {
	var tm *approvals.TooManyOpenError
	return errors.As(err, &tm)
}

// revokedReply is the private answer to a revoke that was recorded.
func revokedReply(r approvals.Request) string {
	if r.State == approvals.StateRevoked {
		return fmt.Sprintf("Grant #%d has ended. %s", r.ID, endedText(r))
	}
	return fmt.Sprintf("Grant #%d is ending: rolegate is removing the role now and will say so in the thread.", r.ID)
}

// revokeRefusal maps an error of Revoke, Extend or Review to what the
// person who asked reads.
func (a *App) revokeRefusal(ctx context.Context, log *slog.Logger, id uint64, err error) string {
	var np *approvals.NotPendingError
	switch {
	case errors.As(err, &np):
		r := np.Request
		if r.State == approvals.StateApplied && r.Ending {
			return fmt.Sprintf("Grant #%d is already ending: rolegate is removing the role (a failing removal is retried every hour; see the thread). Nothing was changed.", r.ID)
		}
		return fmt.Sprintf("Request #%d is not an active grant. %s Nothing was changed.", r.ID, status(r))
	case errors.Is(err, approvals.ErrCannotRevoke):
		return fmt.Sprintf("Only the person who asked for grant #%d or an approver of its rule can revoke or extend it. Nothing was changed.", id)
	case errors.Is(err, approvals.ErrNotApprover):
		return fmt.Sprintf("Only an approver of request #%d's rule can review it. Nothing was changed.", id)
	case errors.Is(err, approvals.ErrNotFound), errors.Is(err, approvals.ErrWrongChannel):
		return fmt.Sprintf("There is no request #%d in this channel. Nothing was changed.", id)
	}
	log.ErrorContext(ctx, "Recording a revoke, extension or review failed", "request_id", id, "err", err)
	return fmt.Sprintf("rolegate could not record that for request #%d, so nothing was changed. Please try again in a moment.", id)
}

// grantAction handles the buttons of applied grants: Revoke now, Mark
// reviewed, and Extend (which asks for a duration and a reason first).
func (a *App) grantAction(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback, actionID string, id uint64) {
	var err error
	var r approvals.Request
	switch actionID {
	case ActionRevoke:
		r, err = a.Service.Revoke(ctx, id, cb.User.ID, cb.Channel.ID)
	case ActionReview:
		r, err = a.Service.Review(ctx, id, cb.User.ID, cb.Channel.ID)
	case ActionExtend:
		a.notice(cb, fmt.Sprintf("To extend grant #%d, type `/assign-role extend %d <duration> <reason…>` (for example `/assign-role extend %d 1h still rotating keys`). An approver decides.", id, id, id))
		a.metrics().Decision("extend", "explained")
		return
	}
	if err != nil {
		a.metrics().Decision(actionID, outcome(err))
		a.notice(cb, a.revokeRefusal(ctx, log, id, err))
		return
	}
	a.metrics().Decision(actionID, "recorded")
	log.InfoContext(ctx, "Grant action recorded", "action", actionID, "state", string(r.State))
}

// requestList renders ids as "#3, #7".
func requestList(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = "#" + strconv.FormatUint(id, 10)
	}
	return strings.Join(parts, ", ")
}

func outcome(err error) string {
	var np *approvals.NotPendingError
	switch {
	case errors.As(err, &np):
		return "refused_not_pending"
	case errors.Is(err, approvals.ErrSelfApproval):
		return "refused_self_approval"
	case errors.Is(err, approvals.ErrNotApprover):
		return "refused_not_approver"
	case errors.Is(err, approvals.ErrAlreadyVoted):
		return "refused_already_voted"
	case errors.Is(err, approvals.ErrExpired):
		return "refused_expired"
	case errors.Is(err, approvals.ErrNotFound), errors.Is(err, approvals.ErrWrongChannel):
		return "refused_unknown_request"
	}
	return "error"
}

// refusal maps a decision error to what the person who acted reads.
func (a *App) refusal(ctx context.Context, log *slog.Logger, id uint64, action approvals.Action, err error) string {
	var np *approvals.NotPendingError
	switch {
	case errors.As(err, &np):
		r := np.Request
		return fmt.Sprintf("Request #%d is no longer waiting for a decision. %s Nothing was changed.", r.ID, status(r))
	case errors.Is(err, approvals.ErrSelfApproval):
		return fmt.Sprintf("You asked for request #%d, so you cannot approve it: another approver has to. Nothing was changed.", id)
	case errors.Is(err, approvals.ErrNotApprover):
		return fmt.Sprintf("Only rolegate's configured approvers can approve or deny requests, so your click on request #%d was not counted. Nothing was changed.", id)
	case errors.Is(err, approvals.ErrNotRequester):
		return fmt.Sprintf("Only the person who asked for request #%d can cancel it. Nothing was changed.", id)
	case errors.Is(err, approvals.ErrAlreadyVoted):
		return fmt.Sprintf("Your approval of request #%d is already counted. It still needs approval from someone else.", id)
	case errors.Is(err, approvals.ErrExpired):
		return fmt.Sprintf("Request #%d expired before this decision, so nothing was changed. Ask again if it is still needed.", id)
	case errors.Is(err, approvals.ErrNotFound), errors.Is(err, approvals.ErrWrongChannel):
		return fmt.Sprintf("There is no request #%d in this channel. Nothing was changed.", id)
	}
	log.ErrorContext(ctx, "Recording a decision failed", "action", string(action), "err", err)
	return fmt.Sprintf("rolegate could not record your decision on request #%d, so nothing was changed. Please try again in a moment.", id)
}

// notice tells the clicker privately why nothing happened: chat.postEphemeral
// in the channel, or the click's response_url if Slack refuses that.
func (a *App) notice(cb slack.InteractionCallback, text string) {
	timeout := a.NoticeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	a.notices.Add(1)
	go func() {
		defer a.notices.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		if a.Slack != nil {
			_, err = a.Slack.PostEphemeralContext(ctx, cb.Channel.ID, cb.User.ID, slack.MsgOptionText(text, false))
			if err == nil {
				return
			}
			a.metrics().SlackError("chat.postEphemeral", errorCode(err))
		}
		if u := a.ResponseURLs.filter(cb.ResponseURL); u != "" {
			err = slack.PostWebhookContext(ctx, u, &slack.WebhookMessage{ResponseType: "ephemeral", Text: text})
		}
		if err != nil {
			a.log().Warn("Could not send a private notice", "user", cb.User.ID, "channel", cb.Channel.ID, "err", err)
		}
	}()
}
