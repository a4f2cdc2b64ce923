package main

import (
	"fmt"
	"strings"
)

// parseApprovers splits a comma-separated list of Slack user and user-group
// ids, rejecting anything else by name. (Temporary home until the Slack id
// rules land in slackapp.)
func parseApprovers(s string) ([]string, error) {
	var ids []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if len(f) < 2 || !strings.ContainsRune("UWS", rune(f[0])) || strings.IndexFunc(f, func(c rune) bool { return !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') }) >= 0 {
			return nil, fmt.Errorf("%q is not a Slack user id (U…, W…) or user-group id (S…)", f)
		}
		ids = append(ids, f)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no approvers given")
	}
	return ids, nil
}
