package openaitest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
)

// reply is what a handler decided to answer. Handlers run under mu and only
// build replies; writing happens after the lock is released.
type reply struct {
	status int
	body   any
	header http.Header
	drop   bool // close the connection instead of answering
}

// routed is a request mapped to an endpoint of the spec.
type routed struct {
	op                     Op
	project, group, roleID string
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Recorded{
		Method:        r.Method,
		Path:          r.URL.EscapedPath(),
		Query:         r.URL.RawQuery,
		Header:        r.Header.Clone(),
		Authorization: r.Header.Get("Authorization"),
		RequestID:     fmt.Sprintf("req_%s%020x", s.idPrefix, s.seq.Add(1)),
		At:            time.Now(),
	}
	rt := route(r)
	rec.Op = rt.op
	s.noteArrival(rt.op)

	var body []byte
	if rt.op == OpAssign {
		// Read the body on arrival: OnAssign wants the role id, and a
		// dropped connection must still have consumed the whole request.
		body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.noteAssignPOST(rt, body, rec.At)
	}

	if !s.wait(r.Context(), rt.op) {
		s.record(rec) // the client left, or the fake is closing: no answer
		return
	}

	rep := s.serve(r, rt, body, rec.Authorization)
	rec.Status = rep.status
	rec.Dropped = rep.drop
	if rep.drop {
		rec.Status = 0
	}
	// Record before answering, so a client that got its answer finds its
	// request in Requests().
	s.record(rec)
	s.mu.Lock()
	served := s.onServed
	s.mu.Unlock()
	if served != nil {
		c := rec
		c.Header = rec.Header.Clone()
		served(c)
	}

	if rep.drop {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
		panic(http.ErrAbortHandler) // HTTP/2 or a wrapped writer: abort the stream instead
	}
	h := w.Header()
	h.Set("x-request-id", rec.RequestID)
	h.Set("Content-Type", "application/json")
	for k, v := range rep.header {
		h[k] = v
	}
	w.WriteHeader(rep.status)
	_ = json.NewEncoder(w).Encode(rep.body)
}

// serve authenticates, applies faults and dispatches.
func (s *Server) serve(r *http.Request, rt routed, body []byte, auth string) reply {
	switch {
	case auth == "":
		return errorReply(http.StatusUnauthorized, "invalid_request_error", "",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "")
	case auth != "Bearer "+s.adminKey:
		// Unlike the real API, not even a masked key is echoed.
		return errorReply(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
			"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.", "")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.takeFault(rt.op); f != nil {
		var acted reply
		switch {
		case f.AfterActing && rt.op == OpAssign:
			acted = s.assignRole(rt, body)
		case f.AfterActing && rt.op == OpUnassign:
			acted = s.unassign(rt)
		}
		if f.Status == http.StatusOK && rt.op == OpAssign {
			if acted.status != 0 && acted.status != http.StatusOK {
				return acted // the POST itself was invalid
			}
			return s.misanswer(rt, body, *f)
		}
		return faultReply(*f)
	}
	q := r.URL.Query()
	switch rt.op {
	case OpListProjects:
		return s.listProjects(q)
	case OpGetProject:
		if p := s.project(rt.project); p != nil {
			return ok(projectJSON(p))
		}
		return notFound("project", rt.project)
	case OpListGroups:
		return s.listGroups(q)
	case OpGetGroup:
		if g := s.group(rt.group); g != nil {
			return ok(groupJSON(g))
		}
		return notFound("group", rt.group)
	case OpListProjectRoles:
		return s.listProjectRoles(rt, q)
	case OpListGroupRoles:
		return s.listGroupRoles(rt, q)
	case OpAssign, OpUnassign:
		if s.dropBefore[rt.op] > 0 {
			s.dropBefore[rt.op]--
			return reply{drop: true}
		}
		var rep reply
		if rt.op == OpAssign {
			rep = s.assignRole(rt, body)
		} else {
			rep = s.unassign(rt)
		}
		if s.dropAfter[rt.op] > 0 {
			s.dropAfter[rt.op]--
			rep.drop = true
		}
		return rep
	case OpGetGroupRole:
		return s.getGroupRole(rt)
	}
	return errorReply(http.StatusNotFound, "invalid_request_error", "",
		fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.EscapedPath()), "")
}

func (s *Server) listProjects(q url.Values) reply {
	limit, rep, okLimit := limitParam(q, 20, 1, 100)
	if !okLimit {
		return rep
	}
	withArchived := false
	if v := q.Get("include_archived"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorReply(http.StatusBadRequest, "invalid_request_error", "invalid_value",
				"Invalid value for 'include_archived': expected a boolean.", "include_archived")
		}
		withArchived = b
	}
	var all []*Project
	for _, p := range s.projects {
		if withArchived || !p.Archived {
			all = append(all, p)
		}
	}
	items, more := pageOf(all, func(p *Project) string { return p.ID }, q.Get("after"), limit)
	data := make([]any, 0, len(items))
	for _, p := range items {
		data = append(data, projectJSON(p))
	}
	var first, last any
	if len(items) > 0 {
		first, last = items[0].ID, items[len(items)-1].ID
	}
	return ok(map[string]any{"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": more})
}

func (s *Server) listGroups(q url.Values) reply {
	limit, rep, okLimit := limitParam(q, 100, 0, 1000)
	if !okLimit {
		return rep
	}
	all, rep, okOrder := ordered(slices.Clone(s.groups), q)
	if !okOrder {
		return rep
	}
	items, more := pageOf(all, func(g *Group) string { return g.ID }, q.Get("after"), limit)
	data := make([]any, 0, len(items))
	for _, g := range items {
		data = append(data, groupJSON(g))
	}
	return ok(listJSON(data, more, items, func(g *Group) string { return g.ID }))
}

func (s *Server) listProjectRoles(rt routed, q url.Values) reply {
	if s.project(rt.project) == nil {
		return notFound("project", rt.project)
	}
	limit, rep, okLimit := limitParam(q, 1000, 0, 1000)
	if !okLimit {
		return rep
	}
	all, rep, okOrder := ordered(slices.Clone(s.roles[rt.project]), q)
	if !okOrder {
		return rep
	}
	items, more := pageOf(all, func(r *Role) string { return r.ID }, q.Get("after"), limit)
	data := make([]any, 0, len(items))
	for _, r := range items {
		data = append(data, roleJSON(r))
	}
	return ok(listJSON(data, more, items, func(r *Role) string { return r.ID }))
}

func (s *Server) listGroupRoles(rt routed, q url.Values) reply {
	if rep, found := s.projectAndGroup(rt); !found {
		return rep
	}
	limit, rep, okLimit := limitParam(q, 1000, 0, 1000)
	if !okLimit {
		return rep
	}
	var all []*Role
	if s.staleLists > 0 {
		s.staleLists--
	} else {
		for _, a := range s.assignments[pgKey(rt.project, rt.group)] {
			if r := s.role(rt.project, a.roleID); r != nil {
				all = append(all, r)
			}
		}
	}
	all, rep, okOrder := ordered(all, q)
	if !okOrder {
		return rep
	}
	items, more := pageOf(all, func(r *Role) string { return r.ID }, q.Get("after"), limit)
	data := make([]any, 0, len(items))
	for _, r := range items {
		data = append(data, assignedRoleJSON(r))
	}
	return ok(listJSON(data, more, items, func(r *Role) string { return r.ID }))
}

func (s *Server) assignRole(rt routed, body []byte) reply {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return errorReply(http.StatusBadRequest, "invalid_request_error", "",
			"We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.", "")
	}
	var roleID string
	if raw, found := req["role_id"]; !found || json.Unmarshal(raw, &roleID) != nil || roleID == "" {
		return errorReply(http.StatusBadRequest, "invalid_request_error", "missing_required_parameter",
			"Missing required parameter: 'role_id'.", "role_id")
	}
	if rep, found := s.projectAndGroup(rt); !found {
		return rep
	}
	role := s.role(rt.project, roleID)
	if role == nil {
		return errorReply(http.StatusNotFound, "invalid_request_error", "role_not_found",
			fmt.Sprintf("No role found with id '%s' in project '%s'.", roleID, rt.project), "role_id")
	}
	if s.refusal != nil {
		return faultReply(*s.refusal)
	}
	if !s.assign(rt.project, rt.group, roleID, time.Now()) {
		// Undocumented in the real API; the fake makes callers reconcile.
		return errorReply(http.StatusBadRequest, "invalid_request_error", "role_already_assigned",
			fmt.Sprintf("Group '%s' already has role '%s' in project '%s'.", rt.group, roleID, rt.project), "role_id")
	}
	return ok(groupRoleJSON(s.group(rt.group), role))
}

// misanswer is a 200 to an assignment POST naming the fault's group or
// role instead of the asked ones. Unknown ids get a plausible summary.
func (s *Server) misanswer(rt routed, body []byte, f Fault) reply {
	var req struct {
		RoleID string `json:"role_id"`
	}
	_ = json.Unmarshal(body, &req)
	gid, rid := cmp.Or(f.AnswerGroupID, rt.group), cmp.Or(f.AnswerRoleID, req.RoleID)
	g := s.group(gid)
	if g == nil {
		g = &Group{ID: gid, Name: gid, CreatedAt: seedTime}
	}
	r := s.role(rt.project, rid)
	if r == nil {
		r = &Role{ID: rid, Name: rid, Permissions: []string{}, ResourceType: "api.project"}
	}
	return ok(groupRoleJSON(g, r))
}

func groupRoleJSON(g *Group, r *Role) map[string]any {
	return map[string]any{
		"object": "group.role",
		"group": map[string]any{
			"object":       "group",
			"id":           g.ID,
			"name":         g.Name,
			"created_at":   g.CreatedAt.Unix(),
			"scim_managed": g.SCIMManaged,
		},
		"role": roleJSON(r),
	}
}

func (s *Server) getGroupRole(rt routed) reply {
	if rep, found := s.projectAndGroup(rt); !found {
		return rep
	}
	if !slices.ContainsFunc(s.assignments[pgKey(rt.project, rt.group)], func(a assigned) bool { return a.roleID == rt.roleID }) {
		return notFound("role assignment", rt.roleID)
	}
	r := s.role(rt.project, rt.roleID)
	if r == nil {
		return notFound("role", rt.roleID)
	}
	return ok(assignedRoleJSON(r))
}

func (s *Server) unassign(rt routed) reply {
	if rep, found := s.projectAndGroup(rt); !found {
		return rep
	}
	k := pgKey(rt.project, rt.group)
	i := slices.IndexFunc(s.assignments[k], func(a assigned) bool { return a.roleID == rt.roleID })
	if i < 0 {
		return notFound("role assignment", rt.roleID)
	}
	s.assignments[k] = slices.Delete(s.assignments[k], i, i+1)
	return ok(map[string]any{"object": "group.role.deleted", "deleted": true})
}

func (s *Server) projectAndGroup(rt routed) (reply, bool) {
	if s.project(rt.project) == nil {
		return notFound("project", rt.project), false
	}
	if s.group(rt.group) == nil {
		return notFound("group", rt.group), false
	}
	return reply{}, true
}

// takeFault consumes the first queued fault matching op. Callers hold mu.
func (s *Server) takeFault(op Op) *Fault {
	for i, f := range s.faults {
		if f.Op != AnyOp && f.Op != op {
			continue
		}
		f.remaining--
		if f.remaining <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		c := f.Fault
		return &c
	}
	return nil
}

// noteArrival counts a request to op and, for an unassignment DELETE, wakes
// waiters.
func (s *Server) noteArrival(op Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	if op == OpUnassign {
		s.deletes++
		close(s.delSignal)
		s.delSignal = make(chan struct{})
	}
}

// noteAssignPOST counts an arriving assignment POST, wakes waiters and
// runs the OnAssign hook outside the lock.
func (s *Server) noteAssignPOST(rt routed, body []byte, at time.Time) {
	var req struct {
		RoleID string `json:"role_id"`
	}
	_ = json.Unmarshal(body, &req) // best effort: the handler reports bad bodies
	s.mu.Lock()
	s.posts++
	close(s.postSignal)
	s.postSignal = make(chan struct{})
	fn := s.onAssign
	s.mu.Unlock()
	if fn != nil {
		fn(approvals.Target{ProjectID: rt.project, GroupID: rt.group, RoleID: req.RoleID}, at)
	}
}

// wait applies SetDelay and SetDelayOp; false when the client went away or
// the fake is closing first.
func (s *Server) wait(ctx context.Context, op Op) bool {
	s.mu.Lock()
	d := s.delays[AnyOp]
	if op != AnyOp {
		d += s.delays[op]
	}
	closing := s.closing
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-closing:
		return false
	}
}

func (s *Server) record(rec Recorded) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, rec)
}

// route maps method and path to an endpoint. Path segments are matched
// escaped and then unescaped, as a real server does, so "a%2Fb" is one id
// ("a/b") that matches nothing rather than two segments.
func route(r *http.Request) routed {
	rest, found := strings.CutPrefix(r.URL.EscapedPath(), "/v1/")
	if !found {
		return routed{}
	}
	segs := strings.Split(rest, "/")
	for i, raw := range segs {
		seg, err := url.PathUnescape(raw)
		if err != nil || seg == "" {
			return routed{}
		}
		segs[i] = seg
	}
	get, post, del := r.Method == http.MethodGet, r.Method == http.MethodPost, r.Method == http.MethodDelete
	switch {
	case len(segs) == 2 && segs[0] == "organization" && segs[1] == "projects" && get:
		return routed{op: OpListProjects}
	case len(segs) == 3 && segs[0] == "organization" && segs[1] == "projects" && get:
		return routed{op: OpGetProject, project: segs[2]}
	case len(segs) == 2 && segs[0] == "organization" && segs[1] == "groups" && get:
		return routed{op: OpListGroups}
	case len(segs) == 3 && segs[0] == "organization" && segs[1] == "groups" && get:
		return routed{op: OpGetGroup, group: segs[2]}
	case len(segs) == 3 && segs[0] == "projects" && segs[2] == "roles" && get:
		return routed{op: OpListProjectRoles, project: segs[1]}
	case len(segs) == 5 && segs[0] == "projects" && segs[2] == "groups" && segs[4] == "roles" && (get || post):
		op := OpListGroupRoles
		if post {
			op = OpAssign
		}
		return routed{op: op, project: segs[1], group: segs[3]}
	case len(segs) == 6 && segs[0] == "projects" && segs[2] == "groups" && segs[4] == "roles" && (get || del):
		op := OpGetGroupRole
		if del {
			op = OpUnassign
		}
		return routed{op: op, project: segs[1], group: segs[3], roleID: segs[5]}
	}
	return routed{}
}

// pageOf cuts one page after the item with id after (an unknown cursor
// yields an empty page).
func pageOf[T any](items []T, id func(T) string, after string, limit int) ([]T, bool) {
	start := 0
	if after != "" {
		start = len(items)
		for i, it := range items {
			if id(it) == after {
				start = i + 1
				break
			}
		}
	}
	end := min(start+limit, len(items))
	return items[start:end], end < len(items)
}

// limitParam parses ?limit=, with 0 meaning the default.
func limitParam(q url.Values, def, lo, hi int) (int, reply, bool) {
	v := q.Get("limit")
	if v == "" {
		return def, reply{}, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errorReply(http.StatusBadRequest, "invalid_request_error", "invalid_value",
			fmt.Sprintf("Invalid 'limit': expected an integer between %d and %d.", lo, hi), "limit"), false
	}
	if n == 0 {
		n = def
	}
	return n, reply{}, true
}

// ordered applies ?order=asc|desc to items kept in creation order.
func ordered[T any](items []T, q url.Values) ([]T, reply, bool) {
	switch q.Get("order") {
	case "", "asc":
		return items, reply{}, true
	case "desc":
		slices.Reverse(items)
		return items, reply{}, true
	}
	return nil, errorReply(http.StatusBadRequest, "invalid_request_error", "invalid_value",
		"Invalid 'order': expected one of asc, desc.", "order"), false
}

func listJSON[T any](data []any, more bool, items []T, id func(T) string) map[string]any {
	var next any
	if more && len(items) > 0 {
		next = id(items[len(items)-1])
	}
	return map[string]any{"object": "list", "data": data, "has_more": more, "next": next}
}

func projectJSON(p *Project) map[string]any {
	status, archivedAt := "active", any(nil)
	if p.Archived {
		status, archivedAt = "archived", p.CreatedAt.Add(time.Hour).Unix()
	}
	return map[string]any{
		"id":          p.ID,
		"object":      "organization.project",
		"name":        p.Name,
		"created_at":  p.CreatedAt.Unix(),
		"archived_at": archivedAt,
		"status":      status,
	}
}

func groupJSON(g *Group) map[string]any {
	return map[string]any{
		"id":              g.ID,
		"name":            g.Name,
		"created_at":      g.CreatedAt.Unix(),
		"is_scim_managed": g.SCIMManaged,
		"group_type":      "group",
	}
}

func roleJSON(r *Role) map[string]any {
	return map[string]any{
		"object":          "role",
		"id":              r.ID,
		"name":            r.Name,
		"description":     nullString(r.Description),
		"permissions":     nonNil(r.Permissions),
		"resource_type":   r.ResourceType,
		"predefined_role": r.Predefined,
	}
}

// assignedRoleJSON is an AssignedRoleDetails item: no "object", and every
// field but the role's core nullable.
func assignedRoleJSON(r *Role) map[string]any {
	var createdBy, userObj any
	if r.CreatedBy != "" {
		createdBy = r.CreatedBy
		userObj = map[string]any{"id": r.CreatedBy}
	}
	var metadata any
	if !r.Predefined {
		metadata = map[string]any{}
	}
	return map[string]any{
		"id":                  r.ID,
		"name":                r.Name,
		"permissions":         nonNil(r.Permissions),
		"resource_type":       r.ResourceType,
		"predefined_role":     r.Predefined,
		"description":         nullString(r.Description),
		"created_at":          nullTime(r.CreatedAt),
		"updated_at":          nullTime(r.CreatedAt),
		"created_by":          createdBy,
		"created_by_user_obj": userObj,
		"metadata":            metadata,
		"assignment_sources":  nil,
	}
}

// apiError is the API's error body.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func errorReply(status int, typ, code, msg, param string) reply {
	return reply{status: status, body: apiError{Error: apiErrorBody{
		Message: msg, Type: typ, Code: nullPtr(code), Param: nullPtr(param),
	}}}
}

func notFound(kind, id string) reply {
	code := strings.ReplaceAll(kind, " ", "_") + "_not_found"
	return errorReply(http.StatusNotFound, "invalid_request_error", code,
		fmt.Sprintf("No %s found with id '%s'.", kind, id), "")
}

func faultReply(f Fault) reply {
	typ, code, msg := "invalid_request_error", "", http.StatusText(f.Status)
	switch {
	case f.Status == http.StatusUnauthorized:
		code, msg = "invalid_api_key", "Incorrect API key provided."
	case f.Status == http.StatusForbidden:
		code, msg = "insufficient_permissions", "You have insufficient permissions for this operation."
	case f.Status == http.StatusNotFound:
		code, msg = "not_found", "Not found."
	case f.Status == http.StatusTooManyRequests:
		typ, code, msg = "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."
	case f.Status >= 500:
		typ, msg = "server_error", "The server had an error while processing your request. Sorry about that!"
	}
	if f.Type != "" {
		typ = f.Type
	}
	if f.Code != "" {
		code = f.Code
	}
	if f.Message != "" {
		msg = f.Message
	}
	rep := errorReply(f.Status, typ, code, msg, "")
	switch {
	case f.RetryAfterHeader != "":
		rep.header = http.Header{"Retry-After": {f.RetryAfterHeader}}
	case f.RetryAfter > 0:
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		rep.header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
	}
	return rep
}

func ok(body any) reply { return reply{status: http.StatusOK, body: body} }

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

func nullPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
