package openai_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newCache(t *testing.T, inner approvals.Catalog, clk *clock) *openai.CachedCatalog {
	t.Helper()
	cc := openai.NewCachedCatalog(inner, openai.CacheConfig{TTL: time.Minute, Now: clk.Now})
	t.Cleanup(cc.Close)
	return cc
}

func TestCachedCatalogBurstListsOnce(t *testing.T) {
	s := newFake(t)
	s.AddProject("proj_def", "Second")
	s.AddRole("proj_def", openaitest.Role{ID: "role_def", Name: "Reader"})
	// Slow lists, so the burst really overlaps a cold fetch.
	s.SetDelayOp(openaitest.OpListProjects, 50*time.Millisecond)
	s.SetDelayOp(openaitest.OpListGroups, 50*time.Millisecond)
	s.SetDelayOp(openaitest.OpListProjectRoles, 50*time.Millisecond)
	cc := newCache(t, newClient(t, s, 0), newClock())

	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 50 {
		wg.Go(func() {
			ps, err1 := cc.Projects(t.Context())
			gs, err2 := cc.Groups(t.Context())
			rs, err3 := cc.ProjectRoles(t.Context(), []string{"proj_abc", "proj_def"}[i%2])
			if err := errors.Join(err1, err2, err3); err != nil || len(ps) != 2 || len(gs) != 2 || len(rs) == 0 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of 50 callers got an error or a short list", n)
	}
	for op, want := range map[openaitest.Op]int{openaitest.OpListProjects: 1, openaitest.OpListGroups: 1, openaitest.OpListProjectRoles: 2} {
		if n := s.Calls(op); n != want {
			t.Errorf("%s calls = %d for 50 concurrent callers, want %d", op, n, want)
		}
	}
}

// gatedCatalog is an inner Catalog whose Projects blocks on gate (when
// set) and counts calls; the projects it returns are named "v<call>".
type gatedCatalog struct {
	approvals.Catalog
	mu    sync.Mutex
	calls int
	gate  chan struct{}
	fail  error
	// entered, when set, receives the call number as each call starts.
	entered chan int
}

func (g *gatedCatalog) Projects(ctx context.Context) ([]approvals.Project, error) {
	g.mu.Lock()
	g.calls++
	n, gate, fail, entered := g.calls, g.gate, g.fail, g.entered
	g.mu.Unlock()
	if entered != nil {
		entered <- n
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	return []approvals.Project{{ID: "proj_abc", Name: fmt.Sprintf("v%d", n)}}, nil
}

func (g *gatedCatalog) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

func (g *gatedCatalog) Gate(ch chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = ch
}

func TestCachedCatalogServesStaleWhileOneRefreshRuns(t *testing.T) {
	inner := &gatedCatalog{entered: make(chan int, 100)}
	clk := newClock()
	cc := openai.NewCachedCatalog(inner, openai.CacheConfig{TTL: time.Minute, Now: clk.Now})
	defer cc.Close()
	ctx := t.Context()

	if ps, err := cc.Projects(ctx); err != nil || ps[0].Name != "v1" {
		t.Fatalf("first Projects = %+v, %v", ps, err)
	}
	clk.Advance(30 * time.Second)
	if ps, _ := cc.Projects(ctx); ps[0].Name != "v1" || inner.Calls() != 1 {
		t.Fatalf("fresh entry: %+v after %d calls, want v1 from memory", ps, inner.Calls())
	}

	clk.Advance(time.Minute) // stale now
	gate := make(chan struct{})
	inner.Gate(gate) // the refresh hangs until released
	for range 20 {
		// Each returns at once with the stale list although the refresh
		// is blocked: were anyone waiting for it, this loop would hang.
		if ps, err := cc.Projects(ctx); err != nil || ps[0].Name != "v1" {
			t.Fatalf("stale Projects = %+v, %v; want v1 at once", ps, err)
		}
	}
	<-inner.entered // the first fill
	<-inner.entered // the refresh, now blocked
	if n := inner.Calls(); n != 2 {
		t.Errorf("inner Projects calls = %d, want 2 (the first fill and one refresh)", n)
	}
	close(gate)
	cc.Close() // waits for the refresh
	if n := inner.Calls(); n != 2 {
		t.Errorf("inner Projects calls after the refresh = %d, want 2: one refresh at a time", n)
	}
	if ps, _ := cc.Projects(ctx); ps[0].Name != "v2" {
		t.Errorf("after the refresh Projects = %+v, want v2", ps)
	}
}

func TestCachedCatalogDoesNotCacheFailuresOrFreshnessChecks(t *testing.T) {
	s := newFake(t)
	s.AddAssignment(target.ProjectID, target.GroupID, target.RoleID)
	cc := newCache(t, newClient(t, s, 0), newClock())
	ctx := t.Context()

	s.FailNextOp(openaitest.OpListGroups, 1, 503)
	if _, err := cc.Groups(ctx); !approvals.IsTemporary(err) {
		t.Fatalf("Groups under 503 = %v, want the temporary failure", err)
	}
	if gs, err := cc.Groups(ctx); err != nil || len(gs) != 2 {
		t.Fatalf("Groups after the outage = %+v, %v; the failure must not be cached", gs, err)
	}
	if _, err := cc.ProjectRoles(ctx, "proj_nope"); !errors.Is(err, approvals.ErrUnknown) {
		t.Errorf("ProjectRoles of an unknown project = %v, want ErrUnknown", err)
	}
	for range 3 {
		if _, err := cc.GroupRoles(ctx, target.ProjectID, target.GroupID); err != nil {
			t.Fatal(err)
		}
		if _, err := cc.Project(ctx, target.ProjectID); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := s.Calls(openaitest.OpListGroupRoles), s.Calls(openaitest.OpGetProject); a != 3 || b != 3 {
		t.Errorf("GroupRoles/Project reached OpenAI %d/%d times for 3 calls each, want every time", a, b)
	}
	// A project archived at OpenAI is seen by Project at once.
	s.ArchiveProject(target.ProjectID)
	if p, err := cc.Project(ctx, target.ProjectID); err != nil || !p.Archived {
		t.Errorf("Project after archiving = %+v, %v; want Archived", p, err)
	}
}

func TestCachedCatalogTooStaleWaitsForFreshList(t *testing.T) {
	inner := &gatedCatalog{}
	clk := newClock()
	cc := newCache(t, inner, clk)
	if _, err := cc.Projects(t.Context()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Minute) // past MaxStale (10×TTL)
	inner.mu.Lock()
	inner.fail = errors.New("openai down")
	inner.mu.Unlock()
	if ps, err := cc.Projects(t.Context()); err == nil {
		t.Errorf("Projects = %+v; a list older than MaxStale must not be served while OpenAI fails", ps)
	}
}

func TestSuggest(t *testing.T) {
	s := newFake(t)
	s.AddGroup("group_ops", "Platform Ops", false)
	s.AddGroup("ops_team", "Zeta", false)
	s.AddGroup("group_ops2", "Ops", false)
	for i := range 120 {
		s.AddGroup(fmt.Sprintf("group_n%03d", i), fmt.Sprintf("Team %03d", i), false)
	}
	s.AddRole("proj_def", openaitest.Role{ID: "role_def", Name: "Key Reader"})
	cc := newCache(t, newClient(t, s, 0), newClock())
	ctx := t.Context()

	names := func(cs []approvals.Candidate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got := names(cc.Suggest(ctx, "group", "", "OPS", 10)); fmt.Sprint(got) != "[Ops Zeta Platform Ops]" {
		t.Errorf("Suggest(group, OPS) = %v, want prefix matches on name or id first, then substring", got)
	}
	if got := cc.Suggest(ctx, "group", "", "team", 0); len(got) != openai.MaxSuggestions {
		t.Errorf("Suggest(group, team) gave %d options, want Slack's cap of %d", len(got), openai.MaxSuggestions)
	}
	if got := names(cc.Suggest(ctx, "project", "", "proj_", 5)); fmt.Sprint(got) != "[proj_def Project example]" {
		t.Errorf("Suggest(project, proj_) = %v", got)
	}
	if got := names(cc.Suggest(ctx, "role", "proj_def", "key", 5)); fmt.Sprint(got) != "[Key Reader]" {
		t.Errorf("Suggest(role in proj_def, key) = %v, want only proj_def's roles", got)
	}
	if got := cc.Suggest(ctx, "role", "", "key", 5); len(got) != 0 {
		t.Errorf("Suggest(role without a project) = %v, want nothing", got)
	}
	before := s.Calls(openaitest.OpListGroups)
	for _, q := range []string{"t", "te", "tea", "team", "team 0"} {
		cc.Suggest(ctx, "group", "", q, 10)
	}
	if n := s.Calls(openaitest.OpListGroups) - before; n != 0 {
		t.Errorf("typing made %d group list calls, want none (cache is warm)", n)
	}
}

func TestSuggestColdAndSlowAnswersWithoutWaiting(t *testing.T) {
	inner := &gatedCatalog{}
	gate := make(chan struct{})
	inner.Gate(gate)
	cc := openai.NewCachedCatalog(inner, openai.CacheConfig{SuggestWait: time.Millisecond})
	defer cc.Close()
	if got := cc.Suggest(t.Context(), "project", "", "", 10); len(got) != 0 {
		t.Errorf("cold Suggest = %v, want nothing while OpenAI is slow", got)
	}
	close(gate)
	cc.Close() // the fetch Suggest started finishes and fills the cache
	if got := cc.Suggest(t.Context(), "project", "", "v", 10); len(got) != 1 || inner.Calls() != 1 {
		t.Errorf("next Suggest = %v after %d fetches, want the list from the one fetch", got, inner.Calls())
	}
}
