package slackapp

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rolegate/rolegate/internal/approvals"
)

func ask(p, g, r string) approvals.Ask { return approvals.Ask{Project: p, Group: g, Role: r} }

func TestParseCommand(t *testing.T) {
	ids := approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"}
	tests := []struct {
		text    string
		want    Command
		wantErr string // substring of the error; empty for success
	}{
		// The modal and help.
		{"", Command{Kind: CommandModal}, ""},
		{"   ", Command{Kind: CommandModal}, ""},
		{"\u00a0\v\t", Command{Kind: CommandModal}, ""},
		{"  help ", Command{Kind: CommandHelp}, ""},
		{"HELP", Command{Kind: CommandHelp}, ""},

		// Requests by id, as before; Target is still filled for them.
		{"proj_abc group_01 role_01 need key rotation for incident 42", Command{Kind: CommandRequest,
			Ask: ask("proj_abc", "group_01", "role_01"), Target: ids, Reason: "need key rotation for incident 42"}, ""},
		{"proj-A  group_B\trole-C   two  spaces kept", Command{Kind: CommandRequest,
			Ask: ask("proj-A", "group_B", "role-C"), Target: approvals.Target{ProjectID: "proj-A", GroupID: "group_B", RoleID: "role-C"}, Reason: "two  spaces kept"}, ""},
		{"p g r <!channel> & <https://evil|click>", Command{Kind: CommandRequest,
			Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"}, Reason: "<!channel> & <https://evil|click>"}, ""},
		{"p\u00a0g\vr\u00a0why\u00a0 so", Command{Kind: CommandRequest,
			Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"}, Reason: "why\u00a0 so"}, ""},

		// Names, in straight, curly and mixed quotes.
		{`"Support Project" "Support Team" "Key Manager" rotating keys, INC-42`, Command{Kind: CommandRequest,
			Ask: ask("Support Project", "Support Team", "Key Manager"), Reason: "rotating keys, INC-42"}, ""},
		{"“Support Project” “Support Team” “Key Manager” for 4h rotating keys, INC-42", Command{Kind: CommandRequest,
			Ask: ask("Support Project", "Support Team", "Key Manager"), Duration: 4 * time.Hour, Reason: "rotating keys, INC-42"}, ""},
		{"“Support Project\" \"Support Team” ”Reader” why", Command{Kind: CommandRequest,
			Ask: ask("Support Project", "Support Team", "Reader"), Reason: "why"}, ""},
		{`proj_abc "Support Team" role_01 why`, Command{Kind: CommandRequest,
			Ask: ask("proj_abc", "Support Team", "role_01"), Reason: "why"}, ""},
		{`"proj_abc" "group_01" "role_01" quoted ids are ids`, Command{Kind: CommandRequest,
			Ask: ask("proj_abc", "group_01", "role_01"), Target: ids, Reason: "quoted ids are ids"}, ""},
		{`" Padded  Name " g r why`, Command{Kind: CommandRequest,
			Ask: ask("Padded  Name", "g", "r"), Reason: "why"}, ""},
		{`Café g r pourquoi`, Command{Kind: CommandRequest, Ask: ask("Café", "g", "r"), Reason: "pourquoi"}, ""},
		{`"help" "list" "for" a project named help`, Command{Kind: CommandRequest,
			Ask: ask("help", "list", "for"), Target: approvals.Target{ProjectID: "help", GroupID: "list", RoleID: "for"}, Reason: "a project named help"}, ""},
		{`Reader's g r why`, Command{Kind: CommandRequest, Ask: ask("Reader's", "g", "r"), Reason: "why"}, ""},

		// Durations, and `for` that is part of the reason.
		{"p g r for 4h why", Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Duration: 4 * time.Hour, Reason: "why"}, ""},
		{"p g r FOR 1h30m why", Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Duration: 90 * time.Minute, Reason: "why"}, ""},
		{"p g r for 2d for 4h is what I first typed", Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Duration: 48 * time.Hour, Reason: "for 4h is what I first typed"}, ""},
		{"p g r for rotating keys", Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Reason: "for rotating keys"}, ""},
		{"p g r for", Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Reason: "for"}, ""},
		{`p g r for "4h" quoted is not a duration`, Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Reason: `for "4h" quoted is not a duration`}, ""},
		{"p g r formerly granted", Command{Kind: CommandRequest, Ask: ask("p", "g", "r"), Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"},
			Reason: "formerly granted"}, ""},
		{"p g r for 400d why", Command{}, "longer than the longest grant"},
		{"p g r for 0s why", Command{}, "longer than zero"},
		{"p g r for 2 weeks", Command{}, `"2" is not a duration`},
		{"p g r for 4hours why", Command{}, `"4hours" is not a duration`},
		{"p g r for 4h", Command{}, "a reason is required"},
		{"p g r for 4h  \u00a0 ", Command{}, "a reason is required"},

		// Break-glass.
		{"break-glass “Support Project” “Support Team” “Key Manager” for 1h outage INC-7", Command{Kind: CommandBreakGlass,
			Ask: ask("Support Project", "Support Team", "Key Manager"), Duration: time.Hour, Reason: "outage INC-7"}, ""},
		{"Break-Glass p g r outage", Command{Kind: CommandBreakGlass, Ask: ask("p", "g", "r"),
			Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"}, Reason: "outage"}, ""},
		{"break-glass", Command{}, "the project is missing: give `break-glass <project>"},
		{"break-glass p g", Command{}, "the role is missing: give `break-glass"},
		{"break-glass p g r", Command{}, "a reason is required"},

		// Commands on a request.
		{"status 42", Command{Kind: CommandStatus, ID: 42}, ""},
		{"STATUS #42", Command{Kind: CommandStatus, ID: 42}, ""},
		{"list", Command{Kind: CommandList}, ""},
		{" List  ", Command{Kind: CommandList}, ""},
		{"cancel 42", Command{Kind: CommandCancel, ID: 42}, ""},
		{"cancel #7", Command{Kind: CommandCancel, ID: 7}, ""},
		{"revoke #9", Command{Kind: CommandRevoke, ID: 9}, ""},
		{"extend 42 2h incident still open", Command{Kind: CommandExtend, ID: 42, Duration: 2 * time.Hour, Reason: "incident still open"}, ""},
		{"extend #42 1d  keep  spacing ", Command{Kind: CommandExtend, ID: 42, Duration: 24 * time.Hour, Reason: "keep  spacing"}, ""},
		{"list mine", Command{}, "`list` takes nothing after it"},
		{"status", Command{}, "give the request number: `status 42`"},
		{"status 4 2", Command{}, "takes only the request number"},
		{"cancel", Command{}, "give the request number"},
		{"cancel abc", Command{}, "not a request number"},
		{"cancel 0", Command{}, "not a request number"},
		{"revoke -1", Command{}, "not a request number"},
		{`revoke "42"`, Command{}, "not a request number"},
		{"cancel 99999999999999999999", Command{}, "not a request number"},
		{"extend", Command{}, "give the request number: `extend <id> <duration> <reason…>`"},
		{"extend 42", Command{}, "the duration is missing"},
		{"extend 42 soon please", Command{}, `"soon" is not a duration`},
		{"extend 42 2h", Command{}, "a reason is required"},

		// Malformed requests.
		{"proj_abc", Command{}, "the group is missing: give `<project> <group> <role>"},
		{"proj_abc group_01", Command{}, "the role is missing: give `<project> <group> <role> [for <duration>] <reason…>`"},
		{"proj_abc group_01 role_01", Command{}, "a reason is required"},
		{"proj_abc group_01 role_01    ", Command{}, "a reason is required"},
		{`"Support Team`, Command{}, "is not closed"},
		{`p "Support Team why`, Command{}, "is not closed"},
		{"p “Support Team why", Command{}, "is not closed"},
		{`"Support"Team g r why`, Command{}, "put a space after the quoted name"},
		{`"" g r why`, Command{}, "the project is missing"},
		{`p "  " r why`, Command{}, "the group is missing"},
		{"p \"a\x01b\" r why", Command{}, "cannot be part of a name"},
		{"p g " + strings.Repeat("r", approvals.MaxNameLen+1) + " why", Command{}, "the role is longer than 200"},
		{"proj_abc group_01 role_01 " + strings.Repeat("x", approvals.MaxReasonLen+1), Command{}, "keep it to 1000"},
		{"proj_abc group_01 role_01 \xff", Command{}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := ParseCommand(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCommand(%q) = %+v, %v; want an error mentioning %q", tt.text, got, err, tt.wantErr)
				}
				if strings.HasPrefix(err.Error(), "invalid request") {
					t.Errorf("error %q starts with the store's jargon", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.text, err)
			}
			if got != tt.want {
				t.Fatalf("ParseCommand(%q) =\n%+v, want\n%+v", tt.text, got, tt.want)
			}
		})
	}
}

func TestUsageShowsEveryForm(t *testing.T) {
	text := fmt.Sprintf(Usage, "/assign-role")
	for _, want := range []string{
		"`/assign-role` alone opens a form",
		"/assign-role <project> <group> <role> [for <duration>] <reason…>",
		"/assign-role <project_id> <group_id> <role_id> <reason…>",
		`/assign-role "Support Project" "Support Team" "Key Manager" for 4h`,
		"/assign-role status <id>", "/assign-role list", "/assign-role cancel <id>", "/assign-role revoke <id>",
		"/assign-role extend <id> <duration> <reason…>", "/assign-role break-glass <project> <group> <role> [for <duration>] <reason…>",
		"/assign-role help",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Usage lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "%!") {
		t.Errorf("Usage has a bad verb:\n%s", text)
	}
	// Every example in it parses as what it shows.
	for _, ex := range []string{
		`"Support Project" "Support Team" "Key Manager" for 4h rotating keys, INC-42`,
		"proj_abc group_01 role_01 need key rotation for incident 42",
		"extend 42 2h incident still open",
		`break-glass "Support Project" "Support Team" "Key Manager" for 1h outage INC-7`,
	} {
		if !strings.Contains(text, ex) {
			t.Errorf("Usage lacks the example %q", ex)
		}
		if _, err := ParseCommand(ex); err != nil {
			t.Errorf("Usage's example %q does not parse: %v", ex, err)
		}
	}
}

// render writes c back as command text, the way a person could type it: the
// oracle of FuzzParseCommand is that parsing it again yields c.
func render(c Command) string {
	name := func(s string, first bool) string {
		needsQuotes := strings.ContainsFunc(s, unicode.IsSpace) || strings.IndexFunc(s, quoteRune) == 0
		if first {
			for _, kw := range []string{"help", "list", "status", "cancel", "revoke", "extend", "break-glass"} {
				needsQuotes = needsQuotes || strings.EqualFold(s, kw)
			}
		}
		if needsQuotes {
			return `"` + s + `"`
		}
		return s
	}
	grant := func() string {
		s := name(c.Ask.Project, c.Kind == CommandRequest) + " " + name(c.Ask.Group, false) + " " + name(c.Ask.Role, false)
		if c.Duration != 0 {
			s += " for " + approvals.FormatDuration(c.Duration)
		}
		return s + " " + c.Reason
	}
	switch c.Kind {
	case CommandModal:
		return ""
	case CommandHelp, CommandList:
		return c.Kind.String()
	case CommandStatus, CommandCancel, CommandRevoke:
		return fmt.Sprintf("%s %d", c.Kind, c.ID)
	case CommandExtend:
		return fmt.Sprintf("extend #%d %s %s", c.ID, approvals.FormatDuration(c.Duration), c.Reason)
	case CommandBreakGlass:
		return "break-glass " + grant()
	}
	return grant()
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"", "help", "list", "status #3", "cancel 1", "revoke 2", "extend 4 1h30m why",
		"proj_abc group_01 role_01 need key rotation", "a b c d\te\nf", "../ %2F x y", "p g r <!here>",
		`"Support Project" "Support Team" "Key Manager" for 4h rotating keys, INC-42`,
		"“Support Project” “Support Team” ”Key Manager“ for 2d1h why", "break-glass p “g g” r for 90s now",
		"p g r for rotating keys", "p g r for 2 weeks", `"a"b c d e`, "0\v0 0 0", "p\u00a0g r\u00a0x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text)
		if err != nil {
			if strings.HasPrefix(err.Error(), "invalid request") {
				t.Fatalf("error %q starts with the store's jargon", err)
			}
			return
		}
		switch c.Kind {
		case CommandRequest, CommandBreakGlass:
			if err := c.Ask.Validate(); err != nil {
				t.Fatalf("accepted names the store refuses: %+v: %v", c.Ask, err)
			}
			if c.Target != (approvals.Target{}) {
				if c.Target != (approvals.Target{ProjectID: c.Ask.Project, GroupID: c.Ask.Group, RoleID: c.Ask.Role}) {
					t.Fatalf("Target %+v is not Ask %+v", c.Target, c.Ask)
				}
				n := approvals.NewRequest{Target: c.Target, Reason: c.Reason, Requester: "U1", ChannelID: "C1"}
				if err := n.Validate(); err != nil {
					t.Fatalf("accepted a request the store refuses: %q: %v", text, err)
				}
			} else if approvals.ValidID(c.Ask.Project) && approvals.ValidID(c.Ask.Group) && approvals.ValidID(c.Ask.Role) {
				t.Fatalf("three ids %+v but no Target", c.Ask)
			}
			fallthrough
		case CommandExtend:
			if r, err := approvals.CleanReason(c.Reason); err != nil || r != c.Reason {
				t.Fatalf("reason %q is not clean: %v", c.Reason, err)
			}
			if c.Duration < 0 || c.Duration > approvals.MaxDuration || (c.Kind == CommandExtend && c.Duration == 0) {
				t.Fatalf("duration %s out of range", c.Duration)
			}
			if !strings.Contains(text, c.Reason) {
				t.Fatalf("reason %q is not as typed in %q", c.Reason, text)
			}
		case CommandStatus, CommandCancel, CommandRevoke:
			if c.ID == 0 {
				t.Fatal("id 0 accepted")
			}
		}
		again, err := ParseCommand(render(c))
		if err != nil || again != c {
			t.Fatalf("%q parsed as %+v; rendered as %q it parses as %+v, %v", text, c, render(c), again, err)
		}
	})
}

// FuzzParseCommandForms builds the text of a request from its parts, as a
// person would type it, and checks the parser gives back those parts: the
// oracle is the grammar in DESIGN.md, not the parser.
func FuzzParseCommandForms(f *testing.F) {
	f.Add("Support Project", "Support Team", "Key Manager", uint8(1), "4h", "rotating keys, INC-42", false)
	f.Add("proj_abc", "group_01", "role_01", uint8(0), "", "need key rotation for incident 42", false)
	f.Add("p", "Team “A”", "r", uint8(2), "1h30m", "for rotating keys", true)
	f.Add("Café", "g", "R", uint8(3), "2d", "a\u00a0 b", false)
	f.Fuzz(func(t *testing.T, project, group, role string, quotes uint8, duration, reason string, breakGlass bool) {
		// Only inputs a person can express: names without quote marks when
		// they need quotes, names a bare word can hold when they do not,
		// a clean reason that does not itself start with a duration.
		parts := []string{project, group, role}
		for i, p := range parts {
			if p != strings.TrimSpace(p) || strings.ContainsFunc(p, quoteRune) {
				return
			}
			if strings.ContainsFunc(p, unicode.IsSpace) || quotes&(1<<i) != 0 {
				parts[i] = [...]string{`"%s"`, "“%s”", "”%s“", `“%s"`}[(int(quotes)+i)%4]
				parts[i] = fmt.Sprintf(parts[i], p)
			}
		}
		if err := (approvals.Ask{Project: project, Group: group, Role: role}).Validate(); err != nil {
			return
		}
		if r, err := approvals.CleanReason(reason); err != nil || r != reason {
			return
		}
		var want time.Duration
		if duration != "" {
			d, err := approvals.ParseDuration(duration)
			if err != nil || strings.ContainsFunc(duration, unicode.IsSpace) {
				return
			}
			want = d
		}
		if first := strings.Fields(reason)[0]; strings.EqualFold(first, "for") {
			if w := strings.Fields(reason); len(w) > 1 && w[1][0] >= '0' && w[1][0] <= '9' {
				return // "for 4h …" as a reason reads as a duration, by design
			}
		}
		if !breakGlass && !strings.ContainsFunc(project, unicode.IsSpace) && quotes&1 == 0 {
			for _, kw := range []string{"help", "list", "status", "cancel", "revoke", "extend", "break-glass"} {
				if strings.EqualFold(project, kw) {
					return // a bare keyword is the keyword
				}
			}
		}
		text := strings.Join(parts, " ")
		if duration != "" {
			text += " for " + duration
		}
		text += " " + reason
		kind := CommandRequest
		if breakGlass {
			text, kind = "break-glass "+text, CommandBreakGlass
		}
		c, err := ParseCommand(text)
		if err != nil {
			t.Fatalf("ParseCommand(%q): %v", text, err)
		}
		if c.Kind != kind || c.Ask != (approvals.Ask{Project: project, Group: group, Role: role}) || c.Duration != want || c.Reason != reason {
			t.Fatalf("ParseCommand(%q) = %+v, want %s of %q %q %q for %s because %q", text, c, kind, project, group, role, want, reason)
		}
		if !utf8.ValidString(c.Reason) {
			t.Fatal("reason not UTF-8")
		}
	})
}
