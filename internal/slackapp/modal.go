package slackapp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/approvals"
)

// RequestModalID is the callback_id of the request modal that
// `/assign-role` alone opens.
const RequestModalID = "rolegate_request"

// Block and action ids of the request modal. Each input block holds one
// element whose action_id is the block's id, so a block_suggestion's
// action_id says which menu is being typed into.
const (
	ModalProject = "rolegate_project"
	ModalGroup   = "rolegate_group"
	ModalRole    = "rolegate_role"
	ModalReason  = "rolegate_reason"
	// ModalDuration is the duration select: ModalDefaultDuration (the
	// rule's default_duration, or permanent where it has none) or one of
	// modalDurations.
	ModalDuration        = "rolegate_duration"
	ModalDefaultDuration = "default"
)

// modalDurations are the durations the request modal offers besides the
// rule's default. The rule that decides is matched only by the checks,
// after the submission, so the menu cannot list what it allows: it offers
// the common ones and the checks refuse one above the rule's max_duration
// with the usual private answer naming the maximum.
var modalDurations = []string{"1h", "4h", "8h", "1d", "7d"}

// Slack's limits on what the modal sends and answers (PLATFORM-NOTES).
const (
	maxModalTitle   = 24
	maxOptions      = 100
	maxOptionText   = 75
	maxOptionValue  = 150
	viewOpenTimeout = 2500 * time.Millisecond // trigger_id lives 3 s
	// modalLife is how long a request modal's signed metadata is honoured.
	// Slack keeps a modal open as long as the person leaves it; a day is
	// long enough for anyone filling it in, and bounds how long a leaked
	// metadata string could be used.
	modalLife = 24 * time.Hour
)

// The request modal's private_metadata names the channel the command was
// typed in (a view_submission has no channel of its own) and the person
// who opened it. The request must belong to that channel and that person,
// so the metadata is signed:
//
//	v1|<channel>|<user>|<team>|<unix seconds>|<base64url HMAC-SHA256>
//
// with the App's ModalKey over everything before the last '|'. A
// submission (or suggestion) whose metadata does not verify, is older than
// modalLife, or names another user than the one submitting changes
// nothing. Slack already signs every request and users cannot edit
// private_metadata, so this is a second lock: it holds if a signed
// payload is replayed with different metadata, if a bug ever lets a view
// of another app reach this callback_id, and it makes the channel check a
// property of rolegate rather than of Slack's client. No state is stored,
// so any replica holding the same key can verify, and a restart with a
// key derived from configuration (see DeriveModalKey) keeps open modals
// valid.
const metadataVersion = "v1"

// modalOrigin is what the request modal's metadata vouches for.
type modalOrigin struct {
	Channel, User, Team string
	At                  time.Time
}

// errStaleModal means a modal's metadata does not verify or is too old.
var errStaleModal = errors.New("this form is out of date or was not opened by rolegate for you")

// DeriveModalKey turns a configured secret (the bot token is present in
// both transports and the same on every replica) into the key that signs
// request modals, so the secret itself never signs anything else.
func DeriveModalKey(secret string) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("rolegate request modal metadata v1"))
	return mac.Sum(nil)
}

// modalKeys holds the App's modal key, or a random one made on first use
// when none was configured (then modals opened before a restart show
// "out of date" on submission, which asks the person to open it again).
type modalKeys struct {
	once sync.Once
	key  []byte
}

func (a *App) modalKey() []byte {
	a.modalKeys.once.Do(func() {
		if len(a.ModalKey) > 0 {
			a.modalKeys.key = a.ModalKey
			return
		}
		a.modalKeys.key = make([]byte, 32)
		_, _ = rand.Read(a.modalKeys.key)
	})
	return a.modalKeys.key
}

func signMetadata(key []byte, o modalOrigin) string {
	body := strings.Join([]string{metadataVersion, o.Channel, o.User, o.Team, strconv.FormatInt(o.At.Unix(), 10)}, "|")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	return body + "|" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verifyMetadata checks md's signature and age and returns what it vouches for.
func verifyMetadata(key []byte, md string, now time.Time) (modalOrigin, error) {
	i := strings.LastIndexByte(md, '|')
	if i < 0 {
		return modalOrigin{}, errStaleModal
	}
	body, sig := md[:i], md[i+1:]
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return modalOrigin{}, errStaleModal
	}
	parts := strings.Split(body, "|")
	if len(parts) != 5 || parts[0] != metadataVersion {
		return modalOrigin{}, errStaleModal
	}
	unix, err := strconv.ParseInt(parts[4], 10, 64)
	if err != nil {
		return modalOrigin{}, errStaleModal
	}
	o := modalOrigin{Channel: parts[1], User: parts[2], Team: parts[3], At: time.Unix(unix, 0)}
	if age := now.Sub(o.At); age > modalLife || age < -5*time.Minute {
		return modalOrigin{}, errStaleModal
	}
	return o, nil
}

// origin verifies an interaction with the request modal: signed metadata,
// opened by the person now acting, in the same workspace.
func (a *App) origin(cb slack.InteractionCallback) (modalOrigin, error) {
	if cb.View.CallbackID != RequestModalID {
		return modalOrigin{}, errStaleModal
	}
	o, err := verifyMetadata(a.modalKey(), cb.View.PrivateMetadata, time.Now())
	if err != nil {
		return o, err
	}
	if cb.User.ID == "" || o.User != cb.User.ID || (o.Team != "" && cb.Team.ID != "" && o.Team != cb.Team.ID) {
		return modalOrigin{}, errors.New("this form was opened by someone else")
	}
	return o, nil
}

// RequestModal is the request form `/assign-role` alone opens, for a
// command typed by user in channel. Project, group and role are
// external_select menus answered by suggest; the reason is required.
// The duration is a static_select of the rule's default and
// modalDurations (see there why not the rule's own list).
func (a *App) RequestModal(channel, user, team string, now time.Time) slack.ModalViewRequest {
	zero := 0
	menu := func(id, label, placeholder, hint string) slack.Block {
		sel := slack.NewOptionsSelectBlockElement(slack.OptTypeExternal, plain(placeholder), id)
		sel.MinQueryLength = &zero // offer the list before anything is typed
		var h *slack.TextBlockObject
		if hint != "" {
			h = plain(hint)
		}
		return slack.NewInputBlock(id, plain(label), h, sel)
	}
	defaultOpt := slack.NewOptionBlockObject(ModalDefaultDuration, plain("Permanent (or the rule's default)"), nil)
	opts := []*slack.OptionBlockObject{defaultOpt}
	for _, d := range modalDurations {
		opts = append(opts, slack.NewOptionBlockObject(d, plain(d), nil))
	}
	duration := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("How long"), ModalDuration, opts...)
	duration.InitialOption = defaultOpt
	reason := slack.NewPlainTextInputBlockElement(plain("Why does the group need this role? e.g. rotating keys for INC-42"), ModalReason).
		WithMultiline(true).WithMaxLength(approvals.MaxReasonLen)
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		Title:           plain("Ask for a project role"),
		Submit:          plain("Ask for approval"),
		Close:           plain("Cancel"),
		CallbackID:      RequestModalID,
		PrivateMetadata: signMetadata(a.modalKey(), modalOrigin{Channel: channel, User: user, Team: team, At: now}),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section("Approvers of the matching rule decide in <#" + Escape(channel) + ">. The rule also decides how long the role is granted: it may set a default and a maximum."),
			menu(ModalProject, "Project", "Type a project name or id", ""),
			menu(ModalGroup, "Group", "Type a group name or id", ""),
			menu(ModalRole, "Role", "Type a role name or id", "The roles of the project chosen above."),
			slack.NewInputBlock(ModalDuration, plain("Duration"), plain("The role is removed at the end. A rule with a maximum refuses anything longer."), duration),
			slack.NewInputBlock(ModalReason, plain("Reason"), nil, reason),
		}},
	}
}

// openRequestModal opens the request modal with the command's trigger_id
// before doing anything else (the trigger works once, within 3 s), and
// answers the command with nothing when it opened.
func (a *App) openRequestModal(ctx context.Context, log *slog.Logger, cmd slack.SlashCommand, name string) Reply {
	typed := fmt.Sprintf("Ask with `%s <project> <group> <role> <reason…>` instead, or see `%s help`.", Escape(name), Escape(name))
	if a.Slack == nil || cmd.TriggerID == "" {
		a.metrics().Command("modal_failed")
		return private(":warning: rolegate could not open the request form here. Nothing was requested. %s", typed)
	}
	octx, cancel := context.WithTimeout(ctx, viewOpenTimeout)
	defer cancel()
	if _, err := a.Slack.OpenViewContext(octx, cmd.TriggerID, a.RequestModal(cmd.ChannelID, cmd.UserID, cmd.TeamID, time.Now())); err != nil {
		a.metrics().Command("modal_failed")
		a.metrics().SlackError("views.open", errorCode(err))
		log.WarnContext(ctx, "Opening the request modal failed", "err", err)
		return private(":warning: rolegate could not open the request form (Slack answered %s). Nothing was requested. %s", code(errorCode(err)), typed)
	}
	a.metrics().Command("modal_opened")
	return Reply{}
}

// optionsResponse is the answer to a block_suggestion. slack-go's
// OptionsResponse omits an empty list, and Slack wants the key.
type optionsResponse struct {
	Options []*slack.OptionBlockObject `json:"options"`
}

// suggest answers the request modal's type-ahead (block_suggestion) with
// options from the catalog's cache: "Name (id)" with the id as the value.
// The role menu offers the roles of the project chosen in the same modal,
// read from the view's state. A suggestion for a view rolegate did not open
// for this person gets no options.
func (a *App) suggest(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	out := optionsResponse{Options: []*slack.OptionBlockObject{}}
	if _, err := a.origin(cb); err != nil {
		log.WarnContext(ctx, "Refusing suggestions for a view rolegate did not open for this person", "reason", err.Error(), "callback_id", cb.View.CallbackID)
		return out
	}
	if a.Catalog == nil {
		return out
	}
	var kind, project string
	switch cb.ActionID {
	case ModalProject:
		kind = "project"
	case ModalGroup:
		kind = "group"
	case ModalRole:
		kind = "role"
		project = selected(cb.View.State, ModalProject)
		if !approvals.ValidID(project) {
			return out // no project chosen yet: there is nothing to offer
		}
	default:
		return out
	}
	query := cb.Value
	if utf8.RuneCountInString(query) > approvals.MaxNameLen {
		query = string([]rune(query)[:approvals.MaxNameLen])
	}
	for _, c := range a.Catalog.Suggest(ctx, kind, project, query, maxOptions) {
		if !approvals.ValidID(c.ID) || len(c.ID) > maxOptionValue {
			continue // an id rolegate could not use anyway
		}
		out.Options = append(out.Options, slack.NewOptionBlockObject(c.ID, plain(optionText(c)), nil))
		if len(out.Options) == maxOptions {
			break
		}
	}
	return out
}

// optionText is "Name (id)" in at most 75 characters: the name is cut
// first, the id (shortened in the middle) always shown.
func optionText(c approvals.Candidate) string {
	id := " (" + shortID(c.ID, 40) + ")"
	name := strings.TrimSpace(c.Name)
	if name == "" {
		return shortID(c.ID, maxOptionText)
	}
	room := maxOptionText - utf8.RuneCountInString(id)
	if r := []rune(name); len(r) > room {
		name = string(r[:room-1]) + "…"
	}
	return name + id
}

// selected is the value chosen in the select whose block and action id is
// id, or "".
func selected(state *slack.ViewState, id string) string {
	if state == nil {
		return ""
	}
	return strings.TrimSpace(state.Values[id][id].SelectedOption.Value)
}

// submitRequest creates the request the modal describes, or returns the
// inline errors by block_id. It creates the same request the typed command
// would, in the channel the modal was opened from, for the person who
// opened it; the follow-ups reach the requester by DM (a modal has no
// response_url).
func (a *App) submitRequest(ctx context.Context, log *slog.Logger, cb slack.InteractionCallback) any {
	o, err := a.origin(cb)
	if err != nil {
		a.metrics().Command("modal_refused")
		log.WarnContext(ctx, "Refusing a request modal submission", "reason", err.Error())
		return slack.NewErrorsViewSubmissionResponse(map[string]string{ModalReason: capitalize(err.Error()) + ": close it and run /assign-role again. Nothing was requested."})
	}
	log = log.With("channel", o.Channel)
	errs := map[string]string{}
	var ask approvals.Ask
	for _, f := range []struct {
		id, what string
		dst      *string
	}{{ModalProject, "project", &ask.Project}, {ModalGroup, "group", &ask.Group}, {ModalRole, "role", &ask.Role}} {
		v := selected(cb.View.State, f.id)
		if !approvals.ValidID(v) {
			errs[f.id] = "Choose a " + f.what + " from the list."
			continue
		}
		*f.dst = v
	}
	d, err := modalDuration(selected(cb.View.State, ModalDuration))
	if err != nil {
		errs[ModalDuration] = "Choose a duration from the list."
	}
	var reason string
	if cb.View.State != nil {
		reason = cb.View.State.Values[ModalReason][ModalReason].Value
	}
	if _, err := approvals.CleanReason(reason); err != nil {
		errs[ModalReason] = capitalize(userError(err).Error()) + "."
	}
	if len(errs) > 0 {
		a.metrics().Command("invalid")
		return slack.NewErrorsViewSubmissionResponse(errs)
	}
	r, created, err := a.Service.Create(ctx, approvals.NewRequest{
		Ask:       ask,
		Reason:    reason,
		Requester: o.User,
		TeamID:    o.Team,
		ChannelID: o.Channel,
		Duration:  d,
		// One modal makes at most one request, whether Slack delivers the
		// submission twice or the person presses submit twice.
		TriggerID: "view:" + cb.View.ID,
	})
	var tooMany *approvals.TooManyOpenError
	switch {
	case errors.As(err, &tooMany):
		a.metrics().Command("too_many_open")
		return slack.NewErrorsViewSubmissionResponse(map[string]string{ModalReason: fmt.Sprintf(
			"You already have %d open requests (%s), and rolegate allows %d at a time. Wait for them to be decided, or withdraw one with /assign-role cancel <id>.",
			len(tooMany.Open), requestList(tooMany.Open), tooMany.Limit)})
	case errors.Is(err, approvals.ErrInvalid):
		a.metrics().Command("invalid")
		return slack.NewErrorsViewSubmissionResponse(map[string]string{ModalReason: capitalize(userError(err).Error()) + "."})
	case err != nil:
		a.metrics().Command("error")
		log.ErrorContext(ctx, "Storing a request failed", "err", err)
		return slack.NewErrorsViewSubmissionResponse(map[string]string{ModalReason: "rolegate could not save your request, so nothing was requested. Please try again in a moment."})
	}
	if !created {
		a.metrics().Command("duplicate")
		return nil
	}
	a.metrics().Command("created")
	log.InfoContext(ctx, "Request created from the modal", "request_id", r.ID, "project", r.Ask.Project, "group", r.Ask.Group, "role", r.Ask.Role)
	// The modal closes; say privately in the channel what happened next.
	// If the bot cannot post there, the worker's follow-up still reaches
	// the requester by DM.
	notice := cb
	notice.Channel.ID, notice.ResponseURL = o.Channel, ""
	a.notice(notice, Acknowledgement(r))
	return nil
}

// modalDuration reads the duration select: 0 (the rule decides) for the
// default or nothing chosen, else one of modalDurations; anything else is
// not from rolegate's menu.
func modalDuration(v string) (time.Duration, error) {
	switch {
	case v == "" || v == ModalDefaultDuration:
		return 0, nil
	case !slices.Contains(modalDurations, v):
		return 0, fmt.Errorf("%w: %q is not one of the offered durations", approvals.ErrInvalid, v)
	}
	return approvals.ParseDuration(v)
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return strings.ToUpper(string(r)) + s[n:]
}
