package slackfake

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// History limits, as Slack documents them for conversations.history and
// conversations.replies.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 999
)

// history serves conversations.history: a channel's top-level messages (and
// thread replies also sent to the channel), newest first, between oldest
// and latest, a page of limit at a time with a cursor. Message metadata is
// included only with include_all_metadata, as Slack does.
func (s *Server) history(p url.Values) apiResponse {
	ch, code := s.channelToReadLocked(p.Get("channel"))
	if code != "" {
		return errResponse(code)
	}
	win, code := readWindow(p)
	if code != "" {
		return errResponse(code)
	}
	var msgs []*message
	for _, m := range slices.Backward(ch.msgs) {
		if m.deleted || (m.threadTS != "" && !m.broadcast) || !win.contains(m.ts) {
			continue
		}
		if win.cursor != 0 && tsMicros(m.ts) > win.cursor {
			continue
		}
		msgs = append(msgs, m)
	}
	return s.page(ch, msgs, win, truthy(p.Get("include_all_metadata")))
}

// replies serves conversations.replies: the thread whose parent (or any
// message in it) is ts, parent first, oldest first, paged like history.
func (s *Server) replies(p url.Values) apiResponse {
	ch, code := s.channelToReadLocked(p.Get("channel"))
	if code != "" {
		return errResponse(code)
	}
	m, ok := ch.byTS[p.Get("ts")]
	if !ok || m.deleted {
		return errResponse("thread_not_found")
	}
	parent := m.ts
	if m.threadTS != "" {
		parent = m.threadTS
	}
	win, code := readWindow(p)
	if code != "" {
		return errResponse(code)
	}
	win.ascending = true
	var msgs []*message
	for _, m := range ch.msgs {
		if m.deleted || (m.ts != parent && m.threadTS != parent) || !win.contains(m.ts) {
			continue
		}
		if win.cursor != 0 && tsMicros(m.ts) < win.cursor {
			continue
		}
		msgs = append(msgs, m)
	}
	return s.page(ch, msgs, win, truthy(p.Get("include_all_metadata")))
}

// channelToReadLocked resolves the channel a history call reads: the bot
// must be a member, as Slack requires of a bot token.
func (s *Server) channelToReadLocked(id string) (*channel, string) {
	ch := s.lookupChannelLocked(id)
	switch {
	case ch == nil:
		return nil, "channel_not_found"
	case !ch.member:
		return nil, "not_in_channel"
	}
	return ch, ""
}

// window is what a history call asks for: the time range, the page size
// and where the page starts (0: at the start).
type window struct {
	oldest, latest int64 // microseconds; latest 0 means now
	inclusive      bool
	limit          int
	cursor         int64 // the ts (microseconds) the page starts at
	ascending      bool  // replies run oldest first, history newest first
}

func readWindow(p url.Values) (window, string) {
	w := window{inclusive: truthy(p.Get("inclusive")), limit: defaultHistoryLimit}
	var ok bool
	if v := p.Get("oldest"); v != "" {
		if w.oldest, ok = parseTS(v); !ok {
			return w, "invalid_ts_oldest"
		}
	}
	if v := p.Get("latest"); v != "" {
		if w.latest, ok = parseTS(v); !ok {
			return w, "invalid_ts_latest"
		}
	}
	if v := p.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return w, "invalid_limit"
		}
		if n > 0 {
			w.limit = min(n, maxHistoryLimit)
		}
	}
	if v := p.Get("cursor"); v != "" {
		raw, err := base64.StdEncoding.DecodeString(v)
		ts, found := strings.CutPrefix(string(raw), "next_ts:")
		if err != nil || !found {
			return w, "invalid_cursor"
		}
		if w.cursor, ok = parseTS(ts); !ok || w.cursor == 0 {
			return w, "invalid_cursor"
		}
	}
	return w, ""
}

func (w window) contains(ts string) bool {
	t := tsMicros(ts)
	if w.inclusive {
		return t >= w.oldest && (w.latest == 0 || t <= w.latest)
	}
	return t > w.oldest && (w.latest == 0 || t < w.latest)
}

// page answers with the first w.limit of msgs, and a cursor naming the
// next one when there are more.
func (s *Server) page(ch *channel, msgs []*message, w window, metadata bool) apiResponse {
	more := len(msgs) > w.limit
	out := make([]map[string]any, 0, min(len(msgs), w.limit))
	for _, m := range msgs[:min(len(msgs), w.limit)] {
		j := messageJSON(m)
		if metadata && m.metadata != nil {
			j["metadata"] = m.metadata
		}
		switch {
		case m.threadTS == "" && s.hasRepliesLocked(ch, m.ts):
			j["thread_ts"] = m.ts
		case m.broadcast:
			j["subtype"] = "thread_broadcast"
		}
		out = append(out, j)
	}
	resp := okResponse(apiResponse{"messages": out, "has_more": more})
	if more {
		next := base64.StdEncoding.EncodeToString([]byte("next_ts:" + msgs[w.limit].ts))
		resp["response_metadata"] = map[string]any{"next_cursor": next}
	}
	return resp
}

func (s *Server) hasRepliesLocked(ch *channel, ts string) bool {
	return slices.ContainsFunc(ch.msgs, func(m *message) bool { return m.threadTS == ts && !m.deleted })
}

// parseTS reads a Slack timestamp ("1700000000.000100", or whole seconds)
// as microseconds, without float rounding.
func parseTS(ts string) (int64, bool) {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || s < 0 || len(frac) > 6 {
		return 0, false
	}
	var f int64
	if frac != "" {
		if f, err = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64); err != nil || f < 0 {
			return 0, false
		}
	}
	return s*1_000_000 + f, true
}

// tsMicros is parseTS for the fake's own timestamps, which always parse.
func tsMicros(ts string) int64 {
	t, _ := parseTS(ts)
	return t
}
