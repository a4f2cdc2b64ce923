// Package openaitest is a fake of the OpenAI Admin API endpoints rolegate
// uses: projects, groups, project roles and project group role assignments.
// Its requests and responses follow the published OpenAPI spec (its own test
// checks that), it keeps state in memory, and it has fault switches for the
// failures rolegate must survive: error statuses, 429 with Retry-After, slow
// answers, dropped connections after acting, refusals and stale reads.
//
// Use NewServer in tests, or New plus Handler to serve it from a separate
// process. All methods are safe for concurrent use.
package openaitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// Default seed, present in every new fake so a zero-setup test can assign
// DefaultRoleID in DefaultProjectID to DefaultGroupID.
const (
	DefaultProjectID = "proj_abc"
	DefaultGroupID   = "group_01"
	DefaultRoleID    = "role_01"
	// SCIMGroupID is a second seeded group, managed through SCIM.
	SCIMGroupID = "group_02"
	// PredefinedRoleID is a second seeded role in DefaultProjectID: an
	// OpenAI-predefined role whose description, created_at, updated_at and
	// created_by are null, as the spec allows.
	PredefinedRoleID = "role_02"
)

// seedTime is when seeded objects were created: 2024-03-26T16:45:33Z, the
// timestamp in the spec's examples. Groups and projects added later get one
// more second each, so created dates are predictable.
var seedTime = time.Unix(1711471533, 0).UTC()

// Op names one endpoint of the fake, by the spec's operationId. Faults and
// delays can be limited to one Op.
type Op string

// The endpoints the fake serves. AnyOp matches every request, including
// ones to unknown paths.
const (
	AnyOp              Op = ""
	OpListProjects     Op = "list-projects"                       // GET /organization/projects
	OpGetProject       Op = "retrieve-project"                    // GET /organization/projects/{project_id}
	OpListGroups       Op = "list-groups"                         // GET /organization/groups
	OpGetGroup         Op = "retrieve-group"                      // GET /organization/groups/{group_id}
	OpListProjectRoles Op = "list-project-roles"                  // GET /projects/{project_id}/roles
	OpListGroupRoles   Op = "list-project-group-role-assignments" // GET /projects/{p}/groups/{g}/roles
	OpAssign           Op = "assign-project-group-role"           // POST /projects/{p}/groups/{g}/roles
	OpGetGroupRole     Op = "retrieve-project-group-role"         // GET /projects/{p}/groups/{g}/roles/{r}
	OpUnassign         Op = "unassign-project-group-role"         // DELETE /projects/{p}/groups/{g}/roles/{r}
)

// Project is a project the fake knows.
type Project struct {
	ID        string
	Name      string
	CreatedAt time.Time
	Archived  bool
}

// Group is an organization group the fake knows.
type Group struct {
	ID          string
	Name        string
	CreatedAt   time.Time
	SCIMManaged bool
}

// Role is a role assignable in a project. Empty Description and CreatedBy
// and a zero CreatedAt are sent as JSON null.
type Role struct {
	ID           string
	Name         string
	Description  string
	Permissions  []string
	ResourceType string // "api.project" when empty
	Predefined   bool
	CreatedAt    time.Time
	CreatedBy    string
}

// Recorded is one request the fake received.
type Recorded struct {
	Op            Op // AnyOp for unknown paths
	Method        string
	Path          string // escaped, as sent
	Query         string
	Header        http.Header // as received, Authorization included
	Status        int         // 0 when no response was written (dropped, client gone)
	RequestID     string      // the x-request-id sent (or that would have been)
	Dropped       bool        // the connection was closed without a response
	At            time.Time   // when it arrived
	Authorization string      // the Authorization header, for convenience
}

// Fault is an error answer the fake gives instead of serving a request.
type Fault struct {
	// Op limits the fault to one endpoint; AnyOp matches every request.
	Op Op
	// Status is the HTTP status to answer, with an API error body.
	Status int
	// RetryAfter, when positive, is sent as Retry-After in whole seconds
	// (rounded up).
	RetryAfter time.Duration
	// RetryAfterHeader, when set, is sent verbatim as Retry-After (for an
	// HTTP-date, say) and wins over RetryAfter.
	RetryAfterHeader string
	// Message, Type and Code fill the error body; a plausible default for
	// Status is used when empty. Code "" is sent as null.
	Message, Type, Code string
	// AfterActing, for an assignment POST or DELETE, makes the fake carry
	// it out (when valid) before answering with the fault: the 5xx (or any
	// status) a caller gets although the server acted.
	AfterActing bool
	// AnswerGroupID and AnswerRoleID, for an assignment POST with Status
	// 200, make the fake answer success naming this group or role instead
	// of the ones asked (empty: the asked one). The asked assignment is
	// made only with AfterActing. It is the answer a caller must not trust.
	AnswerGroupID, AnswerRoleID string
}

type fault struct {
	Fault
	remaining int
}

type assigned struct {
	roleID string
	at     time.Time
}

// Server is the fake Admin API. The zero value is not usable; call New or
// NewServer.
type Server struct {
	adminKey string
	ts       *httptest.Server
	closing  chan struct{} // closed by Close so delayed handlers return
	idPrefix string
	seq      atomic.Uint64

	mu          sync.Mutex
	projects    []*Project
	groups      []*Group
	roles       map[string][]*Role    // project id → roles
	assignments map[string][]assigned // project id + "\x00" + group id → roles held
	faults      []*fault
	delays      map[Op]time.Duration
	dropBefore  map[Op]int
	dropAfter   map[Op]int
	staleLists  int
	refusal     *Fault
	posts       int
	postSignal  chan struct{} // closed and replaced on every assign POST
	deletes     int
	delSignal   chan struct{} // closed and replaced on every unassign DELETE
	calls       map[Op]int    // requests that arrived, by endpoint
	requests    []Recorded
	onAssign    func(t approvals.Target, at time.Time)
	onServed    func(rec Recorded)
	added       int // objects added after the seed, for created_at
}

// New returns a fake that is not listening; serve Handler() yourself (the
// API base is then http://<addr>/v1). It
// knows DefaultProjectID, DefaultGroupID, SCIMGroupID, DefaultRoleID and
// PredefinedRoleID. Every request must carry "Authorization: Bearer
// <adminKey>".
func New(adminKey string) *Server {
	var b [6]byte
	_, _ = rand.Read(b[:])
	s := &Server{
		adminKey:    adminKey,
		closing:     make(chan struct{}),
		idPrefix:    hex.EncodeToString(b[:]),
		roles:       map[string][]*Role{},
		assignments: map[string][]assigned{},
		delays:      map[Op]time.Duration{},
		postSignal:  make(chan struct{}),
		delSignal:   make(chan struct{}),
		calls:       map[Op]int{},
		dropBefore:  map[Op]int{},
		dropAfter:   map[Op]int{},
	}
	s.projects = append(s.projects, &Project{ID: DefaultProjectID, Name: "Project example", CreatedAt: seedTime})
	s.groups = append(s.groups,
		&Group{ID: DefaultGroupID, Name: "Support Team", CreatedAt: seedTime},
		&Group{ID: SCIMGroupID, Name: "Sales", CreatedAt: seedTime.Add(time.Second), SCIMManaged: true},
	)
	s.roles[DefaultProjectID] = []*Role{
		{
			ID:          DefaultRoleID,
			Name:        "API Project Key Manager",
			Description: "Allows managing API keys for the project",
			Permissions: []string{
				"api.organization.projects.api_keys.read",
				"api.organization.projects.api_keys.write",
			},
			ResourceType: "api.project",
			CreatedAt:    seedTime,
			CreatedBy:    "user_abc123",
		},
		{
			ID:           PredefinedRoleID,
			Name:         "Project Viewer",
			Permissions:  []string{"api.organization.projects.read"},
			ResourceType: "api.project",
			Predefined:   true,
		},
	}
	return s
}

// NewServer returns a fake listening on a local httptest server. Close it
// when done (t.Cleanup(s.Close)).
func NewServer(adminKey string) *Server {
	s := New(adminKey)
	s.ts = httptest.NewServer(s.Handler())
	return s
}

// URL is the API base to configure clients with: the server's address
// followed by /v1. It is empty for a fake made with New.
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL + "/v1"
}

// Close stops the httptest server, cutting short any delayed answers. It is
// safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	s.mu.Unlock()
	if s.ts != nil {
		s.ts.Close()
	}
}

// Handler serves the API under /v1.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// AddProject adds (or renames) a project.
func (s *Server) AddProject(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.projects {
		if p.ID == id {
			p.Name = name
			return
		}
	}
	s.projects = append(s.projects, &Project{ID: id, Name: name, CreatedAt: s.nextCreated()})
}

// ArchiveProject marks a project archived, hiding it from project lists
// without include_archived=true.
func (s *Server) ArchiveProject(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.projects {
		if p.ID == id {
			p.Archived = true
		}
	}
}

// AddGroup adds (or replaces the name and SCIM flag of) an organization
// group.
func (s *Server) AddGroup(id, name string, scim bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.ID == id {
			g.Name, g.SCIMManaged = name, scim
			return
		}
	}
	s.groups = append(s.groups, &Group{ID: id, Name: name, CreatedAt: s.nextCreated(), SCIMManaged: scim})
}

// AddRole makes r assignable in the project, replacing a role with the same
// id. The project is created when unknown.
func (s *Server) AddRole(projectID string, r Role) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.project(projectID) == nil {
		s.projects = append(s.projects, &Project{ID: projectID, Name: projectID, CreatedAt: s.nextCreated()})
	}
	r.Permissions = slices.Clone(r.Permissions)
	if r.ResourceType == "" {
		r.ResourceType = "api.project"
	}
	for i, old := range s.roles[projectID] {
		if old.ID == r.ID {
			s.roles[projectID][i] = &r
			return
		}
	}
	s.roles[projectID] = append(s.roles[projectID], &r)
}

// AddAssignment records that the group holds the role in the project, as if
// assigned earlier by someone else. No POST is counted. Unknown ids are
// accepted as is, so a test can build odd states.
func (s *Server) AddAssignment(projectID, groupID, roleID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assign(projectID, groupID, roleID, time.Now())
}

// Project returns the project with id.
func (s *Server) Project(id string) (Project, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.project(id); p != nil {
		return *p, true
	}
	return Project{}, false
}

// Group returns the group with id.
func (s *Server) Group(id string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.group(id); g != nil {
		return *g, true
	}
	return Group{}, false
}

// Role returns the role with id in the project.
func (s *Server) Role(projectID, id string) (Role, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.role(projectID, id); r != nil {
		c := *r
		c.Permissions = slices.Clone(r.Permissions)
		return c, true
	}
	return Role{}, false
}

// Assignments returns the ids of the roles the group holds in the project,
// oldest first.
func (s *Server) Assignments(projectID, groupID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, a := range s.assignments[pgKey(projectID, groupID)] {
		ids = append(ids, a.roleID)
	}
	return ids
}

// Inject makes the next n requests matching f.Op answer with f instead of
// being served. Faults queue in order; each request consumes at most one.
// Faults are checked after authentication, so a bad key still gets 401.
func (s *Server) Inject(n int, f Fault) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{Fault: f, remaining: n})
}

// FailNext makes the next n requests, whatever the endpoint, answer status
// with an API error body.
func (s *Server) FailNext(n, status int) { s.Inject(n, Fault{Status: status}) }

// FailNextOp makes the next n requests to op answer status with an API
// error body.
func (s *Server) FailNextOp(op Op, n, status int) { s.Inject(n, Fault{Op: op, Status: status}) }

// RateLimitNext makes the next n requests, whatever the endpoint, answer
// 429 with Retry-After in whole seconds (omitted when retryAfter is 0).
func (s *Server) RateLimitNext(n int, retryAfter time.Duration) {
	s.Inject(n, Fault{Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
}

// RateLimitNextOp is RateLimitNext limited to op.
func (s *Server) RateLimitNextOp(op Op, n int, retryAfter time.Duration) {
	s.Inject(n, Fault{Op: op, Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
}

// SetDelay makes every answer wait d (0 turns it off). A waiting handler
// gives up without acting or answering when the client goes away.
func (s *Server) SetDelay(d time.Duration) { s.SetDelayOp(AnyOp, d) }

// SetDelayOp makes answers to op wait d, on top of any SetDelay.
func (s *Server) SetDelayOp(op Op, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[op] = d
}

// DropAfterActing makes the next n assignment POSTs take effect (when
// valid) and then close the connection without answering, the case where
// the caller cannot know whether it worked.
func (s *Server) DropAfterActing(n int) { s.DropAfterActingOp(OpAssign, n) }

// DropBeforeActing makes the next n assignment POSTs close the connection
// without answering and without acting.
func (s *Server) DropBeforeActing(n int) { s.DropBeforeActingOp(OpAssign, n) }

// DropAfterActingOp is DropAfterActing for op: OpAssign or OpUnassign (the
// DELETE then removes the assignment before the connection is closed).
func (s *Server) DropAfterActingOp(op Op, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropAfter[op] = n
}

// DropBeforeActingOp is DropBeforeActing for op: OpAssign or OpUnassign.
func (s *Server) DropBeforeActingOp(op Op, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropBefore[op] = n
}

// StaleListNext makes the next n lists of a group's roles in a project
// answer an empty list, as a lagging read replica might. A POST still sees
// the real state.
func (s *Server) StaleListNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staleLists = n
}

// RefuseAssign makes every assignment POST for a known project, group and
// role fail with status and this error (the API refusing because the group
// was never added to the project, say) until called with status 0.
func (s *Server) RefuseAssign(msg, typ, code string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		s.refusal = nil
		return
	}
	s.refusal = &Fault{Status: status, Message: msg, Type: typ, Code: code}
}

// OnAssign registers fn to run when an assignment POST arrives (after its
// body is read, before delays, faults and acting), with the arrival time.
// It runs on the handler goroutine without the fake's lock held, so it may
// call the fake, e.g. AddAssignment to simulate a concurrent grant. nil
// removes it.
func (s *Server) OnAssign(fn func(t approvals.Target, at time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onAssign = fn
}

// OnServed registers fn to run for every request the fake serves, after it
// decided the answer (and, for a POST, acted on it) and before the answer
// is written: rec.Status is the status about to be sent, 0 with Dropped for
// a connection about to be closed. It runs on the handler goroutine without
// the fake's lock held, so it may call the fake, or stop the client (a
// crash test kills the bot here, so the answer never reaches it). Requests
// whose client left during a delay are not served and do not reach fn. nil
// removes it.
func (s *Server) OnServed(fn func(rec Recorded)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onServed = fn
}

// AssignPOSTs counts assignment POSTs that arrived, whatever was answered
// (faults, refusals and bad keys included).
func (s *Server) AssignPOSTs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posts
}

// WaitAssignPOSTs blocks until at least n assignment POSTs arrived or ctx
// ends.
func (s *Server) WaitAssignPOSTs(ctx context.Context, n int) error {
	return s.waitCount(ctx, n, "assign POSTs", func() (int, chan struct{}) { return s.posts, s.postSignal })
}

// RevokeDELETEs counts unassignment DELETEs that arrived, whatever was
// answered.
func (s *Server) RevokeDELETEs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deletes
}

// WaitRevokeDELETEs blocks until at least n unassignment DELETEs arrived or
// ctx ends.
func (s *Server) WaitRevokeDELETEs(ctx context.Context, n int) error {
	return s.waitCount(ctx, n, "revoke DELETEs", func() (int, chan struct{}) { return s.deletes, s.delSignal })
}

// waitCount blocks until the count read returns, called with s.mu held,
// reaches n or ctx ends; read also returns the channel closed when the
// count next changes.
func (s *Server) waitCount(ctx context.Context, n int, what string, read func() (int, chan struct{})) error {
	for {
		s.mu.Lock()
		got, ch := read()
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d %s, saw %d: %w", n, what, got, ctx.Err())
		}
	}
}

// Calls counts the requests to op that arrived (AnyOp: to unknown paths),
// whatever was answered, so a test can bound how often a caller lists.
func (s *Server) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Requests returns every request received so far, in the order they were
// answered (or dropped).
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// nextCreated hands out created_at values after the seed. Callers hold mu.
func (s *Server) nextCreated() time.Time {
	s.added++
	return seedTime.Add(time.Duration(10+s.added) * time.Second)
}

func (s *Server) project(id string) *Project {
	for _, p := range s.projects {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (s *Server) group(id string) *Group {
	for _, g := range s.groups {
		if g.ID == id {
			return g
		}
	}
	return nil
}

func (s *Server) role(projectID, id string) *Role {
	for _, r := range s.roles[projectID] {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// assign records an assignment; false when the group already held it.
// Callers hold mu.
func (s *Server) assign(projectID, groupID, roleID string, at time.Time) bool {
	k := pgKey(projectID, groupID)
	for _, a := range s.assignments[k] {
		if a.roleID == roleID {
			return false
		}
	}
	s.assignments[k] = append(s.assignments[k], assigned{roleID: roleID, at: at})
	return true
}

func pgKey(projectID, groupID string) string { return projectID + "\x00" + groupID }
