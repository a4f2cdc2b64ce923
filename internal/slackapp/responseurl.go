package slackapp

import (
	"net/url"
	"strings"
)

// ResponseURLs decides which response_url values rolegate will post to.
// Slack's are https://hooks.slack.com/…; anything else in a payload was
// forged or mangled, and posting there would send a private answer (and
// with it a request's details) wherever the sender chose.
type ResponseURLs struct {
	// APIURL is the configured Slack Web API base (SLACK_API_URL). Its
	// scheme and host are accepted too, so a fake Slack in tests (or
	// GovSlack's own host) can receive private answers.
	APIURL string
}

// Allowed reports whether raw may receive a post.
func (p ResponseURLs) Allowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" && strings.EqualFold(u.Host, "hooks.slack.com") {
		return true
	}
	api, err := url.Parse(p.APIURL)
	return err == nil && api.Host != "" && u.Scheme == api.Scheme && strings.EqualFold(u.Host, api.Host)
}

// filter returns raw when it is allowed, else "".
func (p ResponseURLs) filter(raw string) string {
	if raw == "" || !p.Allowed(raw) {
		return ""
	}
	return raw
}
