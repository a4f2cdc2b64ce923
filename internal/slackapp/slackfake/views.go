package slackfake

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Limits of a modal view, from Slack's views.open and view object reference.
const (
	MaxViewBlocks          = 100
	MaxViewTitle           = 24
	MaxViewButtonText      = 24
	MaxViewCallbackID      = 255
	MaxViewPrivateMetadata = 3000
)

// OpenedView is a modal views.open opened.
type OpenedView struct {
	// ID is the view id the fake assigned ("V…"); submissions and
	// suggestions for the view carry it.
	ID string
	// TriggerID is the trigger it was opened with.
	TriggerID       string
	CallbackID      string
	PrivateMetadata string
	Title           string
	// BlocksJSON is the view's blocks as sent; Blocks decoded.
	BlocksJSON json.RawMessage
	Blocks     []map[string]any
}

// Block returns the view's block with block_id id, or nil.
func (v OpenedView) Block(id string) map[string]any {
	for _, b := range v.Blocks {
		if b["block_id"] == id {
			return b
		}
	}
	return nil
}

// Views returns every modal views.open opened, oldest first.
func (s *Server) Views() []OpenedView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OpenedView, len(s.views))
	for i, v := range s.views {
		v.BlocksJSON = clone(v.BlocksJSON)
		v.Blocks = decodeBlocks(v.BlocksJSON)
		out[i] = v
	}
	return out
}

// viewsOpen opens a modal as Slack does: a trigger_id works once
// (exchanged_trigger_id after that), and the view must fit Slack's limits
// (title and button texts 24 characters, 100 blocks, private_metadata
// 3,000, valid blocks; a view with input blocks needs a submit button), or
// the answer is invalid_arguments with Slack's messages. The fake cannot
// tell an expired trigger from a fresh one: tests of the 3-second expiry
// need their own clock.
func (s *Server) viewsOpen(p url.Values) apiResponse {
	trigger := p.Get("trigger_id")
	if trigger == "" {
		return errResponse("invalid_arguments")
	}
	if s.usedTriggers[trigger] {
		return errResponse("exchanged_trigger_id")
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(p.Get("view")), &v); err != nil {
		return contentError("invalid_arguments", []string{"view must be a JSON object [json-pointer:/view]"})
	}
	if errs := checkView(v); len(errs) > 0 {
		return contentError("invalid_arguments", errs)
	}
	s.usedTriggers[trigger] = true
	blocks, _ := json.Marshal(v["blocks"])
	s.seq++
	opened := OpenedView{
		ID:              fmt.Sprintf("V%09d", s.seq),
		TriggerID:       trigger,
		CallbackID:      str(v["callback_id"]),
		PrivateMetadata: str(v["private_metadata"]),
		Title:           textOf(v["title"]),
		BlocksJSON:      blocks,
	}
	s.views = append(s.views, opened)
	s.notifyLocked()
	v["id"] = opened.ID
	v["team_id"] = TeamID
	v["app_id"] = AppID
	v["state"] = map[string]any{"values": map[string]any{}}
	v["hash"] = fmt.Sprintf("1700000000.%s", opened.ID)
	return okResponse(apiResponse{"view": v})
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// checkView returns Slack's complaints about a modal view object.
func checkView(v map[string]any) []string {
	c := &blockCheck{blockIDs: map[string]bool{}}
	if v["type"] != "modal" {
		c.errorf("/view/type", "must be modal")
	}
	c.textObject("/view/title", v["title"], MaxViewTitle, true)
	hasInput := false
	blocks, _ := v["blocks"].([]any)
	for _, b := range blocks {
		if m, ok := b.(map[string]any); ok && m["type"] == "input" {
			hasInput = true
		}
	}
	if _, ok := v["submit"]; ok {
		c.textObject("/view/submit", v["submit"], MaxViewButtonText, true)
	} else if hasInput {
		c.errorf("/view/submit", "is required when the view has input blocks")
	}
	if _, ok := v["close"]; ok {
		c.textObject("/view/close", v["close"], MaxViewButtonText, true)
	}
	c.stringField("/view", v, "callback_id", MaxViewCallbackID, false)
	c.stringField("/view", v, "private_metadata", MaxViewPrivateMetadata, false)
	raw, err := json.Marshal(v["blocks"])
	if err != nil || v["blocks"] == nil {
		c.errorf("/view/blocks", "is required")
	} else if code, errs := validateBlocksMax(string(raw), MaxViewBlocks); code != "" {
		for _, e := range errs {
			c.errs = append(c.errs, strings.Replace(e, "[json-pointer:/", "[json-pointer:/view/", 1))
		}
	}
	return c.errs
}

// getPermalink answers chat.getPermalink for a message the fake holds, in
// the shape Slack gives for a workspace on slack.com.
func (s *Server) getPermalink(p url.Values) apiResponse {
	ch := s.lookupChannelLocked(p.Get("channel"))
	if ch == nil {
		return errResponse("channel_not_found")
	}
	ts := p.Get("message_ts")
	m, ok := ch.byTS[ts]
	if !ok || m.deleted {
		return errResponse("message_not_found")
	}
	return okResponse(apiResponse{"channel": ch.id, "permalink": Permalink(ch.id, ts)})
}

// Permalink is the link the fake's chat.getPermalink gives for the message
// ts in channel.
func Permalink(channel, ts string) string {
	return "https://" + TeamDomain + ".slack.com/archives/" + channel + "/p" + strings.Replace(ts, ".", "", 1)
}

// OpenedViews is Views: every modal views.open opened, oldest first.
func (s *Server) OpenedViews() []OpenedView { return s.Views() }
