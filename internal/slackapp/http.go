package slackapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
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
// exactly those bytes, and hands the request to next with the body restored
// for slack-go's form parsers.
func (a *App) signed(secret string, now func() time.Time, kind string, next http.HandlerFunc) http.HandlerFunc {
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
		r.Body = io.NopCloser(bytes.NewReader(body))
		next(w, r)
		a.metrics().Ack(kind, time.Since(start))
	}
}

// serveCommand reads the command form from the body only (slack-go reads
// PostForm), so nothing in the URL, which the signature does not cover,
// can change it.
func (a *App) serveCommand(w http.ResponseWriter, r *http.Request) {
	cmd, err := slack.SlashCommandParse(r)
	if err != nil {
		http.Error(w, "body is not form-encoded", http.StatusBadRequest)
		return
	}
	if cmd.UserID == "" || cmd.ChannelID == "" {
		writeJSON(w, private(":warning: Slack sent this command without a user or channel, so nothing was requested."))
		return
	}
	reply := a.Command(r.Context(), cmd)
	if reply == (Reply{}) {
		// Nothing to say (the request modal opened): an empty 200, which
		// Slack shows as nothing at all.
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, reply)
}

// serveInteraction reads the payload from the body only, as serveCommand.
func (a *App) serveInteraction(w http.ResponseWriter, r *http.Request) {
	cb, err := slack.InteractionCallbackParse(r)
	if err != nil {
		a.log().Warn("Refused an interaction without a valid payload", "err", err)
		http.Error(w, "payload is not an interaction", http.StatusBadRequest)
		return
	}
	if resp := a.Interaction(r.Context(), cb); resp != nil {
		writeJSON(w, resp)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
