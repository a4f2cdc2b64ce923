package slackfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Socket Mode timings.
const (
	// DefaultPingInterval is how often the fake sends a WebSocket ping on each
	// connection. slack-go's socketmode client reconnects when it sees no ping
	// for its OptionPingInterval (30s by default), so that option must stay
	// comfortably above this (≥ 2× is safe).
	DefaultPingInterval = 250 * time.Millisecond
	// DisconnectGrace is how long a connection sent a disconnect message stays
	// open before the fake closes it, if the client has not closed it first.
	DisconnectGrace = 10 * time.Second
)

// Envelope types, as in the envelope's "type" field.
const (
	EnvelopeSlashCommands = "slash_commands"
	EnvelopeInteractive   = "interactive"
	EnvelopeEventsAPI     = "events_api"
)

// ErrClosed is returned by the Send methods after Close.
var ErrClosed = errors.New("slackfake: server closed")

// wsConn is one open Socket Mode connection.
type wsConn struct {
	id       int
	ws       *websocket.Conn
	out      chan []byte // text frames, written by writeLoop in order
	done     chan struct{}
	once     sync.Once
	draining bool        // sent a disconnect; gets no new envelopes (guarded by Server.mu)
	pending  []*envelope // delivered here, not acked yet (guarded by Server.mu)
	grace    *time.Timer // guarded by Server.mu
}

func (c *wsConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.Close() // no close frame: an abrupt drop
	})
}

// envelope is one request sent over Socket Mode, across its deliveries.
type envelope struct {
	id          string
	typ         string
	payload     json.RawMessage
	accepts     bool
	attempt     int
	reason      string
	conn        *wsConn
	deliveries  int
	deliveredAt time.Time
	acks        int
	ackPayloads []json.RawMessage // one per ack, in arrival order
	ackedAt     time.Time
	lost        bool
}

// wireEnvelope is an envelope as written on the WebSocket, in Slack's shape.
type wireEnvelope struct {
	EnvelopeID             string          `json:"envelope_id"`
	Type                   string          `json:"type"`
	AcceptsResponsePayload bool            `json:"accepts_response_payload"`
	Payload                json.RawMessage `json:"payload"`
	RetryAttempt           int             `json:"retry_attempt"`
	RetryReason            string          `json:"retry_reason"`
}

// Envelope is the fake's record of one Socket Mode envelope.
type Envelope struct {
	ID      string
	Type    string
	Payload json.RawMessage
	// AcceptsResponsePayload is what the envelope told the client.
	AcceptsResponsePayload bool
	// RetryAttempt is the retry_attempt of the latest delivery (0 for the first).
	RetryAttempt int
	// Deliveries counts how many times it was written to a connection.
	Deliveries int
	// Queued reports an envelope waiting for a connection to open.
	Queued bool
	// Lost reports an envelope whose connection dropped before any ack while
	// redelivery was off.
	Lost bool
	// Acks counts the acks received for it, over all its deliveries; more
	// acks than Deliveries is a double ack.
	Acks int
	// AckPayload is the payload of the first ack, nil if it had none.
	AckPayload json.RawMessage
	// AckPayloads holds every ack's payload in the order they arrived (nil
	// for an ack without one): after Redeliver, one per connection that
	// answered.
	AckPayloads []json.RawMessage
	DeliveredAt time.Time // latest delivery
	AckedAt     time.Time // first ack; zero until acked
}

// AckLatency returns the time from the latest delivery to the first ack, or 0
// when not acked. Slack's deadline is 3 seconds.
func (e Envelope) AckLatency() time.Duration {
	if e.AckedAt.IsZero() {
		return 0
	}
	return e.AckedAt.Sub(e.DeliveredAt)
}

// SetPingInterval sets how often the fake pings each connection; 0 stops pings,
// so that the client's ping timeout fires and it reconnects, as with a
// half-dead link. It applies to open connections from their next ping.
func (s *Server) SetPingInterval(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pingInterval = max(d, 0)
}

// SetRedelivery sets what happens to envelopes delivered on a connection that
// closes before they are acked. On (the default), each goes out again, on
// another open connection or the next one to open, with retry_attempt
// incremented and retry_reason "timeout". Off, they are marked Lost, as a slash
// command is lost for the user when the app misses it.
func (s *Server) SetRedelivery(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redeliver = on
}

// openConnectionLocked answers apps.connections.open with a single-use
// WebSocket URL on host.
func (s *Server) openConnectionLocked(host string) apiResponse {
	ticket := uuid()
	s.tickets[ticket] = true
	return okResponse(apiResponse{"url": "ws://" + host + "/link/?ticket=" + ticket + "&app_id=" + AppID})
}

var upgrader = websocket.Upgrader{
	// slack-go dials with Origin https://api.slack.com.
	CheckOrigin: func(*http.Request) bool { return true },
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{ws: ws, out: make(chan []byte, 4096), done: make(chan struct{})}

	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		c.close()
		return
	default:
	}
	s.connSeq++
	c.id = s.connSeq
	s.conns = append(s.conns, c)
	c.out <- helloJSON(c.id, len(s.conns))
	queued := s.queue
	s.queue = nil
	for _, env := range queued {
		s.deliverLocked(env)
	}
	s.notifyLocked()
	s.mu.Unlock()

	go s.writeLoop(c)
	go s.pingLoop(c)
	s.readLoop(c)
}

func helloJSON(connID, numConns int) []byte {
	b, _ := json.Marshal(map[string]any{
		"type":            "hello",
		"num_connections": numConns,
		"debug_info": map[string]any{
			"host":                        "applink-fake-" + strconv.Itoa(connID),
			"build_number":                1,
			"approximate_connection_time": 18060,
		},
		"connection_info": map[string]any{"app_id": AppID},
	})
	return b
}

func (s *Server) writeLoop(c *wsConn) {
	for {
		select {
		case <-c.done:
			return
		case msg := <-c.out:
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				s.dropConns(c)
				return
			}
		}
	}
}

func (s *Server) pingLoop(c *wsConn) {
	t := time.NewTimer(0)
	defer t.Stop()
	n := 0
	for {
		s.mu.Lock()
		d := s.pingInterval
		s.mu.Unlock()
		if d > 0 {
			t.Reset(d)
		} else {
			t.Reset(50 * time.Millisecond)
		}
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		if d <= 0 {
			continue
		}
		n++
		if err := c.ws.WriteControl(websocket.PingMessage, []byte(strconv.Itoa(n)), time.Now().Add(5*time.Second)); err != nil {
			s.dropConns(c)
			return
		}
	}
}

// readLoop records the acks the client sends until the connection fails.
func (s *Server) readLoop(c *wsConn) {
	defer s.dropConns(c)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &ack) != nil || ack.EnvelopeID == "" {
			continue
		}
		s.mu.Lock()
		s.acks[ack.EnvelopeID]++
		if env := s.envelopes[ack.EnvelopeID]; env != nil {
			env.acks++
			env.ackPayloads = append(env.ackPayloads, clone(ack.Payload))
			if env.acks == 1 {
				env.ackedAt = s.now()
			}
			// Acked: no longer pending where it went last, nor on the
			// connection that answered (they differ after Redeliver).
			for _, pc := range []*wsConn{c, env.conn} {
				if pc != nil {
					pc.pending = slices.DeleteFunc(pc.pending, func(e *envelope) bool { return e == env })
				}
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
	}
}

// dropConns closes cs and deals with their unacked envelopes (see
// SetRedelivery). Connections already dropped are skipped.
func (s *Server) dropConns(cs ...*wsConn) {
	s.mu.Lock()
	var orphans []*envelope
	for _, c := range cs {
		i := slices.Index(s.conns, c)
		if i < 0 {
			continue
		}
		s.conns = slices.Delete(s.conns, i, i+1)
		if c.grace != nil {
			c.grace.Stop()
		}
		orphans = append(orphans, c.pending...)
		c.pending = nil
	}
	for _, env := range orphans {
		env.conn = nil
		if env.acks > 0 {
			continue
		}
		if s.redeliver {
			env.attempt++
			env.reason = "timeout"
			s.deliverLocked(env)
		} else {
			env.lost = true
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

// deliverLocked writes env to the next open connection, round-robin, as Slack
// spreads envelopes over an app's connections, or queues it when none is open.
func (s *Server) deliverLocked(env *envelope) { s.deliverAvoidingLocked(env, nil) }

// deliverAvoidingLocked is deliverLocked passing over avoid while another
// connection can take env.
func (s *Server) deliverAvoidingLocked(env *envelope, avoid *wsConn) {
	var target, fallback *wsConn
	for range len(s.conns) {
		s.nextConn = (s.nextConn + 1) % len(s.conns)
		c := s.conns[s.nextConn]
		if c.draining {
			continue
		}
		if c == avoid {
			fallback = c
			continue
		}
		target = c
		break
	}
	if target == nil {
		target = fallback
	}
	if target == nil {
		env.conn = nil
		s.queue = append(s.queue, env)
		return
	}
	b, _ := json.Marshal(wireEnvelope{
		EnvelopeID:             env.id,
		Type:                   env.typ,
		AcceptsResponsePayload: env.accepts,
		Payload:                env.payload,
		RetryAttempt:           env.attempt,
		RetryReason:            env.reason,
	})
	select {
	case target.out <- b:
	default:
		// A client this far behind is stuck; Slack would drop it too.
		go s.dropConns(target)
	}
	env.conn = target
	env.deliveries++
	env.deliveredAt = s.now()
	target.pending = append(target.pending, env)
}

// SendSlashCommand sends a slash command over Socket Mode as Slack does: an
// envelope of type "slash_commands", accepts_response_payload true, whose
// payload is the command's fields as a JSON object of strings (the same names
// and values as the HTTP form, first value of each). Fields the form lacks are
// filled in: token, team_id, team_domain, api_app_id, is_enterprise_install
// ("false"), trigger_id, and response_url (a NewResponseURLFor the form's
// channel_id and user_id). It returns the envelope id.
//
// With no connection open, the envelope is queued and delivered to the next
// connection after its hello; the error is non-nil only after Close.
func (s *Server) SendSlashCommand(form url.Values) (string, error) {
	p := map[string]string{}
	for k, v := range form {
		if len(v) > 0 {
			p[k] = v[0]
		}
	}
	defaults := map[string]string{
		"token":                 VerificationToken,
		"team_id":               TeamID,
		"team_domain":           TeamDomain,
		"api_app_id":            AppID,
		"is_enterprise_install": "false",
	}
	for k, v := range defaults {
		if _, ok := p[k]; !ok {
			p[k] = v
		}
	}
	if _, ok := p["trigger_id"]; !ok {
		p["trigger_id"] = fmt.Sprintf("%d.%d.%s", time.Now().Unix(), 1000+len(p), randomID(16))
	}
	if _, ok := p["response_url"]; !ok {
		p["response_url"] = s.NewResponseURLFor(p["channel_id"], p["user_id"], "")
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("slackfake: slash command: %w", err)
	}
	return s.send(EnvelopeSlashCommands, payload, true)
}

// SendInteraction sends an interaction payload over Socket Mode: an envelope of
// type "interactive" whose payload is payload as JSON (the shape
// slack.InteractionCallback marshals to; a json.RawMessage or []byte is sent
// as is). accepts_response_payload is true for view_submission and
// block_suggestion payloads and false otherwise (block_actions, shortcuts), as
// Slack sets it. Queueing works as for SendSlashCommand.
//
// A struct is marshalled through a pointer, so slack.InteractionCallback's
// pointer-receiver MarshalJSON (which encodes state) is used for a value too.
func (s *Server) SendInteraction(payload any) (string, error) {
	raw, err := marshalPayload(payload)
	if err != nil {
		return "", fmt.Errorf("slackfake: interaction: %w", err)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("slackfake: interaction payload must be a JSON object: %w", err)
	}
	accepts := head.Type == "view_submission" || head.Type == "block_suggestion"
	return s.send(EnvelopeInteractive, raw, accepts)
}

// SendEnvelope sends an envelope of any type (e.g. "events_api") with payload
// as JSON. Queueing works as for SendSlashCommand.
func (s *Server) SendEnvelope(typ string, payload any, acceptsResponsePayload bool) (string, error) {
	raw, err := marshalPayload(payload)
	if err != nil {
		return "", fmt.Errorf("slackfake: envelope: %w", err)
	}
	return s.send(typ, raw, acceptsResponsePayload)
}

func marshalPayload(payload any) (json.RawMessage, error) {
	switch p := payload.(type) {
	case json.RawMessage:
		if !json.Valid(p) {
			return nil, errors.New("invalid JSON")
		}
		return clone(p), nil
	case []byte:
		if !json.Valid(p) {
			return nil, errors.New("invalid JSON")
		}
		return clone(p), nil
	}
	if v := reflect.ValueOf(payload); v.Kind() == reflect.Struct {
		ptr := reflect.New(v.Type())
		ptr.Elem().Set(v)
		payload = ptr.Interface()
	}
	return json.Marshal(payload)
}

func (s *Server) send(typ string, payload json.RawMessage, accepts bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return "", ErrClosed
	default:
	}
	env := &envelope{id: uuid(), typ: typ, payload: payload, accepts: accepts}
	s.envelopes[env.id] = env
	s.envOrder = append(s.envOrder, env.id)
	s.deliverLocked(env)
	s.notifyLocked()
	return env.id, nil
}

// Redeliver sends envelope id once more, as Slack does when an ack did not
// reach it in time: with retry_attempt incremented and retry_reason
// "timeout", on an open connection other than the one it last went to when
// there is one. Slack spreads an app's envelopes over all its connections,
// so with several replicas each on its own connection a redelivery reaches
// another replica. Unlike the redelivery after a drop (SetRedelivery) it
// does not wait for the first delivery to fail, and it goes out even when
// that one was acked (a late ack): called right after a Send method, two
// connections receive the same envelope at about the same time. An
// envelope still queued for a connection stays queued, once; with no
// connection open it is queued. The error is non-nil for an id the fake
// never sent and after Close.
func (s *Server) Redeliver(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	env := s.envelopes[id]
	if env == nil {
		return fmt.Errorf("slackfake: unknown envelope %q", id)
	}
	if slices.Contains(s.queue, env) {
		return nil
	}
	env.attempt++
	env.reason = "timeout"
	s.deliverAvoidingLocked(env, env.conn)
	s.notifyLocked()
	return nil
}

// WaitAck waits until the envelope envelopeID is acked and returns the first
// ack's payload (nil when the ack carried none), or ctx's error.
func (s *Server) WaitAck(ctx context.Context, envelopeID string) (json.RawMessage, error) {
	s.mu.Lock()
	_, known := s.envelopes[envelopeID]
	s.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("slackfake: unknown envelope %q", envelopeID)
	}
	var payload json.RawMessage
	err := s.WaitFor(ctx, func(s *Server) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		env := s.envelopes[envelopeID]
		if env.acks == 0 {
			return false
		}
		payload = clone(env.ackPayloads[0])
		return true
	})
	return payload, err
}

// Acks returns how many acks arrived per envelope id, including ids the fake
// never sent.
func (s *Server) Acks() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.acks)
}

// Envelopes returns every envelope sent, in order.
func (s *Server) Envelopes() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Envelope, 0, len(s.envOrder))
	for _, id := range s.envOrder {
		e := s.envelopes[id]
		out = append(out, Envelope{
			ID:                     e.id,
			Type:                   e.typ,
			Payload:                clone(e.payload),
			AcceptsResponsePayload: e.accepts,
			RetryAttempt:           e.attempt,
			Deliveries:             e.deliveries,
			Queued:                 slices.Contains(s.queue, e),
			Lost:                   e.lost,
			Acks:                   e.acks,
			AckPayload:             firstPayload(e.ackPayloads),
			AckPayloads:            cloneAll(e.ackPayloads),
			DeliveredAt:            e.deliveredAt,
			AckedAt:                e.ackedAt,
		})
	}
	return out
}

// firstPayload is a copy of the first ack's payload, nil before any ack.
func firstPayload(ps []json.RawMessage) json.RawMessage {
	if len(ps) == 0 {
		return nil
	}
	return clone(ps[0])
}

// cloneAll copies every payload of ps.
func cloneAll(ps []json.RawMessage) []json.RawMessage {
	var out []json.RawMessage
	for _, p := range ps {
		out = append(out, clone(p))
	}
	return out
}

// Connected returns how many Socket Mode connections are open (hello sent).
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// ConnectionsOpened returns how many Socket Mode connections were ever opened,
// to observe reconnects.
func (s *Server) ConnectionsOpened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connSeq
}

// DropConnections closes every open Socket Mode connection at once without a
// close frame, as a network drop does. Unacked envelopes are redelivered or
// lost per SetRedelivery. Connected is 0 when it returns.
func (s *Server) DropConnections() {
	s.mu.Lock()
	cs := slices.Clone(s.conns)
	s.mu.Unlock()
	s.dropConns(cs...)
}

// SendDisconnect sends Slack's {"type":"disconnect","reason":reason,…} on every
// open connection (reasons Slack uses: "refresh_requested", "warning",
// "link_disabled"). Those connections get no new envelopes; the fake closes
// them after DisconnectGrace unless the client does first (slack-go closes and
// reconnects at once).
func (s *Server) SendDisconnect(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		b, _ := json.Marshal(map[string]any{
			"type":       "disconnect",
			"reason":     reason,
			"debug_info": map[string]any{"host": "applink-fake-" + strconv.Itoa(c.id)},
		})
		select {
		case c.out <- b:
		default:
		}
		if !c.draining {
			c.draining = true
			c.grace = time.AfterFunc(DisconnectGrace, func() { s.dropConns(c) })
		}
	}
}
