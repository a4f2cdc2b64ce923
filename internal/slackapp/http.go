package slackapp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/slack-go/slack"
)

// MaxBody is the largest request body accepted from Slack. Real slash
// commands and block action payloads are a few KiB.
const MaxBody = 1 << 20

// Handler serves the Slack endpoints for HTTP mode:
// POST /slack/commands and POST /slack/interactions. Every request must
// carry a valid signature made with secret; anything else gets 401 and
// changes nothing. now is the clock the timestamp check uses.
func (a *App) Handler(secret string, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/commands", a.signed(secret, now, "command", a.serveCommand))
	mux.HandleFunc("POST /slack/interactions", a.signed(secret, now, "interaction", a.serveInteraction))
	return mux
}

// signed reads the raw body (at most MaxBody), checks Slack's signature over
// exactly those bytes and hands the parsed form to next.
func (a *App) signed(secret string, now func() time.Time, kind string, next func(http.ResponseWriter, *http.Request, url.Values)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				a.log().Warn("Refused an oversized request", "path", r.URL.Path, "limit", MaxBody)
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if err := Verify(secret, r.Header, body, now()); err != nil {
			a.log().Warn("Refused a request that is not signed by Slack", "path", r.URL.Path, "reason", err.Error(), "remote", r.RemoteAddr)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(w, "body is not form-encoded", http.StatusBadRequest)
			return
		}
		next(w, r, form)
		a.metrics().Ack(kind, time.Since(start))
	}
}

func (a *App) serveCommand(w http.ResponseWriter, r *http.Request, form url.Values) {
	cmd := slack.SlashCommand{
		Token:          form.Get("token"),
		TeamID:         form.Get("team_id"),
		TeamDomain:     form.Get("team_domain"),
		EnterpriseID:   form.Get("enterprise_id"),
		EnterpriseName: form.Get("enterprise_name"),
		ChannelID:      form.Get("channel_id"),
		ChannelName:    form.Get("channel_name"),
		UserID:         form.Get("user_id"),
		UserName:       form.Get("user_name"),
		Command:        form.Get("command"),
		Text:           form.Get("text"),
		ResponseURL:    form.Get("response_url"),
		TriggerID:      form.Get("trigger_id"),
		APIAppID:       form.Get("api_app_id"),
	}
	if cmd.UserID == "" || cmd.ChannelID == "" {
		writeJSON(w, private(":warning: Slack sent this command without a user or channel, so nothing was requested."))
		return
	}
	writeJSON(w, a.Command(r.Context(), cmd))
}

func (a *App) serveInteraction(w http.ResponseWriter, r *http.Request, form url.Values) {
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		a.log().Warn("Refused an interaction without a valid payload", "err", err)
		http.Error(w, "payload is not an interaction", http.StatusBadRequest)
		return
	}
	a.Interaction(r.Context(), cb)
	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
