package slackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// apiResponse is a Web API answer: ok plus method-specific fields.
type apiResponse map[string]any

func okResponse(fields apiResponse) apiResponse {
	if fields == nil {
		fields = apiResponse{}
	}
	fields["ok"] = true
	return fields
}

func errResponse(code string) apiResponse {
	return apiResponse{"ok": false, "error": code}
}

// methods maps each Web API method the fake implements to its handler. Handlers
// run with s.mu held and return the JSON to answer with HTTP 200.
var methods = map[string]func(s *Server, p url.Values) apiResponse{
	"auth.test":             (*Server).authTest,
	"chat.postMessage":      (*Server).postMessage,
	"chat.update":           (*Server).update,
	"chat.postEphemeral":    (*Server).postEphemeral,
	"usergroups.users.list": (*Server).userGroupUsers,
	"views.open":            (*Server).viewsOpen,
	"chat.getPermalink":     (*Server).getPermalink,
	"conversations.history": (*Server).history,
	"conversations.replies": (*Server).replies,
	"apps.connections.open": nil, // needs the request's Host; see serveAPI
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	p, perr := readParams(r)

	s.mu.Lock()
	s.calls[method]++
	delay := s.delayLocked(method)
	s.notifyLocked()
	onCall := s.onCall
	s.mu.Unlock()
	if onCall != nil {
		onCall(method, maps.Clone(p))
	}

	if !s.wait(r, delay) {
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.takeFaultLocked(method); ok {
		writeFault(w, f)
		return
	}
	if wait, ok := s.allowLocked(method, p.Get("channel")); !ok {
		writeFault(w, fault{kind: faultRateLimit, retryAfter: wait})
		return
	}
	handler, known := methods[method]
	if !known {
		writeJSON(w, apiResponse{"ok": false, "error": "unknown_method", "req_method": method})
		return
	}
	if perr != nil {
		writeJSON(w, errResponse("invalid_form_data"))
		return
	}
	if code := s.authorizeLocked(method, token(r, p)); code != "" {
		writeJSON(w, errResponse(code))
		return
	}
	if token(r, p) == s.botToken {
		w.Header().Set("X-OAuth-Scopes", strings.Join(s.scopes, ","))
	}
	if method == "apps.connections.open" {
		writeJSON(w, s.openConnectionLocked(r.Host))
		return
	}
	writeJSON(w, handler(s, p))
}

// wait holds the request for d, and reports false if the client or the fake
// gave up meanwhile.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closed:
		return false
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeFault(w http.ResponseWriter, f fault) {
	switch f.kind {
	case faultRateLimit:
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(f.retryAfter), 10))
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(errResponse("ratelimited"))
	case faultDrop:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
		panic(http.ErrAbortHandler) // cannot hijack: abort the response instead
	case faultStatus:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.status)
		_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", f.status, http.StatusText(f.status))
	default:
		writeJSON(w, errResponse(f.errCode))
	}
}

// readParams returns a request's arguments from the query string and a
// form-encoded or JSON body. JSON strings are taken as is; other JSON values
// (bools, numbers, the blocks array) as their JSON text.
func readParams(r *http.Request) (url.Values, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		if err := r.ParseForm(); err != nil {
			return url.Values{}, err
		}
		return r.Form, nil
	}
	p := r.URL.Query()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return p, err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return p, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return p, err
	}
	for k, v := range obj {
		var s string
		if json.Unmarshal(v, &s) == nil {
			p.Set(k, s)
			continue
		}
		if string(v) == "null" {
			continue
		}
		p.Set(k, string(v))
	}
	return p, nil
}

// token returns the token a call carries: the "token" argument, as slack-go
// sends it for form-encoded methods, or the bearer token, as it sends it for
// JSON methods such as apps.connections.open.
func token(r *http.Request, p url.Values) string {
	if t := p.Get("token"); t != "" {
		return t
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// authorizeLocked returns "" when tok may call method, or Slack's error code.
func (s *Server) authorizeLocked(method, tok string) string {
	if tok == "" {
		return "not_authed"
	}
	isApp := s.appToken != "" && tok == s.appToken
	isBot := tok == s.botToken
	if method == "apps.connections.open" {
		switch {
		case isApp:
			return ""
		case isBot || strings.HasPrefix(tok, "xoxb-") || strings.HasPrefix(tok, "xoxp-"):
			return "not_allowed_token_type"
		}
		return "invalid_auth"
	}
	switch {
	case isBot && s.botTokenGood:
		return ""
	case isApp || strings.HasPrefix(tok, "xapp-"):
		return "not_allowed_token_type"
	}
	return "invalid_auth"
}

func (s *Server) authTest(url.Values) apiResponse {
	return okResponse(apiResponse{
		"url":                   "https://" + TeamDomain + ".slack.com/",
		"team":                  TeamName,
		"user":                  BotUserName,
		"team_id":               TeamID,
		"user_id":               BotUserID,
		"bot_id":                BotID,
		"is_enterprise_install": false,
	})
}

func (s *Server) userGroupUsers(p url.Values) apiResponse {
	members, ok := s.userGroups[p.Get("usergroup")]
	if !ok {
		return errResponse("no_such_subteam")
	}
	return okResponse(apiResponse{"users": append([]string{}, members...)})
}

// content is the message content of a chat.* request or a response URL post.
type content struct {
	text        string
	hasText     bool
	blocks      json.RawMessage // nil when absent
	attachments json.RawMessage // nil when absent
	metadata    json.RawMessage // message metadata; nil when absent
}

func contentFromParams(p url.Values) content {
	c := content{text: p.Get("text")}
	_, c.hasText = p["text"]
	if _, ok := p["blocks"]; ok {
		c.blocks = json.RawMessage(p.Get("blocks"))
	}
	if _, ok := p["attachments"]; ok {
		c.attachments = json.RawMessage(p.Get("attachments"))
	}
	if _, ok := p["metadata"]; ok {
		c.metadata = json.RawMessage(p.Get("metadata"))
	}
	return c
}

// empty reports content Slack answers no_text for.
func (c content) empty() bool {
	return c.text == "" && isEmptyArray(c.blocks) && isEmptyArray(c.attachments)
}

func isEmptyArray(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "[]" || s == "null"
}

// check returns the error code (and Block Kit errors) Slack answers for c, or "".
func (c content) check() (string, []string) {
	if utf8.RuneCountInString(c.text) > MaxMessageText {
		return "msg_too_long", nil
	}
	if c.blocks != nil && strings.TrimSpace(string(c.blocks)) != "" {
		if code, errs := validateBlocks(string(c.blocks)); code != "" {
			return code, errs
		}
	}
	if c.attachments != nil && !isEmptyArray(c.attachments) {
		var a []any
		if json.Unmarshal(c.attachments, &a) != nil {
			return "invalid_attachments", nil
		}
	}
	if c.metadata != nil && !validMetadata(c.metadata) {
		return "invalid_metadata_format", nil
	}
	if c.empty() {
		return "no_text", nil
	}
	return "", nil
}

// validMetadata reports message metadata Slack accepts: an object with a
// non-empty event_type and an event_payload object.
func validMetadata(raw json.RawMessage) bool {
	var md struct {
		EventType    string         `json:"event_type"`
		EventPayload map[string]any `json:"event_payload"`
	}
	return json.Unmarshal(raw, &md) == nil && md.EventType != "" && md.EventPayload != nil
}

func contentError(code string, errs []string) apiResponse {
	resp := errResponse(code)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = "[ERROR] " + e
		}
		resp["errors"] = errs
		resp["response_metadata"] = map[string]any{"messages": msgs}
	}
	return resp
}

// normalizedObject returns a JSON object re-encoded compactly, or nil when absent.
func normalizedObject(raw json.RawMessage) json.RawMessage {
	var v map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil || v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}

// normalizedArray returns a JSON array re-encoded compactly, or nil when absent or empty.
func normalizedArray(raw json.RawMessage) json.RawMessage {
	if isEmptyArray(raw) {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}

// channelForPostLocked resolves the channel argument of a post: a channel id, or
// a user id (U…/W…), which opens that user's DM channel as Slack does.
func (s *Server) channelForPostLocked(id string) (*channel, string) {
	if id == "" {
		return nil, "channel_not_found"
	}
	if ch, ok := s.channels[id]; ok {
		if !ch.member {
			return nil, "not_in_channel"
		}
		return ch, ""
	}
	if id[0] == 'U' || id[0] == 'W' {
		dm, ok := s.dms[id]
		if !ok {
			dm = "D" + id[1:]
			s.dms[id] = dm
			s.channels[dm] = newChannel(dm, true)
		}
		return s.channels[dm], ""
	}
	return nil, "channel_not_found"
}

func truthy(s string) bool { return s == "true" || s == "1" }

func (s *Server) postMessage(p url.Values) apiResponse {
	ch, code := s.channelForPostLocked(p.Get("channel"))
	if code != "" {
		return errResponse(code)
	}
	c := contentFromParams(p)
	if code, errs := c.check(); code != "" {
		return contentError(code, errs)
	}
	m := s.addMessageLocked(ch, c, p.Get("thread_ts"), truthy(p.Get("reply_broadcast")), "chat.postMessage")
	return okResponse(apiResponse{"channel": ch.id, "ts": m.ts, "message": messageJSON(m)})
}

// addMessageLocked posts c in ch as the bot. A thread_ts naming no live message
// posts the message unthreaded, as Slack does when the parent is gone.
func (s *Server) addMessageLocked(ch *channel, c content, threadTS string, broadcast bool, source string) *message {
	m := &message{channel: ch.id, ts: s.nextTSLocked()}
	if threadTS != "" {
		if parent, ok := ch.byTS[threadTS]; ok && !parent.deleted {
			m.threadTS = parent.ts
			if parent.threadTS != "" {
				m.threadTS = parent.threadTS
			}
			m.broadcast = broadcast
		}
	}
	m.metadata = normalizedObject(c.metadata)
	m.versions = []version{{
		text:        c.text,
		blocks:      normalizedArray(c.blocks),
		attachments: normalizedArray(c.attachments),
		source:      source,
		at:          s.now(),
	}}
	ch.msgs = append(ch.msgs, m)
	ch.byTS[m.ts] = m
	s.notifyLocked()
	return m
}

// updateMessageLocked records a new version of m: fields c carries replace the
// current ones, the others are kept (chat.update keeps blocks it is not sent).
func (s *Server) updateMessageLocked(m *message, c content, source string) {
	cur := m.versions[len(m.versions)-1]
	next := version{text: cur.text, blocks: cur.blocks, attachments: cur.attachments, source: source, at: s.now()}
	if c.hasText {
		next.text = c.text
	}
	if c.blocks != nil {
		next.blocks = normalizedArray(c.blocks)
	}
	if c.attachments != nil {
		next.attachments = normalizedArray(c.attachments)
	}
	if c.metadata != nil {
		m.metadata = normalizedObject(c.metadata) // without it, chat.update keeps the metadata
	}
	m.versions = append(m.versions, next)
	s.notifyLocked()
}

func messageJSON(m *message) map[string]any {
	cur := m.versions[len(m.versions)-1]
	out := map[string]any{
		"type":    "message",
		"text":    cur.text,
		"user":    BotUserID,
		"bot_id":  BotID,
		"app_id":  AppID,
		"team":    TeamID,
		"ts":      m.ts,
		"channel": m.channel,
	}
	if cur.blocks != nil {
		out["blocks"] = cur.blocks
	}
	if cur.attachments != nil {
		out["attachments"] = cur.attachments
	}
	if m.threadTS != "" {
		out["thread_ts"] = m.threadTS
	}
	if len(m.versions) > 1 {
		out["edited"] = map[string]any{"user": BotUserID, "ts": m.ts}
	}
	return out
}

func (s *Server) update(p url.Values) apiResponse {
	ch := s.lookupChannelLocked(p.Get("channel"))
	if ch == nil {
		return errResponse("channel_not_found")
	}
	m, ok := ch.byTS[p.Get("ts")]
	if !ok || m.deleted {
		return errResponse("message_not_found")
	}
	c := contentFromParams(p)
	if code, errs := c.check(); code != "" {
		return contentError(code, errs)
	}
	s.updateMessageLocked(m, c, "chat.update")
	return okResponse(apiResponse{
		"channel": ch.id,
		"ts":      m.ts,
		"text":    m.versions[len(m.versions)-1].text,
		"message": messageJSON(m),
	})
}

func (s *Server) postEphemeral(p url.Values) apiResponse {
	ch, code := s.channelForPostLocked(p.Get("channel"))
	if code != "" {
		return errResponse(code)
	}
	user := p.Get("user")
	if user == "" {
		return errResponse("user_not_found")
	}
	c := contentFromParams(p)
	if code, errs := c.check(); code != "" {
		return contentError(code, errs)
	}
	ts := s.nextTSLocked()
	s.ephemerals = append(s.ephemerals, Ephemeral{
		Channel:         ch.id,
		User:            user,
		MessageTS:       ts,
		ThreadTS:        p.Get("thread_ts"),
		Text:            c.text,
		BlocksJSON:      normalizedArray(c.blocks),
		AttachmentsJSON: normalizedArray(c.attachments),
		Source:          "chat.postEphemeral",
	})
	s.notifyLocked()
	return okResponse(apiResponse{"message_ts": ts})
}
