package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v4"

	"github.com/rolegate/rolegate/internal/platformspec"
)

// The manifests, relative to the module root.
const (
	socketManifest = "manifest.yml"
	httpManifest   = "deploy/manifest-http.yml"
)

// Paths the bot serves in HTTP mode (DESIGN.md, "HTTP endpoints").
const (
	commandsPath     = "/slack/commands"
	interactionsPath = "/slack/interactions"
)

// command is the slash command rolegate registers, and wantUsage the hint
// Slack shows under it while the user types.
const (
	command   = "/assign-role"
	wantUsage = "[<project> <group> <role> [for <duration>] <reason…>] | status <id> | list | cancel <id> | help"
)

// requiredScopes are the bot scopes rolegate calls need: commands to receive
// the slash command, chat:write for chat.postMessage and chat.update,
// chat:write.public to post in public channels the bot has not joined,
// usergroups:read to expand user-group approvers (S…), and channels:history
// and groups:history to find a message a stopped replica may have posted
// before posting it again (public and private channels).
var requiredScopes = []string{"commands", "chat:write", "chat:write.public", "usergroups:read", "channels:history", "groups:history"}

// appManifest is the part of a Slack app manifest that rolegate depends on.
type appManifest struct {
	DisplayInformation struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"display_information"`
	Features struct {
		BotUser *struct {
			DisplayName  string `json:"display_name"`
			AlwaysOnline bool   `json:"always_online"`
		} `json:"bot_user"`
		SlashCommands []slashCommand `json:"slash_commands"`
	} `json:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `json:"bot"`
		} `json:"scopes"`
	} `json:"oauth_config"`
	Settings struct {
		Interactivity *struct {
			IsEnabled             bool   `json:"is_enabled"`
			RequestURL            string `json:"request_url"`
			MessageMenuOptionsURL string `json:"message_menu_options_url"`
		} `json:"interactivity"`
		EventSubscriptions *struct {
			RequestURL string `json:"request_url"`
		} `json:"event_subscriptions"`
		SocketModeEnabled bool `json:"socket_mode_enabled"`
	} `json:"settings"`
}

// slashCommand is one entry of features.slash_commands.
type slashCommand struct {
	Command      string `json:"command"`
	URL          string `json:"url"`
	Description  string `json:"description"`
	UsageHint    string `json:"usage_hint"`
	ShouldEscape *bool  `json:"should_escape"`
}

// moduleRoot returns the directory holding go.mod, found upward from the
// test's working directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", wd)
		}
	}
}

// manifestJSON reads the YAML manifest at rel (relative to the module root)
// and returns it as JSON, the form Slack's schema describes.
func manifestJSON(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Load(data, &doc); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s is not representable as JSON: %v", rel, err)
	}
	return out
}

// instance decodes JSON the way the schema validator expects (numbers as
// json.Number). Each call returns a fresh value, safe to modify.
func instance(t testing.TB, doc []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// decodeManifest decodes the JSON form of a manifest into appManifest.
func decodeManifest(t testing.TB, doc []byte) appManifest {
	t.Helper()
	var m appManifest
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// slackSchema compiles Slack's manifest schema from the shared testdata.
func slackSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	path := platformspec.Path(t, platformspec.SlackManifestSchema)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.UseRegexpEngine(compileECMAScript)
	sch, err := c.Compile(path)
	if err != nil {
		t.Fatalf("compile Slack manifest schema: %v", err)
	}
	return sch
}

// ecmaRegexp adapts a regexp2 pattern to jsonschema.Regexp.
type ecmaRegexp regexp2.Regexp

// MatchString reports whether s matches; a match that errors (a timeout) is
// no match.
func (re *ecmaRegexp) MatchString(s string) bool {
	ok, err := (*regexp2.Regexp)(re).MatchString(s)
	return err == nil && ok
}

// String returns the pattern's source.
func (re *ecmaRegexp) String() string { return (*regexp2.Regexp)(re).String() }

// compileECMAScript compiles schema patterns as ECMA-262 regular expressions,
// the dialect JSON Schema specifies. Slack's schema needs it: its domain
// patterns (unfurl_domains, outgoing_domains) use a negative lookahead, which
// Go's regexp (RE2) refuses, so with the default engine the schema does not
// even compile.
func compileECMAScript(pattern string) (jsonschema.Regexp, error) {
	re, err := regexp2.Compile(pattern, regexp2.ECMAScript)
	if err != nil {
		return nil, err
	}
	re.MatchTimeout = time.Second
	return (*ecmaRegexp)(re), nil
}

// findCommand returns the manifest's entries for name.
func findCommand(m appManifest, name string) []slashCommand {
	var found []slashCommand
	for _, c := range m.Features.SlashCommands {
		if c.Command == name {
			found = append(found, c)
		}
	}
	return found
}

// TestManifestsMatchSlackSchema checks both manifests against Slack's
// published schema, so a paste into "Create app from manifest" is not refused.
func TestManifestsMatchSlackSchema(t *testing.T) {
	sch := slackSchema(t)
	for _, rel := range []string{socketManifest, httpManifest} {
		t.Run(rel, func(t *testing.T) {
			if err := sch.Validate(instance(t, manifestJSON(t, rel))); err != nil {
				t.Errorf("%s does not match Slack's manifest schema:\n%v", rel, err)
			}
		})
	}
}

// TestManifestsRegisterWhatTheBotNeeds checks the parts of each manifest the
// bot relies on whatever the mode: the command, its scopes, a bot user and
// interactivity (the Approve and Deny buttons).
func TestManifestsRegisterWhatTheBotNeeds(t *testing.T) {
	for _, rel := range []string{socketManifest, httpManifest} {
		t.Run(rel, func(t *testing.T) {
			m := decodeManifest(t, manifestJSON(t, rel))

			if m.DisplayInformation.Name != "rolegate" {
				t.Errorf("display_information.name = %q, want rolegate", m.DisplayInformation.Name)
			}
			if m.DisplayInformation.Description == "" {
				t.Error("display_information.description is empty")
			}
			if bu := m.Features.BotUser; bu == nil || bu.DisplayName != "rolegate" || !bu.AlwaysOnline {
				t.Errorf("features.bot_user = %+v, want display_name rolegate, always_online true", bu)
			}

			cmds := findCommand(m, command)
			if len(cmds) != 1 {
				t.Fatalf("%s registered %d times, want once", command, len(cmds))
			}
			c := cmds[0]
			if c.Description == "" {
				t.Errorf("%s has no description", command)
			}
			if c.UsageHint != wantUsage {
				t.Errorf("%s usage_hint = %q, want %q", command, c.UsageHint, wantUsage)
			}
			// With should_escape true Slack hands the bot @mentions, #channels
			// and links as <…> markup, which would reach the approval message
			// as raw, escaped text instead of what the requester typed.
			if c.ShouldEscape == nil || *c.ShouldEscape {
				t.Errorf("%s should_escape = %v, want an explicit false", command, c.ShouldEscape)
			}

			for _, s := range requiredScopes {
				if !slices.Contains(m.OAuthConfig.Scopes.Bot, s) {
					t.Errorf("oauth_config.scopes.bot = %q, missing %q", m.OAuthConfig.Scopes.Bot, s)
				}
			}
			if in := m.Settings.Interactivity; in == nil || !in.IsEnabled {
				t.Error("settings.interactivity.is_enabled is not true: the Approve and Deny buttons would do nothing")
			}
		})
	}
}

// TestManifestModes checks the settings that differ between Socket Mode and
// HTTP mode. Slack sends nothing over HTTP with Socket Mode on, so a URL there
// is a sign the two were mixed up; in HTTP mode every URL must reach the path
// the bot serves for it.
func TestManifestModes(t *testing.T) {
	tests := []struct {
		file       string
		socketMode bool
	}{
		{file: socketManifest, socketMode: true},
		{file: httpManifest, socketMode: false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m := decodeManifest(t, manifestJSON(t, tt.file))
			if m.Settings.SocketModeEnabled != tt.socketMode {
				t.Errorf("settings.socket_mode_enabled = %v, want %v", m.Settings.SocketModeEnabled, tt.socketMode)
			}

			type endpoint struct{ field, url, wantPath string }
			var endpoints []endpoint
			for i, c := range m.Features.SlashCommands {
				endpoints = append(endpoints, endpoint{"features.slash_commands[" + strconv.Itoa(i) + "].url", c.URL, commandsPath})
			}
			if in := m.Settings.Interactivity; in != nil {
				endpoints = append(endpoints,
					endpoint{"settings.interactivity.request_url", in.RequestURL, interactionsPath},
					// Block suggestions arrive on the interactions endpoint too.
					endpoint{"settings.interactivity.message_menu_options_url", in.MessageMenuOptionsURL, interactionsPath},
				)
			}
			if es := m.Settings.EventSubscriptions; es != nil {
				endpoints = append(endpoints, endpoint{"settings.event_subscriptions.request_url", es.RequestURL, ""})
			}

			if tt.socketMode {
				for _, e := range endpoints {
					if e.url != "" {
						t.Errorf("%s = %q in a Socket Mode manifest, want none", e.field, e.url)
					}
				}
				return
			}

			hosts := map[string]bool{}
			for _, e := range endpoints {
				// message_menu_options_url is required: without it the
				// request modal's external_select menus stay empty.
				if e.url == "" {
					t.Errorf("%s is empty in the HTTP-mode manifest", e.field)
					continue
				}
				u, err := url.Parse(e.url)
				if err != nil {
					t.Errorf("%s: %v", e.field, err)
					continue
				}
				if u.Scheme != "https" {
					t.Errorf("%s = %q, want https (Slack refuses plain http)", e.field, e.url)
				}
				if e.wantPath == "" {
					t.Errorf("%s = %q: rolegate serves no Events API endpoint", e.field, e.url)
				} else if !strings.HasSuffix(u.Path, e.wantPath) {
					t.Errorf("%s = %q, want a path ending in %s", e.field, e.url, e.wantPath)
				}
				hosts[u.Host] = true
			}
			if len(hosts) > 1 {
				t.Errorf("HTTP-mode URLs use %d hosts %v, want one (was the host replaced everywhere?)", len(hosts), slices.Sorted(maps.Keys(hosts)))
			}
		})
	}
}

// TestManifestsDifferOnlyInMode checks that the two manifests stay the same
// app: apart from the mode switch and the URLs, every field (scopes, command,
// description) must be identical, so a change made to one is made to both.
func TestManifestsDifferOnlyInMode(t *testing.T) {
	strip := func(t *testing.T, rel string) map[string]any {
		t.Helper()
		var doc map[string]any
		if err := json.Unmarshal(manifestJSON(t, rel), &doc); err != nil {
			t.Fatal(err)
		}
		if features, ok := doc["features"].(map[string]any); ok {
			if cmds, ok := features["slash_commands"].([]any); ok {
				for _, c := range cmds {
					if c, ok := c.(map[string]any); ok {
						delete(c, "url")
					}
				}
			}
		}
		if settings, ok := doc["settings"].(map[string]any); ok {
			delete(settings, "socket_mode_enabled")
			if in, ok := settings["interactivity"].(map[string]any); ok {
				delete(in, "request_url")
				delete(in, "message_menu_options_url")
			}
		}
		return doc
	}
	socket, http := strip(t, socketManifest), strip(t, httpManifest)
	if diff := differences(socket, http, ""); len(diff) > 0 {
		t.Errorf("%s and %s differ beyond the mode and URLs, at:\n%s", socketManifest, httpManifest, strings.Join(diff, "\n"))
	}
}

// differences returns the JSON pointers (under at) where a and b, decoded
// JSON, hold different values.
func differences(a, b any, at string) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		var diff []string
		for _, k := range slices.Sorted(maps.Keys(am)) {
			diff = append(diff, differences(am[k], bm[k], at+"/"+k)...)
		}
		for _, k := range slices.Sorted(maps.Keys(bm)) {
			if _, ok := am[k]; !ok {
				diff = append(diff, at+"/"+k+" (only in the second)")
			}
		}
		return diff
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		var diff []string
		for i := range as {
			diff = append(diff, differences(as[i], bs[i], at+"/"+strconv.Itoa(i))...)
		}
		return diff
	}
	if !reflect.DeepEqual(a, b) {
		return []string{fmt.Sprintf("%s: %v != %v", at, a, b)}
	}
	return nil
}

// TestSlackSchemaRejectsBrokenManifest proves the validator used above
// validates: copies of the Socket Mode manifest, each broken in one place, must
// be rejected, and at that place.
func TestSlackSchemaRejectsBrokenManifest(t *testing.T) {
	sch := slackSchema(t)
	doc := manifestJSON(t, socketManifest)
	if err := sch.Validate(instance(t, doc)); err != nil {
		t.Fatalf("the unbroken manifest is rejected, so the cases below prove nothing: %v", err)
	}

	tests := []struct {
		name    string
		pointer string // JSON pointer of the field to change
		value   any    // new value; ignored when remove is set
		remove  bool
		wantAt  string // JSON pointer of the value the schema must blame
		wantMsg string // and a word its message must contain
	}{
		{
			name:    "unknown top-level key",
			pointer: "/permissions", value: []any{"commands"},
			wantAt: "", wantMsg: "permissions",
		},
		{
			name:    "unknown setting (typo)",
			pointer: "/settings/socket_mode", value: true,
			wantAt: "/settings", wantMsg: "socket_mode",
		},
		{
			name:    "command without leading slash",
			pointer: "/features/slash_commands/0/command", value: "assign-role",
			wantAt: "/features/slash_commands/0/command", wantMsg: "match",
		},
		{
			name:    "command name over 32 characters",
			pointer: "/features/slash_commands/0/command", value: "/" + strings.Repeat("a", 32),
			wantAt: "/features/slash_commands/0/command", wantMsg: "32",
		},
		{
			name:    "command without description",
			pointer: "/features/slash_commands/0/description", remove: true,
			wantAt: "/features/slash_commands/0", wantMsg: "description",
		},
		{
			name:    "app name over 35 characters",
			pointer: "/display_information/name", value: strings.Repeat("r", 36),
			wantAt: "/display_information/name", wantMsg: "35",
		},
		{
			name:    "YAML 1.1 yes where a boolean belongs",
			pointer: "/settings/socket_mode_enabled", value: "yes",
			wantAt: "/settings/socket_mode_enabled", wantMsg: "boolean",
		},
		{
			name:    "bot scopes as one string",
			pointer: "/oauth_config/scopes/bot", value: "commands,chat:write",
			wantAt: "/oauth_config/scopes/bot", wantMsg: "array",
		},
		{
			name:    "interactivity without is_enabled",
			pointer: "/settings/interactivity/is_enabled", remove: true,
			wantAt: "/settings/interactivity", wantMsg: "is_enabled",
		},
		{
			name:    "command url that is not http(s)",
			pointer: "/features/slash_commands/0/url", value: "rolegate.example.com/slack/commands",
			wantAt: "/features/slash_commands/0/url", wantMsg: "match",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := instance(t, doc)
			patch(t, broken, tt.pointer, tt.value, tt.remove)

			err := sch.Validate(broken)
			if err == nil {
				t.Fatalf("schema accepted the manifest with %s", tt.name)
			}
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate returned %T (%v), want *jsonschema.ValidationError", err, err)
			}
			leaves := leafErrors(ve)
			for _, l := range leaves {
				if pointerOf(l.InstanceLocation) == tt.wantAt && strings.Contains(l.Error(), tt.wantMsg) {
					return
				}
			}
			t.Errorf("rejected, but not at %q with %q:\n%v", tt.wantAt, tt.wantMsg, err)
		})
	}
}

// patch sets (or, with remove, deletes) the value at the JSON pointer in doc,
// creating nothing but the last key. Array indexes must exist.
func patch(t testing.TB, doc any, pointer string, value any, remove bool) {
	t.Helper()
	keys := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	parent := doc
	for _, k := range keys[:len(keys)-1] {
		switch p := parent.(type) {
		case map[string]any:
			parent = p[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(p) {
				t.Fatalf("pointer %s: no index %q", pointer, k)
			}
			parent = p[i]
		default:
			t.Fatalf("pointer %s: %q is inside a %T", pointer, k, parent)
		}
	}
	last := keys[len(keys)-1]
	switch p := parent.(type) {
	case map[string]any:
		if remove {
			if _, ok := p[last]; !ok {
				t.Fatalf("pointer %s: nothing to remove", pointer)
			}
			delete(p, last)
			return
		}
		p[last] = value
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) || remove {
			t.Fatalf("pointer %s: cannot change index %q", pointer, last)
		}
		p[i] = value
	default:
		t.Fatalf("pointer %s: parent is a %T", pointer, parent)
	}
}

// leafErrors returns the innermost causes of a validation error: the ones
// that name the failing value and keyword.
func leafErrors(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return []*jsonschema.ValidationError{ve}
	}
	var leaves []*jsonschema.ValidationError
	for _, c := range ve.Causes {
		leaves = append(leaves, leafErrors(c)...)
	}
	return leaves
}

// pointerOf joins an instance location into a JSON pointer ("" for the root).
func pointerOf(loc []string) string {
	var b strings.Builder
	for _, k := range loc {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(k))
	}
	return b.String()
}
