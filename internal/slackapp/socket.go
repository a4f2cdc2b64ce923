package slackapp

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// SocketRunner receives slash commands and clicks over Socket Mode and hands
// them to the same App as HTTP mode: only the transport differs. It
// reconnects after a dropped connection and reports readiness as the
// connection comes and goes.
type SocketRunner struct {
	App    *App
	Client *socketmode.Client
	// Ready is told whether a connection is open. It must not block.
	Ready func(bool)
	// MaxBackoff caps the wait between reconnection attempts (default 30s).
	MaxBackoff time.Duration

	mu        sync.Mutex
	seen      map[string]time.Time // envelope ids handled recently
	lastSweep time.Time
}

// envelopeMemory is how long a handled envelope id is remembered, so a
// redelivery after a reconnect is acknowledged but not handled twice.
const envelopeMemory = 10 * time.Minute

// Run serves until ctx is cancelled, then waits for the envelopes under way.
// It returns an error only when Slack refuses the app-level token.
func (s *SocketRunner) Run(ctx context.Context) error {
	ready := s.Ready
	if ready == nil {
		ready = func(bool) {}
	}
	maxBackoff := s.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fatal := make(chan error, 1)
	wg.Go(func() {
		backoff := 250 * time.Millisecond
		for ctx.Err() == nil {
			started := time.Now()
			err := s.Client.RunContext(ctx)
			ready(false)
			if ctx.Err() != nil {
				return
			}
			if isAuthError(err) {
				fatal <- err
				return
			}
			if time.Since(started) > time.Minute {
				backoff = 250 * time.Millisecond
			}
			s.App.log().Warn("Socket Mode connection lost; reconnecting", "err", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
		}
	})

	for {
		select {
		case <-ctx.Done():
			ready(false)
			return nil
		case err := <-fatal:
			return err
		case evt, ok := <-s.Client.Events:
			if !ok {
				return nil
			}
			switch evt.Type {
			case socketmode.EventTypeConnected, socketmode.EventTypeHello:
				ready(true)
			case socketmode.EventTypeConnecting, socketmode.EventTypeConnectionError, socketmode.EventTypeDisconnect:
				ready(false)
			case socketmode.EventTypeInvalidAuth:
				ready(false)
				s.App.log().Error("Slack refused SLACK_APP_TOKEN (invalid_auth): check that it is an app-level token with connections:write")
			case socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive:
				wg.Go(func() { s.handle(ctx, evt) })
			}
		}
	}
}

func isAuthError(err error) bool {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_auth", "not_authed", "token_revoked", "account_inactive", "not_allowed_token_type":
			return true
		}
	}
	return err != nil && strings.Contains(err.Error(), "invalid_auth")
}

// handle processes one envelope and acknowledges it exactly once.
func (s *SocketRunner) handle(ctx context.Context, evt socketmode.Event) {
	if evt.Request == nil {
		return
	}
	start := time.Now()
	req := *evt.Request
	defer func() {
		// net/http recovers a handler's panic for HTTP mode; do the same
		// here, or one bad envelope (redelivered by Slack) would kill the
		// process over and over. The envelope is acked so it is not resent.
		if p := recover(); p != nil {
			s.App.log().Error("Handling a Socket Mode envelope panicked", "envelope_id", req.EnvelopeID, "type", string(evt.Type), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			s.ack(req, nil)
		}
	}()
	if !s.first(req.EnvelopeID) {
		s.ack(req, nil)
		return
	}
	switch evt.Type {
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || cmd.UserID == "" || cmd.ChannelID == "" {
			s.ack(req, private(":warning: Slack sent this command without a user or channel, so nothing was requested."))
			return
		}
		s.ack(req, s.App.Command(ctx, cmd))
		s.App.metrics().Ack("command", time.Since(start))
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if ok {
			s.App.Interaction(ctx, cb)
		}
		s.ack(req, nil)
		s.App.metrics().Ack("interaction", time.Since(start))
	}
}

func (s *SocketRunner) ack(req socketmode.Request, payload any) {
	var err error
	if payload == nil {
		err = s.Client.Ack(req)
	} else {
		err = s.Client.Ack(req, payload)
	}
	if err != nil {
		s.App.log().Warn("Acknowledging a Socket Mode envelope failed", "envelope_id", req.EnvelopeID, "err", err)
	}
}

// first reports whether envelope id is seen for the first time, forgetting
// ids older than envelopeMemory.
func (s *SocketRunner) first(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	if _, dup := s.seen[id]; dup {
		return false
	}
	if now.Sub(s.lastSweep) > time.Minute {
		for k, at := range s.seen {
			if now.Sub(at) > envelopeMemory {
				delete(s.seen, k)
			}
		}
		s.lastSweep = now
	}
	s.seen[id] = now
	return true
}
