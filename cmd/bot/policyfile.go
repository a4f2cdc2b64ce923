package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// The policy file (ROLEGATE_POLICY) in the format of DESIGN.md, "Policy
// file", read with go.yaml.in/yaml/v4: the YAML organization's maintained
// line of go-yaml (v3 is frozen, security fixes only) and already in this
// module for the manifest tests, so the file adds no dependency.
//
// It is decoded strictly by walking the YAML node tree rather than with the
// decoder's KnownFields: KnownFields reports an unknown key by line and Go
// type, and cannot say which rule or key it belongs to, nor check ids,
// durations or the meaning of an empty list. Walking the nodes reports
// every problem at once, each with its rule, key and line.

// policyKeys are the keys a rule may have, in the order DESIGN.md lists them.
var policyKeys = []string{
	"name", "projects", "groups", "roles", "channels", "requesters", "approvers",
	"approvals_required", "request_ttl", "default_duration", "max_duration",
	"reason_pattern", "remind_after", "break_glass",
}

// loadPolicy reads the policy file at path. Its error is either the read
// failure or a list of every problem in the file, each naming the rule, the
// key and the line (an *approvals.PolicyError, wrapped with the path). The
// rules it returns have passed approvals.Policy.Validate.
//
// Durations take Go's form (90s, 1h30m, 0) or days with approvals'
// ParseDuration (2d, 1d12h): time.ParseDuration is tried first, then
// approvals.ParseDuration, so the file reads like the slash command.
func loadPolicy(path string) (approvals.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return approvals.Policy{}, fmt.Errorf("read policy file: %w", err)
	}
	policy, problems := parsePolicy(data)
	if len(problems) > 0 {
		return approvals.Policy{}, fmt.Errorf("policy file %s has %s:\n%w", path, plural(len(problems), "problem"), &approvals.PolicyError{Problems: problems})
	}
	return policy, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// parsePolicy decodes and validates a policy file's contents, returning
// every problem found.
func parsePolicy(data []byte) (approvals.Policy, []approvals.Problem) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return approvals.Policy{}, []approvals.Problem{yamlProblem(err)}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		return approvals.Policy{}, []approvals.Problem{whole(next.Line, "the file holds more than one YAML document (---): put every rule under one rules: list")}
	}
	root := resolve(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = resolve(root.Content[0])
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return approvals.Policy{}, []approvals.Problem{whole(root.Line, "the file holds no rules: it needs a rules: list")}
	}
	if root.Kind != yaml.MappingNode {
		return approvals.Policy{}, []approvals.Problem{whole(root.Line, "the file must be a mapping with one key, rules:")}
	}
	d := &policyDecoder{}
	var rules *yaml.Node
	var rulesKey *yaml.Node
	d.eachKey(root, -1, "", func(key, value *yaml.Node) {
		if key.Value != "rules" {
			d.problem(-1, "", key.Value, key.Line, "is not a known key: the file has one key, rules:")
			return
		}
		rules, rulesKey = value, key
	})
	switch {
	case rules == nil:
		d.problem(-1, "", "rules", root.Line, "is missing: the file needs a rules: list")
	case rules.Kind != yaml.SequenceNode && !isNull(rules):
		d.problem(-1, "", "rules", rules.Line, "must be a list of rules, each starting with - name:")
	default:
		for i, n := range rules.Content {
			d.rule(i, resolve(n))
		}
	}
	policy := approvals.Policy{Rules: d.rules}
	line := 0
	if rulesKey != nil {
		line = rulesKey.Line
	}
	if err := policy.Validate(slackapp.IsUserGroup); err != nil {
		var pe *approvals.PolicyError
		if !errors.As(err, &pe) {
			return approvals.Policy{}, append(d.problems, whole(0, err.Error()))
		}
		for _, p := range pe.Problems {
			if d.failed[fieldOf{p.Rule, p.Field}] || d.notMapping[p.Rule] {
				continue // already reported as it was decoded
			}
			p.Line = line
			if p.Rule >= 0 {
				p.Line = d.lines[fieldOf{p.Rule, p.Field}]
				if p.Line == 0 {
					p.Line = d.lines[fieldOf{p.Rule, ""}]
				}
			}
			d.problems = append(d.problems, p)
		}
	}
	// In the order of the file, so an admin can fix them top to bottom.
	slices.SortStableFunc(d.problems, func(a, b approvals.Problem) int { return cmp.Compare(a.Line, b.Line) })
	return policy, d.problems
}

func whole(line int, msg string) approvals.Problem {
	return approvals.Problem{Rule: -1, Line: line, Message: msg}
}

// yamlProblem words a YAML syntax error for an admin, at its line.
func yamlProblem(err error) approvals.Problem {
	if err == io.EOF {
		return whole(0, "the file is empty: it needs a rules: list")
	}
	var le *yaml.LoadError
	if errors.As(err, &le) && le.Mark.Line > 0 {
		return whole(le.Mark.Line, fmt.Sprintf("the file is not valid YAML (column %d): %s", le.Mark.Column, le.Message))
	}
	return whole(0, "the file is not valid YAML: "+err.Error())
}

type fieldOf struct {
	rule  int
	field string
}

type policyDecoder struct {
	rules    []approvals.Rule
	problems []approvals.Problem
	lines    map[fieldOf]int  // where each rule ("" field) and each of its keys is
	failed   map[fieldOf]bool // keys already reported, so Validate does not repeat them
	// notMapping holds the rules that are not mappings at all: reported
	// once, as a whole, rather than as every key they lack.
	notMapping map[int]bool
}

func (d *policyDecoder) problem(rule int, name, field string, line int, format string, args ...any) {
	d.problems = append(d.problems, approvals.Problem{Rule: rule, Name: name, Field: field, Line: line, Message: fmt.Sprintf(format, args...)})
	if d.failed == nil {
		d.failed = map[fieldOf]bool{}
	}
	d.failed[fieldOf{rule, field}] = true
}

// eachKey calls fn for every key of mapping n, reporting keys that are not
// plain strings and keys given twice.
func (d *policyDecoder) eachKey(n *yaml.Node, rule int, name string, fn func(key, value *yaml.Node)) {
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := resolve(n.Content[i]), resolve(n.Content[i+1])
		if key.Kind != yaml.ScalarNode {
			d.problem(rule, name, "", key.Line, "has a key that is not a plain word")
			continue
		}
		if line, dup := first[key.Value]; dup {
			d.problem(rule, name, key.Value, key.Line, "is given twice (first on line %d)", line)
			continue
		}
		first[key.Value] = key.Line
		fn(key, value)
	}
}

// rule decodes the i-th entry of rules:, applying the defaults of the keys
// it leaves out.
func (d *policyDecoder) rule(i int, n *yaml.Node) {
	r := approvals.Rule{ApprovalsRequired: approvals.DefaultApprovalsRequired, RequestTTL: approvals.DefaultRequestTTL}
	if d.lines == nil {
		d.lines = map[fieldOf]int{}
	}
	d.lines[fieldOf{i, ""}] = n.Line
	if n.Kind != yaml.MappingNode {
		d.problem(i, "", "", n.Line, "must be a mapping of keys (name:, approvers:, …)")
		if d.notMapping == nil {
			d.notMapping = map[int]bool{}
		}
		d.notMapping[i] = true
		d.rules = append(d.rules, r)
		return
	}
	// The name first, so every other problem can show it.
	for j := 0; j+1 < len(n.Content); j += 2 {
		if k, v := resolve(n.Content[j]), resolve(n.Content[j+1]); k.Value == "name" && v.Kind == yaml.ScalarNode && !isNull(v) {
			r.Name = v.Value
			break
		}
	}
	d.eachKey(n, i, r.Name, func(key, value *yaml.Node) {
		f := field{d: d, rule: i, name: r.Name, key: key.Value, node: value}
		d.lines[fieldOf{i, key.Value}] = key.Line
		switch key.Value {
		case "name":
			r.Name = f.scalar()
		case "projects":
			r.Projects = f.list(nil)
		case "groups":
			r.Groups = f.list(nil)
		case "roles":
			r.Roles = f.list(nil)
		case "channels":
			r.Channels = f.list(checkChannel)
		case "requesters":
			r.Requesters = f.list(checkUserOrGroup)
		case "approvers":
			r.Approvers = f.list(checkUserOrGroup)
		case "approvals_required":
			r.ApprovalsRequired = f.integer(r.ApprovalsRequired)
		case "request_ttl":
			r.RequestTTL = f.duration(r.RequestTTL)
		case "default_duration":
			r.DefaultDuration = f.duration(0)
		case "max_duration":
			r.MaxDuration = f.duration(0)
		case "reason_pattern":
			r.ReasonPattern = f.scalar()
		case "remind_after":
			r.RemindAfter = f.duration(0)
		case "break_glass":
			r.BreakGlass = f.boolean()
		default:
			d.problem(i, r.Name, key.Value, key.Line, "is not a known key; a rule has: %s", strings.Join(policyKeys, ", "))
		}
	})
	d.rules = append(d.rules, r)
}

// field is one key's value being decoded; its methods report a problem and
// return the zero (or given default) value when the value does not fit.
type field struct {
	d    *policyDecoder
	rule int
	name string
	key  string
	node *yaml.Node
}

func (f field) bad(format string, args ...any) {
	f.d.problem(f.rule, f.name, f.key, f.node.Line, format, args...)
}

func (f field) scalar() string {
	switch {
	case isNull(f.node):
		return ""
	case f.node.Kind != yaml.ScalarNode:
		f.bad("must be a single value, not a list or mapping")
		return ""
	}
	return f.node.Value
}

// list decodes a list of ids or names; check, when set, vets each entry
// and returns what is wrong with it. An explicitly empty list is refused:
// it could mean "nobody" as well as "anyone".
func (f field) list(check func(string) string) []string {
	if isNull(f.node) {
		return nil
	}
	if f.node.Kind != yaml.SequenceNode {
		f.bad(`must be a list, like ["*"] or [Reader, "Key Manager"]`)
		return nil
	}
	if len(f.node.Content) == 0 {
		f.bad(`is an empty list: leave the key out or write ["*"] to match anything`)
		return nil
	}
	var out []string
	for _, n := range f.node.Content {
		n = resolve(n)
		if n.Kind != yaml.ScalarNode {
			f.d.problem(f.rule, f.name, f.key, n.Line, "must list single values, not lists or mappings")
			continue
		}
		v := n.Value
		if isNull(n) {
			v = ""
		}
		if check != nil && v != "" {
			if msg := check(v); msg != "" {
				f.d.problem(f.rule, f.name, f.key, n.Line, "%s", msg)
				continue
			}
		}
		out = append(out, v)
	}
	return out
}

func checkUserOrGroup(id string) string {
	if id == approvals.Any || slackapp.ValidUserOrGroupID(id) {
		return ""
	}
	return fmt.Sprintf("%q is not a Slack user id (U…, W…) or user-group id (S…): copy it from the person's or group's profile", id)
}

func checkChannel(id string) string {
	if id == approvals.Any || slackapp.ValidChannelID(id) {
		return ""
	}
	return fmt.Sprintf("%q is not a Slack channel id (C…, G…, D…): copy it from the channel's details, not its #name", id)
}

func (f field) integer(def int) int {
	if isNull(f.node) {
		return def
	}
	if f.node.Kind == yaml.ScalarNode && f.node.ShortTag() == "!!int" {
		if n, err := strconv.Atoi(f.node.Value); err == nil {
			return n
		}
	}
	f.bad("must be a whole number, like 2")
	return def
}

func (f field) duration(def time.Duration) time.Duration {
	if isNull(f.node) {
		return def
	}
	if f.node.Kind != yaml.ScalarNode {
		f.bad("must be a duration, like 4h, not a list or mapping")
		return def
	}
	if d, err := time.ParseDuration(f.node.Value); err == nil {
		return d
	}
	if d, err := approvals.ParseDuration(f.node.Value); err == nil {
		return d
	}
	f.bad("%q is not a duration: use a number and a unit s, m, h or d, like 30m, 4h, 2d or 1h30m", f.node.Value)
	return def
}

func (f field) boolean() bool {
	var b bool
	if f.node.Kind == yaml.ScalarNode && f.node.ShortTag() == "!!bool" && f.node.Decode(&b) == nil {
		return b
	}
	if !isNull(f.node) {
		f.bad("must be true or false")
	}
	return false
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// resolve follows YAML aliases (*name) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}
