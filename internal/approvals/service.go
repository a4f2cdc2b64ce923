package approvals

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Directory resolves a Slack user group to its members. It is consulted
// only when an approver id is a user group (S…).
type Directory interface {
	GroupMembers(ctx context.Context, groupID string) ([]string, error)
}

// Approvers is the configured set of people allowed to decide: Slack user ids
// (U…, W…) and user-group ids (S…). Group membership is looked up through a
// Directory and cached for a minute.
type Approvers struct {
	users  map[string]bool
	groups []string
	dir    Directory
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cachedGroup
}

type cachedGroup struct {
	members map[string]bool
	at      time.Time
}

const groupCacheTTL = time.Minute

// NewApprovers builds the approver set from ids (as slackapp.ParseUserIDs
// returns them). dir may be nil when no id is a user group.
func NewApprovers(ids []string, dir Directory) *Approvers {
	a := &Approvers{users: map[string]bool{}, dir: dir, now: time.Now, cache: map[string]cachedGroup{}}
	for _, id := range ids {
		if strings.HasPrefix(id, "S") {
			a.groups = append(a.groups, id)
		} else {
			a.users[id] = true
		}
	}
	return a
}

// Allows reports whether user may approve or deny. It fails only when a
// user group could not be looked up and user is not listed directly.
func (a *Approvers) Allows(ctx context.Context, user string) (bool, error) {
	if a.users[user] {
		return true, nil
	}
	for _, g := range a.groups {
		members, err := a.members(ctx, g)
		if err != nil {
			return false, err
		}
		if members[user] {
			return true, nil
		}
	}
	return false, nil
}

func (a *Approvers) members(ctx context.Context, group string) (map[string]bool, error) {
	a.mu.Lock()
	c, ok := a.cache[group]
	a.mu.Unlock()
	if ok && a.now().Sub(c.at) < groupCacheTTL {
		return c.members, nil
	}
	if a.dir == nil {
		return nil, fmt.Errorf("user group %s: no directory to look it up", group)
	}
	list, err := a.dir.GroupMembers(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("look up user group %s: %w", group, err)
	}
	m := make(map[string]bool, len(list))
	for _, u := range list {
		m[u] = true
	}
	a.mu.Lock()
	a.cache[group] = cachedGroup{members: m, at: a.now()}
	a.mu.Unlock()
	return m, nil
}

// Quorum is how requests are decided until the Service takes a Policy: one
// approval count and expiry for every request.
type Quorum struct {
	Required int           // distinct approvals needed; at least 1
	TTL      time.Duration // pending requests expire after this
}

// Service is the domain's front door for the adapters that receive people's
// actions: it applies the policy and the approver check, then the Store's
// compare-and-set transition.
type Service struct {
	Store     *Store
	Approvers *Approvers
	Policy    Quorum
	Now       func() time.Time
	// LookupTimeout bounds the user-group lookup a decision may need
	// (default 2s): it runs before Slack gets its ack, which Slack wants
	// within 3 seconds.
	LookupTimeout time.Duration
}

// Create validates and stores a new pending request. created is false when
// the same command delivery (TriggerID) was already stored.
func (s *Service) Create(ctx context.Context, n NewRequest) (r Request, created bool, err error) {
	n.Reason = strings.TrimSpace(n.Reason)
	return s.Store.Create(ctx, n, s.Now().UTC(), s.Policy.TTL, s.Policy.Required)
}

// Decide applies actor's action (ActionApprove, ActionDeny or ActionCancel)
// to request id, clicked in channelID. See Store.Decide for the errors.
func (s *Service) Decide(ctx context.Context, id uint64, actor string, action Action, channelID string) (Request, error) {
	eligible := false
	if action == ActionApprove || action == ActionDeny {
		timeout := s.LookupTimeout
		if timeout <= 0 {
			timeout = 2 * time.Second
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		ok, err := s.Approvers.Allows(lctx, actor)
		cancel()
		if err != nil {
			return Request{}, fmt.Errorf("check approver: %w", err)
		}
		eligible = ok
	}
	return s.Store.Decide(ctx, id, actor, action, channelID, eligible, s.Now().UTC())
}
