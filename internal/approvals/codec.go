package approvals

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// schemaVersion is written into every stored value. A reader accepts the
// versions it knows (1 had no names, rule or preview) and refuses a newer
// one rather than misread it: such a record is quarantined.
const schemaVersion = 2

func knownVersion(v int) bool { return v == 1 || v == schemaVersion }

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
	DryRun          bool        `json:"dry_run,omitempty"`
}

type failureRecord struct {
	Status    int    `json:"status,omitempty"`
	Message   string `json:"message"`
	Type      string `json:"type,omitempty"`
	Code      string `json:"code,omitempty"`
	Param     string `json:"param,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

type askRecord struct {
	Project string `json:"project"`
	Group   string `json:"group"`
	Role    string `json:"role"`
}

type projectRecord struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Archived bool   `json:"archived,omitempty"`
}

type previewRecord struct {
	Project projectRecord `json:"project"`
	Group   groupRecord   `json:"group"`
	Role    roleRecord    `json:"role"`
}

type requestRecord struct {
	V           int               `json:"v"`
	ID          uint64            `json:"id"`
	State       string            `json:"state"`
	Ask         *askRecord        `json:"ask,omitempty"`
	ProjectID   string            `json:"project_id"`
	GroupID     string            `json:"group_id"`
	RoleID      string            `json:"role_id"`
	Preview     *previewRecord    `json:"preview,omitempty"`
	Rule        string            `json:"rule,omitempty"`
	Approvers   []string          `json:"approvers,omitempty"`
	DenyReason  string            `json:"deny_reason,omitempty"`
	RemindAt    int64             `json:"remind_at,omitempty"`
	Reminded    bool              `json:"reminded,omitempty"`
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
	// Time-bound grants (issue 11): older readers ignore these fields, and
	// a record without them is a permanent grant, as before.
	Duration      int64             `json:"duration,omitempty"` // nanoseconds
	EndsAt        int64             `json:"ends_at,omitempty"`
	Warned        bool              `json:"warned,omitempty"`
	HeldBefore    bool              `json:"held_before,omitempty"`
	Ending        bool              `json:"ending,omitempty"`
	EndedBy       string            `json:"ended_by,omitempty"`
	EndedAt       int64             `json:"ended_at,omitempty"`
	Revocation    *revocationRecord `json:"revocation,omitempty"`
	RevokeFailure *failureRecord    `json:"revoke_failure,omitempty"`
	Extends       uint64            `json:"extends,omitempty"`
	Extensions    []uint64          `json:"extensions,omitempty"`
	BreakGlass    bool              `json:"break_glass,omitempty"`
	ReviewedBy    string            `json:"reviewed_by,omitempty"`
	ReviewedAt    int64             `json:"reviewed_at,omitempty"`
}

type revocationRecord struct {
	Deleted bool   `json:"deleted,omitempty"`
	Absent  bool   `json:"absent,omitempty"`
	Kept    bool   `json:"kept,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
	Note    string `json:"note,omitempty"`
}

func failureToRecord(f *Failure) *failureRecord {
	if f == nil {
		return nil
	}
	return &failureRecord{Status: f.Status, Message: f.Message, Type: f.Type, Code: f.Code, Param: f.Param, RequestID: f.RequestID}
}

func failureFromRecord(f *failureRecord) *Failure {
	if f == nil {
		return nil
	}
	return &Failure{Status: f.Status, Message: f.Message, Type: f.Type, Code: f.Code, Param: f.Param, RequestID: f.RequestID}
}

func marshalRequest(r *Request) ([]byte, error) {
	rec := requestRecord{
		V: schemaVersion, ID: r.ID, State: string(r.State),
		ProjectID: r.ProjectID, GroupID: r.GroupID, RoleID: r.RoleID,
		Reason: r.Reason, Requester: r.Requester, TeamID: r.TeamID, ChannelID: r.ChannelID,
		ResponseURL: r.ResponseURL, MessageTS: r.MessageTS,
		CreatedAt: unixNano(r.CreatedAt), ExpiresAt: unixNano(r.ExpiresAt), Required: r.Required,
		Decider: r.Decider, DecidedAt: unixNano(r.DecidedAt), Note: r.Note, FinishedAt: unixNano(r.FinishedAt),
		Rule: r.Rule, Approvers: r.Approvers, DenyReason: r.DenyReason,
		RemindAt: unixNano(r.RemindAt), Reminded: r.Reminded,
		Duration: int64(r.Duration), EndsAt: unixNano(r.EndsAt), Warned: r.Warned, HeldBefore: r.HeldBefore,
		Ending: r.Ending, EndedBy: r.EndedBy, EndedAt: unixNano(r.EndedAt), RevokeFailure: failureToRecord(r.RevokeFailure),
		Extends: r.Extends, Extensions: r.Extensions, BreakGlass: r.BreakGlass, ReviewedBy: r.ReviewedBy, ReviewedAt: unixNano(r.ReviewedAt),
	}
	if v := r.Revocation; v != nil {
		rec.Revocation = &revocationRecord{Deleted: v.Deleted, Absent: v.Absent, Kept: v.Kept, DryRun: v.DryRun, Note: v.Note}
	}
	if r.Ask != AskFor(r.Target) {
		rec.Ask = &askRecord{Project: r.Ask.Project, Group: r.Ask.Group, Role: r.Ask.Role}
	}
	if p := r.Preview; p != nil {
		rec.Preview = &previewRecord{
			Project: projectRecord{ID: p.Project.ID, Name: p.Project.Name, Archived: p.Project.Archived},
			Group:   groupToRecord(p.Group), Role: roleToRecord(p.Role),
		}
	}
	for _, v := range r.Approvals {
		rec.Approvals = append(rec.Approvals, voteRecord{User: v.User, At: unixNano(v.At)})
	}
	if a := r.Assignment; a != nil {
		rec.Assignment = &assignmentRecord{Group: groupToRecord(a.Group), Role: roleToRecord(a.Role), AlreadyAssigned: a.AlreadyAssigned, DryRun: a.DryRun}
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
	if !knownVersion(rec.V) {
		return Request{}, fmt.Errorf("decode request %d: unknown schema version %d (written by a newer rolegate?)", rec.ID, rec.V)
	}
	if !State(rec.State).Valid() {
		return Request{}, fmt.Errorf("decode request %d: unknown state %q", rec.ID, rec.State)
	}
	r := Request{
		ID: rec.ID, State: State(rec.State),
		Target: Target{ProjectID: rec.ProjectID, GroupID: rec.GroupID, RoleID: rec.RoleID},
		Reason: rec.Reason, Requester: rec.Requester, TeamID: rec.TeamID, ChannelID: rec.ChannelID,
		ResponseURL: rec.ResponseURL, MessageTS: rec.MessageTS,
		CreatedAt: fromUnixNano(rec.CreatedAt), ExpiresAt: fromUnixNano(rec.ExpiresAt), Required: rec.Required,
		Decider: rec.Decider, DecidedAt: fromUnixNano(rec.DecidedAt), Note: rec.Note, FinishedAt: fromUnixNano(rec.FinishedAt),
		Rule: rec.Rule, Approvers: rec.Approvers, DenyReason: rec.DenyReason,
		RemindAt: fromUnixNano(rec.RemindAt), Reminded: rec.Reminded,
		Duration: time.Duration(rec.Duration), EndsAt: fromUnixNano(rec.EndsAt), Warned: rec.Warned, HeldBefore: rec.HeldBefore,
		Ending: rec.Ending, EndedBy: rec.EndedBy, EndedAt: fromUnixNano(rec.EndedAt), RevokeFailure: failureFromRecord(rec.RevokeFailure),
		Extends: rec.Extends, Extensions: rec.Extensions, BreakGlass: rec.BreakGlass, ReviewedBy: rec.ReviewedBy, ReviewedAt: fromUnixNano(rec.ReviewedAt),
	}
	if v := rec.Revocation; v != nil {
		r.Revocation = &RevokeOutcome{Deleted: v.Deleted, Absent: v.Absent, Kept: v.Kept, DryRun: v.DryRun, Note: v.Note}
	}
	r.Ask = AskFor(r.Target)
	if a := rec.Ask; a != nil {
		r.Ask = Ask{Project: a.Project, Group: a.Group, Role: a.Role}
	}
	if p := rec.Preview; p != nil {
		r.Preview = &Preview{
			Project: Project{ID: p.Project.ID, Name: p.Project.Name, Archived: p.Project.Archived},
			Group:   groupFromRecord(p.Group), Role: roleFromRecord(p.Role),
		}
	}
	for _, v := range rec.Approvals {
		r.Approvals = append(r.Approvals, Vote{User: v.User, At: fromUnixNano(v.At)})
	}
	if a := rec.Assignment; a != nil {
		r.Assignment = &Assignment{Group: groupFromRecord(a.Group), Role: roleFromRecord(a.Role), AlreadyAssigned: a.AlreadyAssigned, DryRun: a.DryRun}
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
	// Prev and Hash chain the event to the one before it (see ChainHash).
	// Events written before the chain have neither until the file is
	// opened once by a rolegate that chains them (prepare). Adding them
	// needs no schema version: older readers ignore unknown fields.
	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"`
}

func marshalEvent(e Event) ([]byte, error) {
	return json.Marshal(eventRecord{V: schemaVersion, ID: e.ID, RequestID: e.RequestID, Actor: e.Actor, Action: string(e.Action),
		At: unixNano(e.At), Detail: e.Detail, Prev: e.Prev, Hash: e.Hash})
}

// unmarshalEvent decodes a stored event. `bot audit verify` decodes every
// event of the log, and encoding/json was 80% of its CPU (measured on
// BenchmarkVerifyChain), so the flat objects marshalEvent writes are read
// by scanEventRecord; anything it does not expect (an escape in a string,
// an unknown key) goes to encoding/json, which decides.
func unmarshalEvent(b []byte) (Event, error) {
	rec, ok := scanEventRecord(b)
	if !ok {
		rec = eventRecord{}
		if err := json.Unmarshal(b, &rec); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
	}
	if !knownVersion(rec.V) {
		return Event{}, fmt.Errorf("decode event %d: unknown schema version %d", rec.ID, rec.V)
	}
	return Event{ID: rec.ID, RequestID: rec.RequestID, Actor: rec.Actor, Action: Action(rec.Action), At: fromUnixNano(rec.At), Detail: rec.Detail,
		Prev: rec.Prev, Hash: rec.Hash}, nil
}

type jobRecord struct {
	V           int            `json:"v"`
	ID          uint64         `json:"id"`
	Kind        string         `json:"kind"`
	RequestID   uint64         `json:"request_id"`
	Attempts    int            `json:"attempts,omitempty"`
	NotBefore   int64          `json:"not_before,omitempty"`
	FirstTry    int64          `json:"first_try,omitempty"`
	LastError   string         `json:"last_error,omitempty"`
	LastFailure *failureRecord `json:"last_failure,omitempty"`
	Ambiguous   bool           `json:"ambiguous,omitempty"`
	Tries       int            `json:"tries,omitempty"`
}

func marshalJob(j Job) ([]byte, error) {
	return json.Marshal(jobRecord{V: schemaVersion, ID: j.ID, Kind: string(j.Kind), RequestID: j.RequestID, Attempts: j.Attempts,
		NotBefore: unixNano(j.NotBefore), FirstTry: unixNano(j.FirstTry), LastError: j.LastError, Ambiguous: j.Ambiguous,
		LastFailure: failureToRecord(j.LastFailure), Tries: j.Tries})
}

func unmarshalJob(b []byte) (Job, error) {
	var rec jobRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Job{}, fmt.Errorf("decode job: %w", err)
	}
	if !knownVersion(rec.V) {
		return Job{}, fmt.Errorf("decode job %d: unknown schema version %d (written by a newer rolegate?)", rec.ID, rec.V)
	}
	return Job{ID: rec.ID, Kind: JobKind(rec.Kind), RequestID: rec.RequestID, Attempts: rec.Attempts,
		NotBefore: fromUnixNano(rec.NotBefore), FirstTry: fromUnixNano(rec.FirstTry), LastError: rec.LastError, Ambiguous: rec.Ambiguous,
		LastFailure: failureFromRecord(rec.LastFailure), Tries: rec.Tries}, nil
}

func groupToRecord(g Group) groupRecord {
	return groupRecord{ID: g.ID, Name: g.Name, CreatedAt: unixNano(g.CreatedAt), SCIMManaged: g.SCIMManaged}
}

func groupFromRecord(g groupRecord) Group {
	return Group{ID: g.ID, Name: g.Name, CreatedAt: fromUnixNano(g.CreatedAt), SCIMManaged: g.SCIMManaged}
}

func roleToRecord(r Role) roleRecord {
	return roleRecord{ID: r.ID, Name: r.Name, Description: r.Description, Permissions: r.Permissions,
		ResourceType: r.ResourceType, Predefined: r.Predefined}
}

func roleFromRecord(r roleRecord) Role {
	return Role{ID: r.ID, Name: r.Name, Description: r.Description, Permissions: r.Permissions,
		ResourceType: r.ResourceType, Predefined: r.Predefined}
}

type quarantinedRecord struct {
	V      int    `json:"v"`
	Kind   string `json:"kind"`
	Key    uint64 `json:"key"`
	Reason string `json:"reason"`
	At     int64  `json:"at"`
	Value  []byte `json:"value"`
}

func marshalQuarantined(q Quarantined) ([]byte, error) {
	return json.Marshal(quarantinedRecord{V: schemaVersion, Kind: q.Kind, Key: q.Key, Reason: q.Reason, At: unixNano(q.At), Value: q.Value})
}

func unmarshalQuarantined(b []byte) (Quarantined, error) {
	var rec quarantinedRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Quarantined{}, fmt.Errorf("decode quarantined record: %w", err)
	}
	return Quarantined{Kind: rec.Kind, Key: rec.Key, Reason: rec.Reason, At: fromUnixNano(rec.At), Value: rec.Value}, nil
}

// scanEventRecord reads b when it is a flat JSON object of eventRecord's
// exact keys whose strings hold no escapes and only valid UTF-8 and whose
// numbers are plain integers: what marshalEvent writes for most events. It
// returns false for anything else, and then encoding/json must decode b;
// when it returns true, encoding/json would have decoded the same record
// (FuzzScanEventRecord).
func scanEventRecord(b []byte) (rec eventRecord, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return rec, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return rec, skipSpace(b, i+1) == len(b)
	}
	for {
		var key []byte
		if key, i, ok = scanString(b, i); !ok {
			return rec, false
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
			return rec, false
		}
		i = skipSpace(b, i+1)
		var str []byte
		var num uint64
		var neg bool
		switch string(key) {
		case "actor", "action", "detail", "prev", "hash":
			str, i, ok = scanString(b, i)
		case "v", "id", "request_id", "at":
			num, neg, i, ok = scanInt(b, i)
		default:
			return rec, false
		}
		if !ok {
			return rec, false
		}
		switch string(key) {
		case "actor":
			rec.Actor = string(str)
		case "action":
			rec.Action = string(str)
		case "detail":
			rec.Detail = string(str)
		case "prev":
			rec.Prev = string(str)
		case "hash":
			rec.Hash = string(str)
		case "v":
			if neg || num > math.MaxInt32 {
				return rec, false
			}
			rec.V = int(num)
		case "id", "request_id":
			if neg {
				return rec, false
			}
			if key[0] == 'i' {
				rec.ID = num
			} else {
				rec.RequestID = num
			}
		case "at":
			if num > math.MaxInt64 {
				return rec, false
			}
			rec.At = int64(num)
			if neg {
				rec.At = -rec.At
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return rec, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
			continue
		case '}':
			return rec, skipSpace(b, i+1) == len(b)
		}
		return rec, false
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads a JSON string at b[i:] without escapes, control
// characters or invalid UTF-8.
func scanString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	start := i + 1
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s = b[start:j]
			if !utf8.Valid(s) {
				return nil, i, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

// scanInt reads a JSON integer (no fraction or exponent) at b[i:].
func scanInt(b []byte, i int) (n uint64, neg bool, next int, ok bool) {
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false, i, false
		}
		n = n*10 + d
	}
	switch {
	case i == start, b[start] == '0' && i-start > 1, neg && n == 0:
		return 0, false, i, false
	case i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E'):
		return 0, false, i, false
	}
	return n, neg, i, true
}
