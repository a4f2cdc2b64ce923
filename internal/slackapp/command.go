package slackapp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rolegate/rolegate/internal/approvals"
)

// CommandKind is what a slash command asks for.
type CommandKind int

// The kinds of command text. The values are not stored anywhere; the order
// keeps the first three where they were.
const (
	CommandHelp       CommandKind = iota // `help`: the usage, privately
	CommandRequest                       // `<project> <group> <role> [for <duration>] <reason…>`
	CommandCancel                        // `cancel <id>`
	CommandModal                         // nothing typed: open the request modal
	CommandStatus                        // `status <id>`
	CommandList                          // `list`
	CommandRevoke                        // `revoke <id>`
	CommandExtend                        // `extend <id> <duration> <reason…>`
	CommandBreakGlass                    // `break-glass <project> <group> <role> [for <duration>] <reason…>`
)

var kindNames = map[CommandKind]string{
	CommandHelp: "help", CommandRequest: "request", CommandCancel: "cancel", CommandModal: "modal",
	CommandStatus: "status", CommandList: "list", CommandRevoke: "revoke", CommandExtend: "extend",
	CommandBreakGlass: "break-glass",
}

// String names the kind as people type it ("request" and "modal" have no
// keyword).
func (k CommandKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "CommandKind(" + strconv.Itoa(int(k)) + ")"
}

// Command is a parsed slash command text. Which fields are set depends on
// Kind: Ask for CommandRequest and CommandBreakGlass; ID for CommandStatus,
// CommandCancel, CommandRevoke and CommandExtend; Reason for those that ask
// for a grant (request, break-glass, extend); Duration when one was given
// (always for CommandExtend).
type Command struct {
	Kind CommandKind
	// Ask is the project, group and role as typed: each an id or a name.
	Ask approvals.Ask
	// Duration is how long the grant should last; 0 when none was given.
	Duration time.Duration
	// Reason is the reason as typed, trimmed, with the user's own spacing.
	Reason string
	// ID is the request a command acts on.
	ID uint64
	// Target holds Ask's three parts when every one is a valid id, and is
	// zero otherwise.
	//
	// Deprecated: names are allowed now; use Ask, which the worker resolves.
	Target approvals.Target
}

// Usage is the private answer to `help`; %[1]s is the command name.
const Usage = "*Ask for an OpenAI project role for a group:*\n" +
	"`%[1]s` alone opens a form with menus for the project, group, role and duration.\n" +
	"`%[1]s <project> <group> <role> [for <duration>] <reason…>`\n" +
	"Each of project, group and role is an id or an exact name; put a name with spaces in quotes. A duration is a number and a unit s, m, h or d (`30m`, `4h`, `2d`, `1h30m`); without one, the rule's default applies.\n" +
	"e.g. `%[1]s \"Support Project\" \"Support Team\" \"Key Manager\" for 4h rotating keys, INC-42`\n" +
	"By ids: `%[1]s <project_id> <group_id> <role_id> <reason…>`, e.g. `%[1]s proj_abc group_01 role_01 need key rotation for incident 42`\n" +
	"Approvers decide in this channel with *Approve* or *Deny*; on approval the role is assigned and the result posted here.\n" +
	"`%[1]s status <id>` shows a request and its history. `%[1]s list` shows your open requests and those you can decide.\n" +
	"`%[1]s cancel <id>` withdraws your own pending request. `%[1]s revoke <id>` ends an applied grant now.\n" +
	"`%[1]s extend <id> <duration> <reason…>` asks for more time on a time-bound grant, e.g. `%[1]s extend 42 2h incident still open`.\n" +
	"`%[1]s break-glass <project> <group> <role> [for <duration>] <reason…>` assigns at once where a rule allows it, and tells every approver, e.g. `%[1]s break-glass \"Support Project\" \"Support Team\" \"Key Manager\" for 1h outage INC-7`.\n" +
	"`%[1]s help` shows this."

// Forms of the commands, quoted in errors so people see how to fix them.
const (
	requestForm    = "`<project> <group> <role> [for <duration>] <reason…>`"
	breakGlassForm = "`break-glass <project> <group> <role> [for <duration>] <reason…>`"
	extendForm     = "`extend <id> <duration> <reason…>`, like `extend 42 2h incident still open`"
)

// quoteRune reports whether r opens or closes a quoted name: the straight
// double quote, or either of the curly quotes Slack's clients type for it.
// Any of them closes what any of them opened, since clients are not
// consistent about which they produce.
func quoteRune(r rune) bool { return r == '"' || r == '“' || r == '”' }

// token is one word of the command text.
type token struct {
	text   string // the word, or what was between the quotes, trimmed
	quoted bool
}

// scanner splits the text into tokens, keeping the rest of the text as typed
// so a reason keeps its own spacing. It splits where strings.Fields does, at
// any Unicode space (a no-break space from pasted text, a vertical tab).
type scanner struct{ rest string }

var errEnd = errors.New("end of text")

// next returns the next token. At the end of the text it returns errEnd.
func (s *scanner) next() (token, error) {
	s.rest = strings.TrimLeftFunc(s.rest, unicode.IsSpace)
	if s.rest == "" {
		return token{}, errEnd
	}
	open, size := utf8.DecodeRuneInString(s.rest)
	if !quoteRune(open) {
		end := strings.IndexFunc(s.rest, unicode.IsSpace)
		if end < 0 {
			end = len(s.rest)
		}
		t := token{text: s.rest[:end]}
		s.rest = s.rest[end:]
		return t, nil
	}
	inner := s.rest[size:]
	end := strings.IndexFunc(inner, quoteRune)
	if end < 0 {
		return token{}, fmt.Errorf("the quote %c%s is not closed: put a name with spaces between two quotes, like \"Support Team\"", open, ellipsis(inner, 20))
	}
	_, closeSize := utf8.DecodeRuneInString(inner[end:])
	after := inner[end+closeSize:]
	if r, _ := utf8.DecodeRuneInString(after); after != "" && !unicode.IsSpace(r) {
		return token{}, fmt.Errorf("put a space after the quoted name %q", ellipsis(inner[:end], 40))
	}
	s.rest = after
	return token{text: strings.TrimSpace(inner[:end]), quoted: true}, nil
}

func ellipsis(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// keyword reports whether t is the bare word kw, in any case.
func (t token) keyword(kw string) bool { return !t.quoted && strings.EqualFold(t.text, kw) }

// ParseCommand parses the text after the command name (see Usage for the
// grammar). Errors are written for the person who typed it: they say what
// is wrong and how to fix it, and never wrap anything a caller should test.
func ParseCommand(text string) (Command, error) {
	if !utf8.ValidString(text) {
		return Command{}, errors.New("the command text is not valid UTF-8")
	}
	s := &scanner{rest: text}
	first, err := s.next()
	if err == errEnd {
		return Command{Kind: CommandModal}, nil
	}
	if err != nil {
		return Command{}, err
	}
	switch {
	case first.keyword("help"):
		return Command{Kind: CommandHelp}, nil
	case first.keyword("list"):
		if err := noMore(s, "list", "`list`"); err != nil {
			return Command{}, err
		}
		return Command{Kind: CommandList}, nil
	case first.keyword("status"):
		return parseIDCommand(s, CommandStatus)
	case first.keyword("cancel"):
		return parseIDCommand(s, CommandCancel)
	case first.keyword("revoke"):
		return parseIDCommand(s, CommandRevoke)
	case first.keyword("extend"):
		return parseExtend(s)
	case first.keyword("break-glass"):
		return parseGrant(s, nil, CommandBreakGlass, breakGlassForm)
	}
	return parseGrant(s, &first, CommandRequest, requestForm)
}

// noMore checks that nothing follows a command that takes no more words.
func noMore(s *scanner, kw, form string) error {
	if strings.TrimSpace(s.rest) != "" {
		return fmt.Errorf("%s takes nothing after it: give %s (to ask for a project named %q, put the name in quotes)", "`"+kw+"`", form, kw)
	}
	return nil
}

// parseID reads a request number, as `42` or `#42`.
func parseID(s *scanner, kw, form string) (uint64, error) {
	t, err := s.next()
	if err == errEnd {
		return 0, fmt.Errorf("give the request number: %s", form)
	}
	if err != nil {
		return 0, err
	}
	id, perr := strconv.ParseUint(strings.TrimPrefix(t.text, "#"), 10, 64)
	if perr != nil || id == 0 || t.quoted {
		return 0, fmt.Errorf("%q is not a request number; to %s, give the number: %s", ellipsis(t.text, 32), kw, form)
	}
	return id, nil
}

func parseIDCommand(s *scanner, kind CommandKind) (Command, error) {
	kw := kind.String()
	form := "`" + kw + " 42`"
	id, err := parseID(s, kw, form)
	if err != nil {
		return Command{}, err
	}
	if strings.TrimSpace(s.rest) != "" {
		return Command{}, fmt.Errorf("`%s` takes only the request number: give %s", kw, form)
	}
	return Command{Kind: kind, ID: id}, nil
}

func parseExtend(s *scanner) (Command, error) {
	id, err := parseID(s, "extend a grant", extendForm)
	if err != nil {
		return Command{}, err
	}
	t, err := s.next()
	if err == errEnd {
		return Command{}, fmt.Errorf("the duration is missing: give %s", extendForm)
	}
	if err != nil {
		return Command{}, err
	}
	d, err := approvals.ParseDuration(t.text)
	if err != nil {
		return Command{}, userError(err)
	}
	reason, err := approvals.CleanReason(s.rest)
	if err != nil {
		return Command{}, userError(err)
	}
	return Command{Kind: CommandExtend, ID: id, Duration: d, Reason: reason}, nil
}

// parseGrant reads `<project> <group> <role> [for <duration>] <reason…>`;
// first, when not nil, is the project, already read.
func parseGrant(s *scanner, first *token, kind CommandKind, form string) (Command, error) {
	var parts [3]string
	for i, what := range []string{"project", "group", "role"} {
		if i == 0 && first != nil {
			parts[0] = first.text
			continue
		}
		t, err := s.next()
		if err == errEnd {
			return Command{}, fmt.Errorf("the %s is missing: give %s", what, form)
		}
		if err != nil {
			return Command{}, err
		}
		parts[i] = t.text
	}
	c := Command{Kind: kind, Ask: approvals.Ask{Project: parts[0], Group: parts[1], Role: parts[2]}}
	if err := c.Ask.Validate(); err != nil {
		return Command{}, userError(err)
	}
	d, err := takeDuration(s)
	if err != nil {
		return Command{}, err
	}
	c.Duration = d
	if c.Reason, err = approvals.CleanReason(s.rest); err != nil {
		return Command{}, userError(err)
	}
	if approvals.ValidID(parts[0]) && approvals.ValidID(parts[1]) && approvals.ValidID(parts[2]) {
		c.Target = approvals.Target{ProjectID: parts[0], GroupID: parts[1], RoleID: parts[2]}
	}
	return c, nil
}

// takeDuration consumes `for <duration>` when the next words are exactly
// that, and returns 0 leaving the text alone otherwise, so "for rotating
// keys" stays part of the reason. A word after `for` that starts with a
// digit is taken as a duration meant by the person typing: if it does not
// parse ("for 400d", "for 2 weeks"), that is an error rather than a
// permanent grant with the intended duration buried in the reason.
func takeDuration(s *scanner) (time.Duration, error) {
	look := *s
	kw, err := look.next()
	if err != nil || !kw.keyword("for") {
		return 0, nil
	}
	t, err := look.next()
	if err != nil || t.quoted || t.text == "" || t.text[0] < '0' || t.text[0] > '9' {
		return 0, nil
	}
	d, err := approvals.ParseDuration(t.text)
	if err != nil {
		return 0, userError(err)
	}
	*s = look
	return d, nil
}

// userError drops the "invalid request: " that approvals puts before its
// sentences, which the person who typed does not need.
func userError(err error) error {
	msg, ok := strings.CutPrefix(err.Error(), approvals.ErrInvalid.Error()+": ")
	if !ok {
		return err
	}
	return errors.New(msg)
}
