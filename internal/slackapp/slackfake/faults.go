package slackfake

import (
	"math"
	"net/url"
	"time"
)

// AnyMethod, passed as the method to a fault switch or SetDelay, matches every
// method. A fault queued for a specific method is used before one queued for
// AnyMethod. Posts to response URLs go by the method name "response_url".
const AnyMethod = "*"

type faultKind int

const (
	faultError faultKind = iota
	faultRateLimit
	faultStatus
	faultDrop
)

// fault is one queued failure, used for the next remaining calls.
type fault struct {
	kind       faultKind
	remaining  int
	errCode    string
	retryAfter time.Duration
	status     int
}

// FailNext makes the next n calls of method answer HTTP 200
// {"ok":false,"error":errCode}, as Slack reports API errors. Faults for one
// method are used in the order they were queued.
func (s *Server) FailNext(method string, n int, errCode string) {
	s.addFault(method, &fault{kind: faultError, remaining: n, errCode: errCode})
}

// RateLimitNext makes the next n calls of method answer HTTP 429 with a
// Retry-After header of retryAfter in whole seconds (rounded up; 0 stays 0,
// which Slack never sends but keeps tests fast), as Slack rate-limits.
func (s *Server) RateLimitNext(method string, n int, retryAfter time.Duration) {
	s.addFault(method, &fault{kind: faultRateLimit, remaining: n, retryAfter: retryAfter})
}

// ServerErrorNext makes the next n calls of method answer the HTTP status
// (e.g. 500, 503) with an HTML body, as Slack's edge does.
func (s *Server) ServerErrorNext(method string, n, status int) {
	s.addFault(method, &fault{kind: faultStatus, remaining: n, status: status})
}

// DropNext makes the next n calls of method close the connection without
// an answer and without acting, as a network failure between the bot and
// Slack looks to the caller.
func (s *Server) DropNext(method string, n int) {
	s.addFault(method, &fault{kind: faultDrop, remaining: n})
}

// OnCall registers fn to run when a Web API call arrives, with the method
// and its arguments, before delays, faults and acting. It runs on the
// handler goroutine without the fake's lock held, so it may call the fake:
// a crash test kills the bot there and queues DropNext(method, 1) so that
// very call is not carried out either. nil removes it.
func (s *Server) OnCall(fn func(method string, params url.Values)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCall = fn
}

// SetDelay holds every later call of method for d before answering (0 removes
// the delay). A caller that gives up early sees its own context error.
func (s *Server) SetDelay(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.delays, method)
		return
	}
	s.delays[method] = d
}

// SetRateLimit enforces a token-bucket rate limit on method: burst calls at once,
// then one per interval, answered like RateLimitNext when exceeded. For
// chat.postMessage the bucket is per channel, as Slack limits it (about one
// message per second per channel); for other methods it is per method.
// interval <= 0 removes the limit.
func (s *Server) SetRateLimit(method string, interval time.Duration, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if interval <= 0 {
		delete(s.limits, method)
		return
	}
	s.limits[method] = rateLimit{interval: interval, burst: max(burst, 1)}
	for k, b := range s.buckets {
		if b.method == method {
			delete(s.buckets, k)
		}
	}
}

// delayLocked returns the delay set for method, or for AnyMethod.
func (s *Server) delayLocked(method string) time.Duration {
	if d, ok := s.delays[method]; ok {
		return d
	}
	return s.delays[AnyMethod]
}

func (s *Server) addFault(method string, f *fault) {
	if f.remaining <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[method] = append(s.faults[method], f)
}

// takeFaultLocked returns a copy of the fault to apply to this call of method,
// if any, and uses it up. The caller holds s.mu.
func (s *Server) takeFaultLocked(method string) (fault, bool) {
	for _, key := range []string{method, AnyMethod} {
		q := s.faults[key]
		if len(q) == 0 {
			continue
		}
		f := q[0]
		f.remaining--
		if f.remaining == 0 {
			s.faults[key] = q[1:]
		}
		return *f, true
	}
	return fault{}, false
}

type rateLimit struct {
	interval time.Duration
	burst    int
}

type bucket struct {
	method string
	tokens float64
	last   time.Time
}

// allowLocked spends a token from the bucket for method (and channel, for
// chat.postMessage) and reports how long to wait when none is left.
func (s *Server) allowLocked(method, channel string) (time.Duration, bool) {
	lim, ok := s.limits[method]
	if !ok {
		return 0, true
	}
	key := method
	if method == "chat.postMessage" {
		key += "\x00" + channel
	}
	now := s.now()
	b, ok := s.buckets[key]
	if !ok {
		b = &bucket{method: method, tokens: float64(lim.burst), last: now}
		s.buckets[key] = b
	}
	b.tokens = math.Min(float64(lim.burst), b.tokens+float64(now.Sub(b.last))/float64(lim.interval))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) * float64(lim.interval)), false
}

// retryAfterSeconds renders d as Slack's integer Retry-After.
func retryAfterSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}
