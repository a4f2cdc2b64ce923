package slackfake

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// This file adds views.open (modals) and chat.getPermalink to the fake. It
// keeps what it records beside the Server rather than in it, so it stands
// alone; a Server field would do once the fake grows a views.update.

func init() {
	methods["views.open"] = (*Server).viewsOpen
	methods["chat.getPermalink"] = (*Server).getPermalink
}

// OpenedView is a modal the app opened with views.open.
type OpenedView struct {
	TriggerID       string
	CallbackID      string
	PrivateMetadata string
	// JSON is the view as the app sent it.
	JSON json.RawMessage
}

var (
	viewsMu sync.Mutex
	opened  = map[*Server][]OpenedView{}
	// usedTriggers holds the trigger ids a views.open has consumed: Slack
	// honours each once.
	usedTriggers = map[*Server]map[string]bool{}
)

// OpenedViews returns the modals opened so far, oldest first.
func (s *Server) OpenedViews() []OpenedView {
	viewsMu.Lock()
	defer viewsMu.Unlock()
	return slices.Clone(opened[s])
}

// viewsOpen checks what Slack checks of a modal (a trigger id used once; a
// modal with a title of at most 24 characters, at most 100 blocks,
// private_metadata of at most 3,000 characters, a callback_id of at most
// 255) and records it.
func (s *Server) viewsOpen(p url.Values) apiResponse {
	trigger := p.Get("trigger_id")
	if trigger == "" {
		return errResponse("invalid_arguments")
	}
	var v struct {
		Type            string                `json:"type"`
		Title           struct{ Text string } `json:"title"`
		CallbackID      string                `json:"callback_id"`
		PrivateMetadata string                `json:"private_metadata"`
		Blocks          []json.RawMessage     `json:"blocks"`
	}
	raw := p.Get("view")
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return errResponse("invalid_arguments")
	}
	switch {
	case v.Type != "modal", v.Title.Text == "", utf8.RuneCountInString(v.Title.Text) > 24,
		len(v.Blocks) == 0, len(v.Blocks) > 100, len(v.PrivateMetadata) > 3000, len(v.CallbackID) > 255:
		return errResponse("invalid_arguments")
	}
	viewsMu.Lock()
	defer viewsMu.Unlock()
	if usedTriggers[s] == nil {
		usedTriggers[s] = map[string]bool{}
	}
	if usedTriggers[s][trigger] {
		return errResponse("expired_trigger_id")
	}
	usedTriggers[s][trigger] = true
	opened[s] = append(opened[s], OpenedView{TriggerID: trigger, CallbackID: v.CallbackID, PrivateMetadata: v.PrivateMetadata, JSON: json.RawMessage(raw)})
	id := fmt.Sprintf("V%08d", len(opened[s]))
	return okResponse(apiResponse{"view": map[string]any{"id": id, "type": "modal", "callback_id": v.CallbackID,
		"private_metadata": v.PrivateMetadata, "team_id": TeamID, "app_id": AppID}})
}

// getPermalink answers with the link Slack gives a message that exists.
func (s *Server) getPermalink(p url.Values) apiResponse {
	ch := s.lookupChannelLocked(p.Get("channel"))
	if ch == nil {
		return errResponse("channel_not_found")
	}
	ts := p.Get("message_ts")
	if m, ok := ch.byTS[ts]; !ok || m.deleted {
		return errResponse("message_not_found")
	}
	return okResponse(apiResponse{"channel": ch.id,
		"permalink": "https://" + TeamDomain + ".slack.com/archives/" + ch.id + "/p" + strings.ReplaceAll(ts, ".", "")})
}
