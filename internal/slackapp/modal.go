package slackapp

import (
	"context"
	"log/slog"

	"github.com/slack-go/slack"
)

// RequestModalID is the callback_id of the request modal that
// `/assign-role` alone opens.
const RequestModalID = "rolegate_request"

// suggest answers the request modal's type-ahead (block_suggestion) with
// options from the catalog's cache.
func (a *App) suggest(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	return &slack.OptionsResponse{Options: []*slack.OptionBlockObject{}}
}

// submitRequest creates the request the modal describes, or returns the
// inline errors.
func (a *App) submitRequest(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	log.WarnContext(ctx, "The request modal is not built yet")
	return nil
}
