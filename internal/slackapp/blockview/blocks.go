package blockview

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"
)

// Message is one message as a reader sees it in a channel.
type Message struct {
	// Text is the top-level text. Slack shows it in the channel only when
	// there are no blocks (otherwise it is the notification's text).
	Text string
	// Blocks is the blocks array as posted; nil for a text-only message.
	Blocks json.RawMessage
	// Author is who posted it, like "rolegate".
	Author string
	// Time is shown next to the author, already formatted ("2:03 PM").
	Time string
	// Note is a line above the message, like "Only visible to you" or
	// "replied to a thread".
	Note string
}

// block is the part of a Block Kit block this package reads. Unknown
// fields are ignored; unknown block types are shown by their type.
type block struct {
	Type      string    `json:"type"`
	Text      any       `json:"text"` // a text object, or a string for "markdown" blocks
	Fields    []textObj `json:"fields"`
	Accessory *element  `json:"accessory"`
	Elements  []element `json:"elements"`
	AltText   string    `json:"alt_text"`
	Title     *textObj  `json:"title"`
	Label     *textObj  `json:"label"`
	Element   *element  `json:"element"`
}

// textObj is a composition text object.
type textObj struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// element is an interactive element, or a context element (a text object
// or an image).
type element struct {
	Type        string   `json:"type"`
	Text        any      `json:"text"` // a text object for buttons; a string for context texts
	Style       string   `json:"style"`
	Placeholder *textObj `json:"placeholder"`
	AltText     string   `json:"alt_text"`
	ActionID    string   `json:"action_id"`
}

// decode reads a blocks array. A malformed array yields an error; rolegate
// never posts one, and Slack would refuse it.
func decode(raw json.RawMessage) ([]block, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var bs []block
	if err := json.Unmarshal(raw, &bs); err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	return bs, nil
}

// textOf returns a text object's text and whether it is mrkdwn. v is a
// decoded JSON object (or a string, for markdown blocks).
func textOf(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case map[string]any:
		s, _ := t["text"].(string)
		return s, t["type"] == "mrkdwn"
	}
	return "", false
}

// elementLabel is what an interactive element shows: a button's text, a
// menu's placeholder.
func elementLabel(e element) string {
	switch e.Type {
	case "button", "workflow_button":
		s, _ := textOf(e.Text)
		return s
	case "overflow":
		return "⋯"
	case "image":
		return "image: " + e.AltText
	}
	if e.Placeholder != nil {
		return e.Placeholder.Text + " ▾"
	}
	return e.Type + " ▾"
}

// TextLines renders a message for a terminal: one line per block (more for
// a section with several lines or fields), mrkdwn made readable by [Text].
// A message without blocks shows its text.
func TextLines(m Message, dir Directory) ([]string, error) {
	bs, err := decode(m.Blocks)
	if err != nil {
		return nil, err
	}
	show := func(v any) string {
		s, md := textOf(v)
		if md {
			return Text(s, dir)
		}
		return emojify(s)
	}
	var out []string
	// Slack drops trailing blank lines of a text; so does this.
	add := func(s string) { out = append(out, strings.Split(strings.TrimRight(s, "\n"), "\n")...) }
	if len(bs) == 0 {
		add(Text(m.Text, dir))
		return out, nil
	}
	for _, b := range bs {
		switch b.Type {
		case "header":
			h := show(b.Text)
			add(h)
			add(strings.Repeat("─", min(len([]rune(h)), 72)))
		case "section":
			line := ""
			if b.Text != nil {
				line = show(b.Text)
			}
			if b.Accessory != nil {
				line += "  [" + elementLabel(*b.Accessory) + "]"
			}
			if line != "" {
				add(line)
			}
			for _, f := range b.Fields {
				// A field is usually "*Label*\nvalue": one line reads better.
				add(strings.ReplaceAll(show(map[string]any{"type": f.Type, "text": f.Text}), "\n", "  "))
			}
		case "context":
			var parts []string
			for _, e := range b.Elements {
				if e.Type == "image" {
					parts = append(parts, "["+e.AltText+"]")
					continue
				}
				parts = append(parts, show(map[string]any{"type": e.Type, "text": e.Text}))
			}
			add("· " + strings.Join(parts, "  ·  "))
		case "actions":
			var parts []string
			for _, e := range b.Elements {
				parts = append(parts, "["+elementLabel(e)+"]")
			}
			add(strings.Join(parts, " "))
		case "divider":
			add(strings.Repeat("─", 24))
		case "markdown":
			add(show(b.Text))
		case "image":
			add("[image: " + b.AltText + "]")
		case "input":
			label := ""
			if b.Label != nil {
				label = b.Label.Text
			}
			add(label + ": [" + elementLabel(derefElement(b.Element)) + "]")
		default:
			add("[" + b.Type + " block]")
		}
	}
	return out, nil
}

func derefElement(e *element) element {
	if e == nil {
		return element{}
	}
	return *e
}

// blocksHTML renders a blocks array (or, without blocks, the text) as the
// body of one message.
func blocksHTML(m Message, dir Directory) (string, error) {
	bs, err := decode(m.Blocks)
	if err != nil {
		return "", err
	}
	show := func(v any) string {
		s, md := textOf(v)
		if md {
			return mrkdwnHTML(s, dir)
		}
		return html.EscapeString(emojify(s))
	}
	var b strings.Builder
	if len(bs) == 0 {
		b.WriteString(`<div class="block section">` + mrkdwnHTML(m.Text, dir) + `</div>`)
		return b.String(), nil
	}
	for _, bl := range bs {
		switch bl.Type {
		case "header":
			b.WriteString(`<div class="block header">` + show(bl.Text) + `</div>`)
		case "section":
			b.WriteString(`<div class="block section"><div class="section-body">`)
			if bl.Text != nil {
				b.WriteString(`<div class="section-text">` + show(bl.Text) + `</div>`)
			}
			if len(bl.Fields) > 0 {
				b.WriteString(`<div class="fields">`)
				for _, f := range bl.Fields {
					b.WriteString(`<div class="field">` + show(map[string]any{"type": f.Type, "text": f.Text}) + `</div>`)
				}
				b.WriteString(`</div>`)
			}
			b.WriteString(`</div>`)
			if bl.Accessory != nil {
				b.WriteString(`<div class="accessory">` + elementHTML(*bl.Accessory) + `</div>`)
			}
			b.WriteString(`</div>`)
		case "context":
			b.WriteString(`<div class="block context">`)
			for _, e := range bl.Elements {
				if e.Type == "image" {
					b.WriteString(`<span class="context-image" title="` + html.EscapeString(e.AltText) + `"></span>`)
					continue
				}
				b.WriteString(`<span class="context-text">` + show(map[string]any{"type": e.Type, "text": e.Text}) + `</span>`)
			}
			b.WriteString(`</div>`)
		case "actions":
			b.WriteString(`<div class="block actions">`)
			for _, e := range bl.Elements {
				b.WriteString(elementHTML(e))
			}
			b.WriteString(`</div>`)
		case "divider":
			b.WriteString(`<hr class="block divider">`)
		case "markdown":
			b.WriteString(`<div class="block section">` + show(bl.Text) + `</div>`)
		case "image":
			b.WriteString(`<div class="block image">` + html.EscapeString("[image: "+bl.AltText+"]") + `</div>`)
		case "input":
			label := ""
			if bl.Label != nil {
				label = bl.Label.Text
			}
			b.WriteString(`<div class="block input"><div class="input-label">` + html.EscapeString(label) + `</div>` +
				elementHTML(derefElement(bl.Element)) + `</div>`)
		default:
			b.WriteString(`<div class="block unknown">` + html.EscapeString("["+bl.Type+" block]") + `</div>`)
		}
	}
	return b.String(), nil
}

// elementHTML draws an interactive element as a (dead) control.
func elementHTML(e element) string {
	class := "button"
	switch e.Style {
	case "primary":
		class += " primary"
	case "danger":
		class += " danger"
	}
	if e.Type != "button" && e.Type != "workflow_button" {
		class += " menu"
	}
	return `<span class="` + class + `">` + html.EscapeString(emojify(elementLabel(e))) + `</span>`
}
