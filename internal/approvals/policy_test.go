package approvals

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// isGroupForTest stands in for slackapp.IsUserGroup: the domain is told
// which ids are groups, it does not know Slack's prefixes.
func isGroupForTest(id string) bool { return strings.HasPrefix(id, "S") }

// validRule is a rule that passes Validate; tests change one field.
func validRule(name string) Rule {
	return Rule{Name: name, Approvers: []string{"U0ANA", "U0BOB"}, ApprovalsRequired: 1, RequestTTL: 24 * time.Hour}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(r *Rule)
		want   []string // every problem, as rendered
	}{
		{"valid", func(r *Rule) {}, nil},
		{"valid with everything", func(r *Rule) {
			r.Projects, r.Groups, r.Roles = []string{"proj_1", "Support"}, []string{"*"}, []string{"Reader"}
			r.Channels, r.Requesters = []string{"C0OPS"}, []string{"U0CARL", "S0ENG"}
			r.Approvers, r.ApprovalsRequired = []string{"S0PLATFORM"}, 3
			r.DefaultDuration, r.MaxDuration, r.RemindAfter = 4*time.Hour, 8*time.Hour, 2*time.Hour
			r.ReasonPattern, r.BreakGlass = `[A-Z]+-[0-9]+`, true
		}, nil},
		{"missing name", func(r *Rule) { r.Name = " " }, []string{
			`rule 1 " ", name: is missing: every rule needs a name, shown in the approval message`}},
		{"control character in name", func(r *Rule) { r.Name = "a\nb" }, []string{
			`rule 1 "a\nb", name: contains characters that cannot be shown`}},
		{"long name", func(r *Rule) { r.Name = strings.Repeat("n", 81) }, []string{
			`name: is longer than 80 characters`}},
		{"no approvers", func(r *Rule) { r.Approvers = nil }, []string{
			`rule 1 "r", approvers: is required: list the people or user groups who may approve`}},
		{"anyone approves", func(r *Rule) { r.Approvers = []string{"*"} }, []string{
			`rule 1 "r", approvers: cannot be "*": list the people or user groups who may approve`}},
		{"duplicate approver", func(r *Rule) { r.Approvers = []string{"U0ANA", "U0ANA"} }, []string{
			`rule 1 "r", approvers: lists "U0ANA" twice`}},
		{"zero approvals", func(r *Rule) { r.ApprovalsRequired = 0 }, []string{
			`rule 1 "r", approvals_required: must be at least 1`}},
		{"too many approvals", func(r *Rule) { r.ApprovalsRequired = 21 }, []string{
			`rule 1 "r", approvals_required: must be at most 20`}},
		{"more approvals than people", func(r *Rule) { r.ApprovalsRequired = 3 }, []string{
			`rule 1 "r", approvals_required: is 3 but approvers lists only 2 people`}},
		{"a group may hold enough people", func(r *Rule) {
			r.Approvers, r.ApprovalsRequired = []string{"U0ANA", "S0PLATFORM"}, 5
		}, nil},
		{"ttl too short", func(r *Rule) { r.RequestTTL = 30 * time.Second }, []string{
			`rule 1 "r", request_ttl: must be between 1m and 720h, like 24h`}},
		{"ttl too long", func(r *Rule) { r.RequestTTL = 721 * time.Hour }, []string{
			`request_ttl: must be between 1m and 720h`}},
		{"ttl bounds are allowed", func(r *Rule) { r.RequestTTL = time.Minute }, nil},
		{"negative default duration", func(r *Rule) { r.DefaultDuration = -time.Hour }, []string{
			`rule 1 "r", default_duration: must not be negative`}},
		{"negative max duration", func(r *Rule) { r.MaxDuration = -time.Hour }, []string{
			`rule 1 "r", max_duration: must not be negative`}},
		{"max duration beyond a year", func(r *Rule) { r.MaxDuration = 367 * 24 * time.Hour }, []string{
			`rule 1 "r", max_duration: is longer than the longest grant rolegate makes (366d)`}},
		{"default longer than max", func(r *Rule) { r.DefaultDuration, r.MaxDuration = 8*time.Hour, 4*time.Hour }, []string{
			`rule 1 "r", default_duration: is 8h, longer than max_duration (4h)`}},
		{"default with no max", func(r *Rule) { r.DefaultDuration = 8 * time.Hour }, nil},
		{"negative reminder", func(r *Rule) { r.RemindAfter = -time.Minute }, []string{
			`rule 1 "r", remind_after: must not be negative`}},
		{"reminder after expiry", func(r *Rule) { r.RemindAfter = 24 * time.Hour }, []string{
			`rule 1 "r", remind_after: is 1d, not shorter than request_ttl (1d): the request would expire before the reminder`}},
		{"bad regexp", func(r *Rule) { r.ReasonPattern = `INC-[0-9+` }, []string{
			"rule 1 \"r\", reason_pattern: is not a valid regular expression: error parsing regexp: missing closing ]: `[0-9+`"}},
		{"regexp that requires nothing", func(r *Rule) { r.ReasonPattern = `[A-Z]*` }, []string{
			`rule 1 "r", reason_pattern: [A-Z]* matches an empty reason, so it requires nothing`}},
		{"star next to others", func(r *Rule) { r.Projects = []string{"*", "proj_1"} }, []string{
			`rule 1 "r", projects: has "*" next to other entries: "*" alone matches anything; remove it or the others`}},
		{"empty entry", func(r *Rule) { r.Channels = []string{"C0OPS", ""} }, []string{
			`rule 1 "r", channels: has an empty entry`}},
		{"duplicate in groups, roles, requesters", func(r *Rule) {
			r.Groups, r.Roles, r.Requesters = []string{"g", "g"}, []string{"Reader", "Reader"}, []string{"U0A", "U0A"}
		}, []string{`groups: lists "g" twice`, `roles: lists "Reader" twice`, `requesters: lists "U0A" twice`}},
		{"every problem at once", func(r *Rule) {
			r.Name, r.Approvers, r.ApprovalsRequired, r.RequestTTL, r.ReasonPattern = "", nil, 0, 0, "("
		}, []string{
			`rule 1, name: is missing`,
			`rule 1, approvers: is required`,
			`rule 1, approvals_required: must be at least 1`,
			`rule 1, request_ttl: must be between 1m and 720h`,
			`rule 1, reason_pattern: is not a valid regular expression`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRule("r")
			tt.change(&r)
			err := Policy{Rules: []Rule{r}}.Validate(isGroupForTest)
			checkProblems(t, err, tt.want)
		})
	}
}

// checkProblems asserts err is a *PolicyError with exactly len(want)
// problems, the i-th containing want[i].
func checkProblems(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("Validate = %v, want no problems", err)
		}
		return
	}
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("Validate = %v (%T), want a *PolicyError", err, err)
	}
	if len(pe.Problems) != len(want) {
		t.Fatalf("Validate found %d problems, want %d:\n%v", len(pe.Problems), len(want), err)
	}
	for i, w := range want {
		if got := pe.Problems[i].String(); !strings.Contains(got, w) {
			t.Errorf("problem %d = %q, want it to contain %q", i+1, got, w)
		}
	}
}

func TestPolicyValidateAcrossRules(t *testing.T) {
	t.Parallel()
	t.Run("duplicate names, case-insensitively", func(t *testing.T) {
		p := Policy{Rules: []Rule{validRule("readers"), validRule("owners"), validRule("Readers")}}
		checkProblems(t, p.Validate(isGroupForTest), []string{`rule 3 "Readers", name: "Readers" is also the name of rule 1: names must be unique`})
	})
	t.Run("no rules", func(t *testing.T) {
		checkProblems(t, Policy{}.Validate(isGroupForTest), []string{"rules: the policy has no rules: it would refuse every request"})
	})
	t.Run("problems name their rule", func(t *testing.T) {
		bad := validRule("owners")
		bad.ApprovalsRequired = 0
		p := Policy{Rules: []Rule{validRule("readers"), bad}}
		checkProblems(t, p.Validate(isGroupForTest), []string{`rule 2 "owners", approvals_required: must be at least 1`})
	})
	t.Run("without isGroup the people count is not checked", func(t *testing.T) {
		r := validRule("r")
		r.ApprovalsRequired = 3
		if err := (Policy{Rules: []Rule{r}}).Validate(nil); err != nil {
			t.Fatalf("Validate(nil) = %v, want nil", err)
		}
	})
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Rule: 1, Name: "readers", Field: "roles", Line: 12, Message: "m"}, `line 12: rule 2 "readers", roles: m`},
		{Problem{Rule: 0, Field: "name", Message: "m"}, `rule 1, name: m`},
		{Problem{Rule: 0, Name: "x", Message: "m"}, `rule 1 "x": m`},
		{Problem{Rule: -1, Field: "rules", Line: 1, Message: "m"}, `line 1: rules: m`},
		{Problem{Rule: -1, Message: "m"}, `m`},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestDefaultPolicyMatchesEverything(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy([]string{"U0ANA", "S0OPS"}, 2, 2*time.Hour)
	if err := p.Validate(isGroupForTest); err != nil {
		t.Fatalf("DefaultPolicy does not validate: %v", err)
	}
	r, err := p.Match(MatchQuery{
		Project: Project{ID: "proj_1", Name: "Any"}, Group: Group{ID: "g_1"}, Role: Role{ID: "r_1", Name: "Owner"},
		Channel: "C0ANY", Requester: "U0ANYONE",
	})
	if err != nil {
		t.Fatalf("Match = %v, want the default rule", err)
	}
	if r.Name != "default" || r.ApprovalsRequired != 2 || r.RequestTTL != 2*time.Hour || !slices.Equal(r.Approvers, []string{"U0ANA", "S0OPS"}) {
		t.Errorf("rule = %+v", r)
	}
	if d, err := r.GrantDuration(0); d != 0 || err != nil {
		t.Errorf("GrantDuration(0) = %v, %v; want permanent, as before policies", d, err)
	}
	if d := DefaultPolicy([]string{"U0ANA"}, 0, 0).Rules[0]; d.ApprovalsRequired != 1 || d.RequestTTL != 24*time.Hour {
		t.Errorf("zero values: %+v, want 1 approval and 24h", d)
	}
}

// The policy of deploy/policy.example.yml, in the domain's terms.
var (
	readersRule = Rule{Name: "readers", Roles: []string{"Reader"}, Approvers: []string{"S0PLATFORM"}, ApprovalsRequired: 1, RequestTTL: 24 * time.Hour}
	ownersRule  = Rule{Name: "owners", Projects: []string{"proj_prod"}, Roles: []string{"Owner", "role_admin"},
		Requesters: []string{"U0CARL", "S0ENG", "S0SRE"}, Approvers: []string{"S0PLATFORM"}, ApprovalsRequired: 2,
		RequestTTL: 24 * time.Hour, ReasonPattern: `[A-Z]+-[0-9]+`}
	opsRule = Rule{Name: "ops-channel", Channels: []string{"C0OPS"}, Approvers: []string{"U0ANA"}, ApprovalsRequired: 1, RequestTTL: time.Hour}
)

func TestPolicyMatch(t *testing.T) {
	t.Parallel()
	policy := Policy{Rules: []Rule{readersRule, ownersRule, opsRule}}
	members := map[string][]string{"S0ENG": {"U0DEV"}, "S0SRE": {"U0SRE"}}
	memberOf := func(user string) func(string) (bool, error) {
		return func(id string) (bool, error) {
			if !isGroupForTest(id) {
				return false, nil
			}
			return slices.Contains(members[id], user), nil
		}
	}
	q := func(project, role, channel, requester string) MatchQuery {
		return MatchQuery{
			Project: Project{ID: "proj_" + strings.ToLower(project), Name: project},
			Group:   Group{ID: "group_eng", Name: "Engineering"},
			Role:    Role{ID: "role_" + strings.ToLower(role), Name: role},
			Channel: channel, Requester: requester, MemberOf: memberOf(requester),
		}
	}
	tests := []struct {
		name     string
		q        MatchQuery
		wantRule string
		wantErr  string // the whole NoRuleError message
	}{
		{"reader by name, anyone, anywhere", q("Support", "Reader", "C0ANY", "U0NEW"), "readers", ""},
		{"role names are case-insensitive", q("Support", "rEADER", "C0ANY", "U0NEW"), "readers", ""},
		{"role by id", q("Prod", "Admin", "C0ANY", "U0CARL"), "owners", ""},
		{"owner, listed requester", q("Prod", "Owner", "C0ANY", "U0CARL"), "owners", ""},
		{"owner, requester through a group", q("Prod", "Owner", "C0ANY", "U0DEV"), "owners", ""},
		{"first matching rule wins", q("Prod", "Reader", "C0OPS", "U0NEW"), "readers", ""},
		{"a later rule matches what earlier ones do not", q("Dev", "Owner", "C0OPS", "U0NEW"), "ops-channel", ""},
		{"not among requesters", q("Prod", "Owner", "C0ANY", "U0NEW"), "",
			"no rule allows role Owner for group Engineering in project Prod: rule readers: role Owner is not among its roles; rule owners: you are not among its requesters; rule ops-channel: requests are not allowed in this channel"},
		{"every equally close rule says what failed", q("Dev", "Owner", "C0ANY", "U0CARL"), "",
			"no rule allows role Owner for group Engineering in project Dev: rule readers: role Owner is not among its roles; rule owners: project Dev is not among its projects; rule ops-channel: requests are not allowed in this channel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := policy.Match(tt.q)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Match = %v, want rule %s", err, tt.wantRule)
				}
				if r.Name != tt.wantRule {
					t.Fatalf("Match = rule %s, want %s", r.Name, tt.wantRule)
				}
				return
			}
			if !errors.Is(err, ErrNoRule) {
				t.Fatalf("Match = %v, %v; want ErrNoRule", r.Name, err)
			}
			var nr *NoRuleError
			if !errors.As(err, &nr) {
				t.Fatalf("Match error %T, want *NoRuleError", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Match error = %q\nwant it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestPolicyMatchEachClause(t *testing.T) {
	t.Parallel()
	base := MatchQuery{
		Project: Project{ID: "proj_1", Name: "Support"}, Group: Group{ID: "g_1", Name: "Eng"},
		Role: Role{ID: "r_1", Name: "Reader"}, Channel: "C0OPS", Requester: "U0ANA",
	}
	tests := []struct {
		name    string
		rule    func(r *Rule)
		wantErr string // "" when the rule matches base
	}{
		{"empty lists match anything", func(r *Rule) {}, ""},
		{"stars match anything", func(r *Rule) {
			r.Projects, r.Groups, r.Roles, r.Channels, r.Requesters = []string{"*"}, []string{"*"}, []string{"*"}, []string{"*"}, []string{"*"}
		}, ""},
		{"project by id", func(r *Rule) { r.Projects = []string{"proj_1"} }, ""},
		{"project by name", func(r *Rule) { r.Projects = []string{"support"} }, ""},
		{"project id is exact", func(r *Rule) { r.Projects = []string{"PROJ_1"} }, "rule r: project Support is not among its projects"},
		{"other project", func(r *Rule) { r.Projects = []string{"Sales"} }, "rule r: project Support is not among its projects"},
		{"group by id", func(r *Rule) { r.Groups = []string{"g_1"} }, ""},
		{"group by name", func(r *Rule) { r.Groups = []string{"ENG"} }, ""},
		{"other group", func(r *Rule) { r.Groups = []string{"Sales"} }, "rule r: group Eng is not among its groups"},
		{"role by id", func(r *Rule) { r.Roles = []string{"r_1"} }, ""},
		{"other role", func(r *Rule) { r.Roles = []string{"Owner"} }, "rule r: role Reader is not among its roles"},
		{"channel", func(r *Rule) { r.Channels = []string{"C0OPS"} }, ""},
		{"other channel", func(r *Rule) { r.Channels = []string{"C0ELSE"} }, "rule r: requests are not allowed in this channel"},
		{"requester listed", func(r *Rule) { r.Requesters = []string{"U0ANA"} }, ""},
		{"requester not listed", func(r *Rule) { r.Requesters = []string{"U0BOB"} }, "rule r: you are not among its requesters"},
		{"several clauses fail", func(r *Rule) { r.Projects, r.Channels = []string{"Sales"}, []string{"C0ELSE"} },
			"rule r: project Support is not among its projects, requests are not allowed in this channel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRule("r")
			tt.rule(&r)
			_, err := Policy{Rules: []Rule{r}}.Match(base)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Match = %v, want a match", err)
				}
				return
			}
			want := "no rule allows role Reader for group Eng in project Support: " + tt.wantErr
			if err == nil || err.Error() != want {
				t.Fatalf("Match = %v\nwant %s", err, want)
			}
		})
	}
	t.Run("nameless things are named by id", func(t *testing.T) {
		r := validRule("r")
		r.Roles = []string{"Owner"}
		q := base
		q.Project.Name, q.Group.Name, q.Role.Name = "", "", ""
		_, err := Policy{Rules: []Rule{r}}.Match(q)
		want := "no rule allows role r_1 for group g_1 in project proj_1: rule r: role r_1 is not among its roles"
		if err == nil || err.Error() != want {
			t.Fatalf("Match = %v\nwant %s", err, want)
		}
	})
	t.Run("only the closest rules are listed", func(t *testing.T) {
		far, near, nearest := validRule("far"), validRule("near"), validRule("nearest")
		far.Projects, far.Roles = []string{"Sales"}, []string{"Owner"}
		near.Channels = []string{"C0ELSE"}
		nearest.Requesters = []string{"U0BOB"}
		// Fails on the channel, and its requesters do not list U0ANA: two
		// clauses, whatever a group lookup would have said.
		farGroup := validRule("far-group")
		farGroup.Channels, farGroup.Requesters = []string{"C0ELSE"}, []string{"S0ENG"}
		_, err := Policy{Rules: []Rule{far, farGroup, near}}.Match(base)
		want := "no rule allows role Reader for group Eng in project Support: rule near: requests are not allowed in this channel"
		if err == nil || err.Error() != want {
			t.Fatalf("Match = %v\nwant %s", err, want)
		}
		_, err = Policy{Rules: []Rule{far, near, nearest}}.Match(base)
		want = "no rule allows role Reader for group Eng in project Support: rule near: requests are not allowed in this channel; rule nearest: you are not among its requesters"
		if err == nil || err.Error() != want {
			t.Fatalf("Match = %v\nwant %s", err, want)
		}
	})
	t.Run("empty policy", func(t *testing.T) {
		_, err := Policy{}.Match(base)
		var nr *NoRuleError
		if !errors.As(err, &nr) || len(nr.Closest) != 0 || err.Error() != "no rule allows role Reader for group Eng in project Support" {
			t.Fatalf("Match = %v", err)
		}
	})
}

func TestPolicyMatchMembershipLookups(t *testing.T) {
	t.Parallel()
	errDown := errors.New("slack is down")
	rule := validRule("r")
	rule.Requesters = []string{"S0BROKEN", "U0ANA", "S0OK"}
	later := validRule("later") // would match anyone: must not be reached on a failed lookup
	policy := Policy{Rules: []Rule{rule, later}}
	lookups := func(calls *[]string, answers map[string]bool) func(string) (bool, error) {
		return func(id string) (bool, error) {
			*calls = append(*calls, id)
			if id == "S0BROKEN" {
				return false, errDown
			}
			return answers[id], nil
		}
	}
	tests := []struct {
		name      string
		requester string
		members   map[string]bool
		wantRule  string
		wantErr   error
	}{
		{"listed directly despite a failed lookup", "U0ANA", nil, "r", nil},
		{"confirmed by another group despite a failed lookup", "U0DEV", map[string]bool{"S0OK": true}, "r", nil},
		{"unconfirmed with a failed lookup: the lookup error, not a later rule", "U0DEV", nil, "", errDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			r, err := policy.Match(MatchQuery{Requester: tt.requester, Channel: "C0", MemberOf: lookups(&calls, tt.members)})
			if !errors.Is(err, tt.wantErr) || r.Name != tt.wantRule {
				t.Fatalf("Match = %q, %v; want %q, %v", r.Name, err, tt.wantRule, tt.wantErr)
			}
			if errors.Is(err, ErrNoRule) {
				t.Fatalf("a failed lookup reads as no rule: %v", err)
			}
		})
	}
	t.Run("groups are looked up only for a rule that could decide", func(t *testing.T) {
		r := validRule("owners")
		r.Roles, r.Requesters = []string{"Owner"}, []string{"S0ENG"}
		var calls []string
		_, err := Policy{Rules: []Rule{r}}.Match(MatchQuery{Role: Role{Name: "Reader"}, Requester: "U0DEV", MemberOf: lookups(&calls, nil)})
		if !errors.Is(err, ErrNoRule) || len(calls) != 0 {
			t.Fatalf("Match = %v after looking up %v; want no rule and no lookups", err, calls)
		}
	})
	t.Run("nil MemberOf: groups confirm nobody", func(t *testing.T) {
		r := validRule("r")
		r.Requesters = []string{"S0ENG"}
		_, err := Policy{Rules: []Rule{r}}.Match(MatchQuery{Requester: "U0DEV"})
		if !errors.Is(err, ErrNoRule) || !strings.Contains(err.Error(), "you are not among its requesters") {
			t.Fatalf("Match = %v", err)
		}
	})
}

func TestRuleCheckReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, reason string
		wantErr         string
	}{
		{"", "anything", ""},
		{`[A-Z]+-[0-9]+`, "rotating keys, INC-42", ""},
		{`[A-Z]+-[0-9]+`, "rotating keys", "invalid request: rule r needs a reason that contains a match for the pattern [A-Z]+-[0-9]+"},
		{`^JIRA-[0-9]+`, "see JIRA-1", "the pattern ^JIRA-[0-9]+"},
		{`(`, "anything", "invalid request: rule r has a reason_pattern that is not a valid regular expression; ask an admin to fix the policy"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"/"+tt.reason, func(t *testing.T) {
			r := validRule("r")
			r.ReasonPattern = tt.pattern
			err := r.CheckReason(tt.reason)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckReason(%q) = %v", tt.reason, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckReason(%q) = %v, want ErrInvalid containing %q", tt.reason, err, tt.wantErr)
			}
		})
	}
}

func TestRulePattern(t *testing.T) {
	t.Parallel()
	r := Rule{ReasonPattern: `[A-Z]+-[0-9]+`}
	if p1, p2 := r.Pattern(), r.Pattern(); p1 == nil || p1 != p2 {
		t.Fatalf("Pattern() = %p, %p; want one compiled value, cached", p1, p2)
	}
	if (Rule{}).Pattern() != nil || (Rule{ReasonPattern: "("}).Pattern() != nil {
		t.Fatal("Pattern() of an empty or invalid source is not nil")
	}
}

func TestRuleGrantDuration(t *testing.T) {
	t.Parallel()
	h := time.Hour
	tests := []struct {
		name                  string
		def, max, asked, want time.Duration
		wantErr               string
	}{
		{"permanent by default", 0, 0, 0, 0, ""},
		{"asked, no limits", 0, 0, 48 * h, 48 * h, ""},
		{"default applies", 4 * h, 0, 0, 4 * h, ""},
		{"asked overrides default", 4 * h, 8 * h, 2 * h, 2 * h, ""},
		{"at the max", 4 * h, 8 * h, 8 * h, 8 * h, ""},
		{"over the max", 4 * h, 8 * h, 9 * h, 0, "invalid request: 9h is longer than rule r allows: at most 8h"},
		{"permanent refused under a max", 0, 8 * h, 0, 0, "invalid request: rule r does not allow permanent grants: ask for at most 8h"},
		{"negative", 0, 0, -h, 0, "invalid request: a duration must be longer than zero"},
		{"beyond a year", 0, 0, 367 * 24 * h, 0, "invalid request: 367d is longer than the longest grant rolegate makes (366d)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRule("r")
			r.DefaultDuration, r.MaxDuration = tt.def, tt.max
			got, err := r.GrantDuration(tt.asked)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || err.Error() != tt.wantErr {
					t.Fatalf("GrantDuration(%v) = %v, %v; want %q", tt.asked, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("GrantDuration(%v) = %v, %v; want %v", tt.asked, got, err, tt.want)
			}
		})
	}
}

func TestRuleBreakGlassMax(t *testing.T) {
	t.Parallel()
	if got := (Rule{}).BreakGlassMax(); got != time.Hour {
		t.Errorf("without max_duration: %v, want 1h", got)
	}
	if got := (Rule{MaxDuration: 30 * time.Minute}).BreakGlassMax(); got != 30*time.Minute {
		t.Errorf("with max_duration 30m: %v", got)
	}
}
