// Package blockview shows Slack messages to people outside Slack: as
// terminal text (one line per block, `bot demo`) and as an HTML page styled
// like Slack's client (the pictures in docs/). It reads the Block Kit JSON a
// message was posted with, so what it shows is what rolegate sent.
//
// Everything a message holds is treated as untrusted: mrkdwn is parsed into
// text and a fixed set of tags, and every piece of text is HTML-escaped, so
// no message can put markup or script in the page.
package blockview

import (
	"html"
	"strings"
	"unicode"
)

// Directory names what mentions point at. Unknown ids are shown as they are
// (@U0123, #C0123).
type Directory struct {
	// Users maps a user id (U…, W…) to a display name, without "@".
	Users map[string]string
	// Channels maps a channel id (C…, G…, D…) to its name, without "#".
	Channels map[string]string
	// UserGroups maps a user-group id (S…) to its handle, without "@".
	UserGroups map[string]string
}

// emoji are the shortcodes rolegate writes, shown as the characters Slack
// draws for them. Others stay as :shortcode:.
var emoji = map[string]string{
	"white_check_mark":          "✅",
	"hourglass_flowing_sand":    "⏳",
	"x":                         "❌",
	"no_entry":                  "⛔",
	"no_entry_sign":             "🚫",
	"alarm_clock":               "⏰",
	"heavy_multiplication_x":    "✖️",
	"warning":                   "⚠️",
	"rotating_light":            "🚨",
	"lock":                      "🔒",
	"unlock":                    "🔓",
	"key":                       "🔑",
	"hourglass":                 "⌛",
	"information_source":        "ℹ️",
	"bust_in_silhouette":        "👤",
	"busts_in_silhouette":       "👥",
	"stopwatch":                 "⏱️",
	"clipboard":                 "📋",
	"link":                      "🔗",
	"eyes":                      "👀",
	"arrow_right":               "➡️",
	"heavy_check_mark":          "✔️",
	"large_green_circle":        "🟢",
	"red_circle":                "🔴",
	"test_tube":                 "🧪",
	"memo":                      "📝",
	"construction":              "🚧",
	"back":                      "🔙",
	"leftwards_arrow_with_hook": "↩️",
}

// inline is one piece of a line of mrkdwn: text (escapes decoded) or an
// entity (<@U…>, <!date…>, <http…|label>) already resolved.
type inline struct {
	entity bool
	text   string // what a reader sees
	kind   string // for entities: "mention", "link", "date", "broadcast", "channel"
	href   string // for links
}

// placeholder stands for an entity while formatting markers are matched, so
// an entity counts as one non-space character.
const placeholder = '\uE000'

// parseEntities splits one line of raw mrkdwn into text and entities. Text
// has &amp; &lt; &gt; decoded; a lone "<" (not closed on the line) is text.
func parseEntities(s string, dir Directory) []inline {
	var out []inline
	text := func(t string) {
		if t != "" {
			out = append(out, inline{text: unescape(t)})
		}
	}
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			text(s)
			return out
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			text(s)
			return out
		}
		text(s[:i])
		out = append(out, entity(s[i+1:i+j], dir))
		s = s[i+j+1:]
	}
}

// entity resolves the inside of <…>.
func entity(body string, dir Directory) inline {
	target, label, hasLabel := strings.Cut(body, "|")
	label = unescape(label)
	switch {
	case strings.HasPrefix(target, "@"):
		id := target[1:]
		if name, ok := dir.Users[id]; ok {
			return inline{entity: true, kind: "mention", text: "@" + name}
		}
		if hasLabel {
			return inline{entity: true, kind: "mention", text: "@" + strings.TrimPrefix(label, "@")}
		}
		return inline{entity: true, kind: "mention", text: "@" + id}
	case strings.HasPrefix(target, "#"):
		id := target[1:]
		if name, ok := dir.Channels[id]; ok {
			return inline{entity: true, kind: "channel", text: "#" + name}
		}
		if hasLabel {
			return inline{entity: true, kind: "channel", text: "#" + strings.TrimPrefix(label, "#")}
		}
		return inline{entity: true, kind: "channel", text: "#" + id}
	case strings.HasPrefix(target, "!date^"):
		// <!date^unix^format^optional_link|fallback>: the fallback is what a
		// client that cannot format the date shows; it is exact and stable.
		if hasLabel {
			return inline{entity: true, kind: "date", text: label}
		}
		return inline{entity: true, kind: "date", text: target}
	case strings.HasPrefix(target, "!subteam^"):
		id := strings.TrimPrefix(target, "!subteam^")
		if name, ok := dir.UserGroups[id]; ok {
			return inline{entity: true, kind: "mention", text: "@" + name}
		}
		if hasLabel {
			return inline{entity: true, kind: "mention", text: "@" + strings.TrimPrefix(label, "@")}
		}
		return inline{entity: true, kind: "mention", text: "@" + id}
	case target == "!here" || target == "!channel" || target == "!everyone":
		return inline{entity: true, kind: "broadcast", text: "@" + target[1:]}
	case strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:"):
		href := unescape(target)
		if hasLabel {
			return inline{entity: true, kind: "link", text: label, href: href}
		}
		return inline{entity: true, kind: "link", text: href, href: href}
	}
	// Not an entity Slack knows: Slack shows nothing useful; showing the
	// text is the honest choice, and it is escaped like any text.
	return inline{text: unescape("<" + body + ">")}
}

var unescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// unescape decodes the three escapes mrkdwn has.
func unescape(s string) string { return unescaper.Replace(s) }

// Text returns mrkdwn as a terminal shows it: mentions as @name, dates as
// their fallback text, links as "label (url)", escapes decoded, emoji
// shortcodes as characters; the formatting marks (*bold*, _italic_, `code`,
// > quote) stay, since they read well as they are.
func Text(s string, dir Directory) string {
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		var b strings.Builder
		for _, p := range parseEntities(line, dir) {
			switch {
			case p.kind == "link" && p.text != p.href:
				b.WriteString(p.text + " (" + p.href + ")")
			case p.entity:
				b.WriteString(p.text)
			default:
				b.WriteString(emojify(p.text))
			}
		}
		lines[i] = b.String()
	}
	return strings.Join(lines, "\n")
}

// emojify replaces the known :shortcodes: in s.
func emojify(s string) string {
	if !strings.Contains(s, ":") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], ':')
		if j < 0 {
			break
		}
		if e, ok := emoji[s[i+1:i+1+j]]; ok {
			b.WriteString(s[:i] + e)
			s = s[i+j+2:]
			continue
		}
		b.WriteString(s[:i+1])
		s = s[i+1:]
	}
	b.WriteString(s)
	return b.String()
}

// mrkdwnHTML renders mrkdwn as HTML: ```preformatted``` blocks, > quotes,
// and on each line `code`, *bold*, _italic_ and ~strike~, mentions and links.
// Only tags it writes itself appear; all text is escaped.
func mrkdwnHTML(s string, dir Directory) string {
	var b strings.Builder
	for k, part := range strings.Split(s, "```") {
		if k%2 == 1 {
			b.WriteString(`<pre class="pre">`)
			b.WriteString(html.EscapeString(unescape(strings.Trim(part, "\n"))))
			b.WriteString(`</pre>`)
			continue
		}
		writeLines(&b, part, dir)
	}
	return b.String()
}

// writeLines renders lines outside preformatted blocks, grouping quoted
// lines ("> …", or ">" alone) into one blockquote.
func writeLines(b *strings.Builder, s string, dir Directory) {
	if s == "" {
		return
	}
	type run struct {
		quoted bool
		lines  []string
	}
	var runs []run
	for _, line := range strings.Split(s, "\n") {
		quoted := line == ">" || strings.HasPrefix(line, "> ")
		if quoted {
			line = strings.TrimPrefix(strings.TrimPrefix(line, ">"), " ")
		}
		if n := len(runs); n > 0 && runs[n-1].quoted == quoted {
			runs[n-1].lines = append(runs[n-1].lines, line)
			continue
		}
		runs = append(runs, run{quoted: quoted, lines: []string{line}})
	}
	for _, r := range runs {
		parts := make([]string, len(r.lines))
		for i, line := range r.lines {
			parts[i] = lineHTML(line, dir)
		}
		if r.quoted {
			b.WriteString("<blockquote>" + strings.Join(parts, "<br>") + "</blockquote>")
			continue
		}
		b.WriteString(strings.Join(parts, "<br>"))
	}
}

// marks are the inline formatting markers and the tags they become.
var marks = map[rune][2]string{
	'*': {"<b>", "</b>"},
	'_': {"<i>", "</i>"},
	'~': {"<s>", "</s>"},
	'`': {`<code>`, `</code>`},
}

// lineHTML renders one line: entities, then formatting markers matched as
// Slack matches them (an opening marker after a space or punctuation and
// before a non-space, its closing one before a space, punctuation or the end).
func lineHTML(line string, dir Directory) string {
	pieces := parseEntities(line, dir)
	var runes []rune
	var ents []inline
	for _, p := range pieces {
		if p.entity {
			runes = append(runes, placeholder)
			ents = append(ents, p)
			continue
		}
		runes = append(runes, []rune(p.text)...)
	}
	var b strings.Builder
	renderRunes(&b, runes, ents, new(int), true)
	return b.String()
}

// renderRunes writes rs, turning matched markers into tags. ent counts the
// entities written so far, so placeholders find theirs. format is false
// inside code, where markers are text.
func renderRunes(b *strings.Builder, rs []rune, ents []inline, ent *int, format bool) {
	var text []rune
	flush := func() {
		b.WriteString(html.EscapeString(emojify(string(text))))
		text = text[:0]
	}
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if r == placeholder {
			flush()
			writeEntity(b, ents[*ent])
			*ent++
			continue
		}
		tags, isMark := marks[r]
		if !format || !isMark || !opens(rs, i) {
			text = append(text, r)
			continue
		}
		j := closing(rs, i)
		if j < 0 {
			text = append(text, r)
			continue
		}
		flush()
		b.WriteString(tags[0])
		if r == '`' {
			renderRunes(b, rs[i+1:j], ents, ent, false)
		} else {
			renderRunes(b, rs[i+1:j], ents, ent, true)
		}
		b.WriteString(tags[1])
		i = j
	}
	flush()
}

// opens reports whether the marker at i may open a span.
func opens(rs []rune, i int) bool {
	if i+1 >= len(rs) || unicode.IsSpace(rs[i+1]) || rs[i+1] == rs[i] {
		return false
	}
	return i == 0 || !isWordRune(rs[i-1])
}

// closing finds the marker closing the span opened at i, or -1.
func closing(rs []rune, i int) int {
	for j := i + 2; j < len(rs); j++ {
		if rs[j] != rs[i] || unicode.IsSpace(rs[j-1]) {
			continue
		}
		if j+1 == len(rs) || !isWordRune(rs[j+1]) {
			return j
		}
	}
	return -1
}

func isWordRune(r rune) bool {
	return r == placeholder || unicode.IsLetter(r) || unicode.IsDigit(r)
}

func writeEntity(b *strings.Builder, e inline) {
	switch e.kind {
	case "link":
		// Links are shown, not followed: the page is a picture.
		b.WriteString(`<span class="link">` + html.EscapeString(e.text) + `</span>`)
	case "mention", "channel", "broadcast":
		b.WriteString(`<span class="mention">` + html.EscapeString(e.text) + `</span>`)
	case "date":
		b.WriteString(`<span class="date">` + html.EscapeString(e.text) + `</span>`)
	default:
		b.WriteString(html.EscapeString(e.text))
	}
}
