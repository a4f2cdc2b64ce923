package slackfake

import (
	"net/url"
	"strings"

	"github.com/slack-go/slack"
)

// Command is one invocation of a slash command, for CommandForm.
type Command struct {
	Channel, User, Text string
	ResponseURL         string
	TriggerID           string
	TeamDomain          string // default "rolegate-test"
}

// CommandForm is the form Slack posts to a slash command's request URL (and
// the fields of a Socket Mode slash_commands payload).
func CommandForm(c Command) url.Values {
	domain := c.TeamDomain
	if domain == "" {
		domain = "rolegate-test"
	}
	return url.Values{
		"token":        {"legacy-verification-token"},
		"team_id":      {TeamID},
		"team_domain":  {domain},
		"channel_id":   {c.Channel},
		"channel_name": {"access-requests"},
		"user_id":      {c.User},
		"user_name":    {strings.ToLower(c.User)},
		"command":      {"/assign-role"},
		"text":         {c.Text},
		"api_app_id":   {AppID},
		"response_url": {c.ResponseURL},
		"trigger_id":   {c.TriggerID},
	}
}

// Click is a press of a button on a message, for ClickPayload.
type Click struct {
	User, Channel     string
	ActionID, BlockID string
	Value             string
	MessageTS         string
	ResponseURL       string
	TriggerID         string // default a fixed, realistic one
}

// ClickPayload is the block_actions interaction Slack sends when a button in
// a message's actions block is pressed.
func ClickPayload(c Click) *slack.InteractionCallback {
	trigger := c.TriggerID
	if trigger == "" {
		trigger = "13345224609.738474920.8088930838d88f008e0"
	}
	return &slack.InteractionCallback{
		Type:        slack.InteractionTypeBlockActions,
		Team:        slack.Team{ID: TeamID},
		User:        slack.User{ID: c.User, Name: strings.ToLower(c.User)},
		Channel:     slack.Channel{GroupConversation: slack.GroupConversation{Conversation: slack.Conversation{ID: c.Channel}}},
		APIAppID:    AppID,
		Container:   slack.Container{Type: "message", MessageTs: c.MessageTS, ChannelID: c.Channel},
		Message:     slack.Message{Msg: slack.Msg{Timestamp: c.MessageTS}},
		ResponseURL: c.ResponseURL,
		TriggerID:   trigger,
		ActionCallback: slack.ActionCallbacks{BlockActions: []*slack.BlockAction{{
			ActionID: c.ActionID, BlockID: c.BlockID, Value: c.Value, Type: "button", ActionTs: "1700000000.000001",
		}}},
	}
}
