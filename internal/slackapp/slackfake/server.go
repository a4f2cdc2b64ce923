// Package slackfake is a fake Slack for tests and load runs: the Web API methods
// rolegate calls, response URLs and a Socket Mode endpoint, served by an
// [httptest.Server] and answering the way Slack does, failures and limits included.
//
// It speaks the wire formats slack-go v0.35.0 sends and parses: form-encoded
// chat.* calls with the token in the body, bearer-token JSON calls such as
// apps.connections.open, HTTP 200 with {"ok":false,"error":…} for API errors,
// HTTP 429 with Retry-After for rate limits, and gorilla/websocket Socket Mode
// with hello, envelopes, acks, disconnect messages and WebSocket pings.
//
// Everything a test inspects (messages, ephemerals, response URL posts, call
// counts, envelopes and acks) is recorded and safe to read from any goroutine
// while the code under test runs. Use [Server.WaitFor] to wait for a condition
// instead of sleeping.
package slackfake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Identities the fake reports for its workspace, bot and app, in auth.test,
// posted messages and hello messages.
const (
	TeamID            = "T0FAKE001"
	TeamName          = "Fake Workspace"
	TeamDomain        = "fake-workspace"
	BotUserID         = "U0FAKEBOT"
	BotUserName       = "rolegate"
	BotID             = "B0FAKEBOT"
	AppID             = "A0FAKEAPP"
	VerificationToken = "fake-verification-token"
	// DefaultChannel exists in every new Server, with the bot as a member.
	DefaultChannel = "C0001"
)

// Server is a running fake Slack. Create it with [New] and stop it with
// [Server.Close]. All methods are safe for concurrent use.
type Server struct {
	srv      *httptest.Server
	handler  http.Handler
	botToken string
	closed   chan struct{}
	once     sync.Once

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every recorded change

	appToken     string
	botTokenGood bool
	scopes       []string // the bot token's, sent as X-OAuth-Scopes
	now          func() time.Time

	channels     map[string]*channel
	dms          map[string]string // user id → DM channel id
	userGroups   map[string][]string
	seq          int64 // view id counter
	lastTS       int64 // the last message timestamp handed out, in microseconds
	ephemerals   []Ephemeral
	views        []OpenedView
	usedTriggers map[string]bool // trigger ids views.open has exchanged
	calls        map[string]int

	faults   map[string][]*fault
	delays   map[string]time.Duration
	limits   map[string]rateLimit
	buckets  map[string]*bucket
	respURLs map[string]*responseURL
	onCall   func(method string, params url.Values)

	// Socket Mode.
	conns        []*wsConn // open, in the order they connected
	connSeq      int       // connections ever opened
	nextConn     int       // round-robin cursor into conns
	tickets      map[string]bool
	envelopes    map[string]*envelope
	envOrder     []string
	acks         map[string]int
	queue        []*envelope // waiting for a connection
	pingInterval time.Duration
	redeliver    bool
}

// New starts a fake Slack whose bot token is botToken. The caller must call
// Close when done. Channel [DefaultChannel] exists with the bot as a member.
// Socket Mode is refused until [Server.SetAppToken] sets an app-level token.
func New(botToken string) *Server {
	s := &Server{
		botToken:     botToken,
		closed:       make(chan struct{}),
		changed:      make(chan struct{}),
		botTokenGood: true,
		now:          time.Now,
		channels:     map[string]*channel{},
		dms:          map[string]string{},
		userGroups:   map[string][]string{},
		calls:        map[string]int{},
		faults:       map[string][]*fault{},
		delays:       map[string]time.Duration{},
		limits:       map[string]rateLimit{},
		buckets:      map[string]*bucket{},
		respURLs:     map[string]*responseURL{},
		usedTriggers: map[string]bool{},
		tickets:      map[string]bool{},
		envelopes:    map[string]*envelope{},
		acks:         map[string]int{},
		pingInterval: DefaultPingInterval,
		redeliver:    true,
		scopes:       slices.Clone(DefaultScopes),
	}
	s.channels[DefaultChannel] = newChannel(DefaultChannel, true)

	mux := http.NewServeMux()
	mux.HandleFunc("/api/{method}", s.serveAPI)
	mux.HandleFunc("POST /response/{id}", s.serveResponseURL)
	mux.HandleFunc("GET /link/", s.serveSocket)
	s.handler = mux
	s.srv = httptest.NewServer(mux)
	return s
}

// Close closes every Socket Mode connection, stops the HTTP server and waits for
// in-flight Web API requests (including ones held by SetDelay) to finish.
// Close is idempotent.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.mu.Lock()
		conns := slices.Clone(s.conns)
		s.mu.Unlock()
		for _, c := range conns {
			c.close()
		}
		s.srv.Close()
	})
}

// APIURL returns the Web API base URL, ending in "/api/", for slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.srv.URL + "/api/" }

// URL returns the base URL of the fake's listener, without a trailing slash.
func (s *Server) URL() string { return s.srv.URL }

// Handler returns the fake's HTTP handler, to mount it in another server. It
// serves /api/{method}, /response/{id} and the Socket Mode endpoint /link/; the
// WebSocket URL handed out by apps.connections.open uses the request's Host, so
// it works behind any listener. Response URLs created by NewResponseURL and
// SendSlashCommand point at the fake's own listener.
func (s *Server) Handler() http.Handler { return s.handler }

// AddChannel creates the channel id (or resets its membership if it exists).
// Posting to a channel the bot is not a member of fails with not_in_channel.
func (s *Server) AddChannel(id string, botIsMember bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.channels[id]; ok {
		ch.member = botIsMember
		return
	}
	s.channels[id] = newChannel(id, botIsMember)
}

// AddUserGroup sets the members usergroups.users.list returns for the user group
// id. Without it, usergroups.users.list answers no_such_subteam.
func (s *Server) AddUserGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userGroups[id] = append([]string(nil), members...)
}

// SetAppToken sets the app-level token (xapp-…) apps.connections.open accepts.
// Changing it makes later connection attempts with the old token fail with
// invalid_auth; open connections stay open.
// DefaultScopes are the bot token scopes manifest.yml asks for, which the
// fake's token has unless SetScopes says otherwise.
var DefaultScopes = []string{"commands", "chat:write", "chat:write.public", "usergroups:read", "channels:history", "groups:history"}

// SetScopes sets the scopes the bot token was granted, which every
// authorized Web API answer lists in its X-OAuth-Scopes header, as Slack's
// do (an app installed from an older manifest lacks the newer ones).
func (s *Server) SetScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = slices.Clone(scopes)
}

func (s *Server) SetAppToken(xapp string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appToken = xapp
}

// InvalidateToken makes every later Web API call with the bot token fail with
// invalid_auth, as after the app is uninstalled or the token revoked. The
// app-level token is not affected; use SetAppToken for that.
func (s *Server) InvalidateToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.botTokenGood = false
}

// SetClock replaces the clock the fake uses for response URL expiry, rate limits
// and recorded times. It defaults to time.Now.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// WaitFor calls cond until it returns true or ctx ends, and returns ctx's error in
// the latter case. cond is called without any lock held and may call any method
// of s. It is re-evaluated on every change the fake records and at least every
// 20ms, so conditions that depend on time are noticed too. Give ctx a deadline.
func (s *Server) WaitFor(ctx context.Context, cond func(*Server) bool) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		t.Reset(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			return fmt.Errorf("slackfake: wait: %w", context.Cause(ctx))
		case <-ch:
		case <-t.C:
		}
	}
}

// notifyLocked wakes every WaitFor. The caller holds s.mu.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// nextTSLocked returns a new message timestamp: unique, increasing and shaped like
// Slack's ("1700000000.000100"). Like Slack's, it is the time of posting (by the
// fake's clock) in microseconds, moved on by one when that was handed out
// already, so conversations.history can filter by oldest and latest. The caller
// holds s.mu.
func (s *Server) nextTSLocked() string {
	micros := max(s.now().UnixMicro(), s.lastTS+1)
	s.lastTS = micros
	return fmt.Sprintf("%d.%06d", micros/1_000_000, micros%1_000_000)
}

// randomID returns n random bytes, hex-encoded.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// uuid returns a random version 4 UUID, the shape of Slack's envelope ids.
func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return strings.Join([]string{h[0:8], h[8:12], h[12:16], h[16:20], h[20:32]}, "-")
}
