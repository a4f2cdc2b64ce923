package slackapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Slack's chat.postMessage has no idempotency key: when a process dies
// after Slack accepted a message but before its ts was stored, the process
// that takes the job over cannot tell from the store whether the message
// went out. So the messages rolegate must post once carry message
// metadata naming their request, and a post that may have gone out
// already looks for its message first (approvals.Posting.MayHavePosted:
// a job taken over from a stopped process, or retried after a failed
// attempt). The look-up costs nothing on the hot path: a first attempt by
// the process that queued the job never makes it.

// Event types of the message metadata rolegate sets; the event_payload's
// request_id is the request's id as a string (no JSON number rounding).
const (
	// ApprovalEventType marks a request's approval message.
	ApprovalEventType = "rolegate_request"
	// ResultEventType marks the result reply in its thread.
	ResultEventType = "rolegate_result"
	// DenialEventType, ReminderEventType and RevokedEventType mark the
	// thread's replies that a request was denied, the reminder, and that
	// its grant ended (not a failed revocation's report, which a later
	// failure may repeat).
	DenialEventType   = "rolegate_denial"
	ReminderEventType = "rolegate_reminder"
	RevokedEventType  = "rolegate_revoked"
)

// RequestMetadata is the message metadata marking a message of eventType
// as request id's.
func RequestMetadata(eventType string, id uint64) slack.SlackMetadata {
	return slack.SlackMetadata{EventType: eventType, EventPayload: map[string]any{"request_id": strconv.FormatUint(id, 10)}}
}

// lookBack is how long before a request's creation the search for its
// approval message starts: the replica's clock and Slack's may differ.
const lookBack = 2 * time.Minute

// A search reads at most lookupPages pages of lookupPage messages (Slack
// recommends pages of 200 at most): a channel that got more than a
// thousand messages between a request's creation and the take-over is
// not searched to the end, and the message is posted again.
const (
	lookupPage  = 200
	lookupPages = 5
)

// lookupHints say what an operator should do when a look-up fails for good.
var lookupHints = map[string]string{
	"missing_scope":  "add the channels:history and groups:history bot scopes (see manifest.yml) and reinstall the app",
	"not_in_channel": "invite the bot to the channel (/invite @rolegate): it can only read the history of channels it is in",
}

// adopt looks for the message of eventType an earlier attempt may have
// posted for r: a reply in thread, or in the channel when thread is "".
// It reports ok with the message's ts when it found one. A look-up that
// fails is logged and reported as not found, so the caller posts; only
// the end of ctx comes back as an error.
func (n *Notifier) adopt(ctx context.Context, r approvals.Request, eventType, thread string) (ts string, ok bool, err error) {
	ts, err = n.findPosted(ctx, r, eventType, thread)
	switch {
	case ctx.Err() != nil:
		return "", false, err
	case err != nil:
		attrs := []any{"request_id", r.ID, "event_type", eventType, "err", err}
		var de *approvals.DeliveryError
		if errors.As(err, &de) && lookupHints[de.Code] != "" {
			attrs = append(attrs, "hint", lookupHints[de.Code])
		}
		n.logger().WarnContext(ctx, "Could not look for a message an earlier attempt may have posted; posting it, so it may appear twice", attrs...)
		return "", false, nil
	case ts != "":
		n.logger().InfoContext(ctx, "Found the message an earlier attempt posted; not posting it again", "request_id", r.ID, "event_type", eventType, "ts", ts)
		return ts, true, nil
	}
	return "", false, nil
}

// inThread reports whether the reply of eventType in r's thread is there
// already, when p says an earlier attempt may have posted it (adopt): the
// caller then does not post it.
func (n *Notifier) inThread(ctx context.Context, r approvals.Request, p approvals.Posting, eventType string) (bool, error) {
	if !p.MayHavePosted {
		return false, nil
	}
	_, ok, err := n.adopt(ctx, r, eventType, r.MessageTS)
	return ok, err
}

// findPosted returns the ts of this bot's message in r's channel whose
// metadata marks it as eventType for r, or "" when there is none: among
// the replies of thread (conversations.replies), or in the channel's
// history since shortly before r was created (conversations.history).
// Both need the bot in the channel and the channels:history (public) or
// groups:history (private) scope.
func (n *Notifier) findPosted(ctx context.Context, r approvals.Request, eventType, thread string) (string, error) {
	bot, err := n.bot(ctx)
	if err != nil {
		return "", err
	}
	id := strconv.FormatUint(r.ID, 10)
	cursor := ""
	for range lookupPages {
		var msgs []slack.Message
		var next string
		if thread != "" {
			msgs, _, next, err = n.Client.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
				ChannelID: r.ChannelID, Timestamp: thread, Cursor: cursor, Limit: lookupPage, IncludeAllMetadata: true})
			if err != nil {
				return "", n.classify("conversations.replies", err)
			}
		} else {
			resp, err := n.Client.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
				ChannelID: r.ChannelID, Oldest: slackTS(r.CreatedAt.Add(-lookBack)), Inclusive: true,
				Cursor: cursor, Limit: lookupPage, IncludeAllMetadata: true})
			if err != nil {
				return "", n.classify("conversations.history", err)
			}
			msgs, next = resp.Messages, resp.ResponseMetaData.NextCursor
		}
		for _, m := range msgs {
			if m.BotID == bot && m.Metadata.EventType == eventType && fmt.Sprint(m.Metadata.EventPayload["request_id"]) == id {
				return m.Timestamp, nil
			}
		}
		if next == "" {
			return "", nil
		}
		cursor = next
	}
	return "", fmt.Errorf("gave up after the %d newest messages since the request was created", lookupPages*lookupPage)
}

// bot returns this bot's id, asking auth.test once.
func (n *Notifier) bot(ctx context.Context) (string, error) {
	n.mu.Lock()
	id := n.botID
	n.mu.Unlock()
	if id != "" {
		return id, nil
	}
	resp, err := n.Client.AuthTestContext(ctx)
	if err != nil {
		return "", n.classify("auth.test", err)
	}
	if resp.BotID == "" {
		return "", errors.New("auth.test named no bot: SLACK_BOT_TOKEN must be a bot token (xoxb-)")
	}
	n.mu.Lock()
	n.botID = resp.BotID
	n.mu.Unlock()
	return resp.BotID, nil
}

func (n *Notifier) logger() *slog.Logger {
	if n.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Logger
}

// slackTS is t as a Slack timestamp ("1700000000.000100").
func slackTS(t time.Time) string {
	return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)
}
