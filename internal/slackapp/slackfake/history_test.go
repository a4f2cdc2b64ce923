package slackfake_test

import (
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

func requestMetadata(id string) slack.SlackMetadata {
	return slack.SlackMetadata{EventType: "rolegate_request", EventPayload: map[string]any{"request_id": id}}
}

// TestConversationsHistory: history lists the channel's top-level messages
// (and broadcast replies) newest first, within oldest, a page at a time,
// with their metadata only when asked for, as Slack does.
func TestConversationsHistory(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake.SetClock(func() time.Time { return now })
	_, before, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("before", false))
	if err != nil {
		t.Fatal(err)
	}
	if before != "1772366400.000000" {
		t.Errorf("ts = %q, want the clock's time in microseconds", before)
	}
	now = now.Add(time.Minute)
	var posted []string
	for _, id := range []string{"1", "2", "3"} {
		_, ts, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("request "+id, false), slack.MsgOptionMetadata(requestMetadata(id)))
		if err != nil {
			t.Fatal(err)
		}
		posted = append(posted, ts)
	}
	if posted[1] <= posted[0] {
		t.Errorf("two posts at the same instant got ts %q then %q, want increasing", posted[0], posted[1])
	}
	api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("in the thread", false), slack.MsgOptionTS(posted[0]))
	_, broadcast, _ := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("result", false), slack.MsgOptionTS(posted[0]), slack.MsgOptionBroadcast())

	var got []slack.Message
	params := &slack.GetConversationHistoryParameters{ChannelID: slackfake.DefaultChannel, Oldest: "1772366430", Limit: 2, IncludeAllMetadata: true}
	for page := 0; ; page++ {
		resp, err := api.GetConversationHistory(params)
		if err != nil {
			t.Fatalf("history page %d: %v", page, err)
		}
		got = append(got, resp.Messages...)
		if !resp.HasMore {
			break
		}
		if len(resp.Messages) != 2 || resp.ResponseMetaData.NextCursor == "" {
			t.Fatalf("page %d: %d messages, cursor %q", page, len(resp.Messages), resp.ResponseMetaData.NextCursor)
		}
		params.Cursor = resp.ResponseMetaData.NextCursor
	}
	want := []string{broadcast, posted[2], posted[1], posted[0]}
	if len(got) != len(want) {
		t.Fatalf("history = %d messages, want %d (top level and broadcast, after oldest): %+v", len(got), len(want), got)
	}
	for i, m := range got {
		if m.Timestamp != want[i] {
			t.Errorf("message %d has ts %q, want %q", i, m.Timestamp, want[i])
		}
		if m.BotID != slackfake.BotID {
			t.Errorf("message %d bot_id %q", i, m.BotID)
		}
	}
	if md := got[3].Metadata; md.EventType != "rolegate_request" || md.EventPayload["request_id"] != "1" {
		t.Errorf("metadata = %+v, want request 1's", md)
	}
	if got[3].ThreadTimestamp != posted[0] || got[0].SubType != "thread_broadcast" {
		t.Errorf("parent thread_ts %q, broadcast subtype %q", got[3].ThreadTimestamp, got[0].SubType)
	}

	// chat.update without metadata keeps it; history without
	// include_all_metadata leaves it out.
	if _, _, _, err := api.UpdateMessage(slackfake.DefaultChannel, posted[1], slack.MsgOptionText("request 2, approved", false)); err != nil {
		t.Fatal(err)
	}
	if m, _ := fake.Message(slackfake.DefaultChannel, posted[1]); string(m.Metadata) != `{"event_payload":{"request_id":"2"},"event_type":"rolegate_request"}` {
		t.Errorf("after chat.update the metadata is %s", m.Metadata)
	}
	resp, err := api.GetConversationHistory(&slack.GetConversationHistoryParameters{ChannelID: slackfake.DefaultChannel})
	if err != nil || len(resp.Messages) != 5 || resp.Messages[0].Metadata.EventType != "" {
		t.Errorf("history without include_all_metadata = %+v, %v", resp, err)
	}
	if n := fake.Calls("conversations.history"); n != 3 {
		t.Errorf("Calls(conversations.history) = %d, want 3", n)
	}

	fake.AddChannel("C0OUT", false)
	_, err = api.GetConversationHistory(&slack.GetConversationHistoryParameters{ChannelID: "C0OUT"})
	wantSlackError(t, err, "not_in_channel")
	_, err = api.GetConversationHistory(&slack.GetConversationHistoryParameters{ChannelID: slackfake.DefaultChannel, Cursor: "bogus"})
	wantSlackError(t, err, "invalid_cursor")
	_, _, err = api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("x", false), slack.MsgOptionMetadata(slack.SlackMetadata{EventType: ""}))
	wantSlackError(t, err, "invalid_metadata_format")
}

// TestConversationsReplies: replies lists a thread, parent first, oldest
// first, a page at a time.
func TestConversationsReplies(t *testing.T) {
	t.Parallel()
	_, api := newFake(t)
	_, parent, _ := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("parent", false))
	api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("elsewhere", false))
	var replies []string
	for _, text := range []string{"one", "two", "three"} {
		_, ts, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText(text, false), slack.MsgOptionTS(parent),
			slack.MsgOptionMetadata(slack.SlackMetadata{EventType: "rolegate_result", EventPayload: map[string]any{"request_id": text}}))
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, ts)
	}
	var got []slack.Message
	params := &slack.GetConversationRepliesParameters{ChannelID: slackfake.DefaultChannel, Timestamp: replies[1], Limit: 3, IncludeAllMetadata: true}
	for {
		msgs, more, cursor, err := api.GetConversationReplies(params)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
		if !more {
			break
		}
		params.Cursor = cursor
	}
	want := append([]string{parent}, replies...)
	if len(got) != len(want) {
		t.Fatalf("replies = %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if m.Timestamp != want[i] {
			t.Errorf("message %d has ts %q, want %q", i, m.Timestamp, want[i])
		}
	}
	if got[2].Metadata.EventPayload["request_id"] != "two" {
		t.Errorf("reply metadata = %+v", got[2].Metadata)
	}
	_, _, _, err := api.GetConversationReplies(&slack.GetConversationRepliesParameters{ChannelID: slackfake.DefaultChannel, Timestamp: "1.000000"})
	wantSlackError(t, err, "thread_not_found")
}
