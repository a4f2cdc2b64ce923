package slackapp

import (
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		text    string
		want    Command
		wantErr string // substring of the error; empty for success
	}{
		{"", Command{Kind: CommandHelp}, ""},
		{"  help ", Command{Kind: CommandHelp}, ""},
		{"HELP", Command{Kind: CommandHelp}, ""},
		{"proj_abc group_01 role_01 need key rotation for incident 42", Command{Kind: CommandRequest,
			Target: approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"}, Reason: "need key rotation for incident 42"}, ""},
		{"proj-A  group_B\trole-C   two  spaces kept", Command{Kind: CommandRequest,
			Target: approvals.Target{ProjectID: "proj-A", GroupID: "group_B", RoleID: "role-C"}, Reason: "two  spaces kept"}, ""},
		{"p g r <!channel> & <https://evil|click>", Command{Kind: CommandRequest,
			Target: approvals.Target{ProjectID: "p", GroupID: "g", RoleID: "r"}, Reason: "<!channel> & <https://evil|click>"}, ""},
		{"cancel 42", Command{Kind: CommandCancel, ID: 42}, ""},
		{"cancel #7", Command{Kind: CommandCancel, ID: 7}, ""},
		{"cancel", Command{}, "give the request number"},
		{"cancel abc", Command{}, "not a request number"},
		{"cancel 0", Command{}, "not a request number"},
		{"proj_abc", Command{}, "group_id is missing"},
		{"proj_abc group_01", Command{}, "role_id is missing"},
		{"proj_abc group_01 role_01", Command{}, "a reason is required"},
		{"proj_abc group_01 role_01    ", Command{}, "a reason is required"},
		{"../etc group_01 role_01 why", Command{}, `project_id "../etc" may contain only`},
		{"proj_abc a%2Fb role_01 why", Command{}, `group_id "a%2Fb" may contain only`},
		{"proj_abc group_01 role/01 why", Command{}, `role_id "role/01" may contain only`},
		{"proj_abc group_01 röle why", Command{}, "role_id"},
		{"proj_abc group_01 role_01 " + strings.Repeat("x", approvals.MaxReasonLen+1), Command{}, "keep it to 1000"},
		{"proj_abc group_01 role_01 \xff", Command{}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := ParseCommand(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCommand(%q) error = %v, want it to mention %q", tt.text, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.text, err)
			}
			if got != tt.want {
				t.Fatalf("ParseCommand(%q) = %+v, want %+v", tt.text, got, tt.want)
			}
		})
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "help", "cancel 1", "proj_abc group_01 role_01 need key rotation", "a b c d\te\nf", "../ %2F x y", "p g r <!here>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text)
		if err != nil || c.Kind != CommandRequest {
			return
		}
		// Whatever is accepted is safe to put in an API path and to store.
		if err := c.Target.Validate(); err != nil {
			t.Fatalf("accepted ids that do not validate: %+v: %v", c.Target, err)
		}
		n := approvals.NewRequest{Target: c.Target, Reason: c.Reason, Requester: "U1", ChannelID: "C1"}
		if err := n.Validate(); err != nil {
			t.Fatalf("accepted a request the store refuses: %q: %v", text, err)
		}
	})
}
