package slackfake

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Response URL limits, as Slack documents them.
const (
	ResponseURLMaxUses  = 5
	ResponseURLLifetime = 30 * time.Minute
)

// responseURL is one response_url the fake handed out.
type responseURL struct {
	channel   string // where in_channel replies go; may be empty
	user      string // who sees ephemeral replies; may be empty
	messageTS string // the message replace_original/delete_original act on
	created   time.Time
	uses      int
	expired   bool
	posts     []Response
}

// Response is one POST to a response URL, accepted or not.
type Response struct {
	// Body is the JSON as posted.
	Body json.RawMessage
	// ResponseType is "ephemeral" (also when absent) or "in_channel".
	ResponseType    string
	ReplaceOriginal bool
	DeleteOriginal  bool
	ThreadTS        string
	Text            string
	BlocksJSON      json.RawMessage
	Blocks          []map[string]any
	// Status is the HTTP status the fake answered; Error is Slack's error code,
	// empty when the post was accepted.
	Status int
	Error  string
	At     time.Time
}

// VisibleText returns the text the post shows; see [VisibleText].
func (r Response) VisibleText() string { return VisibleText(r.Text, r.BlocksJSON) }

// NewResponseURL returns a fresh response URL on this server, bound to no channel
// or message: posts to it are validated and recorded (see [Server.Responses])
// but change no channel.
func (s *Server) NewResponseURL() string {
	return s.NewResponseURLFor("", "", "")
}

// NewResponseURLFor returns a fresh response URL that acts like the one Slack
// sends with a command or an interaction in channel, by user, on the message
// messageTS (empty for a slash command). Posting to it with response_type
// in_channel posts a message in channel; ephemeral (the default) records an
// [Ephemeral] for user; replace_original updates messageTS in place (a new
// version, as chat.update); delete_original deletes it. Like Slack's, it works
// at most ResponseURLMaxUses times and for ResponseURLLifetime (by the fake's
// clock); later posts get HTTP 404 {"ok":false,"error":"used_url"|"expired_url"}.
func (s *Server) NewResponseURLFor(channel, user, messageTS string) string {
	id := randomID(12)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respURLs[id] = &responseURL{channel: channel, user: user, messageTS: messageTS, created: s.now()}
	return s.srv.URL + "/response/" + id
}

// ExpireResponseURL makes url answer expired_url from now on.
func (s *Server) ExpireResponseURL(url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ru := s.respURLs[responseURLID(url)]; ru != nil {
		ru.expired = true
	}
}

// Responses returns every post made to url, in order, rejected ones included.
func (s *Server) Responses(url string) []Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	ru := s.respURLs[responseURLID(url)]
	if ru == nil {
		return nil
	}
	out := make([]Response, len(ru.posts))
	for i, r := range ru.posts {
		r.Body = clone(r.Body)
		r.BlocksJSON = clone(r.BlocksJSON)
		r.Blocks = decodeBlocks(r.BlocksJSON)
		out[i] = r
	}
	return out
}

func responseURLID(url string) string {
	i := strings.LastIndex(url, "/response/")
	if i < 0 {
		return ""
	}
	return url[i+len("/response/"):]
}

// responsePayload is what a response URL accepts; the same JSON slack-go's
// MsgOptionResponseURL and MsgOptionReplaceOriginal post.
type responsePayload struct {
	Text            *string         `json:"text"`
	Blocks          json.RawMessage `json:"blocks"`
	Attachments     json.RawMessage `json:"attachments"`
	ResponseType    string          `json:"response_type"`
	ReplaceOriginal bool            `json:"replace_original"`
	DeleteOriginal  bool            `json:"delete_original"`
	ThreadTS        string          `json:"thread_ts"`
}

func (s *Server) serveResponseURL(w http.ResponseWriter, r *http.Request) {
	const method = "response_url"
	body, _ := io.ReadAll(r.Body)

	s.mu.Lock()
	s.calls[method]++
	delay := s.delayLocked(method)
	s.notifyLocked()
	s.mu.Unlock()
	if !s.wait(r, delay) {
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.takeFaultLocked(method); ok {
		writeFault(w, f)
		return
	}
	ru := s.respURLs[r.PathValue("id")]
	if ru == nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(errResponse("invalid_url"))
		return
	}
	rec := Response{Body: slices.Clone(body), At: s.now()}
	var pl responsePayload
	if err := json.Unmarshal(body, &pl); err != nil {
		rec.Status, rec.Error = http.StatusBadRequest, "invalid_payload"
		ru.posts = append(ru.posts, rec)
		s.notifyLocked()
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "invalid_payload")
		return
	}
	rec.ResponseType, rec.ReplaceOriginal, rec.DeleteOriginal, rec.ThreadTS = pl.ResponseType, pl.ReplaceOriginal, pl.DeleteOriginal, pl.ThreadTS
	if rec.ResponseType == "" {
		rec.ResponseType = "ephemeral"
	}
	c := content{blocks: pl.Blocks, attachments: pl.Attachments}
	if pl.Text != nil {
		c.text, c.hasText = *pl.Text, true
	}
	if isEmptyArray(c.blocks) {
		c.blocks = nil
	}
	if isEmptyArray(c.attachments) {
		c.attachments = nil
	}
	rec.Text, rec.BlocksJSON = c.text, normalizedArray(c.blocks)

	status, resp := s.applyResponseLocked(ru, c, pl)
	rec.Status = status
	if ok, _ := resp["ok"].(bool); !ok {
		rec.Error, _ = resp["error"].(string)
	}
	ru.posts = append(ru.posts, rec)
	s.notifyLocked()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// applyResponseLocked checks a response URL post and carries it out.
func (s *Server) applyResponseLocked(ru *responseURL, c content, pl responsePayload) (int, apiResponse) {
	switch {
	case ru.expired || s.now().Sub(ru.created) > ResponseURLLifetime:
		return http.StatusNotFound, errResponse("expired_url")
	case ru.uses >= ResponseURLMaxUses:
		return http.StatusNotFound, errResponse("used_url")
	}
	if !pl.DeleteOriginal {
		if code, errs := c.check(); code != "" {
			return http.StatusOK, contentError(code, errs)
		}
	}
	ru.uses++

	ch := s.lookupChannelLocked(ru.channel)
	var orig *message
	if ch != nil && ru.messageTS != "" {
		orig = ch.byTS[ru.messageTS]
	}
	switch {
	case pl.DeleteOriginal:
		if orig != nil {
			orig.deleted = true
		}
	case pl.ReplaceOriginal && orig != nil && !orig.deleted:
		s.updateMessageLocked(orig, c, "response_url")
	case pl.ResponseType == "in_channel" && ch != nil:
		s.addMessageLocked(ch, c, pl.ThreadTS, false, "response_url")
	case pl.ResponseType != "in_channel":
		s.ephemerals = append(s.ephemerals, Ephemeral{
			Channel:         ru.channel,
			User:            ru.user,
			ThreadTS:        pl.ThreadTS,
			Text:            c.text,
			BlocksJSON:      normalizedArray(c.blocks),
			AttachmentsJSON: normalizedArray(c.attachments),
			Source:          "response_url",
		})
	}
	return http.StatusOK, okResponse(nil)
}
