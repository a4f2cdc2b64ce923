package slackfake

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Paths of an HTTP-mode app's request URLs.
const (
	CommandsPath     = "/slack/commands"
	InteractionsPath = "/slack/interactions"
)

// Driver plays Slack's side of an HTTP-mode app: it posts slash commands
// and interactions to the app's request URLs, form-encoded and signed as
// Slack signs them. It signs on its own (see [Signature]) rather than with
// the app's code, so the app's verifier is tested against an independent
// signer. A Driver is safe for concurrent use if its HTTP client is.
type Driver struct {
	// BaseURL is the app's base URL, like "http://127.0.0.1:8080".
	BaseURL string
	// Secret is the app's signing secret.
	Secret string
	// Now is the clock requests are signed with; nil means time.Now.
	Now func() time.Time
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
}

// Reply is an app's answer to one request, body read in full.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// Signature is the X-Slack-Signature Slack sends for body at timestamp ts:
// "v0=" + hex(HMAC-SHA256(secret, "v0:" + ts + ":" + body)).
func Signature(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", ts)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Command posts a slash command form (see [CommandForm]) to CommandsPath.
func (d *Driver) Command(ctx context.Context, form url.Values) (Reply, error) {
	return d.Post(ctx, CommandsPath, form.Encode())
}

// Interaction posts an interaction payload to InteractionsPath as Slack
// does: the JSON in the form field "payload". payload is marshalled as for
// [Server.SendInteraction]: a json.RawMessage or []byte is sent as is, a
// slack.InteractionCallback (or pointer to one) as slack-go marshals it.
func (d *Driver) Interaction(ctx context.Context, payload any) (Reply, error) {
	raw, err := marshalPayload(payload)
	if err != nil {
		return Reply{}, fmt.Errorf("interaction payload: %w", err)
	}
	return d.Post(ctx, InteractionsPath, InteractionBody(raw))
}

// InteractionBody is the form-encoded body Slack posts for an interaction
// whose payload JSON is raw.
func InteractionBody(raw []byte) string {
	return url.Values{"payload": {string(raw)}}.Encode()
}

// Post posts body to path, signed now.
func (d *Driver) Post(ctx context.Context, path, body string) (Reply, error) {
	req, err := d.NewRequest(ctx, path, body)
	if err != nil {
		return Reply{}, err
	}
	return d.Do(req)
}

// NewRequest returns the signed POST of body to path, for a caller that
// alters it (drops a header, changes the timestamp) before [Driver.Do].
func (d *Driver) NewRequest(ctx context.Context, path, body string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(d.BaseURL, "/")+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", Signature(d.Secret, ts, []byte(body)))
	return req, nil
}

// Do sends req and reads the whole answer.
func (d *Driver) Do(req *http.Request) (Reply, error) {
	client := d.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: body}, err
}
