package openai

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// DefaultCacheTTL is how long CachedCatalog serves a list before refreshing
// it: short enough that a project, group or role created at OpenAI shows up
// in type-ahead within a minute, long enough that a user typing (a
// block_suggestion per keystroke) or a burst of requests reads OpenAI once.
const DefaultCacheTTL = time.Minute

// DefaultSuggestWait bounds how long Suggest waits for a cold list: Slack
// wants options within 3 s of the keystroke.
const DefaultSuggestWait = 2 * time.Second

// MaxSuggestions is the most options Slack accepts in one menu answer.
const MaxSuggestions = 100

// CacheConfig configures a CachedCatalog. Zero values take the defaults.
type CacheConfig struct {
	// TTL is how long a list is fresh, DefaultCacheTTL when zero.
	TTL time.Duration
	// MaxStale is the age past which a list is no longer served while it
	// is refreshed (callers wait for the fresh one instead), 10×TTL when
	// zero. It bounds how old an answer can be while OpenAI is failing.
	MaxStale time.Duration
	// SuggestWait bounds Suggest's wait for a cold list, DefaultSuggestWait
	// when zero.
	SuggestWait time.Duration
	// Now is the clock, time.Now when nil.
	Now func() time.Time
}

// CachedCatalog is an approvals.Catalog that keeps the lists of projects,
// groups and each project's roles for a short TTL in front of another
// Catalog (usually *Client). A fresh entry is served from memory; a stale
// one is served at once while one background refresh replaces it; a cold
// one is fetched once however many callers ask at the same time (the
// others wait for that fetch, or for their own ctx). Failures are not
// cached. Project and GroupRoles are passed through uncached: they are the
// checks that must see OpenAI as it is now.
//
// It is safe for concurrent use. Close stops background fetches; after
// Close, cold and stale lists are fetched in the caller's goroutine.
type CachedCatalog struct {
	inner       approvals.Catalog
	ttl         time.Duration
	maxStale    time.Duration
	suggestWait time.Duration
	now         func() time.Time

	ctx  context.Context // cancelled by Close; background fetches run under it
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	projects slot[approvals.Project]
	groups   slot[approvals.Group]
	roles    map[string]*slot[approvals.Role] // by project id
}

var _ approvals.Catalog = (*CachedCatalog)(nil)

// slot is one cached list. Guarded by CachedCatalog.mu.
type slot[T any] struct {
	val  []T
	at   time.Time // when val was fetched
	ok   bool      // val holds a fetched list
	load *flight[T]
}

// flight is one fetch in progress; done is closed once val and err are set.
type flight[T any] struct {
	done chan struct{}
	val  []T
	err  error
}

// NewCachedCatalog returns a cache in front of inner. Call Close when done.
func NewCachedCatalog(inner approvals.Catalog, cfg CacheConfig) *CachedCatalog {
	c := &CachedCatalog{
		inner:       inner,
		ttl:         cfg.TTL,
		maxStale:    cfg.MaxStale,
		suggestWait: cfg.SuggestWait,
		now:         cfg.Now,
		roles:       map[string]*slot[approvals.Role]{},
	}
	if c.ttl <= 0 {
		c.ttl = DefaultCacheTTL
	}
	if c.maxStale <= 0 {
		c.maxStale = 10 * c.ttl
	}
	if c.suggestWait <= 0 {
		c.suggestWait = DefaultSuggestWait
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	return c
}

// Close cancels background fetches and waits for them to return. It is
// safe to call more than once.
func (c *CachedCatalog) Close() {
	c.mu.Lock()
	c.stop()
	c.mu.Unlock()
	c.wg.Wait()
}

// Projects returns the active projects, from the cache when it can.
func (c *CachedCatalog) Projects(ctx context.Context) ([]approvals.Project, error) {
	return lookup(ctx, c, &c.projects, c.inner.Projects)
}

// Groups returns the organization's groups, from the cache when it can.
func (c *CachedCatalog) Groups(ctx context.Context) ([]approvals.Group, error) {
	return lookup(ctx, c, &c.groups, c.inner.Groups)
}

// ProjectRoles returns the roles assignable in the project, from the cache
// when it can. Ids that are not approvals.ValidID go straight to the inner
// Catalog (which refuses them), so nothing typed can grow the cache.
func (c *CachedCatalog) ProjectRoles(ctx context.Context, projectID string) ([]approvals.Role, error) {
	if !approvals.ValidID(projectID) {
		return c.inner.ProjectRoles(ctx, projectID)
	}
	c.mu.Lock()
	s := c.roles[projectID]
	if s == nil {
		s = &slot[approvals.Role]{}
		c.roles[projectID] = s
	}
	c.mu.Unlock()
	roles, err := lookup(ctx, c, s, func(ctx context.Context) ([]approvals.Role, error) {
		return c.inner.ProjectRoles(ctx, projectID)
	})
	if err != nil {
		// An unknown project (or an outage before the first fetch) leaves
		// no empty entry behind.
		c.mu.Lock()
		if c.roles[projectID] == s && !s.ok && s.load == nil {
			delete(c.roles, projectID)
		}
		c.mu.Unlock()
	}
	return roles, err
}

// Project asks the inner Catalog every time: it is how Resolve learns that
// a project is archived, now.
func (c *CachedCatalog) Project(ctx context.Context, id string) (approvals.Project, error) {
	return c.inner.Project(ctx, id)
}

// GroupRoles asks the inner Catalog every time: it is the check before an
// assignment or revocation.
func (c *CachedCatalog) GroupRoles(ctx context.Context, projectID, groupID string) ([]approvals.Role, error) {
	return c.inner.GroupRoles(ctx, projectID, groupID)
}

// Suggest answers Slack type-ahead: up to limit (at most MaxSuggestions)
// projects, groups or roles of projectID (kind "project", "group", "role")
// whose name or id contains query, case-insensitively, those starting with
// it first (approvals.Matching). It answers from the cache; a cold list is
// fetched, but Suggest waits for it at most SuggestWait and otherwise
// answers with nothing (the fetch goes on and fills the cache for the next
// keystroke). Failures also yield no suggestions: a menu has no place for
// an error.
func (c *CachedCatalog) Suggest(ctx context.Context, kind, projectID, query string, limit int) []approvals.Candidate {
	if limit <= 0 || limit > MaxSuggestions {
		limit = MaxSuggestions
	}
	ctx, cancel := context.WithTimeout(ctx, c.suggestWait)
	defer cancel()
	var items []approvals.Candidate
	switch kind {
	case "project":
		ps, _ := c.Projects(ctx)
		for _, p := range ps {
			items = append(items, approvals.Candidate{ID: p.ID, Name: p.Name})
		}
	case "group":
		gs, _ := c.Groups(ctx)
		for _, g := range gs {
			items = append(items, approvals.Candidate{ID: g.ID, Name: g.Name})
		}
	case "role":
		if projectID == "" {
			return nil
		}
		rs, _ := c.ProjectRoles(ctx, projectID)
		for _, r := range rs {
			items = append(items, approvals.Candidate{ID: r.ID, Name: r.Name})
		}
	}
	return approvals.Matching(query, items, limit)
}

// lookup serves s: fresh or stale-but-usable from memory (starting one
// background refresh when stale), otherwise by waiting for the single
// fetch in flight.
func lookup[T any](ctx context.Context, c *CachedCatalog, s *slot[T], fetch func(context.Context) ([]T, error)) ([]T, error) {
	c.mu.Lock()
	closed := c.ctx.Err() != nil
	age := c.now().Sub(s.at)
	if s.ok && age < c.maxStale && (age < c.ttl || !closed) {
		if age >= c.ttl && s.load == nil {
			start(c, s, fetch)
		}
		v := s.val
		c.mu.Unlock()
		return slices.Clone(v), nil
	}
	if closed {
		c.mu.Unlock()
		return fetch(ctx)
	}
	f := s.load
	if f == nil {
		f = start(c, s, fetch)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		return slices.Clone(f.val), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start runs fetch in the background, under the cache's context rather
// than a caller's, so one impatient caller cannot fail the others. Callers
// hold c.mu and have checked c is not closed.
func start[T any](c *CachedCatalog, s *slot[T], fetch func(context.Context) ([]T, error)) *flight[T] {
	f := &flight[T]{done: make(chan struct{})}
	s.load = f
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		v, err := fetch(c.ctx)
		c.mu.Lock()
		if err == nil {
			s.val, s.at, s.ok = v, c.now(), true
		}
		s.load = nil
		c.mu.Unlock()
		f.val, f.err = v, err
		close(f.done)
	}()
	return f
}
