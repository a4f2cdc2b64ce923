package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

func TestLoadPolicyEveryKey(t *testing.T) {
	t.Parallel()
	path := writePolicy(t, `
rules:
  - name: owners
    projects: [proj_prod, "Support Project"]
    groups: ["*"]
    roles: [Owner]
    channels: [C0OPS, G0PRIVATE]
    requesters: [U0CARL, W0GRID, S0ENG]
    approvers: [S0PLATFORM, U0ANA]
    approvals_required: 2
    request_ttl: 2d
    default_duration: 4h
    max_duration: 1d12h
    reason_pattern: '[A-Z]+-[0-9]+'
    remind_after: 90m
    break_glass: true
  - name: readers
    approvers: [U0ANA]
`)
	p, err := loadPolicy(path)
	if err != nil {
		t.Fatalf("loadPolicy: %v", err)
	}
	want := approvals.Policy{Rules: []approvals.Rule{{
		Name:              "owners",
		Projects:          []string{"proj_prod", "Support Project"},
		Groups:            []string{"*"},
		Roles:             []string{"Owner"},
		Channels:          []string{"C0OPS", "G0PRIVATE"},
		Requesters:        []string{"U0CARL", "W0GRID", "S0ENG"},
		Approvers:         []string{"S0PLATFORM", "U0ANA"},
		ApprovalsRequired: 2,
		RequestTTL:        48 * time.Hour,
		DefaultDuration:   4 * time.Hour,
		MaxDuration:       36 * time.Hour,
		ReasonPattern:     `[A-Z]+-[0-9]+`,
		RemindAfter:       90 * time.Minute,
		BreakGlass:        true,
	}, {
		// The defaults of every key left out.
		Name:              "readers",
		Approvers:         []string{"U0ANA"},
		ApprovalsRequired: 1,
		RequestTTL:        24 * time.Hour,
	}}}
	if !policiesEqual(p, want) {
		t.Fatalf("loadPolicy =\n%+v\nwant\n%+v", p, want)
	}
}

func policiesEqual(a, b approvals.Policy) bool {
	return slices.EqualFunc(a.Rules, b.Rules, func(x, y approvals.Rule) bool {
		return x.Name == y.Name && slices.Equal(x.Projects, y.Projects) && slices.Equal(x.Groups, y.Groups) &&
			slices.Equal(x.Roles, y.Roles) && slices.Equal(x.Channels, y.Channels) &&
			slices.Equal(x.Requesters, y.Requesters) && slices.Equal(x.Approvers, y.Approvers) &&
			x.ApprovalsRequired == y.ApprovalsRequired && x.RequestTTL == y.RequestTTL &&
			x.DefaultDuration == y.DefaultDuration && x.MaxDuration == y.MaxDuration &&
			x.ReasonPattern == y.ReasonPattern && x.RemindAfter == y.RemindAfter && x.BreakGlass == y.BreakGlass
	})
}

func TestLoadPolicyDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"1.5h", 90 * time.Minute}, // Go's form
		{"2d", 48 * time.Hour},     // days, as the slash command reads them
		{"1d12h", 36 * time.Hour},
		{"0", 0},
		{"", 0}, // an empty value is the key left out
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, problems := parsePolicy([]byte("rules:\n  - name: r\n    approvers: [U0ANA]\n    max_duration: " + tt.in + "\n"))
			if len(problems) > 0 {
				t.Fatalf("max_duration: %s: %v", tt.in, problems)
			}
			if got := p.Rules[0].MaxDuration; got != tt.want {
				t.Errorf("max_duration: %s = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestLoadPolicyProblems(t *testing.T) {
	t.Parallel()
	const ok = "rules:\n  - name: r\n    approvers: [U0ANA]\n"
	tests := []struct {
		name string
		file string
		want []string // every problem, in order; each is a substring of its line
	}{
		{"unknown key in a rule", ok + "    aprovers: [U0BOB]\n", []string{
			`line 4: rule 1 "r", aprovers: is not a known key; a rule has: name, projects, groups, roles, channels, requesters, approvers, approvals_required, request_ttl, default_duration, max_duration, reason_pattern, remind_after, break_glass`}},
		{"a misspelt key is not taken for the real one", "rules:\n  - name: r\n    aprovers: [U0ANA]\n", []string{
			`line 2: rule 1 "r", approvers: is required: list the people or user groups who may approve`,
			`line 3: rule 1 "r", aprovers: is not a known key`}},
		{"unknown top-level key", "rule:\n  - name: r\n", []string{
			`line 1: rule: is not a known key: the file has one key, rules:`,
			`line 1: rules: is missing: the file needs a rules: list`}},
		{"key given twice", ok + "    approvers: [U0BOB]\n", []string{
			`line 4: rule 1 "r", approvers: is given twice (first on line 3)`}},
		{"bad duration", ok + "    request_ttl: 1 day\n", []string{
			`line 4: rule 1 "r", request_ttl: "1 day" is not a duration: use a number and a unit s, m, h or d, like 30m, 4h, 2d or 1h30m`}},
		{"duration without unit", ok + "    default_duration: 4\n", []string{
			`line 4: rule 1 "r", default_duration: "4" is not a duration`}},
		{"duration as a list", ok + "    remind_after: [2h]\n", []string{
			`line 4: rule 1 "r", remind_after: must be a duration, like 4h, not a list or mapping`}},
		{"negative duration", ok + "    max_duration: -1h\n", []string{
			`line 4: rule 1 "r", max_duration: must not be negative`}},
		{"ttl out of range", ok + "    request_ttl: 31d\n", []string{
			`line 4: rule 1 "r", request_ttl: must be between 1m and 720h, like 24h`}},
		{"default longer than max", ok + "    default_duration: 8h\n    max_duration: 4h\n", []string{
			`line 4: rule 1 "r", default_duration: is 8h, longer than max_duration (4h)`}},
		{"reminder after expiry", ok + "    request_ttl: 1h\n    remind_after: 2h\n", []string{
			`line 5: rule 1 "r", remind_after: is 2h, not shorter than request_ttl (1h)`}},
		{"bad regexp", ok + "    reason_pattern: '[A-Z+'\n", []string{
			"line 4: rule 1 \"r\", reason_pattern: is not a valid regular expression: error parsing regexp: missing closing ]: `[A-Z+`"}},
		{"regexp as a list", ok + "    reason_pattern: [a]\n", []string{
			`line 4: rule 1 "r", reason_pattern: must be a single value, not a list or mapping`}},
		{"approvals not a number", ok + "    approvals_required: two\n", []string{
			`line 4: rule 1 "r", approvals_required: must be a whole number, like 2`}},
		{"approvals quoted", ok + "    approvals_required: \"2\"\n", []string{
			`approvals_required: must be a whole number`}},
		{"zero approvals", ok + "    approvals_required: 0\n", []string{
			`line 4: rule 1 "r", approvals_required: must be at least 1`}},
		{"more approvals than people", ok + "    approvals_required: 2\n", []string{
			`line 4: rule 1 "r", approvals_required: is 2 but approvers lists only 1 people`}},
		{"a user group may hold enough people", "rules:\n  - name: r\n    approvers: [S0PLATFORM]\n    approvals_required: 3\n", nil},
		{"break_glass not a bool", ok + "    break_glass: yes\n", []string{
			`line 4: rule 1 "r", break_glass: must be true or false`}},
		{"missing name", "rules:\n  - approvers: [U0ANA]\n", []string{
			`line 2: rule 1, name: is missing: every rule needs a name, shown in the approval message`}},
		{"name as a list", "rules:\n  - name: [r]\n    approvers: [U0ANA]\n", []string{
			`line 2: rule 1, name: must be a single value, not a list or mapping`}},
		{"duplicate names", ok + "  - name: R\n    approvers: [U0ANA]\n", []string{
			`line 4: rule 2 "R", name: "R" is also the name of rule 1: names must be unique`}},
		{"missing approvers", "rules:\n  - name: r\n", []string{
			`line 2: rule 1 "r", approvers: is required: list the people or user groups who may approve`}},
		{"empty approvers", "rules:\n  - name: r\n    approvers: []\n", []string{
			`line 3: rule 1 "r", approvers: is an empty list: leave the key out or write ["*"] to match anything`,
		}},
		{"anyone approves", "rules:\n  - name: r\n    approvers: [\"*\"]\n", []string{
			`line 3: rule 1 "r", approvers: cannot be "*": list the people or user groups who may approve`}},
		{"approver not an id", "rules:\n  - name: r\n    approvers: [U0ANA, \"@ana\"]\n", []string{
			`line 3: rule 1 "r", approvers: "@ana" is not a Slack user id (U…, W…) or user-group id (S…): copy it from the person's or group's profile`}},
		{"channel as requester", ok + "    requesters: [C0OPS]\n", []string{
			`line 4: rule 1 "r", requesters: "C0OPS" is not a Slack user id (U…, W…) or user-group id (S…)`}},
		{"channel by name", ok + "    channels: [\"#ops\"]\n", []string{
			`line 4: rule 1 "r", channels: "#ops" is not a Slack channel id (C…, G…, D…): copy it from the channel's details, not its #name`}},
		{"empty list is neither anyone nor nobody", ok + "    requesters: []\n", []string{
			`line 4: rule 1 "r", requesters: is an empty list: leave the key out or write ["*"] to match anything`}},
		{"star next to others", ok + "    projects: [\"*\", proj_1]\n", []string{
			`line 4: rule 1 "r", projects: has "*" next to other entries`}},
		{"list given as a word", ok + "    roles: Reader\n", []string{
			`line 4: rule 1 "r", roles: must be a list, like ["*"] or [Reader, "Key Manager"]`}},
		{"list of lists", ok + "    groups: [[a]]\n", []string{
			`line 4: rule 1 "r", groups: must list single values, not lists or mappings`}},
		{"empty entry", ok + "    groups: [a, ~]\n", []string{
			`line 4: rule 1 "r", groups: has an empty entry`}},
		{"rule not a mapping", ok + "  - readers\n", []string{
			`line 4: rule 2: must be a mapping of keys (name:, approvers:, …)`}},
		{"rules not a list", "rules:\n  name: r\n", []string{
			`line 2: rules: must be a list of rules, each starting with - name:`}},
		{"no rules", "rules: []\n", []string{
			`line 1: rules: the policy has no rules: it would refuse every request`}},
		{"rules empty", "rules:\n", []string{
			`line 1: rules: the policy has no rules`}},
		{"file not a mapping", "- name: r\n", []string{
			`line 1: the file must be a mapping with one key, rules:`}},
		{"empty file", "", []string{"the file is empty: it needs a rules: list"}},
		{"only comments", "# rules: to come\n", []string{"the file is empty: it needs a rules: list"}},
		{"empty document", "---\n", []string{"the file holds no rules: it needs a rules: list"}},
		{"several documents", ok + "---\n" + ok, []string{
			"line 4: the file holds more than one YAML document (---): put every rule under one rules: list"}},
		{"not YAML", "rules: [\n", []string{"line 2: the file is not valid YAML (column 1): did not find expected node content"}},
		{"bad indentation", ok + "   approvals_required: 2\n", []string{"line 4: the file is not valid YAML (column 4): did not find expected '-' indicator"}},
		{"every problem at once, in two rules", `
rules:
  - name: a
    approvers: [U0ANA]
    approvals_required: 0
    request_ttl: soon
  - name: b
    approver: [U0ANA]
    channels: [general]
`, []string{
			`line 5: rule 1 "a", approvals_required: must be at least 1`,
			`line 6: rule 1 "a", request_ttl: "soon" is not a duration`,
			`line 7: rule 2 "b", approvers: is required`,
			`line 8: rule 2 "b", approver: is not a known key`,
			`line 9: rule 2 "b", channels: "general" is not a Slack channel id`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problems := parsePolicy([]byte(tt.file))
			var got []string
			for _, p := range problems {
				got = append(got, p.String())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q\nwant it to contain %q", i+1, got[i], w)
				}
			}
		})
	}
}

func TestLoadPolicyErrors(t *testing.T) {
	t.Parallel()
	t.Run("missing file", func(t *testing.T) {
		_, err := loadPolicy(filepath.Join(t.TempDir(), "nope.yml"))
		if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "read policy file: ") {
			t.Fatalf("loadPolicy = %v, want a read error", err)
		}
	})
	t.Run("problems are listed under the path", func(t *testing.T) {
		path := writePolicy(t, "rules:\n  - name: r\n    aprovers: [U0ANA]\n")
		_, err := loadPolicy(path)
		var pe *approvals.PolicyError
		if !errors.As(err, &pe) || len(pe.Problems) != 2 {
			t.Fatalf("loadPolicy = %v, want a *PolicyError with 2 problems", err)
		}
		want := "policy file " + path + " has 2 problems:\nline 2: rule 1 \"r\", approvers: is required"
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("loadPolicy error =\n%s\nwant it to start with\n%s", err, want)
		}
	})
}

func writePolicy(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExamplePolicyDoesWhatItSays loads deploy/policy.example.yml and checks
// the promises of its comments: anyone may ask for a reader role with one
// approval; owner roles need two platform-team approvals and a ticket id;
// on-call may break glass from the incidents channel for at most 1h.
func TestExamplePolicyDoesWhatItSays(t *testing.T) {
	t.Parallel()
	p, err := loadPolicy("../../deploy/policy.example.yml")
	if err != nil {
		t.Fatalf("the example policy does not load: %v", err)
	}
	oncall := map[string]bool{"U0ONCALL": true}
	ask := func(role, channel, requester string) (approvals.Rule, error) {
		t.Helper()
		return p.Match(approvals.MatchQuery{
			Project: approvals.Project{ID: "proj_1", Name: "Support Project"},
			Group:   approvals.Group{ID: "group_1", Name: "Support Team"},
			Role:    approvals.Role{ID: "role_" + strings.ToLower(role), Name: role},
			Channel: channel, Requester: requester,
			MemberOf: func(id string) (bool, error) { return id == "S0ONCALL" && oncall[requester], nil },
		})
	}
	mustMatch := func(role, channel, requester, want string) approvals.Rule {
		t.Helper()
		r, err := ask(role, channel, requester)
		if err != nil || r.Name != want {
			t.Fatalf("%s asks for %s in %s: rule %q, %v; want rule %q", requester, role, channel, r.Name, err, want)
		}
		return r
	}

	t.Run("anyone may ask for a reader role with one approval", func(t *testing.T) {
		for _, who := range []string{"U0ANYONE", "U0ONCALL"} {
			for _, where := range []string{"C0GENERAL", "C0INCIDENTS"} {
				r := mustMatch("reader", where, who, "readers")
				if r.ApprovalsRequired != 1 || r.BreakGlass {
					t.Errorf("readers: %d approvals, break-glass %v", r.ApprovalsRequired, r.BreakGlass)
				}
			}
		}
	})
	t.Run("owner roles need two platform-team approvals and a ticket id", func(t *testing.T) {
		r := mustMatch("Owner", "C0GENERAL", "U0ANYONE", "owners")
		if r.ApprovalsRequired != 2 || !slices.Equal(r.Approvers, []string{"S0PLATFORM"}) || r.BreakGlass {
			t.Errorf("owners: %d approvals by %v, break-glass %v", r.ApprovalsRequired, r.Approvers, r.BreakGlass)
		}
		if err := r.CheckReason("rotating keys"); !errors.Is(err, approvals.ErrInvalid) {
			t.Errorf("a reason without a ticket id: %v, want refused", err)
		}
		if err := r.CheckReason("rotating keys, OPS-42"); err != nil {
			t.Errorf("a reason with a ticket id: %v", err)
		}
		if _, err := r.GrantDuration(0); err != nil {
			t.Errorf("the default duration: %v", err)
		}
		if _, err := r.GrantDuration(8 * 24 * time.Hour); err == nil {
			t.Error("8d granted; the rule promises at most 7d")
		}
	})
	t.Run("on-call may break glass from the incidents channel, for at most 1h", func(t *testing.T) {
		r := mustMatch("Owner", "C0INCIDENTS", "U0ONCALL", "on-call")
		if !r.BreakGlass || r.BreakGlassMax() != time.Hour || r.ApprovalsRequired < 2 {
			t.Errorf("on-call: break-glass %v for %v, %d approvals otherwise", r.BreakGlass, r.BreakGlassMax(), r.ApprovalsRequired)
		}
		if _, err := r.GrantDuration(2 * time.Hour); err == nil {
			t.Error("on-call granted 2h; the rule promises at most 1h")
		}
		if err := r.CheckReason("INC-7 database down"); err != nil {
			t.Errorf("an incident id: %v", err)
		}
		if r := mustMatch("Owner", "C0INCIDENTS", "U0ANYONE", "owners"); r.BreakGlass {
			t.Error("someone not on call may break glass")
		}
		if r := mustMatch("Owner", "C0GENERAL", "U0ONCALL", "owners"); r.BreakGlass {
			t.Error("on-call may break glass outside the incidents channel")
		}
	})
	t.Run("any other role is refused", func(t *testing.T) {
		_, err := ask("Member", "C0GENERAL", "U0ANYONE")
		if !errors.Is(err, approvals.ErrNoRule) {
			t.Fatalf("Member: %v, want no rule", err)
		}
	})
}
