package openaitest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/platformspec"
)

const key = "sk-admin-spec-test-key"

// expectInvalid marks a request the script sends on purpose in a shape the
// spec forbids; the validator must flag exactly those.
const expectInvalid = "X-Test-Expect-Invalid"

// exchange is one request/response pair seen by the validating wrapper.
type exchange struct {
	method, path   string
	operationID    string // from the spec's router; "" for unknown paths
	status         int    // 0 when the fake dropped the connection
	requestID      string
	markedInvalid  bool
	requestErr     error
	responseErr    error
	undeclaredBody bool // validated against ErrorResponse, not the operation
}

// validator checks every request against the spec before the fake sees it
// and every response the fake writes after. Statuses an operation does not
// declare (the spec lists only 200, and 429 for most) are error answers the
// real API does send; their bodies are checked against the ErrorResponse
// component schema instead of failing as "status not declared".
type validator struct {
	doc      *openapi3.T
	router   routers.Router
	next     http.Handler
	errorDoc *openapi3.Schema

	mu        sync.Mutex
	exchanges []exchange
}

func (v *validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := context.Background()
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))

	ex := exchange{method: r.Method, path: r.URL.EscapedPath(), markedInvalid: r.Header.Get(expectInvalid) != ""}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if in.SecuritySchemeName != "AdminApiKeyAuth" {
				return fmt.Errorf("unexpected security scheme %q", in.SecuritySchemeName)
			}
			h := in.RequestValidationInput.Request.Header.Get("Authorization")
			if tok, ok := strings.CutPrefix(h, "Bearer "); !ok || tok == "" {
				return errors.New("no bearer token in Authorization")
			}
			return nil
		},
	}
	vr := r.Clone(ctx)
	vr.Body = io.NopCloser(bytes.NewReader(body))
	// A server-side URL has only the path; the router matches the spec's
	// server URL, so give it the full one.
	vr.URL.Scheme, vr.URL.Host = "http", r.Host
	route, params, err := v.router.FindRoute(vr)
	var in *openapi3filter.RequestValidationInput
	if err != nil {
		ex.requestErr = fmt.Errorf("no route: %w", err)
	} else {
		ex.operationID = route.Operation.OperationID
		in = &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route, Options: opts}
		ex.requestErr = openapi3filter.ValidateRequest(ctx, in)
	}

	cw := &captureWriter{ResponseWriter: w}
	defer func() {
		// Runs after the fake returns or aborts the connection.
		ex.status = cw.status
		ex.requestID = cw.Header().Get("x-request-id")
		if cw.hijacked || cw.status == 0 {
			ex.status = 0
		} else {
			ex.responseErr = v.validateResponse(ctx, in, cw, &ex)
		}
		v.mu.Lock()
		v.exchanges = append(v.exchanges, ex)
		v.mu.Unlock()
	}()
	v.next.ServeHTTP(cw, r)
}

func (v *validator) validateResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, cw *captureWriter, ex *exchange) error {
	if cw.Header().Get("x-request-id") == "" {
		return errors.New("no x-request-id header")
	}
	if in != nil && in.Route.Operation.Responses.Status(cw.status) != nil {
		return openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in,
			Status:                 cw.status,
			Header:                 cw.Header(),
			Body:                   io.NopCloser(bytes.NewReader(cw.buf.Bytes())),
			Options:                in.Options,
		})
	}
	ex.undeclaredBody = true
	if cw.status < 400 {
		return fmt.Errorf("status %d not declared by the spec", cw.status)
	}
	if ct := cw.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("error answer with Content-Type %q", ct)
	}
	var val any
	if err := json.Unmarshal(cw.buf.Bytes(), &val); err != nil {
		return fmt.Errorf("error body is not JSON: %w", err)
	}
	if err := v.errorDoc.VisitJSON(val, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("error body does not match ErrorResponse: %w", err)
	}
	return nil
}

// captureWriter tees the response and notices a hijack (dropped connection).
type captureWriter struct {
	http.ResponseWriter
	status   int
	buf      bytes.Buffer
	hijacked bool
}

func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.buf.Write(b)
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.hijacked = true
	return http.NewResponseController(c.ResponseWriter).Hijack()
}

// startValidated serves fake behind the validator and returns the
// validator and the API base URL.
func startValidated(t *testing.T, fake *openaitest.Server) (*validator, string) {
	t.Helper()
	path := platformspec.Path(t, platformspec.OpenAIAdmin)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	errSchema := doc.Components.Schemas["ErrorResponse"]
	if errSchema == nil || errSchema.Value == nil {
		t.Fatal("spec has no ErrorResponse schema")
	}
	v := &validator{doc: doc, next: fake.Handler(), errorDoc: errSchema.Value}
	ts := httptest.NewServer(v)
	t.Cleanup(func() {
		fake.Close() // cut delayed handlers short first
		ts.Close()
	})
	// The spec's server is https://api.openai.com/v1; route our /v1 instead.
	doc.Servers = openapi3.Servers{{URL: ts.URL + "/v1"}}
	if v.router, err = legacy.NewRouter(doc); err != nil {
		t.Fatalf("router: %v", err)
	}
	return v, ts.URL + "/v1"
}

// TestFakeFollowsSpec drives every endpoint of the fake through a session
// with successes, API errors, faults, a 429 and a dropped connection, and
// checks each request the fake accepts and each response it sends against
// the published spec.
func TestFakeFollowsSpec(t *testing.T) {
	fake := openaitest.New(key)
	v, base := startValidated(t, fake)
	ctx := t.Context()

	admin := sdk.NewAdminService(option.WithBaseURL(base), option.WithAdminAPIKey(key), option.WithMaxRetries(0))
	roles := admin.Organization.Projects.Groups.Roles
	bad := sdk.NewAdminService(option.WithBaseURL(base), option.WithAdminAPIKey("sk-admin-wrong"), option.WithMaxRetries(0))

	// want runs one SDK call and checks the status it ended with.
	want := func(step string, status int, err error) {
		t.Helper()
		got := http.StatusOK
		var apiErr *sdk.Error
		switch {
		case errors.As(err, &apiErr):
			got = apiErr.StatusCode
		case err != nil:
			got = 0
		}
		if got != status {
			t.Errorf("%s: status %d (%v), want %d", step, got, err, status)
		}
	}
	raw := func(step, method, path, body string, header http.Header, status int) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", step, resp.StatusCode, status)
		}
	}
	auth := func(extra ...string) http.Header {
		h := http.Header{"Authorization": {"Bearer " + key}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}

	fake.AddProject("proj_def", "Second project")
	fake.AddProject("proj_old", "Archived project")
	fake.ArchiveProject("proj_old")
	fake.AddGroup("group_03", "Finance", false)

	// Projects, paged by after=<last id>.
	p1, err := admin.Organization.Projects.List(ctx, sdk.AdminOrganizationProjectListParams{Limit: sdk.Int(1)})
	want("list projects page 1", 200, err)
	if err == nil && (!p1.HasMore || len(p1.Data) != 1 || p1.Data[0].ID != "proj_abc") {
		t.Errorf("projects page 1 = %+v", p1.Data)
	}
	p2, err := admin.Organization.Projects.List(ctx, sdk.AdminOrganizationProjectListParams{Limit: sdk.Int(1), After: sdk.String("proj_abc")})
	want("list projects page 2", 200, err)
	if err == nil && (p2.HasMore || len(p2.Data) != 1 || p2.Data[0].ID != "proj_def") {
		t.Errorf("projects page 2 = %+v has_more=%v, want proj_def and no more (archived hidden)", p2.Data, p2.HasMore)
	}
	_, err = admin.Organization.Projects.List(ctx, sdk.AdminOrganizationProjectListParams{IncludeArchived: sdk.Bool(true)})
	want("list projects with archived", 200, err)
	pa, err := admin.Organization.Projects.List(ctx, sdk.AdminOrganizationProjectListParams{IncludeArchived: sdk.Bool(false), Limit: sdk.Int(100)})
	want("list projects without archived", 200, err)
	if err == nil && slices.ContainsFunc(pa.Data, func(p sdk.Project) bool { return p.ID == "proj_old" }) {
		t.Errorf("include_archived=false lists the archived project: %+v", pa.Data)
	}
	old, err := admin.Organization.Projects.Get(ctx, "proj_old")
	want("get archived project", 200, err)
	if err == nil && (old.Status != "archived" || old.ArchivedAt == 0 || old.Name != "Archived project") {
		t.Errorf("archived project = %+v", old)
	}
	_, err = admin.Organization.Projects.Get(ctx, "proj_abc")
	want("get active project", 200, err)
	_, err = admin.Organization.Projects.Get(ctx, "proj_nope")
	want("get unknown project", 404, err)

	// Groups.
	g1, err := admin.Organization.Groups.List(ctx, sdk.AdminOrganizationGroupListParams{Limit: sdk.Int(2), Order: sdk.AdminOrganizationGroupListParamsOrderDesc})
	want("list groups desc", 200, err)
	if err == nil && (len(g1.Data) != 2 || g1.Data[0].ID != "group_03" || !g1.HasMore || g1.Next != "group_02") {
		t.Errorf("groups desc = %+v next=%q", g1.Data, g1.Next)
	}
	_, err = admin.Organization.Groups.List(ctx, sdk.AdminOrganizationGroupListParams{After: sdk.String("group_02")})
	want("list groups after", 200, err)
	g, err := admin.Organization.Groups.Get(ctx, "group_02")
	want("get group", 200, err)
	if err == nil && (!g.IsScimManaged || g.Name != "Sales") {
		t.Errorf("group_02 = %+v, want SCIM-managed Sales", g)
	}
	_, err = admin.Organization.Groups.Get(ctx, "group_nope")
	want("get unknown group", 404, err)

	// Roles assignable in a project.
	pr, err := admin.Organization.Projects.Roles.List(ctx, "proj_abc", sdk.AdminOrganizationProjectRoleListParams{Limit: sdk.Int(1)})
	want("list project roles", 200, err)
	if err == nil && (!pr.HasMore || pr.Next != "role_01") {
		t.Errorf("project roles page = %+v next=%q", pr.Data, pr.Next)
	}
	_, err = admin.Organization.Projects.Roles.List(ctx, "proj_abc", sdk.AdminOrganizationProjectRoleListParams{After: sdk.String("role_01")})
	want("list project roles after", 200, err)
	_, err = admin.Organization.Projects.Roles.List(ctx, "proj_nope", sdk.AdminOrganizationProjectRoleListParams{})
	want("list roles of unknown project", 404, err)

	// Group role assignments.
	l0, err := roles.List(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleListParams{})
	want("list group roles (none)", 200, err)
	if err == nil && len(l0.Data) != 0 {
		t.Errorf("fresh group holds %+v", l0.Data)
	}
	a, err := roles.New(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	want("assign role_01", 200, err)
	if err == nil && (a.Group.Name != "Support Team" || a.Role.Name != "API Project Key Manager" || len(a.Role.Permissions) != 2) {
		t.Errorf("assign answer = %+v", a)
	}
	_, err = roles.New(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_02"})
	want("assign role_02 (null description)", 200, err)
	l1, err := roles.List(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleListParams{Limit: sdk.Int(1)})
	want("list group roles page 1", 200, err)
	if err == nil && (len(l1.Data) != 1 || !l1.HasMore || l1.Next != "role_01") {
		t.Errorf("group roles page 1 = %+v next=%q", l1.Data, l1.Next)
	}
	l2, err := roles.List(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleListParams{After: sdk.String(l1.Next), Order: sdk.AdminOrganizationProjectGroupRoleListParamsOrderAsc})
	want("list group roles page 2", 200, err)
	if err == nil && (len(l2.Data) != 1 || l2.Data[0].ID != "role_02" || l2.HasMore) {
		t.Errorf("group roles page 2 = %+v", l2.Data)
	}
	_, err = roles.Get(ctx, "proj_abc", "group_01", "role_01")
	want("get assigned role", 200, err)
	_, err = roles.Get(ctx, "proj_abc", "group_01", "role_02")
	want("get assigned predefined role", 200, err)
	_, err = roles.New(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	want("repeat assignment", 400, err)
	_, err = roles.Delete(ctx, "proj_abc", "group_01", "role_02")
	want("unassign", 200, err)
	_, err = roles.Delete(ctx, "proj_abc", "group_01", "role_02")
	want("unassign again", 404, err)
	_, err = roles.Get(ctx, "proj_abc", "group_01", "role_02")
	want("get unassigned role", 404, err)
	_, err = roles.List(ctx, "proj_abc", "group_nope", sdk.AdminOrganizationProjectGroupRoleListParams{})
	want("list roles of unknown group", 404, err)
	_, err = roles.New(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_nope"})
	want("assign unknown role", 404, err)

	// Faults.
	fake.RateLimitNextOp(openaitest.OpListGroupRoles, 1, 7*time.Second)
	_, err = roles.List(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleListParams{})
	want("rate-limited list", 429, err)
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) && apiErr.Response.Header.Get("Retry-After") != "7" {
		t.Errorf("Retry-After = %q, want 7", apiErr.Response.Header.Get("Retry-After"))
	}
	fake.RateLimitNextOp(openaitest.OpAssign, 1, 0)
	_, err = roles.New(ctx, "proj_abc", "group_03", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	want("rate-limited assign without Retry-After", 429, err)
	fake.RateLimitNextOp(openaitest.OpListProjects, 1, 2*time.Second) // 429 not declared for list-projects
	_, err = admin.Organization.Projects.List(ctx, sdk.AdminOrganizationProjectListParams{})
	want("rate-limited project list", 429, err)
	fake.FailNextOp(openaitest.OpAssign, 1, 500)
	_, err = roles.New(ctx, "proj_abc", "group_03", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	want("assign 500", 500, err)
	fake.Inject(1, openaitest.Fault{Status: 503, RetryAfterHeader: time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)})
	_, err = admin.Organization.Groups.Get(ctx, "group_01")
	want("get group 503", 503, err)
	fake.FailNext(1, 403)
	_, err = roles.Get(ctx, "proj_abc", "group_01", "role_01")
	want("get assigned role 403", 403, err)
	fake.RefuseAssign("Group 'group_03' is not a member of project 'proj_abc'.", "invalid_request_error", "group_not_in_project", 400)
	_, err = roles.New(ctx, "proj_abc", "group_03", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	want("refused assign", 400, err)
	fake.RefuseAssign("", "", "", 0)
	fake.SetDelay(20 * time.Millisecond)
	_, err = admin.Organization.Groups.Get(ctx, "group_01")
	want("delayed get group", 200, err)
	fake.SetDelay(0)
	fake.DropAfterActing(1)
	_, err = roles.New(ctx, "proj_abc", "group_03", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	if err == nil {
		t.Error("dropped assign: got an answer, want a connection error")
	}
	if got := fake.Assignments("proj_abc", "group_03"); !slices.Equal(got, []string{"role_01"}) {
		t.Errorf("after a dropped POST the fake holds %v, want [role_01]: it acts before dropping", got)
	}

	// An assignment answered 200 for another group and role than asked.
	fake.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 200, AnswerGroupID: "group_02", AnswerRoleID: "role_02"})
	mis, err := roles.New(ctx, "proj_abc", "group_01", sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: "role_01"})
	want("mismatched assign answer", 200, err)
	if err == nil && (mis.Group.ID != "group_02" || mis.Role.ID != "role_02") {
		t.Errorf("mismatched answer = %+v, want group_02/role_02", mis)
	}

	// Faults on the DELETE.
	fake.AddAssignment("proj_abc", "group_02", "role_01")
	fake.RateLimitNextOp(openaitest.OpUnassign, 1, 3*time.Second)
	_, err = roles.Delete(ctx, "proj_abc", "group_02", "role_01")
	want("rate-limited unassign", 429, err)
	fake.Inject(1, openaitest.Fault{Op: openaitest.OpUnassign, Status: 502})
	_, err = roles.Delete(ctx, "proj_abc", "group_02", "role_01")
	want("unassign 502", 502, err)
	fake.DropBeforeActingOp(openaitest.OpUnassign, 1)
	if _, err = roles.Delete(ctx, "proj_abc", "group_02", "role_01"); err == nil {
		t.Error("dropped unassign: got an answer, want a connection error")
	}
	if got := fake.Assignments("proj_abc", "group_02"); !slices.Equal(got, []string{"role_01"}) {
		t.Errorf("after DELETEs that failed before acting the fake holds %v, want [role_01]", got)
	}
	fake.DropAfterActingOp(openaitest.OpUnassign, 1)
	if _, err = roles.Delete(ctx, "proj_abc", "group_02", "role_01"); err == nil {
		t.Error("dropped unassign after acting: got an answer, want a connection error")
	}
	if got := fake.Assignments("proj_abc", "group_02"); len(got) != 0 {
		t.Errorf("after a DELETE dropped after acting the fake holds %v, want nothing", got)
	}
	if n := fake.RevokeDELETEs(); n != 6 {
		t.Errorf("RevokeDELETEs = %d, want 6 (every arrival counts)", n)
	}
	if n := fake.Calls(openaitest.OpGetProject); n != 3 {
		t.Errorf("Calls(OpGetProject) = %d, want 3", n)
	}

	// Authentication.
	_, err = bad.Organization.Groups.Get(ctx, "group_01")
	want("wrong key", 401, err)
	raw("no key", http.MethodGet, "/organization/groups/group_01", "", http.Header{expectInvalid: {"1"}}, 401)

	// Requests the spec forbids: the fake must refuse them.
	raw("assign without role_id", http.MethodPost, "/projects/proj_abc/groups/group_01/roles", `{}`, auth(expectInvalid, "1"), 400)
	raw("assign with a non-JSON body", http.MethodPost, "/projects/proj_abc/groups/group_01/roles", `role_01`, auth(expectInvalid, "1"), 400)
	raw("limit not a number", http.MethodGet, "/projects/proj_abc/groups/group_01/roles?limit=many", "", auth(expectInvalid, "1"), 400)
	raw("limit over the maximum", http.MethodGet, "/organization/groups?limit=5000", "", auth(expectInvalid, "1"), 400)
	raw("order not asc or desc", http.MethodGet, "/projects/proj_abc/roles?order=sideways", "", auth(expectInvalid, "1"), 400)
	raw("unknown path", http.MethodGet, "/organization/nothing-here", "", auth(expectInvalid, "1"), 404)

	// Judge the session.
	v.mu.Lock()
	exchanges := slices.Clone(v.exchanges)
	v.mu.Unlock()
	recorded := map[string]openaitest.Recorded{}
	for _, r := range fake.Requests() {
		recorded[r.RequestID] = r
	}
	seen := map[string]bool{}
	undeclared := 0
	for _, ex := range exchanges {
		name := fmt.Sprintf("%s %s → %d", ex.method, ex.path, ex.status)
		switch {
		case ex.markedInvalid && ex.requestErr == nil:
			t.Errorf("%s: the validator accepted a request the spec forbids; is it validating at all?", name)
		case !ex.markedInvalid && ex.requestErr != nil:
			t.Errorf("%s: request does not match the spec: %v", name, ex.requestErr)
		}
		if ex.markedInvalid && ex.status >= 200 && ex.status < 300 {
			t.Errorf("%s: the fake accepted a request the spec forbids", name)
		}
		if ex.responseErr != nil {
			t.Errorf("%s: response does not match the spec: %v", name, ex.responseErr)
		}
		if ex.undeclaredBody {
			undeclared++
		}
		if ex.status != 0 {
			rec, ok := recorded[ex.requestID]
			if !ok {
				t.Errorf("%s: x-request-id %q not in the fake's records", name, ex.requestID)
			} else if string(rec.Op) != ex.operationID {
				t.Errorf("%s: fake served it as %q, the spec routes it to %q", name, rec.Op, ex.operationID)
			}
		}
		seen[fmt.Sprintf("%s %d", ex.operationID, ex.status)] = true
	}
	// Coverage: every endpoint answered 200, and the error paths ran.
	for _, k := range []string{
		"list-projects 200", "retrieve-project 200", "retrieve-project 404", "list-groups 200", "retrieve-group 200", "list-project-roles 200",
		"list-project-group-role-assignments 200", "assign-project-group-role 200",
		"retrieve-project-group-role 200", "unassign-project-group-role 200",
		"list-project-group-role-assignments 429", "assign-project-group-role 429", "list-projects 429",
		"assign-project-group-role 500", "retrieve-group 503", "retrieve-project-group-role 403",
		"assign-project-group-role 400", "retrieve-group 401", "retrieve-group 404",
		"unassign-project-group-role 404", "assign-project-group-role 0", " 404",
		"unassign-project-group-role 429", "unassign-project-group-role 502", "unassign-project-group-role 0",
	} {
		if !seen[k] {
			t.Errorf("session never produced %q", k)
		}
	}
	if undeclared == 0 {
		t.Error("no error body was validated against ErrorResponse")
	}
	// Every response carries a unique request id.
	ids := map[string]bool{}
	for _, r := range fake.Requests() {
		if ids[r.RequestID] {
			t.Errorf("request id %s used twice", r.RequestID)
		}
		ids[r.RequestID] = true
	}
}
