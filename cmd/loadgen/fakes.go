package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

// tracked is what the load tool knows about one request.
type tracked struct {
	posted   chan struct{} // closed when the approval message is posted
	ts       string        // the approval message's ts
	postedAt time.Time     // when its chat.postMessage reached the fake Slack
	clickAt  time.Time     // when the approving click was sent
	assignAt time.Time     // when the assignment POST reached the fake OpenAI
	result   bool          // the result message was posted
}

// tracker follows requests through the fakes: approval message posted,
// assignment POST seen, result posted. Safe for concurrent use.
type tracker struct {
	mu       sync.Mutex
	reqs     map[uint64]*tracked
	byTarget map[approvals.Target]uint64
	results  int
	stray    int // assignment POSTs for unknown targets or repeated ones
	changed  chan struct{}
}

func newTracker() *tracker {
	return &tracker{reqs: map[uint64]*tracked{}, byTarget: map[approvals.Target]uint64{}, changed: make(chan struct{})}
}

// get returns request id's record, creating it: the bot may post the
// approval message before the command's answer reaches the load tool.
func (t *tracker) getLocked(id uint64) *tracked {
	r, ok := t.reqs[id]
	if !ok {
		r = &tracked{posted: make(chan struct{})}
		t.reqs[id] = r
	}
	return r
}

func (t *tracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// created records request id, asked for tg.
func (t *tracker) created(id uint64, tg approvals.Target) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.getLocked(id)
	t.byTarget[tg] = id
}

// postedApproval records request id's approval message, posted with ts; at
// is when its chat.postMessage reached the fake Slack.
func (t *tracker) postedApproval(id uint64, ts string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.getLocked(id)
	if r.ts != "" {
		return
	}
	r.ts, r.postedAt = ts, at
	close(r.posted)
}

// approvalTS waits for request id's approval message and returns its ts.
func (t *tracker) approvalTS(ctx context.Context, id uint64) (string, error) {
	ts, _, err := t.waitApproval(ctx, id)
	return ts, err
}

// waitApproval waits for request id's approval message and returns its ts
// and when its chat.postMessage reached the fake Slack.
func (t *tracker) waitApproval(ctx context.Context, id uint64) (string, time.Time, error) {
	t.mu.Lock()
	r := t.getLocked(id)
	t.mu.Unlock()
	select {
	case <-r.posted:
		t.mu.Lock()
		defer t.mu.Unlock()
		return r.ts, r.postedAt, nil
	case <-ctx.Done():
		return "", time.Time{}, fmt.Errorf("approval message of request %d: %w", id, ctx.Err())
	}
}

func (t *tracker) clicked(id uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.getLocked(id).clickAt = at
}

// assigned is the fake OpenAI's OnAssign hook.
func (t *tracker) assigned(tg approvals.Target, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byTarget[tg]
	if !ok || !t.reqs[id].assignAt.IsZero() {
		t.stray++
		return
	}
	t.reqs[id].assignAt = at
	t.notifyLocked()
}

func (t *tracker) resultPosted(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.getLocked(id)
	if !r.result {
		r.result = true
		t.results++
		t.notifyLocked()
	}
}

// waitUntil waits until done, called with t.mu held, reports true or ctx
// ends, and then returns ctx's error.
func (t *tracker) waitUntil(ctx context.Context, done func() bool) error {
	for {
		t.mu.Lock()
		ok, ch := done(), t.changed
		t.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitResults waits until n results in all were posted.
func (t *tracker) waitResults(ctx context.Context, n int) error {
	var got int
	if err := t.waitUntil(ctx, func() bool { got = t.results; return got >= n }); err != nil {
		return fmt.Errorf("waiting for %d results, saw %d: %w", n, got, err)
	}
	return nil
}

// waitAssigned waits until request id's assignment POST arrived.
func (t *tracker) waitAssigned(ctx context.Context, id uint64) error {
	if err := t.waitUntil(ctx, func() bool { return !t.getLocked(id).assignAt.IsZero() }); err != nil {
		return fmt.Errorf("waiting for the assignment of request %d: %w", id, err)
	}
	return nil
}

// strayErr reports the assignment POSTs seen for no tracked request or for
// one already assigned.
func (t *tracker) strayErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stray > 0 {
		return fmt.Errorf("%d assignment POSTs for no request or repeated", t.stray)
	}
	return nil
}

// clickToAssign returns the click → assignment POST latencies of ids.
func (t *tracker) clickToAssign(ids []uint64) *samples {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &samples{}
	for _, id := range ids {
		if r := t.reqs[id]; r != nil && !r.clickAt.IsZero() && !r.assignAt.IsZero() {
			s.d = append(s.d, r.assignAt.Sub(r.clickAt))
		}
	}
	return s
}

// fakes are the fake Slack and fake OpenAI, served on loopback by the load
// tool's own listeners so each call's service time is measured.
type fakes struct {
	slack    *slackfake.Server
	openai   *openaitest.Server
	track    *tracker
	slackURL string // Web API base for SLACK_API_URL
	aiURL    string // API base for OPENAI_BASE_URL
	servers  []*http.Server

	slackTime, aiTime *samples
	groups            int // groups added to the fake OpenAI so far
}

func startFakes(botToken, adminKey string) (*fakes, error) {
	f := &fakes{
		slack:     slackfake.New(botToken),
		openai:    openaitest.New(adminKey),
		track:     newTracker(),
		slackTime: &samples{},
		aiTime:    &samples{},
	}
	f.openai.OnAssign(f.track.assigned)
	for i := range rolesPerGroup {
		_, role := target(i)
		f.openai.AddRole(loadProject, openaitest.Role{
			ID: role, Name: loadRoleName(role), Description: "A role the load tool assigns",
			Permissions: []string{"api.organization.projects.api_keys.read", "api.organization.projects.api_keys.write"},
		})
	}
	slackAddr, err := f.serve(f.slackHandler(f.slack.Handler()))
	if err != nil {
		f.close()
		return nil, err
	}
	aiAddr, err := f.serve(timed(f.aiTime, f.openai.Handler()))
	if err != nil {
		f.close()
		return nil, err
	}
	f.slackURL = "http://" + slackAddr + "/api/"
	f.aiURL = "http://" + aiAddr + "/v1"
	return f, nil
}

// loadRoleName is the name of the load's role id in the fake OpenAI.
func loadRoleName(id string) string { return "Load role " + id }

func (f *fakes) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	f.servers = append(f.servers, srv)
	go srv.Serve(ln)
	return ln.Addr().String(), nil
}

// ensureTargets adds the groups the first n requests' targets need.
func (f *fakes) ensureTargets(n int) {
	for ; f.groups*rolesPerGroup < n; f.groups++ {
		group, _ := target(f.groups * rolesPerGroup)
		f.openai.AddGroup(group, "Load group "+group, false)
	}
}

func (f *fakes) close() {
	for _, s := range f.servers {
		s.Close()
	}
	f.slack.Close()
	f.openai.Close()
}

func timed(s *samples, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		s.add(time.Since(start))
	})
}

// teeWriter keeps a copy of what a handler answers.
type teeWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *teeWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

// slackHandler serves the fake Slack and notes the approval messages (their
// ts, for the clicks) and result messages the bot posts.
func (f *fakes) slackHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if r.URL.Path != "/api/chat.postMessage" {
			next.ServeHTTP(w, r)
			f.slackTime.add(time.Since(start))
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		tw := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r)
		f.slackTime.add(time.Since(start))

		form, err := url.ParseQuery(string(body))
		if err != nil {
			return
		}
		var answer struct {
			OK bool   `json:"ok"`
			TS string `json:"ts"`
		}
		if json.Unmarshal(tw.buf.Bytes(), &answer) != nil || !answer.OK {
			return
		}
		var id uint64
		text := form.Get("text")
		switch {
		case form.Get("thread_ts") == "" && scan(text, "Request #%d:", &id):
			f.track.postedApproval(id, answer.TS, start)
		case form.Get("thread_ts") != "" && (scan(text, "Request #%d applied", &id) || scan(text, "Request #%d failed", &id)):
			f.track.resultPosted(id)
		}
	})
}

func scan(s, format string, id *uint64) bool {
	prefix, _, _ := strings.Cut(format, "%d")
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	_, err := fmt.Sscanf(s, format, id)
	return err == nil
}
