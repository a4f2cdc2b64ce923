package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Directory resolves a Slack user group to its members. It is consulted
// only for approver ids that are user groups.
type Directory interface {
	GroupMembers(ctx context.Context, groupID string) ([]string, error)
}

// Approvers is a set of people allowed to decide: user ids, and user-group
// ids whose members are looked up through a Directory and cached for a
// minute. Which ids are groups is the adapter's knowledge (isGroup), not
// the domain's.
type Approvers struct {
	ids    []string
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

// NewApprovers builds the approver set from ids; isGroup says which are
// user groups (nil: none). dir may be nil when no id is a group.
func NewApprovers(ids []string, isGroup func(string) bool, dir Directory) *Approvers {
	a := &Approvers{ids: ids, users: map[string]bool{}, dir: dir, now: time.Now, cache: map[string]cachedGroup{}}
	for _, id := range ids {
		if isGroup != nil && isGroup(id) {
			a.groups = append(a.groups, id)
		} else {
			a.users[id] = true
		}
	}
	return a
}

// IDs returns the ids the set was built from.
func (a *Approvers) IDs() []string { return a.ids }

// Allows reports whether user may approve or deny: listed directly, or a
// member of one of the groups. A group that cannot be looked up does not
// refuse a user another group confirms; only when no group confirms and a
// lookup failed is that failure returned.
func (a *Approvers) Allows(ctx context.Context, user string) (bool, error) {
	if a.users[user] {
		return true, nil
	}
	var lookupErr error
	for _, g := range a.groups {
		members, err := a.members(ctx, g)
		if err != nil {
			lookupErr = errors.Join(lookupErr, err)
			continue
		}
		if members[user] {
			return true, nil
		}
	}
	return false, lookupErr
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

// DefaultRule names the one rule the environment variables form.
const DefaultRule = "default"

// Service is the domain's front door for the adapters that receive people's
// actions: it applies the policy and the approver checks, then the Store's
// compare-and-set transition.
type Service struct {
	Store  Store
	Policy Policy
	// IsGroup says which approver and requester ids are user groups;
	// Directory looks their members up.
	IsGroup   func(string) bool
	Directory Directory
	// MaxOpen is how many requests one person may have checking or pending
	// at once (0: no limit).
	MaxOpen int
	Now     func() time.Time
	// LookupTimeout bounds the user-group lookups a decision may need
	// (default 2s): they run before Slack gets its ack, which Slack wants
	// within 3 seconds.
	LookupTimeout time.Duration

	mu        sync.Mutex
	approvers map[string]*Approvers // by the ids they were built from
}

// Create validates and stores a new request, in StateChecking: the Worker
// checks it before anyone is asked. created is false when the same command
// delivery (TriggerID) was already stored. Errors: ErrInvalid,
// *TooManyOpenError, or the store's.
func (s *Service) Create(ctx context.Context, n NewRequest) (r Request, created bool, err error) {
	now := s.Now().UTC()
	return s.Store.Create(ctx, n, now, s.MaxOpen, func(r *Request) Transition {
		r.State = StateChecking
		return Transition{Event: Event{At: now}, Jobs: []JobKind{JobCheck}}
	})
}

// Get returns request id with its audit trail.
func (s *Service) Get(ctx context.Context, id uint64) (Request, []Event, error) {
	r, err := s.Store.Get(ctx, id)
	if err != nil {
		return Request{}, nil, err
	}
	evs, err := s.Store.Audit(ctx, id)
	return r, evs, err
}

// Open returns the open requests (checking, pending, approved), newest
// first: the caller picks what concerns them.
func (s *Service) Open(ctx context.Context) ([]Request, error) {
	return s.Store.List(ctx, ListOptions{Open: true, Limit: 500})
}

// CanDecide reports whether user may approve or deny r now.
func (s *Service) CanDecide(ctx context.Context, r Request, user string) (bool, error) {
	if user == r.Requester {
		return false, nil
	}
	return s.approversFor(r).Allows(ctx, user)
}

// MemberOf reports whether user belongs to the user group id (false for an
// id that is not a group), with the same cached lookups as the approvers.
func (s *Service) MemberOf(ctx context.Context, user, id string) (bool, error) {
	if s.IsGroup == nil || !s.IsGroup(id) {
		return false, nil
	}
	return s.approverSet([]string{id}).Allows(ctx, user)
}

// approversFor returns who may decide r now: its rule's approvers as the
// policy says today, or, when the rule is gone from the policy, those
// recorded with the request.
func (s *Service) approversFor(r Request) *Approvers {
	ids := r.Approvers
	for _, rule := range s.Policy.Rules {
		if rule.Name == r.Rule {
			ids = rule.Approvers
			break
		}
	}
	return s.approverSet(ids)
}

func (s *Service) approverSet(ids []string) *Approvers {
	key := strings.Join(ids, ",")
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.approvers[key]; ok {
		return a
	}
	if s.approvers == nil {
		s.approvers = map[string]*Approvers{}
	}
	a := NewApprovers(ids, s.IsGroup, s.Directory)
	s.approvers[key] = a
	return a
}

// Decide applies d (its RequestID, Actor, Action, ChannelID and Reason) to
// the request, checking the actor against the approvers as they are now,
// and, when this approval may complete the quorum, every earlier voter
// too. Errors: ErrNotFound, ErrWrongChannel, *NotPendingError, ErrExpired
// (the request was expired by this call), ErrSelfApproval, ErrNotApprover,
// ErrNotRequester, ErrAlreadyVoted, a wrapped lookup error.
func (s *Service) Decide(ctx context.Context, d Decision) (Request, error) {
	r, err := s.Store.Get(ctx, d.RequestID)
	if err != nil {
		return Request{}, err
	}
	if d.ChannelID != "" && d.ChannelID != r.ChannelID {
		return Request{}, ErrWrongChannel
	}
	if r.State != StatePending {
		return r, &NotPendingError{Request: r}
	}
	selfDeny := d.Action == ActionDeny && d.Actor == r.Requester
	if (d.Action == ActionApprove || d.Action == ActionDeny) && !selfDeny {
		timeout := s.LookupTimeout
		if timeout <= 0 {
			timeout = 2 * time.Second
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		approvers := s.approversFor(r)
		ok, err := approvers.Allows(lctx, d.Actor)
		if err != nil {
			return r, fmt.Errorf("check approver: %w", err)
		}
		d.Eligible = ok
		if ok && d.Action == ActionApprove && len(r.Approvals)+1 >= r.Required {
			d.StillApprovers = map[string]bool{}
			for _, v := range r.Approvals {
				still, err := approvers.Allows(lctx, v.User)
				if err != nil {
					return r, fmt.Errorf("check earlier approver: %w", err)
				}
				d.StillApprovers[v.User] = still
			}
		}
	}
	d.At = s.Now().UTC()
	return s.Store.Update(ctx, d.RequestID, 0, func(r *Request) (Transition, error) { return Decide(r, d) })
}
