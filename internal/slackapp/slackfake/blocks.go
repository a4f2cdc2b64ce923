package slackfake

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Block Kit limits the fake enforces, from Slack's Block Kit reference.
const (
	MaxBlocks            = 50
	MaxMessageText       = 40000
	MaxSectionText       = 3000
	MaxSectionFields     = 10
	MaxSectionFieldText  = 2000
	MaxHeaderText        = 150
	MaxContextElements   = 10
	MaxActionsElements   = 25
	MaxBlockID           = 255
	MaxActionID          = 255
	MaxButtonText        = 75
	MaxButtonValue       = 2000
	MaxURL               = 3000
	MaxConfirmTitle      = 100
	MaxConfirmText       = 300
	MaxConfirmButtonText = 30
	MaxPlaceholder       = 150
	MaxOptionText        = 75
	MaxOptionValue       = 150
	MaxSelectOptions     = 100
	MaxAltText           = 2000
	MaxMarkdownBlockText = 12000
	MaxInputLabel        = 2000
)

// blockCheck collects Block Kit violations, each worded like Slack's
// "must be less than 3001 characters [json-pointer:/blocks/0/text/text]".
type blockCheck struct {
	errs     []string
	blockIDs map[string]bool
}

// validateBlocks checks a blocks array as sent in a request. It returns
// ("invalid_blocks_format", …) when raw is not a JSON array of objects and
// ("invalid_blocks", errors) when a block breaks a rule; ("", nil) when valid.
func validateBlocks(raw string) (string, []string) {
	return validateBlocksMax(raw, MaxBlocks)
}

// validateBlocksMax is validateBlocks with a limit of max blocks: 50 in a
// message, 100 in a modal.
func validateBlocksMax(raw string, max int) (string, []string) {
	var blocks []any
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil {
		return "invalid_blocks_format", []string{"blocks must be a JSON array: " + err.Error()}
	}
	c := &blockCheck{blockIDs: map[string]bool{}}
	if len(blocks) > max {
		c.errorf("/blocks", "no more than %d items allowed", max)
	}
	for i, b := range blocks {
		c.block(fmt.Sprintf("/blocks/%d", i), b)
	}
	if len(c.errs) > 0 {
		return "invalid_blocks", c.errs
	}
	return "", nil
}

func (c *blockCheck) errorf(ptr, format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...)+" [json-pointer:"+ptr+"]")
}

func (c *blockCheck) block(ptr string, v any) {
	b, ok := v.(map[string]any)
	if !ok {
		c.errorf(ptr, "must be an object")
		return
	}
	typ, _ := b["type"].(string)
	if id, present := b["block_id"]; present {
		s, ok := id.(string)
		switch {
		case !ok:
			c.errorf(ptr+"/block_id", "must be a string")
		case utf8.RuneCountInString(s) > MaxBlockID:
			c.errorf(ptr+"/block_id", "must be less than %d characters", MaxBlockID+1)
		case c.blockIDs[s]:
			c.errorf(ptr+"/block_id", "duplicate block_id %q", s)
		default:
			c.blockIDs[s] = true
		}
	}
	switch typ {
	case "section":
		_, hasText := b["text"]
		fields, hasFields := b["fields"]
		if !hasText && !hasFields {
			c.errorf(ptr, "must provide either text or fields")
		}
		if hasText {
			c.textObject(ptr+"/text", b["text"], MaxSectionText, false)
		}
		if hasFields {
			arr, ok := fields.([]any)
			switch {
			case !ok:
				c.errorf(ptr+"/fields", "must be an array")
			case len(arr) == 0:
				c.errorf(ptr+"/fields", "must have at least 1 item")
			case len(arr) > MaxSectionFields:
				c.errorf(ptr+"/fields", "no more than %d items allowed", MaxSectionFields)
			}
			for i, f := range arr {
				c.textObject(fmt.Sprintf("%s/fields/%d", ptr, i), f, MaxSectionFieldText, false)
			}
		}
		if acc, ok := b["accessory"]; ok {
			c.element(ptr+"/accessory", acc, nil)
		}
	case "divider":
	case "header":
		c.textObject(ptr+"/text", b["text"], MaxHeaderText, true)
	case "context":
		arr, ok := b["elements"].([]any)
		switch {
		case !ok || len(arr) == 0:
			c.errorf(ptr+"/elements", "must have at least 1 item")
		case len(arr) > MaxContextElements:
			c.errorf(ptr+"/elements", "no more than %d items allowed", MaxContextElements)
		}
		for i, e := range arr {
			p := fmt.Sprintf("%s/elements/%d", ptr, i)
			if m, ok := e.(map[string]any); ok && m["type"] == "image" {
				c.image(p, m)
				continue
			}
			c.textObject(p, e, MaxSectionText, false)
		}
	case "actions":
		arr, ok := b["elements"].([]any)
		switch {
		case !ok || len(arr) == 0:
			c.errorf(ptr+"/elements", "must have at least 1 item")
		case len(arr) > MaxActionsElements:
			c.errorf(ptr+"/elements", "no more than %d items allowed", MaxActionsElements)
		}
		actionIDs := map[string]bool{}
		primaries := 0
		for i, e := range arr {
			p := fmt.Sprintf("%s/elements/%d", ptr, i)
			c.element(p, e, actionIDs)
			if m, ok := e.(map[string]any); ok && m["type"] == "button" && m["style"] == "primary" {
				primaries++
				if primaries > 1 {
					c.errorf(p+"/style", "only one button in a set may be primary")
				}
			}
		}
	case "image":
		c.image(ptr, b)
		if t, ok := b["title"]; ok {
			c.textObject(ptr+"/title", t, MaxAltText, true)
		}
	case "input":
		c.textObject(ptr+"/label", b["label"], MaxInputLabel, true)
		if h, ok := b["hint"]; ok {
			c.textObject(ptr+"/hint", h, MaxInputLabel, true)
		}
		if e, ok := b["element"]; ok {
			c.element(ptr+"/element", e, nil)
		} else {
			c.errorf(ptr+"/element", "is required")
		}
	case "markdown":
		c.stringField(ptr, b, "text", MaxMarkdownBlockText, true)
	case "rich_text", "file", "video", "table", "call", "context_actions":
		// Accepted as is: rolegate doesn't send these, and their schemas are large.
	case "":
		c.errorf(ptr+"/type", "is required")
	default:
		c.errorf(ptr+"/type", "unsupported type %q", typ)
	}
}

// textObject checks a composition text object: plain_text (or mrkdwn unless
// plainOnly) with 1..max characters of text.
func (c *blockCheck) textObject(ptr string, v any, max int, plainOnly bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.errorf(ptr, "must be a text object")
		return
	}
	switch m["type"] {
	case "plain_text":
	case "mrkdwn":
		if plainOnly {
			c.errorf(ptr+"/type", "must be plain_text")
		}
	default:
		c.errorf(ptr+"/type", "must be plain_text or mrkdwn")
	}
	c.stringField(ptr, m, "text", max, true)
}

// stringField checks that obj[key] is a string of at most max characters, and
// present and non-empty when required.
func (c *blockCheck) stringField(ptr string, obj map[string]any, key string, max int, required bool) {
	v, present := obj[key]
	if !present {
		if required {
			c.errorf(ptr+"/"+key, "is required")
		}
		return
	}
	s, ok := v.(string)
	switch {
	case !ok:
		c.errorf(ptr+"/"+key, "must be a string")
	case required && s == "":
		c.errorf(ptr+"/"+key, "must be more than 0 characters")
	case utf8.RuneCountInString(s) > max:
		c.errorf(ptr+"/"+key, "must be less than %d characters", max+1)
	}
}

func (c *blockCheck) image(ptr string, m map[string]any) {
	if _, ok := m["slack_file"]; !ok {
		c.stringField(ptr, m, "image_url", MaxURL, true)
	}
	c.stringField(ptr, m, "alt_text", MaxAltText, true)
}

func (c *blockCheck) actionID(ptr string, m map[string]any, seen map[string]bool) {
	c.stringField(ptr, m, "action_id", MaxActionID, false)
	id, ok := m["action_id"].(string)
	if !ok || id == "" || seen == nil {
		return
	}
	if seen[id] {
		c.errorf(ptr+"/action_id", "duplicate action_id %q", id)
	}
	seen[id] = true
}

// element checks an interactive element; seen collects action ids of the
// enclosing actions block, nil elsewhere.
func (c *blockCheck) element(ptr string, v any, seen map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.errorf(ptr, "must be an object")
		return
	}
	typ, _ := m["type"].(string)
	switch typ {
	case "button":
		c.textObject(ptr+"/text", m["text"], MaxButtonText, true)
		c.actionID(ptr, m, seen)
		c.stringField(ptr, m, "value", MaxButtonValue, false)
		c.stringField(ptr, m, "url", MaxURL, false)
		c.stringField(ptr, m, "accessibility_label", MaxButtonText, false)
		if st, ok := m["style"]; ok && st != "primary" && st != "danger" {
			c.errorf(ptr+"/style", "must be primary or danger")
		}
		c.confirm(ptr, m)
	case "workflow_button":
		c.textObject(ptr+"/text", m["text"], MaxButtonText, true)
		c.actionID(ptr, m, seen)
	case "static_select", "multi_static_select":
		c.actionID(ptr, m, seen)
		c.placeholder(ptr, m)
		_, hasOpts := m["options"]
		_, hasGroups := m["option_groups"]
		if !hasOpts && !hasGroups {
			c.errorf(ptr, "must provide either options or option_groups")
		}
		if hasOpts {
			c.options(ptr+"/options", m["options"], 1, MaxSelectOptions, true)
		}
		if hasGroups {
			groups, _ := m["option_groups"].([]any)
			if len(groups) == 0 || len(groups) > MaxSelectOptions {
				c.errorf(ptr+"/option_groups", "must have 1 to %d items", MaxSelectOptions)
			}
			for i, g := range groups {
				gp := fmt.Sprintf("%s/option_groups/%d", ptr, i)
				gm, _ := g.(map[string]any)
				c.textObject(gp+"/label", gm["label"], MaxOptionText, true)
				c.options(gp+"/options", gm["options"], 1, MaxSelectOptions, true)
			}
		}
		c.confirm(ptr, m)
	case "external_select", "multi_external_select", "users_select", "multi_users_select",
		"conversations_select", "multi_conversations_select", "channels_select", "multi_channels_select":
		c.actionID(ptr, m, seen)
		c.placeholder(ptr, m)
		c.confirm(ptr, m)
	case "overflow":
		c.actionID(ptr, m, seen)
		c.options(ptr+"/options", m["options"], 1, 5, true)
		c.confirm(ptr, m)
	case "checkboxes", "radio_buttons":
		c.actionID(ptr, m, seen)
		c.options(ptr+"/options", m["options"], 1, 10, false)
		c.confirm(ptr, m)
	case "datepicker", "timepicker", "plain_text_input", "email_text_input", "url_text_input",
		"number_input", "rich_text_input", "file_input":
		c.actionID(ptr, m, seen)
		c.placeholder(ptr, m)
		c.confirm(ptr, m)
	case "datetimepicker":
		c.actionID(ptr, m, seen)
		c.confirm(ptr, m)
	case "image":
		c.image(ptr, m)
	case "":
		c.errorf(ptr+"/type", "is required")
	default:
		c.errorf(ptr+"/type", "unsupported type %q", typ)
	}
}

func (c *blockCheck) placeholder(ptr string, m map[string]any) {
	if p, ok := m["placeholder"]; ok {
		c.textObject(ptr+"/placeholder", p, MaxPlaceholder, true)
	}
}

// options checks an options array of lo..hi option objects; plainOnly for selects
// and overflow menus, whose option text must be plain_text.
func (c *blockCheck) options(ptr string, v any, lo, hi int, plainOnly bool) {
	arr, ok := v.([]any)
	if !ok || len(arr) < lo || len(arr) > hi {
		c.errorf(ptr, "must have %d to %d items", lo, hi)
	}
	for i, o := range arr {
		op := fmt.Sprintf("%s/%d", ptr, i)
		om, ok := o.(map[string]any)
		if !ok {
			c.errorf(op, "must be an object")
			continue
		}
		c.textObject(op+"/text", om["text"], MaxOptionText, plainOnly)
		c.stringField(op, om, "value", MaxOptionValue, true)
		if d, ok := om["description"]; ok {
			c.textObject(op+"/description", d, MaxOptionText, plainOnly)
		}
		c.stringField(op, om, "url", MaxURL, false)
	}
}

// confirm checks a confirmation dialog object, when m has one: title, text,
// confirm and deny are all required.
func (c *blockCheck) confirm(ptr string, m map[string]any) {
	v, ok := m["confirm"]
	if !ok {
		return
	}
	ptr += "/confirm"
	cm, ok := v.(map[string]any)
	if !ok {
		c.errorf(ptr, "must be an object")
		return
	}
	c.textObject(ptr+"/title", cm["title"], MaxConfirmTitle, true)
	c.textObject(ptr+"/text", cm["text"], MaxConfirmText, false)
	c.textObject(ptr+"/confirm", cm["confirm"], MaxConfirmButtonText, true)
	c.textObject(ptr+"/deny", cm["deny"], MaxConfirmButtonText, true)
	if st, ok := cm["style"]; ok && st != "primary" && st != "danger" {
		c.errorf(ptr+"/style", "must be primary or danger")
	}
}

// VisibleText returns what a reader sees of a message, one piece per line: text
// (the top-level text, which Slack shows in notifications when there are
// blocks), then for each block its header, section text, fields and accessory
// button, context texts, button texts, markdown text and rich text. It is meant
// for assertions like "the message names the approver" or "no raw <@U…>
// mention leaked through". blocks may be nil.
func VisibleText(text string, blocks json.RawMessage) string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	add(text)
	for _, b := range decodeBlocks(blocks) {
		switch b["type"] {
		case "header":
			add(textOf(b["text"]))
		case "section":
			add(textOf(b["text"]))
			if fields, ok := b["fields"].([]any); ok {
				for _, f := range fields {
					add(textOf(f))
				}
			}
			add(elementText(b["accessory"]))
		case "context":
			if els, ok := b["elements"].([]any); ok {
				for _, e := range els {
					add(textOf(e))
				}
			}
		case "actions":
			if els, ok := b["elements"].([]any); ok {
				for _, e := range els {
					add(elementText(e))
				}
			}
		case "markdown":
			s, _ := b["text"].(string)
			add(s)
		case "image":
			add(textOf(b["title"]))
		case "rich_text":
			var sb strings.Builder
			richText(&sb, b["elements"])
			add(sb.String())
		}
	}
	return strings.Join(parts, "\n")
}

// textOf returns the text of a text object, or "".
func textOf(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	s, _ := m["text"].(string)
	return s
}

// elementText returns the visible label of an interactive element: a button's
// text, or a select's placeholder.
func elementText(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	switch m["type"] {
	case "button", "workflow_button":
		return textOf(m["text"])
	}
	return textOf(m["placeholder"])
}

// richText appends the text of rich_text elements, depth first.
func richText(sb *strings.Builder, v any) {
	arr, ok := v.([]any)
	if !ok {
		return
	}
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		switch m["type"] {
		case "text", "link":
			if s, ok := m["text"].(string); ok {
				sb.WriteString(s)
			} else if u, ok := m["url"].(string); ok {
				sb.WriteString(u)
			}
		case "user":
			sb.WriteString("<@" + fmt.Sprint(m["user_id"]) + ">")
		case "emoji":
			sb.WriteString(":" + fmt.Sprint(m["name"]) + ":")
		}
		richText(sb, m["elements"])
	}
}
