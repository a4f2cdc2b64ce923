package slackapp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/rolegate/rolegate/internal/approvals"
)

// SocketRunner receives slash commands and clicks over Socket Mode and hands
// them to the same App as HTTP mode: only the transport differs. It
// reconnects after a dropped connection, says in the log what the connection
// is doing (connected to which team, each failed attempt with its cause and
// the next retry), and keeps a SocketStatus for /readyz.
type SocketRunner struct {
	App    *App
	Client *socketmode.Client
	// Ready is told whether the runner is ready (SocketStatus.Ready) each
	// time the status changes. It must not block. It may be nil: /readyz
	// reads Status instead.
	Ready func(bool)
	// MaxBackoff caps the wait between restarts of slack-go's client after
	// it gave up (default 30s). slack-go paces its own connection attempts.
	MaxBackoff time.Duration
	// Dedupe, when set, is storage every replica shares (PostgreSQL):
	// Slack may deliver an envelope again (its ack was late, or its
	// connection dropped) on another replica's connection, and only shared
	// storage can tell that replica it was handled already. Nil (bbolt, one
	// process): the in-memory check alone. See claim for what happens when
	// it fails.
	Dedupe approvals.Rememberer

	mu        sync.Mutex
	seen      map[string]time.Time // envelope ids handled recently
	lastSweep time.Time

	statusMu sync.Mutex
	status   socketState   // guarded by statusMu
	changed  chan struct{} // closed and replaced on every status change; guarded by statusMu
}

// SocketStatus is a snapshot of the Socket Mode connection, from
// SocketRunner.Status.
type SocketStatus struct {
	// Connected reports an open connection to Slack.
	Connected bool
	// TeamID and TeamName identify the workspace, from auth.test with the bot
	// token; empty until it answered.
	TeamID, TeamName string
	// Attempt counts the connection attempts that failed in a row; 0 once
	// connected.
	Attempt int
	// LastError is the cause of the latest failure, "" once connected.
	LastError string
	// RetryIn is how long until slack-go's next attempt, 0 while one is under
	// way or when connected.
	RetryIn time.Duration
	// Problem is a refusal only an operator can fix; it names the variable
	// (SLACK_APP_TOKEN, SLACK_BOT_TOKEN). "" when there is none.
	Problem string
	// Started reports that Run has begun.
	Started bool
}

// Ready reports whether envelopes can be received and answered: a connection
// is open and Slack has refused neither token.
func (st SocketStatus) Ready() bool { return st.Connected && st.Problem == "" }

// String describes the status for /readyz and logs, e.g. "socket mode
// connected to team Acme (T0123)" or "socket mode not connected: <cause>
// (next attempt in 4s)".
func (st SocketStatus) String() string {
	team := ""
	if st.TeamID != "" {
		team = fmt.Sprintf(" to team %s (%s)", st.TeamName, st.TeamID)
	}
	switch {
	case st.Problem != "" && st.Connected:
		return "socket mode connected" + team + ", but " + st.Problem
	case st.Problem != "":
		return "socket mode stopped: " + st.Problem
	case st.Connected && team == "":
		return "socket mode connected (team not known yet)"
	case st.Connected:
		return "socket mode connected" + team
	case !st.Started:
		return "socket mode not started"
	case st.LastError == "":
		return "socket mode connecting"
	case st.RetryIn > 0:
		return fmt.Sprintf("socket mode not connected: %s (next attempt in %s)", st.LastError, roundDelay(st.RetryIn))
	default:
		return fmt.Sprintf("socket mode not connected: %s (attempt %d under way)", st.LastError, st.Attempt+1)
	}
}

// roundDelay keeps a delay readable: whole seconds from a second up.
func roundDelay(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// socketState is what Status reports, with the retry as a point in time.
type socketState struct {
	SocketStatus
	retryAt time.Time
}

// Status returns the current status. It is safe to call from any goroutine.
func (s *SocketRunner) Status() SocketStatus {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	st := s.status.SocketStatus
	if !s.status.retryAt.IsZero() {
		st.RetryIn = max(time.Until(s.status.retryAt), 0)
	}
	return st
}

// StatusChanged returns a channel closed at the next status change, so a
// caller (a test) waits on the change instead of on time.
func (s *SocketRunner) StatusChanged() <-chan struct{} {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// update changes the status under its lock, then wakes StatusChanged
// waiters and tells Ready.
func (s *SocketRunner) update(change func(st *socketState)) {
	s.statusMu.Lock()
	change(&s.status)
	ready := s.status.Ready()
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
	s.statusMu.Unlock()
	if s.Ready != nil {
		s.Ready(ready)
	}
}

// envelopeMemory is how long a handled envelope id is remembered, so a
// redelivery after a reconnect is acknowledged but not handled twice.
const envelopeMemory = 10 * time.Minute

// dedupeTimeout bounds the shared dedupe check (one INSERT on a healthy
// database: about a millisecond). The envelope is handled and acked only
// after it, within Slack's 3 seconds, and a click's trigger_id must still
// open a modal after it, also within 3 seconds of the click.
const dedupeTimeout = 500 * time.Millisecond

// identityTimeout bounds the auth.test call that names the team.
const identityTimeout = 15 * time.Second

// identity is the answer of auth.test with the bot token.
type identity struct {
	resp *slack.AuthTestResponse
	err  error
}

// Run serves until ctx is cancelled, then waits for the envelopes under way.
// It returns an error only when Slack refuses the app-level token; the error
// names SLACK_APP_TOKEN.
func (s *SocketRunner) Run(ctx context.Context) error {
	log := s.App.log()
	maxBackoff := s.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.update(func(st *socketState) { st.Started = true })

	// slack-go's RunContext retries failed connection attempts itself and
	// reports each on Events; it returns only on a refused token (or a 404
	// from apps.connections.open), so this loop restarts it after anything
	// but a refusal.
	fatal := make(chan error, 1)
	wg.Go(func() {
		backoff := 250 * time.Millisecond
		for ctx.Err() == nil {
			started := time.Now()
			err := s.Client.RunContext(ctx)
			if ctx.Err() != nil {
				return
			}
			if code := appTokenRefusal(err); code != "" {
				fatal <- s.appTokenRefused(code)
				return
			}
			if time.Since(started) > time.Minute {
				backoff = 250 * time.Millisecond
			}
			log.Warn("Socket Mode client stopped; starting it again", "err", err, "retry_in", backoff.String())
			s.update(func(st *socketState) {
				st.Connected = false
				st.Attempt++
				st.LastError = err.Error()
				st.retryAt = time.Now().Add(backoff)
			})
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
		}
	})

	// auth.test names the team for the "connected" line and checks the bot
	// token. It runs beside the first connection attempt, not on the
	// envelope path, and again at a later connection only if it failed for
	// a reason other than a refusal.
	identities := make(chan identity, 1)
	askIdentity := func() {
		wg.Go(func() {
			actx, acancel := context.WithTimeout(ctx, identityTimeout)
			defer acancel()
			resp, err := s.Client.AuthTestContext(actx)
			identities <- identity{resp, err}
		})
	}
	askIdentity()
	identityPending, identityKnown, announce := true, false, false

	for {
		select {
		case <-ctx.Done():
			s.update(func(st *socketState) { st.Connected = false })
			return nil
		case err := <-fatal:
			return err
		case id := <-identities:
			identityPending = false
			identityKnown = s.recordIdentity(id)
			if announce {
				s.logConnected()
				announce = false
			}
		case evt, ok := <-s.Client.Events:
			if !ok {
				return nil
			}
			switch evt.Type {
			case socketmode.EventTypeConnecting:
				wasConnected := s.Status().Connected
				if ev, ok := evt.Data.(*slack.ConnectingEvent); ok {
					log.Debug("Socket Mode connecting", "attempt", ev.Attempt, "connection", ev.ConnectionCount+1)
				}
				if wasConnected {
					log.Info("Socket Mode connection closed; reconnecting")
				}
				s.update(func(st *socketState) { st.Connected = false; st.retryAt = time.Time{} })
			case socketmode.EventTypeConnectionError:
				ev, _ := evt.Data.(*slack.ConnectionErrorEvent)
				if ev == nil || ev.ErrorObj == nil {
					continue
				}
				// slack-go retries these for ever; they need an operator.
				if code := appTokenRefusal(ev.ErrorObj); code != "" {
					cancel()
					return s.appTokenRefused(code)
				}
				log.Warn("Socket Mode connection attempt failed", "attempt", ev.Attempt, "err", ev.ErrorObj, "retry_in", ev.Backoff.String())
				s.update(func(st *socketState) {
					st.Connected = false
					st.Attempt = ev.Attempt
					st.LastError = ev.ErrorObj.Error()
					st.retryAt = time.Now().Add(ev.Backoff)
				})
			case socketmode.EventTypeInvalidAuth:
				// slack-go sends this when apps.connections.open answers 404.
				log.Error("Slack answered 404 to apps.connections.open: check SLACK_API_URL, and that SLACK_APP_TOKEN belongs to an app with Socket Mode enabled")
				s.update(func(st *socketState) {
					st.Connected = false
					st.LastError = "apps.connections.open answered 404 (check SLACK_API_URL and SLACK_APP_TOKEN)"
				})
			case socketmode.EventTypeIncomingError:
				ev, _ := evt.Data.(*slack.IncomingEventError)
				if ev == nil || ev.ErrorObj == nil {
					continue
				}
				if errors.Is(ev.ErrorObj, net.ErrClosed) {
					// slack-go closed it itself (Slack asked for a refresh, or
					// a ping timed out); Connecting follows.
					log.Debug("Socket Mode connection closed by the client", "err", ev.ErrorObj)
					continue
				}
				log.Warn("Socket Mode connection failed; reconnecting", "err", ev.ErrorObj)
				s.update(func(st *socketState) { st.Connected = false; st.LastError = ev.ErrorObj.Error() })
			case socketmode.EventTypeConnected:
				s.update(func(st *socketState) {
					st.Connected, st.Attempt, st.LastError, st.retryAt = true, 0, "", time.Time{}
				})
				switch {
				case identityKnown || s.Status().Problem != "":
					s.logConnected()
				case identityPending:
					announce = true
				default: // the last auth.test failed: try again, announce when it answers
					identityPending, announce = true, true
					askIdentity()
				}
			case socketmode.EventTypeHello:
				if evt.Request != nil {
					log.Debug("Socket Mode hello", "app_id", evt.Request.ConnectionInfo.AppID,
						"num_connections", evt.Request.NumConnections, "host", evt.Request.DebugInfo.Host)
				}
				s.update(func(st *socketState) { st.Connected = true })
			case socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive:
				wg.Go(func() { s.handle(ctx, evt) })
			}
		}
	}
}

// recordIdentity stores what auth.test said and reports whether the team is
// now known. A refused bot token is a Problem naming SLACK_BOT_TOKEN.
func (s *SocketRunner) recordIdentity(id identity) bool {
	log := s.App.log()
	if id.err == nil {
		s.update(func(st *socketState) { st.TeamID, st.TeamName = id.resp.TeamID, id.resp.Team })
		return true
	}
	if code := tokenRefusal(id.err); code != "" {
		problem := fmt.Sprintf("Slack refused SLACK_BOT_TOKEN (%s) in auth.test: use the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page, and reinstall the app if it was revoked", code)
		log.Error(problem, "slack_error", code)
		s.update(func(st *socketState) { st.Problem = problem })
		return false
	}
	if errors.Is(id.err, context.Canceled) {
		return false
	}
	log.Warn("auth.test with SLACK_BOT_TOKEN failed; the team is not known yet", "err", id.err)
	return false
}

func (s *SocketRunner) logConnected() {
	st := s.Status()
	s.App.log().Info("Socket Mode connected", "team", st.TeamName, "team_id", st.TeamID)
}

// appTokenRefused records and logs Slack's refusal of the app-level token,
// and returns the error Run ends with.
func (s *SocketRunner) appTokenRefused(code string) error {
	hint := "use the app-level token (xapp-…) from the app's Basic Information page"
	if code == "missing_scope" {
		hint = "give the app-level token the connections:write scope"
	}
	problem := fmt.Sprintf("Slack refused SLACK_APP_TOKEN (%s) in apps.connections.open: %s", code, hint)
	s.App.log().Error(problem, "slack_error", code)
	s.update(func(st *socketState) { st.Connected = false; st.Problem = problem; st.retryAt = time.Time{} })
	return errors.New(problem)
}

// tokenRefusal returns Slack's error code when err says the token itself
// was refused, or "".
func tokenRefusal(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "not_allowed_token_type":
			return se.Err
		}
	}
	return ""
}

// appTokenRefusal is tokenRefusal for apps.connections.open, which also
// refuses an app-level token without connections:write.
func appTokenRefusal(err error) string {
	if code := tokenRefusal(err); code != "" {
		return code
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && se.Err == "missing_scope" {
		return se.Err
	}
	return ""
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
	if !s.first(req.EnvelopeID) || !s.claim(ctx, evt) {
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
		if reply := s.App.Command(ctx, cmd); reply != (Reply{}) {
			s.ack(req, reply)
		} else {
			s.ack(req, nil) // nothing to say: the request modal opened
		}
		s.App.metrics().Ack("command", time.Since(start))
	case socketmode.EventTypeInteractive:
		var resp any
		if cb, ok := evt.Data.(slack.InteractionCallback); ok {
			resp = s.App.Interaction(ctx, cb) // options or view errors travel in the ack
		}
		s.ack(req, resp)
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

// claim reports whether this replica handles evt: whether Dedupe records
// its envelope id for the first time across the replicas.
//
// When the shared check fails or runs out of dedupeTimeout, the envelope
// is handled here anyway (the in-memory check said it is new to this
// process), with a warning: refusing would drop what a person did because
// of a hiccup on a side path. What a duplicate handled during such a
// failure can still do is bounded by the store: a decision is a
// compare-and-set, so a second one is refused (the approver may see the
// refusal), a command's trigger_id makes one request, and a repeated
// views.open fails on the used trigger_id, which the clicker is told.
//
// Type-ahead (block_suggestion) skips the shared check: it changes
// nothing, it arrives on every keystroke, and a duplicate's ack without
// options would empty the menu.
func (s *SocketRunner) claim(ctx context.Context, evt socketmode.Event) bool {
	if s.Dedupe == nil {
		return true
	}
	if cb, ok := evt.Data.(slack.InteractionCallback); ok && cb.Type == slack.InteractionTypeBlockSuggestion {
		return true
	}
	id := evt.Request.EnvelopeID
	dctx, cancel := context.WithTimeout(ctx, dedupeTimeout)
	defer cancel()
	first, err := s.Dedupe.Remember(dctx, "socket:"+id, envelopeMemory)
	if err != nil {
		s.App.log().Warn("Could not check whether another replica handled this Socket Mode envelope; handling it here",
			"envelope_id", id, "type", string(evt.Type), "err", err)
		return true
	}
	if !first {
		s.App.log().Debug("Socket Mode envelope already handled by another replica", "envelope_id", id, "type", string(evt.Type))
	}
	return first
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
