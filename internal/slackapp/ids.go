package slackapp

import (
	"errors"
	"fmt"
	"strings"
)

// This file is the one home of Slack's id shapes. The domain stores and
// compares ids as opaque strings; whether an id names a person, a user group
// or a channel is Slack's convention, so it is decided here and passed in
// (as a func) where the domain needs it.

// IsUserGroup reports whether id has the shape of a Slack user-group id
// (S…). It says nothing about whether the group exists.
func IsUserGroup(id string) bool { return len(id) >= 2 && id[0] == 'S' && isUpperAlnum(id) }

// IsUserID reports whether id has the shape of a Slack user id: U… or, on
// Enterprise Grid, W….
func IsUserID(id string) bool {
	return len(id) >= 2 && (id[0] == 'U' || id[0] == 'W') && isUpperAlnum(id)
}

// ValidUserOrGroupID reports whether id has the shape of a Slack user id
// (U…, W…) or user-group id (S…): the ids that may approve or request.
func ValidUserOrGroupID(id string) bool { return IsUserID(id) || IsUserGroup(id) }

// ValidChannelID reports whether id has the shape of a Slack conversation
// id: a public channel (C…), a private channel or group DM (G…) or a direct
// message (D…).
func ValidChannelID(id string) bool {
	return len(id) >= 2 && strings.ContainsRune("CGD", rune(id[0])) && isUpperAlnum(id)
}

// ParseUserIDs splits a comma-separated list of Slack user and user-group
// ids, as ROLEGATE_APPROVERS holds them, trimming spaces and skipping empty
// entries. Its error names the first entry that is neither (never more
// of the input than that entry), or says that the list is empty.
func ParseUserIDs(s string) ([]string, error) {
	var ids []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !ValidUserOrGroupID(f) {
			return nil, fmt.Errorf("%q is not a Slack user id (U…, W…) or user-group id (S…)", f)
		}
		ids = append(ids, f)
	}
	if len(ids) == 0 {
		return nil, errors.New("no user or user-group ids given")
	}
	return ids, nil
}

func isUpperAlnum(s string) bool {
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
