package slackapp

import (
	"slices"
	"strings"
	"testing"
)

func TestParseUserIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "U123,W456, S789", want: []string{"U123", "W456", "S789"}},
		{in: " U123 ", want: []string{"U123"}},
		{in: "U123,,W456,", want: []string{"U123", "W456"}},
		{in: "foo", wantErr: `"foo" is not a Slack user id`},
		{in: "u123", wantErr: `"u123" is not`},
		{in: "C123", wantErr: `"C123" is not`},
		{in: "U123,C456", wantErr: `"C456" is not`},
		{in: "U", wantErr: `"U" is not`},
		{in: "U12-3", wantErr: `"U12-3" is not`},
		{in: "", wantErr: "no user or user-group ids given"},
		{in: " , ", wantErr: "no user or user-group ids given"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUserIDs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseUserIDs(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUserIDs(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseUserIDs(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestIDShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id                           string
		user, group, either, channel bool
	}{
		{id: "U0ANA", user: true, either: true},
		{id: "W0GRID", user: true, either: true},
		{id: "S0PLATFORM", group: true, either: true},
		{id: "C0GENERAL", channel: true},
		{id: "G0PRIVATE", channel: true},
		{id: "D0DM", channel: true},
		{id: "S"},
		{id: "U"},
		{id: "C"},
		{id: ""},
		{id: "s0platform"},
		{id: "S0-PLATFORM"},
		{id: "U0ANA "},
		{id: "X0ANA"},
		{id: "*"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := IsUserID(tt.id); got != tt.user {
				t.Errorf("IsUserID(%q) = %v, want %v", tt.id, got, tt.user)
			}
			if got := IsUserGroup(tt.id); got != tt.group {
				t.Errorf("IsUserGroup(%q) = %v, want %v", tt.id, got, tt.group)
			}
			if got := ValidUserOrGroupID(tt.id); got != tt.either {
				t.Errorf("ValidUserOrGroupID(%q) = %v, want %v", tt.id, got, tt.either)
			}
			if got := ValidChannelID(tt.id); got != tt.channel {
				t.Errorf("ValidChannelID(%q) = %v, want %v", tt.id, got, tt.channel)
			}
		})
	}
}
