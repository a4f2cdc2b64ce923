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

// listPageSize is the page size for listing a group's roles; 100 keeps a
// typical group to one call while staying well under the API's 1000 cap.
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
}

// Client assigns project roles to groups with the OpenAI Admin API. It is
// safe for concurrent use.
type Client struct {
	roles     sdk.AdminOrganizationProjectGroupRoleService
	groups    sdk.AdminOrganizationGroupService
	projects  sdk.AdminOrganizationProjectService
	host      string        // where errors say we tried to go
	timeout   time.Duration // reported in timeout messages
	key       string        // kept only to scrub it from messages
	now       func() time.Time
	configErr *approvals.GrantError // set when cfg cannot work; every call returns it
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
	c := &Client{key: cfg.AdminKey, timeout: cfg.Timeout, now: time.Now}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
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
		return c.existing(ctx, t, role)
	}

	var resp *http.Response
	res, err := c.roles.New(ctx, t.ProjectID, t.GroupID,
		sdk.AdminOrganizationProjectGroupRoleNewParams{RoleID: t.RoleID},
		option.WithResponseInto(&resp))
	if err == nil && res != nil {
		return assignmentFromNew(res), nil
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
	role, found, err = c.findAssigned(ctx, t)
	if err != nil {
		var ge *approvals.GrantError
		if errors.As(err, &ge) && ge.Temporary {
			// Cannot tell whether the role is there: failing for good could
			// mark an applied grant as failed, so let the worker retry.
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
	if c.configErr != nil {
		return c.configErr
	}
	for _, f := range []struct{ name, id string }{
		{"project", t.ProjectID}, {"group", t.GroupID}, {"role", t.RoleID},
	} {
		if !validID.MatchString(f.id) {
			return permanent(fmt.Sprintf("invalid %s id %s: use 1 to 128 letters, digits, '_' or '-'", f.name, quoteShort(f.id)))
		}
	}
	return nil
}

// findAssigned pages through the group's roles in the project looking for
// t.RoleID.
func (c *Client) findAssigned(ctx context.Context, t approvals.Target) (approvals.Role, bool, error) {
	params := sdk.AdminOrganizationProjectGroupRoleListParams{Limit: sdk.Int(listPageSize)}
	for range maxListPages {
		var resp *http.Response
		page, err := c.roles.List(ctx, t.ProjectID, t.GroupID, params, option.WithResponseInto(&resp))
		if err != nil {
			return approvals.Role{}, false, c.fail(ctx, "list group roles", err, resp)
		}
		for _, it := range page.Data {
			if it.ID == t.RoleID {
				return roleFromListItem(it), true, nil
			}
		}
		if !page.HasMore || len(page.Data) == 0 {
			return approvals.Role{}, false, nil
		}
		next := page.Next
		if next == "" {
			// The spec promises next with has_more; fall back to the
			// after=<last id> convention of the older list endpoints.
			next = page.Data[len(page.Data)-1].ID
		}
		if next == params.After.Value {
			return approvals.Role{}, false, fmt.Errorf("list group roles: %w",
				temporary("the API returned the same page cursor twice"))
		}
		params.After = sdk.String(next)
	}
	return approvals.Role{}, false, fmt.Errorf("list group roles: %w",
		temporary(fmt.Sprintf("more than %d pages of roles", maxListPages)))
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
	a.Group = approvals.Group{ID: g.ID, Name: g.Name, CreatedAt: unixTime(g.CreatedAt), SCIMManaged: g.IsScimManaged}
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
