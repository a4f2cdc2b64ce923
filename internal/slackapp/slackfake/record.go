package slackfake

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// channel is one conversation and every message posted in it.
type channel struct {
	id     string
	member bool
	msgs   []*message
	byTS   map[string]*message
}

func newChannel(id string, member bool) *channel {
	return &channel{id: id, member: member, byTS: map[string]*message{}}
}

// message is the fake's record of one message; the last version is current.
type message struct {
	channel   string
	ts        string
	threadTS  string
	broadcast bool
	deleted   bool
	metadata  json.RawMessage // event_type and event_payload, nil without
	versions  []version
}

// version is one state of a message, as posted or updated.
type version struct {
	text        string
	blocks      json.RawMessage
	attachments json.RawMessage
	source      string
	at          time.Time
}

// Version is one state of a message: what chat.postMessage posted, or what a
// chat.update or a response URL with replace_original changed it to.
type Version struct {
	// Text is the top-level text (the notification fallback when there are blocks).
	Text string
	// BlocksJSON is the blocks array as received, nil when the message has none.
	BlocksJSON json.RawMessage
	// Blocks is BlocksJSON decoded; each call returns a fresh copy.
	Blocks []map[string]any
	// AttachmentsJSON is the legacy attachments array as received, if any.
	AttachmentsJSON json.RawMessage
	// Source is the method that produced this version: "chat.postMessage",
	// "chat.update" or "response_url".
	Source string
	// At is when the fake recorded it, by the fake's clock.
	At time.Time
}

// VisibleText returns the text a reader sees in this version; see [VisibleText].
func (v Version) VisibleText() string { return VisibleText(v.Text, v.BlocksJSON) }

// Message is the current state of one message in a channel.
type Message struct {
	// Channel is the channel id (a D… id for messages posted to a user id).
	Channel string
	// TS is the message timestamp, its id within the channel.
	TS string
	// ThreadTS is the parent's ts for a thread reply, empty for a top-level message.
	ThreadTS string
	// ReplyBroadcast reports a thread reply also sent to the channel.
	ReplyBroadcast bool
	// User and BotID identify the poster; always the fake's bot.
	User  string
	BotID string
	// Text, BlocksJSON, Blocks and AttachmentsJSON are the current version's.
	Text            string
	BlocksJSON      json.RawMessage
	Blocks          []map[string]any
	AttachmentsJSON json.RawMessage
	// Metadata is the message metadata ({"event_type":…,"event_payload":…})
	// as posted or last replaced by chat.update, nil when it has none.
	Metadata json.RawMessage
	// Updates counts the changes after posting (chat.update, replace_original).
	Updates int
	// Deleted reports a message removed through a response URL's delete_original.
	Deleted bool
	// History holds every version, oldest first; the last is the current one.
	History []Version
}

// VisibleText returns the text a reader sees in the message; see [VisibleText].
func (m Message) VisibleText() string { return VisibleText(m.Text, m.BlocksJSON) }

// Ephemeral is a message only one user sees: from chat.postEphemeral, or an
// ephemeral reply posted to a response URL.
type Ephemeral struct {
	// Channel and User say where and to whom it was shown. For a response URL
	// they are the ones the URL was bound to, possibly empty.
	Channel string
	User    string
	// MessageTS is the timestamp chat.postEphemeral returned; empty for response URLs.
	MessageTS string
	// ThreadTS is the thread it was shown in, if any.
	ThreadTS        string
	Text            string
	BlocksJSON      json.RawMessage
	Blocks          []map[string]any
	AttachmentsJSON json.RawMessage
	// Source is "chat.postEphemeral" or "response_url".
	Source string
}

// VisibleText returns the text the user sees; see [VisibleText].
func (e Ephemeral) VisibleText() string { return VisibleText(e.Text, e.BlocksJSON) }

func (m *message) snapshot() Message {
	cur := m.versions[len(m.versions)-1]
	out := Message{
		Channel:         m.channel,
		TS:              m.ts,
		ThreadTS:        m.threadTS,
		ReplyBroadcast:  m.broadcast,
		User:            BotUserID,
		BotID:           BotID,
		Text:            cur.text,
		BlocksJSON:      clone(cur.blocks),
		Blocks:          decodeBlocks(cur.blocks),
		AttachmentsJSON: clone(cur.attachments),
		Metadata:        clone(m.metadata),
		Updates:         len(m.versions) - 1,
		Deleted:         m.deleted,
	}
	for _, v := range m.versions {
		out.History = append(out.History, Version{
			Text:            v.text,
			BlocksJSON:      clone(v.blocks),
			Blocks:          decodeBlocks(v.blocks),
			AttachmentsJSON: clone(v.attachments),
			Source:          v.source,
			At:              v.at,
		})
	}
	return out
}

// Messages returns the current state of every message in channel, thread replies
// included, in the order they were posted. Messages deleted through a response
// URL are left out (see [Server.Message]). channel may be a channel id or, for
// direct messages, the user id they were posted to. Unknown channels yield nil.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.lookupChannelLocked(channel)
	if ch == nil {
		return nil
	}
	var out []Message
	for _, m := range ch.msgs {
		if !m.deleted {
			out = append(out, m.snapshot())
		}
	}
	return out
}

// Message returns the message ts in channel, deleted or not, and whether it exists.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.lookupChannelLocked(channel)
	if ch == nil {
		return Message{}, false
	}
	m, ok := ch.byTS[ts]
	if !ok {
		return Message{}, false
	}
	return m.snapshot(), true
}

// WaitMessages waits until channel holds at least n messages (as counted by
// Messages) and returns them, or returns ctx's error.
func (s *Server) WaitMessages(ctx context.Context, channel string, n int) ([]Message, error) {
	var msgs []Message
	err := s.WaitFor(ctx, func(s *Server) bool {
		msgs = s.Messages(channel)
		return len(msgs) >= n
	})
	return msgs, err
}

// DMChannel returns the id of the direct-message channel the fake opened when a
// message was posted to user, or "" if none was.
func (s *Server) DMChannel(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dms[user]
}

// Ephemerals returns every ephemeral message, in the order they were sent.
func (s *Server) Ephemerals() []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Ephemeral, len(s.ephemerals))
	for i, e := range s.ephemerals {
		e.BlocksJSON = clone(e.BlocksJSON)
		e.Blocks = decodeBlocks(e.BlocksJSON)
		e.AttachmentsJSON = clone(e.AttachmentsJSON)
		out[i] = e
	}
	return out
}

// Calls returns how many HTTP requests reached method ("chat.postMessage",
// "apps.connections.open", …, or "response_url" for response URL posts),
// including the ones answered with an error or an injected fault.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// AllCalls returns the call count of every method called so far.
func (s *Server) AllCalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// lookupChannelLocked resolves a channel id or a user id with a DM channel.
func (s *Server) lookupChannelLocked(id string) *channel {
	if ch, ok := s.channels[id]; ok {
		return ch
	}
	if dm, ok := s.dms[id]; ok {
		return s.channels[dm]
	}
	return nil
}

func decodeBlocks(raw json.RawMessage) []map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil
	}
	return out
}

func clone(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return slices.Clone(b)
}
