package slackapp

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// Slack's published example from "Verifying requests from Slack".
const (
	exampleSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	exampleTS     = "1531420618"
	exampleSig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	exampleBody   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)

func headers(sig, ts string) http.Header {
	h := http.Header{}
	if sig != "" {
		h.Set("X-Slack-Signature", sig)
	}
	if ts != "" {
		h.Set("X-Slack-Request-Timestamp", ts)
	}
	return h
}

func TestVerifySlackExample(t *testing.T) {
	at := time.Unix(1531420618, 0)
	if got := Sign(exampleSecret, exampleTS, []byte(exampleBody)); got != exampleSig {
		t.Fatalf("Sign = %s, want Slack's %s", got, exampleSig)
	}
	tests := []struct {
		name   string
		secret string
		h      http.Header
		body   string
		now    time.Time
		want   error
	}{
		{"slack's example", exampleSecret, headers(exampleSig, exampleTS), exampleBody, at, nil},
		{"4m59s later", exampleSecret, headers(exampleSig, exampleTS), exampleBody, at.Add(299 * time.Second), nil},
		{"clock behind", exampleSecret, headers(exampleSig, exampleTS), exampleBody, at.Add(-299 * time.Second), nil},
		{"5m01s later", exampleSecret, headers(exampleSig, exampleTS), exampleBody, at.Add(301 * time.Second), ErrStale},
		{"from the future", exampleSecret, headers(exampleSig, exampleTS), exampleBody, at.Add(-301 * time.Second), ErrStale},
		{"wrong secret", "not-the-secret", headers(exampleSig, exampleTS), exampleBody, at, ErrBadSignature},
		{"body changed", exampleSecret, headers(exampleSig, exampleTS), exampleBody + "&user_id=U0FORGED", at, ErrBadSignature},
		{"forged user_id", exampleSecret, headers(exampleSig, exampleTS), replaceOnce(exampleBody, "U2CERLKJA", "U0BOSS000"), at, ErrBadSignature},
		{"no signature", exampleSecret, headers("", exampleTS), exampleBody, at, ErrNoSignature},
		{"no timestamp", exampleSecret, headers(exampleSig, ""), exampleBody, at, ErrNoSignature},
		{"timestamp not a number", exampleSecret, headers(exampleSig, "soon"), exampleBody, at, ErrBadTimestamp},
		{"other version", exampleSecret, headers("v1="+exampleSig[3:], exampleTS), exampleBody, at, ErrBadSignature},
		{"truncated signature", exampleSecret, headers(exampleSig[:20], exampleTS), exampleBody, at, ErrBadSignature},
		{"uppercase hex", exampleSecret, headers("v0="+strings.ToUpper(exampleSig[3:]), exampleTS), exampleBody, at, ErrBadSignature},
		{"no secret configured", "", headers(Sign("", exampleTS, []byte(exampleBody)), exampleTS), exampleBody, at, ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.h, []byte(tt.body), tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

func FuzzVerify(f *testing.F) {
	f.Add(exampleBody, exampleSig, exampleTS, int64(0))
	f.Add("", "v0=", "0", int64(10))
	f.Add("payload=%7B%7D", "v0=zz", "-1", int64(-400))
	f.Fuzz(func(t *testing.T, body, sig, ts string, skew int64) {
		now := time.Unix(1531420618+skew, 0)
		err := Verify(exampleSecret, headers(sig, ts), []byte(body), now)
		if err == nil {
			// Accepting means the signature is exactly ours over this body.
			if sig != Sign(exampleSecret, ts, []byte(body)) {
				t.Fatalf("accepted a signature that is not the HMAC of the body")
			}
			sec, perr := strconv.ParseInt(ts, 10, 64)
			if perr != nil || sec-now.Unix() > 300 || now.Unix()-sec > 300 {
				t.Fatalf("accepted timestamp %q at %d", ts, now.Unix())
			}
		}
	})
}

// slackGoAccepts is slack-go's verdict on a request received now: the check
// Verify repeats with an injectable clock.
func slackGoAccepts(secret string, h http.Header, body []byte) bool {
	v, err := slack.NewSecretsVerifier(h, secret)
	if err != nil {
		return false
	}
	v.Write(body)
	return v.Ensure() == nil
}

// TestVerifyAgreesWithSlackGo pins Verify to slack-go's verifier on
// requests made now (the only time slack-go can check), apart from the one
// deliberate difference: Verify refuses uppercase hex.
func TestVerifyAgreesWithSlackGo(t *testing.T) {
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	old := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
	ahead := strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10)
	body := exampleBody
	tests := []struct {
		name         string
		secret       string
		h            http.Header
		body         string
		wantAccepted bool
	}{
		{"signed now", exampleSecret, headers(Sign(exampleSecret, ts, []byte(body)), ts), body, true},
		{"empty body", exampleSecret, headers(Sign(exampleSecret, ts, nil), ts), "", true},
		{"stale", exampleSecret, headers(Sign(exampleSecret, old, []byte(body)), old), body, false},
		{"ahead", exampleSecret, headers(Sign(exampleSecret, ahead, []byte(body)), ahead), body, false},
		{"wrong secret", exampleSecret, headers(Sign("other", ts, []byte(body)), ts), body, false},
		{"body changed", exampleSecret, headers(Sign(exampleSecret, ts, []byte(body)), ts), body + "&x=1", false},
		{"timestamp changed", exampleSecret, headers(Sign(exampleSecret, ts, []byte(body)), strconv.FormatInt(now.Unix()-1, 10)), body, false},
		{"no signature", exampleSecret, headers("", ts), body, false},
		{"no timestamp", exampleSecret, headers(Sign(exampleSecret, ts, []byte(body)), ""), body, false},
		{"v1", exampleSecret, headers("v1="+Sign(exampleSecret, ts, []byte(body))[3:], ts), body, false},
		{"not hex", exampleSecret, headers("v0=zz", ts), body, false},
		{"no secret", "", headers(Sign("", ts, []byte(body)), ts), body, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ours := Verify(tt.secret, tt.h, []byte(tt.body), time.Now()) == nil
			theirs := slackGoAccepts(tt.secret, tt.h, []byte(tt.body))
			if ours != tt.wantAccepted || theirs != tt.wantAccepted {
				t.Fatalf("accepted: Verify %v, slack-go %v; want both %v", ours, theirs, tt.wantAccepted)
			}
		})
	}
	// The deliberate difference.
	upper := headers("v0="+strings.ToUpper(Sign(exampleSecret, ts, []byte(body))[3:]), ts)
	if Verify(exampleSecret, upper, []byte(body), time.Now()) == nil || !slackGoAccepts(exampleSecret, upper, []byte(body)) {
		t.Fatal("uppercase hex: want Verify to refuse what slack-go accepts")
	}
}
