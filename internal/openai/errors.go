package openai

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	sdk "github.com/openai/openai-go/v3"

	"github.com/rolegate/rolegate/internal/approvals"
)

// classify turns the error of one SDK call into a GrantError. resp is the
// response the SDK saw, if any (it is set even when the call failed). post
// marks the assignment POST, the only call whose failure can leave the
// assignment made without our knowing (Ambiguous).
func (c *Client) classify(err error, resp *http.Response, post bool) *approvals.GrantError {
	var apiErr *sdk.Error
	if errors.As(err, &apiErr) {
		return c.apiFailure(apiErr.StatusCode, apiErr.Response, approvals.Failure{
			Message: apiErr.Message,
			Type:    apiErr.Type,
			Code:    apiErr.Code,
			Param:   apiErr.Param,
		}, post)
	}
	if resp != nil && resp.StatusCode >= 400 {
		// The SDK builds *openai.Error for any status >= 400; keep the
		// status even if a future version does not.
		return c.apiFailure(resp.StatusCode, resp, approvals.Failure{}, post)
	}
	return c.transportFailure(err, resp, post)
}

// apiFailure classifies an HTTP error status. 408, 409, 429 and 5xx are
// worth retrying; only a 5xx answer to the POST leaves it unknown whether
// the assignment was made.
func (c *Client) apiFailure(status int, resp *http.Response, f approvals.Failure, post bool) *approvals.GrantError {
	f.Status = status
	f.Message = c.redact(f.Message)
	if f.Message == "" {
		// Proxies and load balancers answer with HTML, not the API's body.
		f.Message = http.StatusText(status)
	}
	ge := &approvals.GrantError{Failure: f}
	if resp != nil {
		ge.Failure.RequestID = resp.Header.Get("x-request-id")
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			ge.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
		}
	}
	switch {
	case status >= 500:
		ge.Temporary = true
		ge.Ambiguous = post
	case status == http.StatusRequestTimeout, status == http.StatusConflict, status == http.StatusTooManyRequests:
		ge.Temporary = true
	}
	return ge
}

// transportFailure classifies an error that came without an HTTP error
// status: the connection failed, nothing came back in time, or the body
// could not be read. Messages name the host, never the URL's query or the
// key.
func (c *Client) transportFailure(err error, resp *http.Response, post bool) *approvals.GrantError {
	ge := &approvals.GrantError{Temporary: true}
	// Whether the request may have been acted on: true unless we know it
	// never left (the connection was never made).
	reached := true
	var (
		dnsErr  *net.DNSError
		opErr   *net.OpError
		certErr *tls.CertificateVerificationError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// The SDK returns the per-call context's error when Timeout fires.
		ge.Failure.Message = fmt.Sprintf("no response from OpenAI at %s within %s", c.host, c.timeout)
	case resp != nil:
		// A 2xx whose body we could not read or decode: the call itself
		// went through.
		ge.Failure.Status = resp.StatusCode
		ge.Failure.RequestID = resp.Header.Get("x-request-id")
		ge.Failure.Message = fmt.Sprintf("unreadable response from OpenAI at %s: %s", c.host, c.redact(err.Error()))
	case errors.Is(err, syscall.ECONNREFUSED):
		ge.Failure.Message = fmt.Sprintf("cannot reach OpenAI at %s: connection refused", c.host)
		reached = false
	case errors.As(err, &dnsErr):
		ge.Failure.Message = fmt.Sprintf("cannot reach OpenAI at %s: cannot resolve host name (%s)", c.host, dnsErr.Err)
		reached = false
	case errors.As(err, &certErr):
		// Retrying will not make an untrusted certificate trusted.
		ge.Temporary = false
		ge.Failure.Message = fmt.Sprintf("cannot reach OpenAI at %s: TLS certificate not trusted", c.host)
		reached = false
	case errors.As(err, &opErr) && opErr.Op == "dial":
		ge.Failure.Message = fmt.Sprintf("cannot reach OpenAI at %s: %s", c.host, c.redact(opErr.Err.Error()))
		reached = false
	case errors.As(err, &netErr) && netErr.Timeout():
		ge.Failure.Message = fmt.Sprintf("no response from OpenAI at %s in time", c.host)
	case errors.Is(err, syscall.ECONNRESET):
		ge.Failure.Message = fmt.Sprintf("connection to OpenAI at %s was reset before a response arrived", c.host)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		ge.Failure.Message = fmt.Sprintf("connection to OpenAI at %s closed before a response arrived", c.host)
	default:
		ge.Failure.Message = fmt.Sprintf("request to OpenAI at %s failed: %s", c.host, c.redact(err.Error()))
	}
	ge.Ambiguous = post && reached
	return ge
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP-date.
// Zero means none, or a date already past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		const maxSeconds = int64(24 * time.Hour / time.Second) // no overflow, no month-long pause
		return time.Duration(max(0, min(n, maxSeconds))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}

// redact removes the admin key from text we did not write (API messages,
// transport errors), so no echo of it reaches logs or the channel. Short
// keys are left alone: replacing them would mangle ordinary words.
func (c *Client) redact(s string) string {
	if len(c.key) < 8 {
		return s
	}
	return strings.ReplaceAll(s, c.key, "[redacted]")
}

// permanent is a GrantError for a problem no retry fixes, found before any
// call.
func permanent(msg string) *approvals.GrantError {
	return &approvals.GrantError{Failure: approvals.Failure{Message: msg}}
}

// temporary is a GrantError for an odd answer worth trying again.
func temporary(msg string) *approvals.GrantError {
	return &approvals.GrantError{Failure: approvals.Failure{Message: msg}, Temporary: true}
}
