package slackapp

import "strings"

// IsUserGroup reports whether id is a Slack user-group id (S…).
func IsUserGroup(id string) bool { return strings.HasPrefix(id, "S") }
