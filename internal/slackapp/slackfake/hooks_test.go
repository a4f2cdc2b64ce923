package slackfake_test

import (
	"net/url"
	"testing"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

func TestDropNextAndOnCall(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	var calls []string
	fake.OnCall(func(method string, p url.Values) {
		calls = append(calls, method+" "+p.Get("channel"))
	})
	fake.DropNext("chat.postMessage", 1)
	if _, _, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("lost", false)); err == nil {
		t.Fatal("a dropped call returned no error")
	}
	if _, _, err := api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("kept", false)); err != nil {
		t.Fatalf("the call after the drop: %v", err)
	}
	msgs := fake.Messages(slackfake.DefaultChannel)
	if len(msgs) != 1 || msgs[0].Text != "kept" {
		t.Fatalf("messages %+v, want only the one after the drop", msgs)
	}
	fake.OnCall(nil)
	api.PostMessage(slackfake.DefaultChannel, slack.MsgOptionText("unseen", false))
	if want := "chat.postMessage " + slackfake.DefaultChannel; len(calls) != 2 || calls[0] != want || calls[1] != want {
		t.Fatalf("OnCall saw %q, want both calls before removal", calls)
	}
}
