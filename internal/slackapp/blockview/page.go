package blockview

import (
	"html"
	"strings"
)

// Page is a standalone HTML page showing msgs as Slack's desktop client
// shows them in channel (a title bar naming the channel, then each message
// with its author). It loads nothing from the network: the style is inline
// and fonts are the system's (Lato when installed), so a headless browser
// screenshots it the same way offline.
func Page(channel string, msgs []Message, dir Directory) ([]byte, error) {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>")
	b.WriteString(html.EscapeString("#" + channel))
	b.WriteString("</title>\n<style>" + css + "</style></head>\n<body>\n")
	b.WriteString(`<div class="channel-bar"># ` + html.EscapeString(channel) + "</div>\n")
	for _, m := range msgs {
		body, err := blocksHTML(m, dir)
		if err != nil {
			return nil, err
		}
		b.WriteString(`<div class="message">`)
		if m.Note != "" {
			b.WriteString(`<div class="note">` + html.EscapeString(m.Note) + `</div>`)
		}
		b.WriteString(`<div class="row"><div class="avatar">` + html.EscapeString(initial(m.Author)) + `</div><div class="content">`)
		b.WriteString(`<div class="meta"><span class="author">` + html.EscapeString(m.Author) + `</span><span class="app">APP</span>`)
		if m.Time != "" {
			b.WriteString(`<span class="time">` + html.EscapeString(m.Time) + `</span>`)
		}
		b.WriteString("</div>\n" + body + "</div></div></div>\n")
	}
	b.WriteString("</body></html>\n")
	return []byte(b.String()), nil
}

func initial(name string) string {
	for _, r := range name {
		return strings.ToUpper(string(r))
	}
	return "?"
}

// css approximates Slack's light theme (colours and sizes from its client).
const css = `
body { margin: 0; background: #fff; color: #1d1c1d; font: 15px/1.46668 Lato, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif, "Noto Color Emoji"; -webkit-font-smoothing: antialiased; }
.channel-bar { font-weight: 900; font-size: 18px; padding: 12px 20px; border-bottom: 1px solid #e2e2e2; }
.message { padding: 8px 20px 12px; }
.note { font-size: 13px; color: #616061; margin: 0 0 2px 44px; }
.row { display: flex; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px; background: #4a154b; color: #fff; font-weight: 900; font-size: 18px; line-height: 36px; text-align: center; margin-right: 8px; }
.content { flex: 1; min-width: 0; max-width: 780px; }
.meta { line-height: 1.2; margin-bottom: 2px; }
.author { font-weight: 900; }
.app { display: inline-block; font-size: 10px; font-weight: 700; color: rgba(29,28,29,.7); background: rgba(29,28,29,.13); border-radius: 2px; padding: 1px 3px; margin-left: 4px; vertical-align: 1px; }
.time { font-size: 12px; color: #616061; margin-left: 6px; }
.block { margin: 6px 0; }
.header { font-size: 18px; font-weight: 900; line-height: 1.33; margin-top: 4px; }
.section { display: flex; align-items: flex-start; }
.section-body { flex: 1; min-width: 0; overflow-wrap: anywhere; }
.section-text + .fields { margin-top: 8px; }
.fields { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 8px 16px; max-width: 600px; }
.field { overflow-wrap: anywhere; }
.accessory { flex: none; margin-left: 12px; }
.context { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; font-size: 12px; color: #616061; }
.context code { font-size: 11px; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 10px; }
.button { display: inline-block; font-size: 13px; font-weight: 700; line-height: 26px; height: 28px; padding: 0 12px; border-radius: 4px; border: 1px solid rgba(29,28,29,.3); background: #fff; color: #1d1c1d; box-sizing: border-box; }
.button.primary { background: #007a5a; border-color: #007a5a; color: #fff; }
.button.danger { background: #e01e5a; border-color: #e01e5a; color: #fff; }
.button.menu { font-weight: 400; color: #616061; }
.divider { border: 0; border-top: 1px solid #e2e2e2; }
b { font-weight: 700; }
code { font: 12px/1.5 Monaco, Menlo, Consolas, "DejaVu Sans Mono", monospace; color: #e01e5a; background: rgba(29,28,29,.04); border: 1px solid rgba(29,28,29,.13); border-radius: 3px; padding: 1px 3px; }
.pre { font: 12px/1.5 Monaco, Menlo, Consolas, "DejaVu Sans Mono", monospace; background: rgba(29,28,29,.04); border: 1px solid rgba(29,28,29,.13); border-radius: 4px; padding: 8px; margin: 4px 0; white-space: pre-wrap; }
blockquote { margin: 4px 0; padding-left: 12px; border-left: 4px solid #dddddd; }
.mention { color: #1264a3; background: rgba(29,155,209,.1); border-radius: 3px; padding: 0 2px; }
.link { color: #1264a3; }
.input-label { font-weight: 700; margin-bottom: 4px; }
`
