package slackapp

import (
	"context"
	"log/slog"

	"github.com/slack-go/slack"
)

// DenyModalID is the callback_id of the modal that asks an approver for
// the reason of a Deny.
const DenyModalID = "rolegate_deny"

// submitDeny records a Deny with the reason the modal asked for.
func (a *App) submitDeny(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	log.WarnContext(ctx, "The deny modal is not built yet")
	return nil
}
