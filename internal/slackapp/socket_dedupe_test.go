package slackapp_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// sharedMemory is approvals.Rememberer in memory, shared by runners as
// the database is shared by replicas. When fail is set it answers every
// call instead, as a database that is down or stuck does.
type sharedMemory struct {
	fail func(ctx context.Context) error

	mu   sync.Mutex
	seen map[string]bool
	keys []string // every key asked about, in order
}

var _ approvals.Rememberer = (*sharedMemory)(nil)

func (m *sharedMemory) Remember(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	m.keys = append(m.keys, key)
	m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail(ctx)
	}
	if ttl <= 0 {
		return false, errors.New("remember: ttl must be positive")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	if m.seen[key] {
		return false, nil
	}
	m.seen[key] = true
	return true, nil
}

func (m *sharedMemory) asked() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.keys)
}

// modalCommand is `/assign-role` with nothing typed: it opens the request
// modal with its trigger_id, which works once.
func modalCommand() url.Values {
	return url.Values{"command": {"/assign-role"}, "text": {""}, "user_id": {"U0ANA"}, "channel_id": {slackfake.DefaultChannel}}
}

// startReplicas runs n runners on fake, each on its own connection, all
// sharing dedupe, and waits until every one is connected.
func startReplicas(t *testing.T, fake *slackfake.Server, n int, dedupe approvals.Rememberer) []*runner {
	t.Helper()
	var rs []*runner
	for range n {
		r := startRunnerWith(t, fake.APIURL(), botToken, appToken, func(s *slackapp.SocketRunner) { s.Dedupe = dedupe })
		r.waitStatus(t, "a connection", slackapp.SocketStatus.Ready)
		rs = append(rs, r)
	}
	// A runner is connected once the WebSocket is up, a moment before the
	// fake counts the connection (and sends it envelopes).
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	if err := fake.WaitFor(ctx, func(s *slackfake.Server) bool { return s.Connected() == n }); err != nil {
		t.Fatalf("%d connections open, want %d: %v", fake.Connected(), n, err)
	}
	return rs
}

// envelope returns the fake's record of envelope id once it has acks acks.
func envelope(t *testing.T, fake *slackfake.Server, id string, acks int) slackfake.Envelope {
	t.Helper()
	var found slackfake.Envelope
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	err := fake.WaitFor(ctx, func(s *slackfake.Server) bool {
		for _, e := range s.Envelopes() {
			if e.ID == id && e.Acks >= acks {
				found = e
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("envelope %s never had %d acks: %v", id, acks, err)
	}
	return found
}

// TestSocketEnvelopeOnTwoReplicasIsHandledOnce: Slack sends one envelope
// to two replicas' connections (a late ack, redelivered elsewhere). With
// the shared check, one of them opens the modal and the other only acks:
// one views.open, and no "could not open the form" for the person.
func TestSocketEnvelopeOnTwoReplicasIsHandledOnce(t *testing.T) {
	fake := slackfake.New(botToken)
	t.Cleanup(fake.Close)
	fake.SetAppToken(appToken)
	shared := &sharedMemory{}
	rs := startReplicas(t, fake, 2, shared)

	id, err := fake.SendSlashCommand(modalCommand())
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Redeliver(id); err != nil {
		t.Fatal(err)
	}
	env := envelope(t, fake, id, 2)
	if env.Deliveries != 2 {
		t.Fatalf("envelope delivered %d times, want once to each replica", env.Deliveries)
	}
	if n := fake.Calls("views.open"); n != 1 || len(fake.Views()) != 1 {
		t.Errorf("views.open called %d times, %d views open; want the modal opened once", n, len(fake.Views()))
	}
	for i, r := range rs {
		if w := r.logs.find("WARN", ""); len(w) != 0 {
			t.Errorf("replica %d warned: %v", i, w)
		}
	}
	for i, p := range env.AckPayloads {
		if p != nil {
			t.Errorf("ack %d carries %s; the modal opened, so neither ack has anything to say", i, p)
		}
	}
	if want := []string{"socket:" + id, "socket:" + id}; !slices.Equal(shared.asked(), want) {
		t.Errorf("shared check asked about %q, want %q", shared.asked(), want)
	}

	// Type-ahead changes nothing and comes on every keystroke: both
	// replicas answer it with options, and the database is not asked.
	sid, err := fake.SendInteraction(slackfake.SuggestionPayload(slackfake.Suggestion{
		User: "U0ANA", ActionID: slackapp.ModalProject, BlockID: slackapp.ModalProject, Value: "sup",
		View: slackfake.View{CallbackID: slackapp.RequestModalID},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Redeliver(sid); err != nil {
		t.Fatal(err)
	}
	for i, p := range envelope(t, fake, sid, 2).AckPayloads {
		if string(p) != `{"options":[]}` {
			t.Errorf("suggestion ack %d = %s, want the options list", i, p)
		}
	}
	if got := len(shared.asked()); got != 2 {
		t.Errorf("the shared check was asked %d times, want 2 (not for the suggestion)", got)
	}
}

// TestSocketDedupeFailureHandlesTheEnvelope: when the shared check fails
// or hangs, the envelope is handled anyway (a person's click is not
// dropped), acked within Slack's 3 seconds, with a warning; the in-memory
// check in front still stops a redelivery to the same replica.
func TestSocketDedupeFailureHandlesTheEnvelope(t *testing.T) {
	tests := []struct {
		name string
		fail func(ctx context.Context) error
	}{
		{"database error", func(context.Context) error { return errors.New("dial tcp 10.0.0.5:5432: connect: connection refused") }},
		{"database hangs", func(ctx context.Context) error {
			<-ctx.Done() // only the runner's own bound ends it
			return ctx.Err()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := slackfake.New(botToken)
			t.Cleanup(fake.Close)
			fake.SetAppToken(appToken)
			shared := &sharedMemory{fail: tt.fail}
			r := startReplicas(t, fake, 1, shared)[0]

			id, err := fake.SendSlashCommand(modalCommand())
			if err != nil {
				t.Fatal(err)
			}
			env := envelope(t, fake, id, 1)
			if n := fake.Calls("views.open"); n != 1 {
				t.Fatalf("views.open called %d times, want the modal opened despite the failed check", n)
			}
			if env.AckLatency() >= 3*time.Second {
				t.Errorf("ack after %s, beyond Slack's 3 s", env.AckLatency())
			}
			warn := r.logs.waitLog(t, 1, "WARN", "Could not check whether another replica handled this Socket Mode envelope")
			if warn[0]["envelope_id"] != id || warn[0]["err"] == nil {
				t.Errorf("warning %v lacks the envelope id or the cause", warn[0])
			}

			// A redelivery to the same replica: caught in memory, before
			// the shared check.
			if err := fake.Redeliver(id); err != nil {
				t.Fatal(err)
			}
			envelope(t, fake, id, 2)
			if n := fake.Calls("views.open"); n != 1 {
				t.Errorf("views.open called %d times after a redelivery to the same replica, want 1", n)
			}
			if got := len(shared.asked()); got != 1 {
				t.Errorf("the shared check was asked %d times, want once", got)
			}
		})
	}
}
