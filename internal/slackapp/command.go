package slackapp

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rolegate/rolegate/internal/approvals"
)

// CommandKind is what a slash command asks for.
type CommandKind int

// The kinds of command text.
const (
	CommandHelp CommandKind = iota
	CommandRequest
	CommandCancel
)

// Command is a parsed slash command text.
type Command struct {
	Kind   CommandKind
	Target approvals.Target
	Reason string
	ID     uint64 // for CommandCancel
}

// Usage is the private answer to `help`; %s is the command name.
const Usage = "*Ask for an OpenAI project role for a group:*\n" +
	"`%[1]s <project_id> <group_id> <role_id> <reason…>`\n" +
	"e.g. `%[1]s proj_abc group_01 role_01 need key rotation for incident 42`\n" +
	"Approvers decide in this channel with *Approve* or *Deny*; on approval the role is assigned and the result posted here.\n" +
	"`%[1]s cancel <request id>` withdraws your own pending request. `%[1]s help` shows this."

// ParseCommand parses the text after the command name. Errors are written
// for the person who typed it: they say what is wrong and how to fix it.
func ParseCommand(text string) (Command, error) {
	if !utf8.ValidString(text) {
		return Command{}, fmt.Errorf("the command text is not valid UTF-8")
	}
	fields := strings.Fields(text)
	if len(fields) == 0 || (len(fields) == 1 && strings.EqualFold(fields[0], "help")) {
		return Command{Kind: CommandHelp}, nil
	}
	if strings.EqualFold(fields[0], "cancel") {
		if len(fields) != 2 {
			return Command{}, fmt.Errorf("to cancel, give the request number: `cancel 42`")
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(fields[1], "#"), 10, 64)
		if err != nil || id == 0 {
			return Command{}, fmt.Errorf("%q is not a request number; to cancel, give the number: `cancel 42`", fields[1])
		}
		return Command{Kind: CommandCancel, ID: id}, nil
	}
	names := []string{"project_id", "group_id", "role_id"}
	for i, name := range names {
		if i >= len(fields) {
			return Command{}, fmt.Errorf("%s is missing: give `<project_id> <group_id> <role_id> <reason…>`", name)
		}
		if !approvals.ValidID(fields[i]) {
			return Command{}, fmt.Errorf("%s %q may contain only letters, digits, '_' and '-' (at most 128 characters)", name, fields[i])
		}
	}
	if len(fields) == 3 {
		return Command{}, fmt.Errorf("a reason is required after the role id: say why the group needs this role")
	}
	// The reason keeps the user's own spacing: cut the three ids off the
	// front, splitting where strings.Fields did (any Unicode space, such as
	// the no-break space pasted text often carries, or a vertical tab).
	rest := text
	for range 3 {
		rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
		rest = rest[strings.IndexFunc(rest, unicode.IsSpace):]
	}
	reason := strings.TrimSpace(rest)
	if n := utf8.RuneCountInString(reason); n > approvals.MaxReasonLen {
		return Command{}, fmt.Errorf("the reason is %d characters long; keep it to %d", n, approvals.MaxReasonLen)
	}
	return Command{
		Kind:   CommandRequest,
		Target: approvals.Target{ProjectID: fields[0], GroupID: fields[1], RoleID: fields[2]},
		Reason: reason,
	}, nil
}
