package approvals

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// schemaVersion is written into every stored value. A reader refuses a
// version it does not know rather than misread it.
const schemaVersion = 1

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func btoi(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

type voteRecord struct {
	User string `json:"user"`
	At   int64  `json:"at"`
}

type groupRecord struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	CreatedAt   int64  `json:"created_at"`
	SCIMManaged bool   `json:"scim_managed"`
}

type roleRecord struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Description  string   `json:"description,omitempty"`
	Permissions  []string `json:"permissions"`
	ResourceType string   `json:"resource_type"`
	Predefined   bool     `json:"predefined"`
}

type assignmentRecord struct {
	Group           groupRecord `json:"group"`
	Role            roleRecord  `json:"role"`
	AlreadyAssigned bool        `json:"already_assigned,omitempty"`
}

type failureRecord struct {
	Status    int    `json:"status,omitempty"`
	Message   string `json:"message"`
	Type      string `json:"type,omitempty"`
	Code      string `json:"code,omitempty"`
	Param     string `json:"param,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

type requestRecord struct {
	V           int               `json:"v"`
	ID          uint64            `json:"id"`
	State       string            `json:"state"`
	ProjectID   string            `json:"project_id"`
	GroupID     string            `json:"group_id"`
	RoleID      string            `json:"role_id"`
	Reason      string            `json:"reason"`
	Requester   string            `json:"requester"`
	TeamID      string            `json:"team_id,omitempty"`
	ChannelID   string            `json:"channel_id"`
	ResponseURL string            `json:"response_url,omitempty"`
	MessageTS   string            `json:"message_ts,omitempty"`
	CreatedAt   int64             `json:"created_at"`
	ExpiresAt   int64             `json:"expires_at"`
	Required    int               `json:"required"`
	Approvals   []voteRecord      `json:"approvals,omitempty"`
	Decider     string            `json:"decider,omitempty"`
	DecidedAt   int64             `json:"decided_at,omitempty"`
	Note        string            `json:"note,omitempty"`
	Assignment  *assignmentRecord `json:"assignment,omitempty"`
	Failure     *failureRecord    `json:"failure,omitempty"`
	FinishedAt  int64             `json:"finished_at,omitempty"`
}

func marshalRequest(r *Request) ([]byte, error) {
	rec := requestRecord{
		V: schemaVersion, ID: r.ID, State: string(r.State),
		ProjectID: r.ProjectID, GroupID: r.GroupID, RoleID: r.RoleID,
		Reason: r.Reason, Requester: r.Requester, TeamID: r.TeamID, ChannelID: r.ChannelID,
		ResponseURL: r.ResponseURL, MessageTS: r.MessageTS,
		CreatedAt: unixNano(r.CreatedAt), ExpiresAt: unixNano(r.ExpiresAt), Required: r.Required,
		Decider: r.Decider, DecidedAt: unixNano(r.DecidedAt), Note: r.Note, FinishedAt: unixNano(r.FinishedAt),
	}
	for _, v := range r.Approvals {
		rec.Approvals = append(rec.Approvals, voteRecord{User: v.User, At: unixNano(v.At)})
	}
	if a := r.Assignment; a != nil {
		rec.Assignment = &assignmentRecord{
			Group: groupRecord{ID: a.Group.ID, Name: a.Group.Name, CreatedAt: unixNano(a.Group.CreatedAt), SCIMManaged: a.Group.SCIMManaged},
			Role: roleRecord{ID: a.Role.ID, Name: a.Role.Name, Description: a.Role.Description, Permissions: a.Role.Permissions,
				ResourceType: a.Role.ResourceType, Predefined: a.Role.Predefined},
			AlreadyAssigned: a.AlreadyAssigned,
		}
	}
	if f := r.Failure; f != nil {
		rec.Failure = &failureRecord{Status: f.Status, Message: f.Message, Type: f.Type, Code: f.Code, Param: f.Param, RequestID: f.RequestID}
	}
	return json.Marshal(rec)
}

func unmarshalRequest(b []byte) (Request, error) {
	var rec requestRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Request{}, fmt.Errorf("decode request: %w", err)
	}
	if rec.V != schemaVersion {
		return Request{}, fmt.Errorf("decode request %d: unknown schema version %d", rec.ID, rec.V)
	}
	r := Request{
		ID: rec.ID, State: State(rec.State),
		Target: Target{ProjectID: rec.ProjectID, GroupID: rec.GroupID, RoleID: rec.RoleID},
		Reason: rec.Reason, Requester: rec.Requester, TeamID: rec.TeamID, ChannelID: rec.ChannelID,
		ResponseURL: rec.ResponseURL, MessageTS: rec.MessageTS,
		CreatedAt: fromUnixNano(rec.CreatedAt), ExpiresAt: fromUnixNano(rec.ExpiresAt), Required: rec.Required,
		Decider: rec.Decider, DecidedAt: fromUnixNano(rec.DecidedAt), Note: rec.Note, FinishedAt: fromUnixNano(rec.FinishedAt),
	}
	for _, v := range rec.Approvals {
		r.Approvals = append(r.Approvals, Vote{User: v.User, At: fromUnixNano(v.At)})
	}
	if a := rec.Assignment; a != nil {
		r.Assignment = &Assignment{
			Group: Group{ID: a.Group.ID, Name: a.Group.Name, CreatedAt: fromUnixNano(a.Group.CreatedAt), SCIMManaged: a.Group.SCIMManaged},
			Role: Role{ID: a.Role.ID, Name: a.Role.Name, Description: a.Role.Description, Permissions: a.Role.Permissions,
				ResourceType: a.Role.ResourceType, Predefined: a.Role.Predefined},
			AlreadyAssigned: a.AlreadyAssigned,
		}
	}
	if f := rec.Failure; f != nil {
		r.Failure = &Failure{Status: f.Status, Message: f.Message, Type: f.Type, Code: f.Code, Param: f.Param, RequestID: f.RequestID}
	}
	return r, nil
}

type eventRecord struct {
	V         int    `json:"v"`
	ID        uint64 `json:"id"`
	RequestID uint64 `json:"request_id"`
	Actor     string `json:"actor"`
	Action    string `json:"action"`
	At        int64  `json:"at"`
	Detail    string `json:"detail,omitempty"`
}

func marshalEvent(e Event) ([]byte, error) {
	return json.Marshal(eventRecord{V: schemaVersion, ID: e.ID, RequestID: e.RequestID, Actor: e.Actor, Action: string(e.Action), At: unixNano(e.At), Detail: e.Detail})
}

func unmarshalEvent(b []byte) (Event, error) {
	var rec eventRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if rec.V != schemaVersion {
		return Event{}, fmt.Errorf("decode event %d: unknown schema version %d", rec.ID, rec.V)
	}
	return Event{ID: rec.ID, RequestID: rec.RequestID, Actor: rec.Actor, Action: Action(rec.Action), At: fromUnixNano(rec.At), Detail: rec.Detail}, nil
}

type jobRecord struct {
	V         int    `json:"v"`
	ID        uint64 `json:"id"`
	Kind      string `json:"kind"`
	RequestID uint64 `json:"request_id"`
	Attempts  int    `json:"attempts,omitempty"`
	NotBefore int64  `json:"not_before,omitempty"`
	FirstTry  int64  `json:"first_try,omitempty"`
	LastError string `json:"last_error,omitempty"`
	Ambiguous bool   `json:"ambiguous,omitempty"`
}

func marshalJob(j Job) ([]byte, error) {
	return json.Marshal(jobRecord{V: schemaVersion, ID: j.ID, Kind: string(j.Kind), RequestID: j.RequestID, Attempts: j.Attempts,
		NotBefore: unixNano(j.NotBefore), FirstTry: unixNano(j.FirstTry), LastError: j.LastError, Ambiguous: j.Ambiguous})
}

func unmarshalJob(b []byte) (Job, error) {
	var rec jobRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Job{}, fmt.Errorf("decode job: %w", err)
	}
	if rec.V != schemaVersion {
		return Job{}, fmt.Errorf("decode job %d: unknown schema version %d", rec.ID, rec.V)
	}
	return Job{ID: rec.ID, Kind: JobKind(rec.Kind), RequestID: rec.RequestID, Attempts: rec.Attempts,
		NotBefore: fromUnixNano(rec.NotBefore), FirstTry: fromUnixNano(rec.FirstTry), LastError: rec.LastError, Ambiguous: rec.Ambiguous}, nil
}
