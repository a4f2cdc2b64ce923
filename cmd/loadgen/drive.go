package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rolegate/rolegate/internal/slackapp"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// Identities the load uses. Requesters are spread over a few users; the one
// approver who clicks is configured in ROLEGATE_APPROVERS with a second one,
// so the bot runs with a realistic approver set.
const (
	loadChannel   = slackfake.DefaultChannel
	approver      = "U0LOADAPPR1"
	approverTwo   = "U0LOADAPPR2"
	requesters    = 50
	loadProject   = "proj_abc" // seeded in every openaitest fake
	rolesPerGroup = 32         // roles per group: targets are (group i/32, role i%32)
)

// target returns the unique project, group and role of the i-th request
// (counting across all rounds of one bot), so every approval leads to one
// assignment POST: the fake answers a second assignment of the same role with
// "already assigned" and no POST would be seen.
func target(i int) (group, role string) {
	return fmt.Sprintf("g%05d", i/rolesPerGroup), fmt.Sprintf("r%02d", i%rolesPerGroup)
}

// signer builds request bodies exactly as Slack posts them.
type signer struct {
	responseURL func(channel, user, ts string) string
	seq         atomic.Int64
}

// command is a slash command form as Slack posts it.
func (s *signer) command(user, text string) string {
	n := s.seq.Add(1)
	return slackfake.CommandForm(slackfake.Command{
		Channel: loadChannel, User: user, Text: text, TeamDomain: "rolegate-load",
		ResponseURL: s.responseURL(loadChannel, user, ""),
		TriggerID:   fmt.Sprintf("%d.%d.loadtrigger%d", 1000+n, 2000+n, n),
	}).Encode()
}

// click is a block_actions payload for a button on the approval message
// messageTS, form-encoded as Slack posts it.
func (s *signer) click(user, actionID string, id uint64, messageTS string) (string, error) {
	cb := slackfake.ClickPayload(slackfake.Click{
		User: user, Channel: loadChannel, ActionID: actionID, BlockID: "rolegate_decision",
		Value: strconv.FormatUint(id, 10), MessageTS: messageTS,
		ResponseURL: s.responseURL(loadChannel, user, messageTS),
		TriggerID:   fmt.Sprintf("13345224609.738474920.load%d", s.seq.Add(1)),
	})
	raw, err := json.Marshal(cb)
	if err != nil {
		return "", err
	}
	return slackfake.InteractionBody(raw), nil
}

// poster sends requests to one base URL, signed as Slack signs them.
type poster struct {
	slack *slackfake.Driver
}

// slackAckDeadline is how long Slack waits for an answer to a command or a
// click before it shows the user an error.
const slackAckDeadline = 3 * time.Second

// ackGiveUp is how long the load tool waits for an answer. It is well past
// slackAckDeadline so that a slow tail is measured (and counted as late)
// rather than ending the run: at 10 s, the first PostgreSQL runs with two
// replicas on a loaded 2-core machine ended on 2 of 1,000 commands and
// reported nothing. A request not answered within it still fails the run.
const ackGiveUp = 30 * time.Second

func newPoster(base, secret string, conns int) *poster {
	return &poster{slack: &slackfake.Driver{BaseURL: base, Secret: secret, HTTP: &http.Client{
		Timeout: ackGiveUp,
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}}}
}

// post sends body signed as Slack signs it now, and returns the status, the
// answer and how long the round trip took (answer read in full).
func (p *poster) post(ctx context.Context, path, body string) (int, []byte, time.Duration, error) {
	req, err := p.slack.NewRequest(ctx, path, body)
	if err != nil {
		return 0, nil, 0, err
	}
	start := time.Now()
	reply, err := p.slack.Do(req)
	return reply.Status, reply.Body, time.Since(start), err
}

func (p *poster) close() { p.slack.HTTP.CloseIdleConnections() }

// parallel runs do(0..n-1) on c goroutines, each taking the next index, and
// returns when all are done or ctx ends.
func parallel(ctx context.Context, n, c int, do func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				do(i)
			}
		})
	}
	wg.Wait()
}

// samples collects durations from many goroutines.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// latency summarises durations in milliseconds.
type latency struct {
	N                  int
	P50, P95, P99, Max float64
	Mean               float64
	// Late counts the durations past slackAckDeadline: for an ack, the
	// answers Slack would not have waited for.
	Late int
}

func (s *samples) summary() latency {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	slices.Sort(d)
	l := latency{N: len(d)}
	if len(d) == 0 {
		return l
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
		if x > slackAckDeadline {
			l.Late++
		}
	}
	l.P50, l.P95, l.P99 = ms(pct(d, 0.50)), ms(pct(d, 0.95)), ms(pct(d, 0.99))
	l.Max, l.Mean = ms(d[len(d)-1]), ms(sum/time.Duration(len(d)))
	return l
}

// pct is the nearest-rank percentile of sorted d.
func pct(d []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// errorList keeps the first few errors and counts the rest.
type errorList struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errorList) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 5 {
		e.first = append(e.first, fmt.Sprintf(format, args...))
	}
}

func (e *errorList) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		return nil
	}
	return fmt.Errorf("%d failed requests; first: %s", e.n, strings.Join(e.first, "; "))
}

// replyID reads the request id from the bot's private answer to a command.
func replyID(answer []byte) (uint64, error) {
	var r slackapp.Reply
	if err := json.NewDecoder(bytes.NewReader(answer)).Decode(&r); err != nil {
		return 0, fmt.Errorf("answer is not a reply: %w", err)
	}
	var id uint64
	if _, err := fmt.Sscanf(r.Text, "Request #%d is being checked", &id); err != nil {
		return 0, fmt.Errorf("unexpected answer %q", r.Text)
	}
	return id, nil
}
