package slackapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Notifier posts and updates rolegate's messages through the Slack Web API.
type Notifier struct {
	Client  *slack.Client
	Metrics Metrics
	// HTTPClient posts to response_url (default http.DefaultClient).
	HTTPClient *http.Client
	// ResponseURLs says which response_url values may be posted to.
	ResponseURLs ResponseURLs
	// DryRun starts every message the Notifier posts or updates with
	// DryRunBanner: rolegate runs the whole flow but changes nothing at
	// OpenAI.
	DryRun bool
	// AuditHead, when set, returns the hash of request id's latest audit
	// event ("sha256:…"); PostResult shows its short form, so the
	// channel's history holds checkpoints of the audit chain.
	AuditHead func(ctx context.Context, requestID uint64) (string, error)
	// Directory resolves user-group approvers to their members for the
	// break-glass DMs; nil: user groups are skipped.
	Directory approvals.Directory
	// Logger reports look-ups for earlier posts that failed (the message
	// is posted anyway); nil discards.
	Logger *slog.Logger

	mu    sync.Mutex
	botID string // this bot's id (auth.test), once known: whose messages to adopt
}

// DryRunBanner opens every message of a bot in dry run.
const DryRunBanner = ":test_tube: *Dry run* — rolegate will not change anything at OpenAI; this shows what would have been done."

// ShortHash is the form of an audit hash shown in Slack: "sha256:" and the
// first 12 hex digits, enough to find the event in an export.
func ShortHash(h string) string {
	const keep = len("sha256:") + 12
	if len(h) > keep {
		return h[:keep]
	}
	return h
}

// text is s as the Notifier sends it: after the banner in dry run.
func (n *Notifier) text(s string) string {
	if n.DryRun {
		return DryRunBanner + "\n" + s
	}
	return s
}

// blocks is bs as the Notifier sends them: after the banner in dry run.
// The banner gives way (it stays in the text) to Slack's block limit.
func (n *Notifier) blocks(bs []slack.Block) []slack.Block {
	if !n.DryRun || len(bs) >= maxBlocks {
		return bs
	}
	banner := slack.NewContextBlock("rolegate_dry_run", slack.NewTextBlockObject(slack.MarkdownType, DryRunBanner, false, false))
	return append([]slack.Block{banner}, bs...)
}

var _ approvals.Notifier = (*Notifier)(nil)

func (n *Notifier) metrics() Metrics {
	if n.Metrics == nil {
		return nopMetrics{}
	}
	return n.Metrics
}

// PostApproval posts r's approval message in its channel and returns its
// ts. With p.MayHavePosted it first looks for the message in the channel
// (see findPosted) and returns the ts of the one it finds; when it cannot
// look (a missing scope, not in the channel, Slack failing), it logs why
// and posts: a message twice rather than none.
func (n *Notifier) PostApproval(ctx context.Context, r approvals.Request, p approvals.Posting) (string, error) {
	if p.MayHavePosted {
		if ts, ok, err := n.adopt(ctx, r, ApprovalEventType, ""); ok || err != nil {
			return ts, err
		}
	}
	_, ts, err := n.Client.PostMessageContext(ctx, r.ChannelID,
		slack.MsgOptionText(n.text(Summary(r)), false), slack.MsgOptionBlocks(n.blocks(ApprovalBlocks(r))...),
		slack.MsgOptionMetadata(RequestMetadata(ApprovalEventType, r.ID)))
	if err != nil {
		return "", n.classify("chat.postMessage", err)
	}
	return ts, nil
}

// UpdateApproval rewrites r's approval message to its current state. It
// sends the metadata again, so a message posted before rolegate marked its
// messages can be found too.
func (n *Notifier) UpdateApproval(ctx context.Context, r approvals.Request) error {
	_, _, _, err := n.Client.UpdateMessageContext(ctx, r.ChannelID, r.MessageTS,
		slack.MsgOptionText(n.text(Summary(r)), false), slack.MsgOptionBlocks(n.blocks(ApprovalBlocks(r))...),
		slack.MsgOptionMetadata(RequestMetadata(ApprovalEventType, r.ID)))
	return n.classify("chat.update", err)
}

// PostResult posts the assignment summary, or the API's error, as a reply
// in the approval message's thread that is also shown in the channel. With
// AuditHead set, it ends with the short hash of the request's latest audit
// event; failing to read it is a temporary DeliveryError. With
// p.MayHavePosted it first looks in the thread (conversations.replies) for
// the result an earlier attempt posted, as PostApproval does.
func (n *Notifier) PostResult(ctx context.Context, r approvals.Request, p approvals.Posting) error {
	if done, err := n.inThread(ctx, r, p, ResultEventType); done || err != nil {
		return err
	}
	blocks := ResultBlocks(r)
	if n.AuditHead != nil {
		head, err := n.AuditHead(ctx, r.ID)
		if err != nil {
			return &approvals.DeliveryError{Code: "audit_head", Temporary: true, Err: fmt.Errorf("read the audit head: %w", err)}
		}
		if head != "" && len(blocks) < maxBlocks {
			blocks = append(blocks, slack.NewContextBlock("rolegate_audit", slack.NewTextBlockObject(slack.MarkdownType,
				fmt.Sprintf("Audit event `%s` (`bot audit export` lists it; `bot audit verify` checks the chain)", ShortHash(head)), false, false)))
		}
	}
	opts := []slack.MsgOption{slack.MsgOptionText(n.text(ResultText(r)), false), slack.MsgOptionBlocks(n.blocks(blocks)...),
		slack.MsgOptionMetadata(RequestMetadata(ResultEventType, r.ID))}
	if r.MessageTS != "" {
		opts = append(opts, slack.MsgOptionTS(r.MessageTS), slack.MsgOptionBroadcast())
	}
	_, _, err := n.Client.PostMessageContext(ctx, r.ChannelID, opts...)
	return n.classify("chat.postMessage", err)
}

// responseURLLife is how long Slack honours a command's response_url.
const responseURLLife = 30 * time.Minute

// TellRequester tells the requester privately where r stands after its
// checks (waiting for approval, or rejected and why), or why it ended
// without anyone seeing it: through the command's response_url while it is
// valid, else in a direct message.
func (n *Notifier) TellRequester(ctx context.Context, r approvals.Request) error {
	text := n.text(RequesterText(r))
	if n.ResponseURLs.filter(r.ResponseURL) != "" && time.Since(r.CreatedAt) < responseURLLife {
		client := n.HTTPClient
		if client == nil {
			client = http.DefaultClient
		}
		err := slack.PostWebhookCustomHTTPContext(ctx, r.ResponseURL, client, &slack.WebhookMessage{ResponseType: "ephemeral", Text: text})
		if err == nil {
			return nil
		}
	}
	_, _, err := n.Client.PostMessageContext(ctx, r.Requester, slack.MsgOptionText(text, false))
	return n.classify("chat.postMessage", err)
}

// RequesterText is the private message that tells the requester where r
// stands.
func RequesterText(r approvals.Request) string {
	switch r.State {
	case approvals.StateRejected:
		return fmt.Sprintf(":no_entry_sign: Request #%d (%s) was not put to approvers: %s. Nothing was requested.", r.ID, askText(r), Escape(r.Note))
	case approvals.StateCancelled:
		return fmt.Sprintf(":warning: I could not post request #%d (%s) in <#%s>: %s. "+
			"Nothing was requested. Invite me to the channel (`/invite @rolegate`) or ask from a channel I am in, then ask again.",
			r.ID, askText(r), Escape(r.ChannelID), Escape(r.Note))
	case approvals.StatePending, approvals.StateApproved, approvals.StateApplied:
		if r.BreakGlass {
			return fmt.Sprintf(":rotating_light: Break-glass request #%d passed its checks: %s, %s, applied now without approval. The approvers are told.", r.ID, previewText(r), durationText(r))
		}
		return fmt.Sprintf(":hourglass_flowing_sand: Request #%d is waiting for approval: %s. Approvers decide in <#%s>.", r.ID, previewText(r), Escape(r.ChannelID))
	}
	return fmt.Sprintf("Request #%d: %s", r.ID, status(r))
}

// previewText names what r grants by name and id once checked.
func previewText(r approvals.Request) string {
	if p := r.Preview; p != nil {
		return fmt.Sprintf("role *%s* (%s) for group *%s* (%s) in project *%s* (%s)",
			Escape(p.Role.Name), code(p.Role.ID), Escape(p.Group.Name), code(p.Group.ID), Escape(p.Project.Name), code(p.Project.ID))
	}
	return askText(r)
}

// temporaryCodes are Slack error codes worth retrying.
var temporaryCodes = map[string]bool{
	"ratelimited": true, "internal_error": true, "fatal_error": true, "service_unavailable": true,
	"request_timeout": true, "team_added_to_org": true,
}

// hints says what an operator should do about a permanent Slack error.
var hints = map[string]string{
	"not_in_channel":      "invite the bot to the channel (/invite @rolegate) or add the chat:write.public scope",
	"channel_not_found":   "the channel is private or gone: invite the bot, or use a channel it can see",
	"is_archived":         "the channel is archived",
	"invalid_auth":        "SLACK_BOT_TOKEN is wrong or revoked: reinstall the app and update the token",
	"not_authed":          "SLACK_BOT_TOKEN is missing",
	"token_revoked":       "the bot token was revoked: reinstall the app",
	"account_inactive":    "the bot token belongs to a deactivated app or user",
	"missing_scope":       "the app lacks a scope: compare its scopes with manifest.yml and reinstall",
	"message_not_found":   "the approval message was deleted",
	"cant_update_message": "the approval message cannot be edited by the bot",
	"invalid_blocks":      "rolegate built a message Slack rejects: please report this",
	"msg_too_long":        "rolegate built a message Slack rejects: please report this",
}

// classify turns a slack-go error into an *approvals.DeliveryError.
func (n *Notifier) classify(method string, err error) error {
	if err == nil {
		return nil
	}
	code := errorCode(err)
	n.metrics().SlackError(method, code)
	de := &approvals.DeliveryError{Code: code, Err: fmt.Errorf("%s: %w", method, err)}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var se slack.SlackErrorResponse
	var ne net.Error
	switch {
	case errors.As(err, &rl):
		de.Temporary, de.RetryAfter = true, rl.RetryAfter
	case errors.As(err, &sc):
		de.Temporary = sc.Code >= 500 || sc.Code == http.StatusRequestTimeout
	case errors.As(err, &se):
		de.Temporary = temporaryCodes[se.Err]
		de.Hint = hints[se.Err]
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		de.Temporary = true
	default:
		de.Temporary = true // transport errors (connection refused, EOF) come through here
	}
	return de
}

// errorCode is a short label for a Slack error, for metrics and messages.
func errorCode(err error) string {
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var se slack.SlackErrorResponse
	switch {
	case errors.As(err, &rl):
		return "ratelimited"
	case errors.As(err, &sc):
		return fmt.Sprintf("http_%d", sc.Code)
	case errors.As(err, &se):
		return se.Err
	}
	return "network"
}

// Directory looks up Slack user groups, for approvers given as S… ids.
type Directory struct {
	Client *slack.Client
}

var _ approvals.Directory = Directory{}

// GroupMembers returns the user ids in user group id.
func (d Directory) GroupMembers(ctx context.Context, id string) ([]string, error) {
	return d.Client.GetUserGroupMembersContext(ctx, id)
}
