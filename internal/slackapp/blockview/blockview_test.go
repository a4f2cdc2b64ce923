package blockview

import (
	"encoding/json"
	"strings"
	"testing"
)

var dir = Directory{
	Users:      map[string]string{"U0ANA": "ana"},
	Channels:   map[string]string{"C0001": "access-requests"},
	UserGroups: map[string]string{"S0OPS": "ops"},
}

// hostile is text a requester or OpenAI could put in a message, escaped
// for mrkdwn as rolegate sends it, and as it would be if someone forgot to.
const (
	hostileEscaped = `&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(2)&gt;`
	hostileRaw     = `<script>alert(1)</script> <img src=x onerror=alert(2)> "><b onmouseover=x>`
)

// noMarkup fails when page holds any tag the renderer did not write.
func noMarkup(t *testing.T, page string) {
	t.Helper()
	for _, bad := range []string{"<script", "<img", "onerror=alert(2)>", "<b onmouseover"} {
		if strings.Contains(page, bad) {
			_, body, _ := strings.Cut(page, "<body>")
			t.Errorf("output contains %q:\n%s", bad, body)
		}
	}
}

func TestMrkdwnHTML(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"*bold* and _italic_ and ~gone~", "<b>bold</b> and <i>italic</i> and <s>gone</s>"},
		{"`proj_abc`", "<code>proj_abc</code>"},
		{"`*not bold* inside code`", "<code>*not bold* inside code</code>"},
		{"snake_case_name stays", "snake_case_name stays"},
		{"2 * 3 * 4", "2 * 3 * 4"},
		{"*Requester*\n<@U0ANA>", `<b>Requester</b><br><span class="mention">@ana</span>`},
		{"<@U0NOBODY> <@U0X|bob>", `<span class="mention">@U0NOBODY</span> <span class="mention">@bob</span>`},
		{"by <!date^1700000000^{date_short_pretty} at {time}|2023-11-14 22:13 UTC>.", `by <span class="date">2023-11-14 22:13 UTC</span>.`},
		{"<!here> <!subteam^S0OPS> <#C0001>", `<span class="mention">@here</span> <span class="mention">@ops</span> <span class="mention">#access-requests</span>`},
		{"<https://example.com/a?b=1&amp;c=2|the docs>", `<span class="link">the docs</span>`},
		{"> quoted\n> two\nafter", "<blockquote>quoted<br>two</blockquote>after"},
		{"```line <1>\nline 2```", `<pre class="pre">line &lt;1&gt;` + "\n" + `line 2</pre>`},
		{":white_check_mark: *Approved*", "✅ <b>Approved</b>"},
		{"a &amp; b &lt;c&gt;", "a &amp; b &lt;c&gt;"},
		{"*<@U0ANA>*", `<b><span class="mention">@ana</span></b>`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := mrkdwnHTML(tt.in, dir); got != tt.want {
				t.Errorf("mrkdwnHTML(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"*Requester*\n<@U0ANA>", "*Requester*\n@ana"},
		{"Expires <!date^1700000000^{date_short_pretty} at {time}|2023-11-14 22:13 UTC>.", "Expires 2023-11-14 22:13 UTC."},
		{"<https://example.com|docs> <https://example.com>", "docs (https://example.com) https://example.com"},
		{":hourglass_flowing_sand: a:b :unknown_one:", "⏳ a:b :unknown_one:"},
		{hostileEscaped, `<script>alert(1)</script> & <img src=x onerror=alert(2)>`},
		{"<!channel>", "@channel"},
	}
	for _, tt := range tests {
		if got := Text(tt.in, dir); got != tt.want {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// everyBlock is one of each block type, each holding hostile text where
// a person's or OpenAI's text could go.
func everyBlock(text string) json.RawMessage {
	q, _ := json.Marshal(text)
	s := string(q)
	return json.RawMessage(`[
	{"type":"header","text":{"type":"plain_text","text":` + s + `}},
	{"type":"section","text":{"type":"mrkdwn","text":"*Reason*\n> ` + strings.Trim(s, `"`) + `"},
	 "accessory":{"type":"button","action_id":"a0","text":{"type":"plain_text","text":` + s + `}}},
	{"type":"section","fields":[{"type":"mrkdwn","text":"*Requester*\n<@U0ANA>"},{"type":"plain_text","text":` + s + `}]},
	{"type":"divider"},
	{"type":"context","elements":[{"type":"mrkdwn","text":` + s + `},{"type":"image","image_url":"https://x/y.png","alt_text":` + s + `}]},
	{"type":"actions","block_id":"rolegate_decision","elements":[
		{"type":"button","action_id":"approve","style":"primary","text":{"type":"plain_text","text":"Approve"},"value":"1"},
		{"type":"button","action_id":"deny","style":"danger","text":{"type":"plain_text","text":"Deny"},"value":"1"},
		{"type":"static_select","action_id":"pick","placeholder":{"type":"plain_text","text":` + s + `}}]},
	{"type":"markdown","text":` + s + `},
	{"type":"image","image_url":"https://x/y.png","alt_text":` + s + `},
	{"type":"input","label":{"type":"plain_text","text":` + s + `},"element":{"type":"plain_text_input","action_id":"r"}},
	{"type":"mystery_block"}
]`)
}

func TestPageEscapesEveryBlockType(t *testing.T) {
	for _, text := range []string{hostileEscaped, hostileRaw} {
		t.Run(text, func(t *testing.T) {
			blocks := everyBlock(text)
			if !json.Valid(blocks) {
				t.Fatalf("test blocks are not JSON: %s", blocks)
			}
			page, err := Page("access-requests", []Message{{Blocks: blocks, Author: "rolegate", Time: "2:03 PM", Note: text}}, dir)
			if err != nil {
				t.Fatal(err)
			}
			s := string(page)
			noMarkup(t, s)
			for _, want := range []string{
				`<div class="block header">`, `<div class="fields">`, `<div class="block context">`,
				`<span class="button primary">Approve</span>`, `<span class="button danger">Deny</span>`,
				`<span class="button menu">`, `<hr class="block divider">`, `<blockquote>`,
				`<span class="mention">@ana</span>`, `[mystery_block block]`, `&lt;script&gt;`,
			} {
				if !strings.Contains(s, want) {
					t.Errorf("page lacks %q", want)
				}
			}
		})
	}
}

func TestTextLinesEveryBlockType(t *testing.T) {
	lines, err := TextLines(Message{Blocks: everyBlock("Key Manager")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Key Manager",
		"───────────",
		"*Reason*",
		"> Key Manager  [Key Manager]",
		"*Requester*  @ana",
		"Key Manager",
		"────────────────────────",
		"· Key Manager  ·  [Key Manager]",
		"[Approve] [Deny] [Key Manager ▾]",
		"Key Manager",
		"[image: Key Manager]",
		"Key Manager: [plain_text_input ▾]",
		"[mystery_block block]",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("TextLines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestTextOnlyMessage(t *testing.T) {
	m := Message{Text: "Request #1 is waiting for approval: role *Key Manager*.\n"}
	lines, err := TextLines(m, dir)
	if err != nil || len(lines) != 1 || lines[0] != "Request #1 is waiting for approval: role *Key Manager*." {
		t.Errorf("TextLines = %q, %v", lines, err)
	}
	page, err := Page("access-requests", []Message{m}, dir)
	if err != nil || !strings.Contains(string(page), "role <b>Key Manager</b>.") {
		t.Errorf("Page = %s, %v", page, err)
	}
}

func TestMalformedBlocksAreAnError(t *testing.T) {
	if _, err := TextLines(Message{Blocks: json.RawMessage(`{"type":"header"}`)}, dir); err == nil {
		t.Error("TextLines accepted an object where an array belongs")
	}
	if _, err := Page("c", []Message{{Blocks: json.RawMessage(`[`)}}, dir); err == nil {
		t.Error("Page accepted malformed JSON")
	}
}
