package approvals

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// This file is the one home of the rules about what people type: ids,
// reasons and durations. The Slack side calls these to answer at once; the
// store calls them again before anything is written.

// MaxReasonLen bounds the reason, in characters, so every rendering of a
// request stays inside Slack's block limits.
const MaxReasonLen = 1000

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidID reports whether s can be used as a project, group or role id: only
// letters, digits, '_' and '-', at most 128, so no id can change an API path.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// CheckID returns an ErrInvalid error naming what (e.g. "project_id") when
// id is empty or not a ValidID.
func CheckID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s is missing", ErrInvalid, what)
	}
	if !ValidID(id) {
		return fmt.Errorf("%w: %s may contain only letters, digits, '_' and '-' (at most 128)", ErrInvalid, what)
	}
	return nil
}

// CleanReason trims s and checks it is a usable reason: present, valid
// UTF-8, at most MaxReasonLen characters. The error wraps ErrInvalid and
// says what is wrong in words for the person who typed it.
func CleanReason(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: the reason is not valid UTF-8", ErrInvalid)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: a reason is required: say why the group needs this role", ErrInvalid)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' && r != '\r' || r == 0x7f }) {
		// A NUL cannot even be stored by PostgreSQL's JSON types, and no
		// other control character belongs in a reason people read.
		return "", fmt.Errorf("%w: the reason contains control characters", ErrInvalid)
	}
	if n := utf8.RuneCountInString(s); n > MaxReasonLen {
		return "", fmt.Errorf("%w: the reason is %d characters long; keep it to %d", ErrInvalid, n, MaxReasonLen)
	}
	return s, nil
}

// MaxNameLen bounds a project, group or role as typed (an id or a name).
const MaxNameLen = 200

// Ask is what a requester typed for the project, group and role: each an id
// or a name (matched exactly, case-insensitively). The worker resolves it
// to a Target while the request is StateChecking.
type Ask struct {
	Project string
	Group   string
	Role    string
}

// Validate checks that each part is present, valid UTF-8 without control
// characters, and at most MaxNameLen characters.
func (a Ask) Validate() error {
	for _, f := range []struct{ what, v string }{{"project", a.Project}, {"group", a.Group}, {"role", a.Role}} {
		switch {
		case strings.TrimSpace(f.v) == "":
			return fmt.Errorf("%w: the %s is missing", ErrInvalid, f.what)
		case !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			return fmt.Errorf("%w: the %s contains characters that cannot be part of a name", ErrInvalid, f.what)
		case utf8.RuneCountInString(f.v) > MaxNameLen:
			return fmt.Errorf("%w: the %s is longer than %d characters", ErrInvalid, f.what, MaxNameLen)
		}
	}
	return nil
}

// AskFor is the Ask that names t by its ids.
func AskFor(t Target) Ask { return Ask{Project: t.ProjectID, Group: t.GroupID, Role: t.RoleID} }

// Project is an OpenAI project as the Admin API lists it.
type Project struct {
	ID       string
	Name     string
	Archived bool
}

// Preview is what the checks found: the project, group and role a request
// will grant, by name and id, with every permission of the role. It is
// what approvers see before they decide.
type Preview struct {
	Project Project
	Group   Group
	Role    Role
}

// MaxDuration bounds any grant's duration, whatever a rule allows.
const MaxDuration = 366 * 24 * time.Hour

var durationPart = regexp.MustCompile(`^([0-9]+)([smhd])`)

// ParseDuration parses a grant duration as people type it: one or more
// number-and-unit parts with units s, m, h, d (90s, 30m, 4h, 2d, 1h30m).
// It refuses zero, anything above MaxDuration, and anything else, with a
// message that says what is accepted.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	bad := fmt.Errorf("%w: %q is not a duration: use a number and a unit s, m, h or d, like 30m, 4h, 2d or 1h30m", ErrInvalid, truncateRunes(s, 32))
	if in == "" {
		return 0, bad
	}
	var total time.Duration
	seen := map[byte]bool{}
	for in != "" {
		m := durationPart.FindStringSubmatch(in)
		if m == nil || len(m[1]) > 6 || seen[m[2][0]] {
			return 0, bad
		}
		seen[m[2][0]] = true
		var n int64
		fmt.Sscan(m[1], &n)
		unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
		total += time.Duration(n) * unit
		if total > MaxDuration {
			return 0, fmt.Errorf("%w: %s is longer than the longest grant rolegate makes (366d)", ErrInvalid, truncateRunes(s, 32))
		}
		in = in[len(m[0]):]
	}
	if total <= 0 {
		return 0, fmt.Errorf("%w: a duration must be longer than zero", ErrInvalid)
	}
	return total, nil
}

// FormatDuration renders d the way ParseDuration reads it (2d4h, 90m → 1h30m).
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.unit)
			d -= n * u.d
		}
	}
	return b.String()
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
