// Package openai assigns OpenAI project roles to groups through the Admin API
// (github.com/openai/openai-go/v3) and turns every failure into an
// *approvals.GrantError the worker can act on: retry, give up, or reconcile.
package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/rolegate/rolegate/internal/approvals"
)

// DefaultBaseURL is the OpenAI API base used when Config.BaseURL is empty.
const DefaultBaseURL = "https://api.openai.com/v1"

// DefaultTimeout bounds one HTTP call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// listPageSize is the page size of every list call; 100 keeps a typical
// group to one call and is the most the projects list allows.
const listPageSize = 100

// maxListPages stops a server that keeps answering has_more from holding an
// Assign forever.
const maxListPages = 100

// validID is what rolegate accepts as a project, group or role id. Anything
// else could change the request path (../x, a%2Fb) and is refused before
// any call.
var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Config configures a Client.
type Config struct {
	// BaseURL is the API base, DefaultBaseURL when empty.
	BaseURL string
	// AdminKey is the organization admin key, sent as a bearer token. It
	// never appears in errors.
	AdminKey string
	// Timeout bounds each HTTP call (not a whole Assign, which may make
	// several), DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient, when set, carries every call. Its own Timeout, if any,
	// applies on top of Timeout.
	HTTPClient *http.Client
	// DryRun makes Assign and Revoke do every read-only call but never
	// POST or DELETE; their results say DryRun and what would have been
	// done.
	DryRun bool
	// PageSize is how many items each list call asks for, listPageSize
	// when zero; at most 100 (the projects list's cap). Tests set it small
	// to exercise paging.
	PageSize int
}

// Client assigns project roles to groups with the OpenAI Admin API. It is
// safe for concurrent use.
type Client struct {
	roles        sdk.AdminOrganizationProjectGroupRoleService
	groups       sdk.AdminOrganizationGroupService
	projects     sdk.AdminOrganizationProjectService
	projectRoles sdk.AdminOrganizationProjectRoleService
	pageSize     int64
	dryRun       bool
	host         string        // where errors say we tried to go
	timeout      time.Duration // reported in timeout messages
	key          string        // kept only to scrub it from messages
	now          func() time.Time
	configErr    *approvals.GrantError // set when cfg cannot work; every call returns it
}

var _ approvals.Granter = (*Client)(nil)

// New returns a Client for cfg. It makes no call. A configuration that
// cannot work (empty or malformed key, base URL that is not an absolute
// http(s) URL) is reported as a permanent *approvals.GrantError by every
// Assign and Check, so `bot check` shows it.
//
// The SDK's openai.NewClient reads OPENAI_BASE_URL, OPENAI_API_KEY,
// OPENAI_ADMIN_KEY, OPENAI_ORG_ID, OPENAI_PROJECT_ID and
// OPENAI_CUSTOM_HEADERS from the environment, and a custom Authorization
// header from there would even replace the admin key. New therefore builds
// the admin service directly (openai.NewAdminService reads no environment),
// so only cfg decides where requests go and what they carry.
func New(cfg Config) *Client {
	c := &Client{key: cfg.AdminKey, timeout: cfg.Timeout, now: time.Now, dryRun: cfg.DryRun, pageSize: listPageSize}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if cfg.PageSize > 0 {
		c.pageSize = int64(min(cfg.PageSize, listPageSize))
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		c.configErr = permanent("invalid OpenAI base URL: want an absolute http or https URL such as " + DefaultBaseURL)
	case u.User != nil:
		// Credentials in the URL would be sent to the server and end up in
		// error strings; the key belongs in AdminKey.
		c.configErr = permanent("invalid OpenAI base URL: it must not contain user info")
	default:
		c.host = u.Host
	}
	switch {
	case cfg.AdminKey == "":
		c.configErr = permanent("OpenAI admin key is empty")
	case strings.IndexFunc(cfg.AdminKey, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		// Usually a trailing newline from a secrets file; net/http would
		// refuse the header with a less helpful error.
		c.configErr = permanent("OpenAI admin key contains whitespace or control characters")
	}

	hc := cfg.HTTPClient
	if hc == nil {
		// An own transport, so nothing else in the process that tweaks
		// http.DefaultClient changes how we talk to OpenAI.
		hc = &http.Client{}
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			t = t.Clone()
			// The worker calls OpenAI from several jobs at once; the default
			// of 2 idle connections per host reopened (and re-handshook) the rest.
			t.MaxIdleConnsPerHost = 16
			hc.Transport = t
		}
	}
	admin := sdk.NewAdminService(
		option.WithHTTPClient(hc),
		option.WithBaseURL(base),
		option.WithAdminAPIKey(cfg.AdminKey),
		option.WithMaxRetries(0), // the approvals worker owns retries
		option.WithRequestTimeout(c.timeout),
	)
	c.roles = admin.Organization.Projects.Groups.Roles
	c.groups = admin.Organization.Groups
	c.projects = admin.Organization.Projects
	c.projectRoles = admin.Organization.Projects.Roles
	return c
}

// Assign gives t.GroupID the role t.RoleID in project t.ProjectID, making
// exactly one attempt as approvals.Granter requires: it lists the group's
// roles in the project and, when the role is there, fetches the group and
// returns AlreadyAssigned without POSTing. Otherwise it POSTs the
// assignment; when that fails with a permanent 4xx it lists once more and
// reports success if the role is now there (an earlier ambiguous attempt,
// or someone else, assigned it).
//
// A 2xx answer is checked, not trusted: one naming another group or role
// than asked is success only if a fresh list shows the group holding the
// role (reported AlreadyAssigned); otherwise it is a permanent failure
// saying what OpenAI answered. In dry-run mode nothing is POSTed: the
// result is the assignment that would be made (role from the project's
// roles, group from its look-up) with DryRun set.
//
// Failures are *approvals.GrantError wrapped with the failing step (use
// errors.As). Ids outside [A-Za-z0-9_-]{1,128} are refused before any call.
// When ctx ends, Assign returns ctx.Err() wrapped, which
// approvals.IsTemporary treats as temporary.
func (c *Client) Assign(ctx context.Context, t approvals.Target) (approvals.Assignment, error) {
	if err := c.ready(t); err != nil {
		return approvals.Assignment{}, fmt.Errorf("assign role: %w", err)
	}
	role, found, err := c.findAssigned(ctx, t)
	if err != nil {
		return approvals.Assignment{}, err
	}
	if found {
		a, err := c.existing(ctx, t, role)
		a.DryRun = c.dryRun && err == nil
		return a, err
	}
	if c.dryRun {
		return c.wouldAssign(ctx, t)
	}

	var resp *http.Response
	res, err := c.roles.New(ctx, t.ProjectID, t.GroupID,
		sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: t.RoleID},
		option.WithResponseInto(&resp))
	if err == nil && res != nil {
		if res.Group.ID == t.GroupID && res.Role.ID == t.RoleID {
			return assignmentFromNew(res), nil
		}
		return c.mismatched(ctx, t, res, resp)
	}
	if err == nil {
		err = errors.New("empty response body") // a 2xx without a body: cannot confirm
	}
	if ctx.Err() != nil {
		return approvals.Assignment{}, fmt.Errorf("assign role: %w", ctx.Err())
	}
	postErr := c.classify(err, resp, true)
	if postErr.Temporary || postErr.Failure.Status < 400 || postErr.Failure.Status >= 500 {
		return approvals.Assignment{}, fmt.Errorf("assign role: %w", postErr)
	}

	// A permanent 4xx may mean "already assigned" (the API does not say
	// what a repeated assignment returns), so look again before failing.
	return c.recheck(ctx, t, postErr)
}

// recheck lists the group's roles after a POST that did not confirm the
// assignment: the role being there is success (AlreadyAssigned); otherwise
// postErr stands. A list that fails temporarily makes the whole answer
// temporary: failing for good could mark an applied grant as failed.
func (c *Client) recheck(ctx context.Context, t approvals.Target, postErr *approvals.GrantError) (approvals.Assignment, error) {
	role, found, err := c.findAssigned(ctx, t)
	if err != nil {
		var ge *approvals.GrantError
		if errors.As(err, &ge) && ge.Temporary {
			return approvals.Assignment{}, fmt.Errorf("assign role: %s; recheck %w", postErr.Error(), err)
		}
		if ctx.Err() != nil {
			return approvals.Assignment{}, err
		}
		return approvals.Assignment{}, fmt.Errorf("assign role: %w", postErr)
	}
	if !found {
		return approvals.Assignment{}, fmt.Errorf("assign role: %w", postErr)
	}
	return c.existing(ctx, t, role)
}

// mismatched handles a 2xx whose body names another group or role than
// asked. Whatever OpenAI did, only the list can say whether the asked
// assignment exists.
func (c *Client) mismatched(ctx context.Context, t approvals.Target, res *sdk.AdminOrganizationProjectGroupRoleNewResponse, resp *http.Response) (approvals.Assignment, error) {
	ge := permanent(fmt.Sprintf("OpenAI answered the assignment with group %s and role %s instead of the asked group %s and role %s; the assignment is not confirmed",
		quoteShort(res.Group.ID), quoteShort(res.Role.ID), quoteShort(t.GroupID), quoteShort(t.RoleID)))
	if resp != nil {
		ge.Failure.Status = resp.StatusCode
		ge.Failure.RequestID = resp.Header.Get("x-request-id")
	}
	return c.recheck(ctx, t, ge)
}

// wouldAssign is the dry-run result: the assignment as it would be made,
// read from the project's roles and the group, with nothing POSTed.
func (c *Client) wouldAssign(ctx context.Context, t approvals.Target) (approvals.Assignment, error) {
	roles, err := c.ProjectRoles(ctx, t.ProjectID)
	if err != nil {
		return approvals.Assignment{}, fmt.Errorf("assign role (dry run): %w", err)
	}
	i := slices.IndexFunc(roles, func(r approvals.Role) bool { return r.ID == t.RoleID })
	if i < 0 {
		return approvals.Assignment{}, fmt.Errorf("assign role (dry run): %w", permanent(fmt.Sprintf(
			"role %s is not a role of project %s", quoteShort(t.RoleID), quoteShort(t.ProjectID))))
	}
	var resp *http.Response
	g, err := c.groups.Get(ctx, t.GroupID, option.WithResponseInto(&resp))
	if err != nil {
		return approvals.Assignment{}, fmt.Errorf("assign role (dry run): %w", c.failID(ctx, "get group", err, resp))
	}
	return approvals.Assignment{Group: groupFrom(g), Role: roles[i], DryRun: true}, nil
}

// Check makes one read-only admin call (list projects, limit 1) to show
// that the base URL is reachable and the key is an admin key. It returns a
// wrapped *approvals.GrantError, or ctx.Err() wrapped.
func (c *Client) Check(ctx context.Context) error {
	if c.configErr != nil {
		return fmt.Errorf("list projects: %w", c.configErr)
	}
	var resp *http.Response
	_, err := c.projects.List(ctx, sdk.AdminOrganizationProjectListParams{Limit: sdk.Int(1)},
		option.WithResponseInto(&resp))
	if err != nil {
		return c.fail(ctx, "list projects", err, resp)
	}
	return nil
}

// ready reports why no call should be made for t.
func (c *Client) ready(t approvals.Target) error {
	return c.readyIDs(idArg{"project", t.ProjectID}, idArg{"group", t.GroupID}, idArg{"role", t.RoleID})
}

// findAssigned pages through the group's roles in the project looking for
// t.RoleID, stopping at the page that has it.
func (c *Client) findAssigned(ctx context.Context, t approvals.Target) (approvals.Role, bool, error) {
	var role approvals.Role
	found := false
	err := c.groupRoles(ctx, t.ProjectID, t.GroupID, func(r approvals.Role) bool {
		if r.ID == t.RoleID {
			role, found = r, true
		}
		return !found
	})
	return role, found, err
}

// existing builds the result for a role the group already holds; the list
// item has the role, the group comes from GET /organization/groups/{id}.
func (c *Client) existing(ctx context.Context, t approvals.Target, role approvals.Role) (approvals.Assignment, error) {
	a := approvals.Assignment{Role: role, Group: approvals.Group{ID: t.GroupID}, AlreadyAssigned: true}
	var resp *http.Response
	g, err := c.groups.Get(ctx, t.GroupID, option.WithResponseInto(&resp))
	if err != nil {
		err = c.fail(ctx, "get group", err, resp)
		var ge *approvals.GrantError
		if errors.As(err, &ge) && !ge.Temporary {
			// The grant exists; a group we may not read (yet) must not turn
			// it into a failed request. The summary then shows only the id.
			return a, nil
		}
		return approvals.Assignment{}, err
	}
	a.Group = groupFrom(g)
	return a, nil
}

// fail wraps a failed GET-type call: ctx.Err() when the caller gave up,
// otherwise the classified error.
func (c *Client) fail(ctx context.Context, op string, err error, resp *http.Response) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	return fmt.Errorf("%s: %w", op, c.classify(err, resp, false))
}

func roleFromListItem(it sdk.AdminOrganizationProjectGroupRoleListResponse) approvals.Role {
	return approvals.Role{
		ID:           it.ID,
		Name:         it.Name,
		Description:  it.Description, // the SDK decodes null as ""
		Permissions:  slices.Clone(it.Permissions),
		ResourceType: it.ResourceType,
		Predefined:   it.PredefinedRole,
	}
}

func assignmentFromNew(res *sdk.AdminOrganizationProjectGroupRoleNewResponse) approvals.Assignment {
	return approvals.Assignment{
		Group: approvals.Group{
			ID:          res.Group.ID,
			Name:        res.Group.Name,
			CreatedAt:   unixTime(res.Group.CreatedAt),
			SCIMManaged: res.Group.ScimManaged,
		},
		Role: approvals.Role{
			ID:           res.Role.ID,
			Name:         res.Role.Name,
			Description:  res.Role.Description,
			Permissions:  slices.Clone(res.Role.Permissions),
			ResourceType: res.Role.ResourceType,
			Predefined:   res.Role.PredefinedRole,
		},
	}
}

// unixTime maps the API's unix seconds to UTC; 0 (absent or null) stays the
// zero time rather than 1970.
func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

// quoteShort quotes user-supplied text for an error message, cut so a huge
// id cannot flood the channel.
func quoteShort(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
