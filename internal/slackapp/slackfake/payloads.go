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
	ActionID, BlockID string // BlockID defaults to "actions"
	Value             string
	MessageTS         string
	ResponseURL       string
	TriggerID         string // default a fixed, realistic one
}

// ClickPayload is the block_actions interaction Slack sends when a button in
// a message's actions block is pressed. BlockID defaults to "actions".
//
// The builders here make the payloads of both transports: post them with
// [Driver.Interaction], or send them over Socket Mode with
// [Server.SendInteraction] (slash command forms: [Driver.Command] and
// [Server.SendSlashCommand]).
func ClickPayload(c Click) *slack.InteractionCallback {
	trigger := c.TriggerID
	if trigger == "" {
		trigger = "13345224609.738474920.8088930838d88f008e0"
	}
	if c.BlockID == "" {
		c.BlockID = defaultBlockID
	}
	return &slack.InteractionCallback{
		Type:        slack.InteractionTypeBlockActions,
		Team:        slack.Team{ID: TeamID},
		User:        user(c.User),
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

// defaultBlockID is the block_id of a click that names none. An action
// without one would reach slack-go as an attachment action, never as a
// block action (see PLATFORM-NOTES), so a click always carries one.
const defaultBlockID = "actions"

// User is the person an interaction comes from; Name defaults to the id in
// lower case.
func user(id string) slack.User { return slack.User{ID: id, Name: strings.ToLower(id), TeamID: TeamID} }

// Suggestion is what a person typed into an external_select menu, for
// SuggestionPayload. The menu sits in a modal (View), whose current state
// Slack sends along, so a menu can depend on another's choice.
type Suggestion struct {
	User              string
	ActionID, BlockID string
	Value             string // what was typed so far
	View              View
}

// View is a modal as an interaction carries it: its callback_id, the
// private_metadata the app put in it, and its state.values by block_id and
// action_id.
type View struct {
	ID, CallbackID  string // ID defaults to a fixed, realistic one
	PrivateMetadata string
	Values          map[string]map[string]slack.BlockAction
}

func (v View) view() slack.View {
	id := v.ID
	if id == "" {
		id = "V0FAKEVIEW01"
	}
	values := v.Values
	if values == nil {
		values = map[string]map[string]slack.BlockAction{}
	}
	return slack.View{
		ID: id, TeamID: TeamID, Type: slack.VTModal, CallbackID: v.CallbackID,
		PrivateMetadata: v.PrivateMetadata, State: &slack.ViewState{Values: values},
		Hash: "1700000000.fakehash", AppID: AppID, AppInstalledTeamID: TeamID,
	}
}

// SuggestionPayload is the block_suggestion interaction Slack sends for an
// external_select menu in a modal while the person types.
func SuggestionPayload(s Suggestion) *slack.InteractionCallback {
	return &slack.InteractionCallback{
		Type:      slack.InteractionTypeBlockSuggestion,
		Team:      slack.Team{ID: TeamID},
		User:      user(s.User),
		APIAppID:  AppID,
		ActionID:  s.ActionID,
		BlockID:   s.BlockID,
		Value:     s.Value,
		View:      s.View.view(),
		Container: slack.Container{Type: "view", ViewID: s.View.view().ID},
	}
}

// Submission is a press of a modal's submit button, for SubmissionPayload.
type Submission struct {
	User      string
	View      View
	TriggerID string // default a fixed, realistic one
}

// SubmissionPayload is the view_submission interaction Slack sends when a
// modal is submitted. It carries no channel: an app that needs one keeps
// it in the view's private_metadata.
func SubmissionPayload(s Submission) *slack.InteractionCallback {
	trigger := s.TriggerID
	if trigger == "" {
		trigger = "13345224609.738474920.8088930838d88f008e1"
	}
	return &slack.InteractionCallback{
		Type:      slack.InteractionTypeViewSubmission,
		Team:      slack.Team{ID: TeamID},
		User:      user(s.User),
		APIAppID:  AppID,
		TriggerID: trigger,
		View:      s.View.view(),
	}
}
