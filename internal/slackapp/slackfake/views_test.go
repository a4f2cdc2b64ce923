package slackfake_test

import (
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/rolegate/rolegate/internal/slackapp/slackfake"
)

func modal(title string, blocks int) slack.ModalViewRequest {
	v := slack.ModalViewRequest{Type: slack.VTModal, Title: plain(title), Submit: plain("Send"), CallbackID: "cb", PrivateMetadata: "meta"}
	for range blocks {
		v.Blocks.BlockSet = append(v.Blocks.BlockSet, slack.NewSectionBlock(mrkdwn("x"), nil, nil))
	}
	return v
}

func TestViewsOpenExchangesATriggerOnce(t *testing.T) {
	t.Parallel()
	fake, api := newFake(t)
	resp, err := api.OpenViewContext(t.Context(), "1.2.trigger", modal("Ask for a role", 2))
	if err != nil {
		t.Fatal(err)
	}
	views := fake.Views()
	if len(views) != 1 || views[0].ID != resp.ID || views[0].TriggerID != "1.2.trigger" || views[0].PrivateMetadata != "meta" || len(views[0].Blocks) != 2 {
		t.Fatalf("opened %+v, answered %+v", views, resp.View)
	}
	_, err = api.OpenViewContext(t.Context(), "1.2.trigger", modal("Ask for a role", 2))
	wantSlackError(t, err, "exchanged_trigger_id")
	if n := len(fake.Views()); n != 1 {
		t.Fatalf("a reused trigger opened a view: %d views", n)
	}
}

func TestViewsOpenEnforcesModalLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		view slack.ModalViewRequest
	}{
		{"title over 24 characters", modal(strings.Repeat("t", 25), 1)},
		{"101 blocks", modal("ok", 101)},
		{"private_metadata over 3000", func() slack.ModalViewRequest {
			v := modal("ok", 1)
			v.PrivateMetadata = strings.Repeat("m", 3001)
			return v
		}()},
		{"input without submit", func() slack.ModalViewRequest {
			v := modal("ok", 0)
			v.Submit = nil
			v.Blocks.BlockSet = append(v.Blocks.BlockSet, slack.NewInputBlock("b", plain("Reason"), nil, slack.NewPlainTextInputBlockElement(nil, "a")))
			return v
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, api := newFake(t)
			_, err := api.OpenViewContext(t.Context(), "1.2.trigger", tt.view)
			wantSlackError(t, err, "invalid_arguments")
			if n := len(fake.Views()); n != 0 {
				t.Fatalf("an invalid view was opened")
			}
			// A refused view does not use the trigger up.
			if _, err := api.OpenViewContext(t.Context(), "1.2.trigger", modal("ok", 100)); err != nil {
				t.Fatalf("a valid view after a refused one: %v", err)
			}
		})
	}
}

func TestGetPermalink(t *testing.T) {
	t.Parallel()
	_, api := newFake(t)
	_, ts, err := api.PostMessageContext(t.Context(), slackfake.DefaultChannel, slack.MsgOptionText("hi", false))
	if err != nil {
		t.Fatal(err)
	}
	link, err := api.GetPermalinkContext(t.Context(), &slack.PermalinkParameters{Channel: slackfake.DefaultChannel, Ts: ts})
	if err != nil || link != slackfake.Permalink(slackfake.DefaultChannel, ts) || !strings.Contains(link, "/archives/"+slackfake.DefaultChannel+"/p") {
		t.Fatalf("permalink %q, %v", link, err)
	}
	_, err = api.GetPermalinkContext(t.Context(), &slack.PermalinkParameters{Channel: slackfake.DefaultChannel, Ts: "1.000001"})
	wantSlackError(t, err, "message_not_found")
}
