package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/rolegate/rolegate/internal/approvals"
)

var _ approvals.Catalog = (*Client)(nil)

// Projects lists the active projects, every page (include_archived=false;
// anything the API marks archived anyway is left out). See
// approvals.Catalog for errors.
func (c *Client) Projects(ctx context.Context) ([]approvals.Project, error) {
	const op = "list projects"
	if c.configErr != nil {
		return nil, fmt.Errorf("%s: %w", op, c.configErr)
	}
	var out []approvals.Project
	err := pages(ctx, c, op, func(after string, into option.RequestOption) ([]sdk.Project, bool, string, error) {
		params := sdk.AdminOrganizationProjectListParams{Limit: sdk.Int(c.pageSize), IncludeArchived: sdk.Bool(false)}
		if after != "" {
			params.After = sdk.String(after)
		}
		p, err := c.projects.List(ctx, params, into)
		if err != nil {
			return nil, false, "", err
		}
		// Paged by after=<last id>: the SDK's LastID, else the last item.
		return p.Data, p.HasMore, p.LastID, nil
	}, func(p sdk.Project) string { return p.ID }, func(p sdk.Project) bool {
		if pr := projectFrom(&p); !pr.Archived {
			out = append(out, pr)
		}
		return true
	})
	if err != nil {
		return nil, err // a partial list must not pass for the whole
	}
	return out, nil
}

// Project fetches one project, archived or not. An id OpenAI does not know
// wraps approvals.ErrUnknown; an id outside [A-Za-z0-9_-]{1,128} is refused
// before any call.
func (c *Client) Project(ctx context.Context, id string) (approvals.Project, error) {
	const op = "get project"
	if err := c.readyIDs(idArg{"project", id}); err != nil {
		return approvals.Project{}, fmt.Errorf("%s: %w", op, err)
	}
	var resp *http.Response
	p, err := c.projects.Get(ctx, id, option.WithResponseInto(&resp))
	if err != nil {
		return approvals.Project{}, c.failID(ctx, op, err, resp)
	}
	return projectFrom(p), nil
}

// Groups lists the organization's groups, every page.
func (c *Client) Groups(ctx context.Context) ([]approvals.Group, error) {
	const op = "list groups"
	if c.configErr != nil {
		return nil, fmt.Errorf("%s: %w", op, c.configErr)
	}
	var out []approvals.Group
	err := pages(ctx, c, op, func(after string, into option.RequestOption) ([]sdk.Group, bool, string, error) {
		params := sdk.AdminOrganizationGroupListParams{Limit: sdk.Int(c.pageSize)}
		if after != "" {
			params.After = sdk.String(after)
		}
		p, err := c.groups.List(ctx, params, into)
		if err != nil {
			return nil, false, "", err
		}
		return p.Data, p.HasMore, p.Next, nil
	}, func(g sdk.Group) string { return g.ID }, func(g sdk.Group) bool {
		out = append(out, groupFrom(&g))
		return true
	})
	if err != nil {
		return nil, err // a partial list must not pass for the whole
	}
	return out, nil
}

// ProjectRoles lists the roles assignable in the project, every page. An
// unknown project wraps approvals.ErrUnknown.
func (c *Client) ProjectRoles(ctx context.Context, projectID string) ([]approvals.Role, error) {
	const op = "list project roles"
	if err := c.readyIDs(idArg{"project", projectID}); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var out []approvals.Role
	err := pages(ctx, c, op, func(after string, into option.RequestOption) ([]sdk.Role, bool, string, error) {
		params := sdk.AdminOrganizationProjectRoleListParams{Limit: sdk.Int(c.pageSize)}
		if after != "" {
			params.After = sdk.String(after)
		}
		p, err := c.projectRoles.List(ctx, projectID, params, into)
		if err != nil {
			return nil, false, "", err
		}
		return p.Data, p.HasMore, p.Next, nil
	}, func(r sdk.Role) string { return r.ID }, func(r sdk.Role) bool {
		out = append(out, roleFrom(&r))
		return true
	})
	if err != nil {
		return nil, err // a partial list must not pass for the whole
	}
	return out, nil
}

// GroupRoles lists the roles the group holds in the project, every page.
// An unknown project or group wraps approvals.ErrUnknown.
func (c *Client) GroupRoles(ctx context.Context, projectID, groupID string) ([]approvals.Role, error) {
	if err := c.readyIDs(idArg{"project", projectID}, idArg{"group", groupID}); err != nil {
		return nil, fmt.Errorf("list group roles: %w", err)
	}
	var out []approvals.Role
	err := c.groupRoles(ctx, projectID, groupID, func(r approvals.Role) bool {
		out = append(out, r)
		return true
	})
	if err != nil {
		return nil, err // a partial list must not pass for the whole
	}
	return out, nil
}

// groupRoles pages through the group's roles in the project, handing each
// to visit until it returns false.
func (c *Client) groupRoles(ctx context.Context, projectID, groupID string, visit func(approvals.Role) bool) error {
	return pages(ctx, c, "list group roles", func(after string, into option.RequestOption) ([]sdk.AdminOrganizationProjectGroupRoleListResponse, bool, string, error) {
		params := sdk.AdminOrganizationProjectGroupRoleListParams{Limit: sdk.Int(c.pageSize)}
		if after != "" {
			params.After = sdk.String(after)
		}
		p, err := c.roles.List(ctx, projectID, groupID, params, into)
		if err != nil {
			return nil, false, "", err
		}
		return p.Data, p.HasMore, p.Next, nil
	}, func(it sdk.AdminOrganizationProjectGroupRoleListResponse) string { return it.ID },
		func(it sdk.AdminOrganizationProjectGroupRoleListResponse) bool { return visit(roleFromListItem(it)) })
}

// pages runs fetch for one page after another, handing each item to visit
// until it returns false, the last page is reached, or maxListPages pages
// were read. fetch gets the cursor ("" for the first page) and an option
// that captures the HTTP response for error classification; it returns the
// items, has_more and the next cursor ("" to use the last item's id, the
// after=<last id> convention). A server that repeats a cursor or never
// stops is a temporary error rather than an endless loop. A 404 wraps
// approvals.ErrUnknown.
func pages[T any](ctx context.Context, c *Client, op string,
	fetch func(after string, into option.RequestOption) ([]T, bool, string, error),
	id func(T) string, visit func(T) bool,
) error {
	after := ""
	for range maxListPages {
		var resp *http.Response
		items, more, next, err := fetch(after, option.WithResponseInto(&resp))
		if err != nil {
			return c.failID(ctx, op, err, resp)
		}
		for _, it := range items {
			if !visit(it) {
				return nil
			}
		}
		if !more || len(items) == 0 {
			return nil
		}
		if next == "" {
			next = id(items[len(items)-1])
		}
		if next == after {
			return fmt.Errorf("%s: %w", op, temporary("the API returned the same page cursor twice"))
		}
		after = next
	}
	return fmt.Errorf("%s: %w", op, temporary(fmt.Sprintf("more than %d pages", maxListPages)))
}

// failID is fail for a call about specific ids: a 404 also wraps
// approvals.ErrUnknown, so callers can tell a missing thing from an outage.
func (c *Client) failID(ctx context.Context, op string, err error, resp *http.Response) error {
	err = c.fail(ctx, op, err, resp)
	var ge *approvals.GrantError
	if errors.As(err, &ge) && ge.Failure.Status == http.StatusNotFound {
		return fmt.Errorf("%s: %w: %w", op, approvals.ErrUnknown, ge)
	}
	return err
}

type idArg struct{ name, id string }

// readyIDs reports why no call should be made for these ids.
func (c *Client) readyIDs(ids ...idArg) error {
	if c.configErr != nil {
		return c.configErr
	}
	for _, f := range ids {
		if !validID.MatchString(f.id) {
			return permanent(fmt.Sprintf("invalid %s id %s: use 1 to 128 letters, digits, '_' or '-'", f.name, quoteShort(f.id)))
		}
	}
	return nil
}

func projectFrom(p *sdk.Project) approvals.Project {
	return approvals.Project{ID: p.ID, Name: p.Name, Archived: p.Status == "archived" || p.ArchivedAt != 0}
}

func groupFrom(g *sdk.Group) approvals.Group {
	return approvals.Group{ID: g.ID, Name: g.Name, CreatedAt: unixTime(g.CreatedAt), SCIMManaged: g.IsScimManaged}
}

func roleFrom(r *sdk.Role) approvals.Role {
	return approvals.Role{
		ID:           r.ID,
		Name:         r.Name,
		Description:  r.Description,
		Permissions:  slices.Clone(r.Permissions),
		ResourceType: r.ResourceType,
		Predefined:   r.PredefinedRole,
	}
}
