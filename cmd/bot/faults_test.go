package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// OpenAI faults, end to end: the real wiring (worker, openai adapter, notifier)
// against the fake Admin API's fault switches. Each test checks what the
// fake saw (requests, their order and times, assignments made) and what
// people see in the channel, never how long the test took.

// approve creates a request for text and has ana approve it.
func (b *bot) approve(text string) uint64 {
	b.t.Helper()
	id := b.request(requester, text)
	b.approvalMessage(id)
	if status := b.click(approverAna, slackapp.ActionApprove, id); status != http.StatusOK {
		b.t.Fatalf("approve click answered %d", status)
	}
	return id
}

// openaiCalls returns the requests the fake OpenAI received for op.
func openaiCalls(oa *openaitest.Server, op openaitest.Op) []openaitest.Recorded {
	var out []openaitest.Recorded
	for _, r := range oa.Requests() {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

// waitSettled waits until request id is final and the outbox is empty, so
// every message about it has been delivered (or dropped for good).
func (b *bot) waitSettled(id uint64) approvals.Request {
	b.t.Helper()
	var r approvals.Request
	b.waitFor(fmt.Sprintf("request %d to settle", id), func() bool {
		s, cleanup, err := approvals.OpenSnapshot(b.env["ROLEGATE_DB"])
		if err != nil {
			return false
		}
		defer cleanup()
		r, err = s.Get(context.Background(), id)
		if err != nil || !(r.State.Final() || r.State == approvals.StateApplied) {
			return false
		}
		n, err := pendingJobs(s, context.Background())
		return err == nil && n == 0
	})
	return r
}

// wantFailurePosted checks that the failure of request id is in the channel
// with everything OpenAI said: message, type, code, status, x-request-id.
func (b *bot) wantFailurePosted(id uint64, f approvals.Failure) {
	b.t.Helper()
	text := b.resultMessage(id).VisibleText()
	for _, want := range []string{fmt.Sprintf("Request #%d failed", id), slackapp.Escape(f.Message), f.Type, f.Code, fmt.Sprint(f.Status), f.RequestID} {
		if want != "" && !strings.Contains(text, want) {
			b.t.Errorf("failure message lacks %q:\n%s", want, text)
		}
	}
	b.waitFor("the approval message to show the failure", func() bool {
		m := b.approvalMessage(id)
		return !hasButtons(m) && strings.Contains(m.VisibleText(), "the assignment failed")
	})
}

func TestOpenAIRateLimitHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	const retryAfter = time.Second
	const slow = 300 * time.Millisecond // the 429 answer itself takes this long
	tests := []struct {
		name      string
		op        openaitest.Op
		wantPOSTs int
	}{
		{"on the POST", openaitest.OpAssign, 2},
		{"on the reconciling list", openaitest.OpListGroupRoles, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBot(t, nil)
			b.openai.RateLimitNextOp(tt.op, 1, retryAfter)
			b.openai.SetDelayOp(tt.op, slow)
			id := b.approve(defaultTarget + " rate limited")
			r := b.waitSettled(id)
			if r.State != approvals.StateApplied {
				t.Fatalf("state %s, want applied after the rate limit passed", r.State)
			}
			calls := openaiCalls(b.openai, tt.op)
			if len(calls) < 2 || calls[0].Status != http.StatusTooManyRequests {
				t.Fatalf("%s calls %+v, want a 429 and then a retry", tt.op, calls)
			}
			// Retry-After counts from the answer, which left the fake `slow`
			// after the request arrived; the next call may not come sooner.
			// Both times are the fake's, recorded on arrival.
			// (20ms of slack for the wall clock the outbox stores.)
			floor := slow + retryAfter - 20*time.Millisecond
			for _, c := range b.openai.Requests() {
				if gap := c.At.Sub(calls[0].At); gap > 0 && gap < floor {
					t.Errorf("%s %s %s after the 429 arrived: inside Retry-After (%s after the answer, so not before %s)", c.Method, c.Path, gap, retryAfter, floor)
				}
			}
			if gap := calls[1].At.Sub(calls[0].At); gap < floor {
				t.Errorf("retried %s after the 429 arrived, want at least %s", gap, floor)
			}
			if n := b.openai.AssignPOSTs(); n != tt.wantPOSTs {
				t.Errorf("%d POSTs, want %d", n, tt.wantPOSTs)
			}
		})
	}
}

func TestOpenAIServerErrorsRetriedThenFailed(t *testing.T) {
	t.Parallel()
	b := newBot(t, map[string]string{"ROLEGATE_OPENAI_MAX_ATTEMPTS": "3"})
	b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: http.StatusInternalServerError})
	b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: http.StatusBadGateway})
	b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: http.StatusServiceUnavailable,
		Message: "The engine is currently overloaded <!channel>", Type: "server_error", Code: "engine_overloaded"})
	b.openai.FailNextOp(openaitest.OpAssign, 10, http.StatusInternalServerError) // a 4th attempt would see this

	id := b.approve(defaultTarget + " five hundreds")
	r := b.waitSettled(id)
	if r.State != approvals.StateFailed || r.Failure == nil {
		t.Fatalf("state %s, want failed after ROLEGATE_OPENAI_MAX_ATTEMPTS", r.State)
	}
	posts := openaiCalls(b.openai, openaitest.OpAssign)
	if len(posts) != 3 {
		t.Fatalf("%d POSTs, want exactly ROLEGATE_OPENAI_MAX_ATTEMPTS=3", len(posts))
	}
	for i, want := range []int{500, 502, 503} {
		if posts[i].Status != want {
			t.Errorf("POST %d answered %d, want %d", i+1, posts[i].Status, want)
		}
	}
	// A 5xx may come after OpenAI acted, so every retry checks first.
	if lists := openaiCalls(b.openai, openaitest.OpListGroupRoles); len(lists) < 3 {
		t.Errorf("%d lists before 3 POSTs: a retry after a 5xx did not check first", len(lists))
	}
	f := *r.Failure
	if f.Status != 503 || f.Type != "server_error" || f.Code != "engine_overloaded" || f.RequestID != posts[2].RequestID {
		t.Errorf("failure %+v, want the last answer's status, type, code and x-request-id %s", f, posts[2].RequestID)
	}
	if !strings.Contains(f.Message, "gave up after 3 attempts") || !strings.Contains(f.Message, "The engine is currently overloaded") {
		t.Errorf("failure message %q", f.Message)
	}
	b.wantFailurePosted(id, approvals.Failure{Message: "The engine is currently overloaded <!channel>", Type: "server_error", Code: "engine_overloaded", Status: 503, RequestID: posts[2].RequestID})
	if strings.Contains(string(b.resultMessage(id).BlocksJSON), "<!channel>") {
		t.Error("the API's error text reached the channel unescaped")
	}
	if got := b.openai.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 0 {
		t.Errorf("assignments %v after only failures", got)
	}
}

func TestOpenAIDeadlineEndsRetries(t *testing.T) {
	t.Parallel()
	b := newBot(t, map[string]string{"ROLEGATE_OPENAI_MAX_ATTEMPTS": "100", "ROLEGATE_OPENAI_DEADLINE": "2s"})
	b.openai.FailNextOp(openaitest.OpAssign, 1000, http.StatusServiceUnavailable)
	id := b.approve(defaultTarget + " openai down for longer than the deadline")
	r := b.waitSettled(id)
	if r.State != approvals.StateFailed || r.Failure == nil {
		t.Fatalf("state %s, want failed once ROLEGATE_OPENAI_DEADLINE passed", r.State)
	}
	posts := openaiCalls(b.openai, openaitest.OpAssign)
	if len(posts) < 2 || len(posts) >= 100 {
		t.Fatalf("%d POSTs, want a few retries and then giving up on the deadline", len(posts))
	}
	// The retries use the deadline, and no attempt starts after it.
	first, last := posts[0].At, posts[len(posts)-1].At
	// The deadline bounds when an attempt starts (it lists before it
	// POSTs), so the last POST may reach the fake a little after the
	// first POST plus the deadline, never much later.
	if last.Sub(first) > 2*time.Second+250*time.Millisecond {
		t.Errorf("an attempt started %s after the first POST, past the 2s deadline", last.Sub(first))
	}
	if last.Sub(first) < time.Second {
		t.Errorf("gave up %s after the first POST, long before the 2s deadline", last.Sub(first))
	}
	if !strings.Contains(r.Failure.Message, fmt.Sprintf("gave up after %d attempts", len(posts))) {
		t.Errorf("failure %q", r.Failure.Message)
	}
	b.wantFailurePosted(id, approvals.Failure{Status: 503, RequestID: posts[len(posts)-1].RequestID})
}

func TestOpenAITimeoutsRetried(t *testing.T) {
	t.Parallel()
	t.Run("then applied", func(t *testing.T) {
		t.Parallel()
		b := newBot(t, map[string]string{"ROLEGATE_OPENAI_TIMEOUT": "300ms"})
		b.openai.SetDelayOp(openaitest.OpAssign, time.Minute)
		var posts atomic.Int32
		b.openai.OnAssign(func(approvals.Target, time.Time) {
			if posts.Add(1) == 2 {
				b.openai.SetDelayOp(openaitest.OpAssign, 0) // OpenAI answers again
			}
		})
		id := b.approve(defaultTarget + " slow openai")
		r := b.waitSettled(id)
		if r.State != approvals.StateApplied || r.Assignment == nil {
			t.Fatalf("state %s, want applied", r.State)
		}
		calls := openaiCalls(b.openai, openaitest.OpAssign)
		if len(calls) != 2 || calls[0].Status != 0 || calls[1].Status != http.StatusOK {
			t.Fatalf("POSTs %+v, want one unanswered (timed out) and one 200", calls)
		}
		if !strings.Contains(b.logs.String(), "within 300ms") {
			t.Error("the timeout was not logged")
		}
		if got := b.openai.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 1 {
			t.Errorf("assignments %v", got)
		}
	})
	t.Run("until the limit, then failed", func(t *testing.T) {
		t.Parallel()
		b := newBot(t, map[string]string{"ROLEGATE_OPENAI_TIMEOUT": "200ms", "ROLEGATE_OPENAI_MAX_ATTEMPTS": "2"})
		b.openai.SetDelayOp(openaitest.OpAssign, time.Minute)
		id := b.approve(defaultTarget + " openai never answers")
		r := b.waitSettled(id)
		if r.State != approvals.StateFailed || r.Failure == nil {
			t.Fatalf("state %s, want failed", r.State)
		}
		if n := b.openai.AssignPOSTs(); n != 2 {
			t.Errorf("%d POSTs, want ROLEGATE_OPENAI_MAX_ATTEMPTS=2", n)
		}
		for _, want := range []string{"gave up after 2 attempts", "no response from OpenAI", "within 200ms", "may have reached OpenAI"} {
			if !strings.Contains(r.Failure.Message, want) {
				t.Errorf("failure %q lacks %q", r.Failure.Message, want)
			}
		}
		b.wantFailurePosted(id, approvals.Failure{Message: "no response from OpenAI"})
	})
}

func TestOpenAIClientErrorIsPermanentAndVerbatim(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*openaitest.Server)
		want  approvals.Failure
	}{
		{"400 group not in project", func(oa *openaitest.Server) {
			oa.RefuseAssign("Group 'group_01' must be added to project 'proj_abc' before it can be given a role.", "invalid_request_error", "group_not_in_project", 400)
		}, approvals.Failure{Status: 400, Message: "Group 'group_01' must be added to project 'proj_abc' before it can be given a role.", Type: "invalid_request_error", Code: "group_not_in_project"}},
		{"403", func(oa *openaitest.Server) {
			oa.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 403})
		}, approvals.Failure{Status: 403, Message: "You have insufficient permissions for this operation.", Type: "invalid_request_error", Code: "insufficient_permissions"}},
		{"404 role", func(oa *openaitest.Server) {
			oa.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 404, Message: "No role found with id 'role_01'.", Code: "role_not_found"})
		}, approvals.Failure{Status: 404, Message: "No role found with id 'role_01'.", Type: "invalid_request_error", Code: "role_not_found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBot(t, map[string]string{"ROLEGATE_OPENAI_MAX_ATTEMPTS": "5"})
			tt.setup(b.openai)
			id := b.approve(defaultTarget + " refused")
			r := b.waitSettled(id)
			if r.State != approvals.StateFailed || r.Failure == nil {
				t.Fatalf("state %s, want failed", r.State)
			}
			posts := openaiCalls(b.openai, openaitest.OpAssign)
			if len(posts) != 1 {
				t.Fatalf("%d POSTs, want 1: a 4xx is not retried", len(posts))
			}
			want := tt.want
			want.RequestID = posts[0].RequestID
			if got := *r.Failure; got != want {
				t.Errorf("failure\n got %+v\nwant %+v (verbatim, no retry wording)", got, want)
			}
			b.wantFailurePosted(id, want)
		})
	}
}

func TestOpenAIDownThenUp(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens here yet: connection refused
	oa := openaitest.New(testAdminKey)
	b := newBot(t, map[string]string{"OPENAI_BASE_URL": "http://" + addr + "/v1", "ROLEGATE_OPENAI_MAX_ATTEMPTS": "20"})
	// OpenAI is down while the new request is checked: the check is
	// retried, and nobody is asked to approve an unchecked request.
	id := b.request(requester, defaultTarget+" openai is down")
	b.waitFor("a refused connection to be retried", func() bool {
		return strings.Contains(b.logs.String(), "connection refused") && strings.Contains(b.logs.String(), "retrying")
	})
	if st := b.stored(id).State; st != approvals.StateChecking {
		t.Fatalf("state %s while OpenAI is down, want checking (waiting)", st)
	}
	if n := b.slack.Calls("chat.postMessage"); n != 0 {
		t.Fatalf("%d messages posted before the checks passed", n)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: oa.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); oa.Close() })

	b.approvalMessage(id)
	if status := b.click(approverAna, slackapp.ActionApprove, id); status != http.StatusOK {
		t.Fatalf("approve click answered %d", status)
	}
	r := b.waitSettled(id)
	if r.State != approvals.StateApplied || r.Assignment == nil || r.Assignment.AlreadyAssigned {
		t.Fatalf("request %+v, want applied by rolegate", r)
	}
	if n := oa.AssignPOSTs(); n != 1 {
		t.Errorf("%d POSTs once OpenAI was back, want 1", n)
	}
	if got := oa.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 1 {
		t.Errorf("assignments %v", got)
	}
	b.resultMessage(id)
}

// Ambiguous outcomes: the POST may have taken effect although rolegate saw
// no success. The next attempt must find the role by listing, and never POST
// it a second time.

func TestAmbiguousPOSTIsReconciledWithoutASecondPOST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*openaitest.Server)
	}{
		{"connection dropped after acting", func(oa *openaitest.Server) { oa.DropAfterActing(1) }},
		{"5xx after acting", func(oa *openaitest.Server) {
			oa.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: http.StatusBadGateway, AfterActing: true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBot(t, nil)
			tt.setup(b.openai)
			id := b.approve(defaultTarget + " ambiguous")
			r := b.waitSettled(id)
			if r.State != approvals.StateApplied || r.Assignment == nil {
				t.Fatalf("state %s, want applied (the first POST took effect)", r.State)
			}
			if n := b.openai.AssignPOSTs(); n != 1 {
				t.Fatalf("%d POSTs, want exactly 1: the retry must find the role instead of POSTing again", n)
			}
			ops := opSequence(b.openai)
			if want := "list POST list"; !strings.HasPrefix(ops, want) {
				t.Errorf("OpenAI saw %q, want it to start %q", ops, want)
			}
			if got := b.openai.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 1 {
				t.Errorf("assignments %v", got)
			}
			if !strings.Contains(b.logs.String(), `"ambiguous":true`) {
				t.Error("the ambiguous attempt was not logged as such")
			}
			// rolegate's own first POST probably made the assignment: the
			// channel must not claim that nothing was changed.
			if text := b.resultMessage(id).VisibleText(); strings.Contains(text, "nothing was changed") || !strings.Contains(text, "not assigned again") {
				t.Errorf("result message misreports a reconciled assignment:\n%s", text)
			}
		})
	}
}

func TestPermanentErrorAfterAmbiguousAttemptIsCheckedFirst(t *testing.T) {
	t.Parallel()
	t.Run("role found: applied", func(t *testing.T) {
		t.Parallel()
		b := newBot(t, nil)
		b.openai.DropAfterActing(1)
		// The next check reads a lagging replica, so the retry POSTs, and
		// the API refuses it as a repeat: only a second check finds the role.
		var seen atomic.Int32
		b.openai.OnAssign(func(approvals.Target, time.Time) {
			if seen.Add(1) == 1 {
				b.openai.StaleListNext(1)
			}
		})
		id := b.approve(defaultTarget + " lagging read")
		r := b.waitSettled(id)
		if r.State != approvals.StateApplied {
			t.Fatalf("state %s (%+v), want applied: a 4xx after an ambiguous attempt must be checked", r.State, r.Failure)
		}
		posts := openaiCalls(b.openai, openaitest.OpAssign)
		if len(posts) != 2 || posts[1].Status != http.StatusBadRequest {
			t.Fatalf("POSTs %+v, want the dropped one and a refused repeat", posts)
		}
		if ops := opSequence(b.openai); !strings.HasPrefix(ops, "list POST list POST list") {
			t.Errorf("OpenAI saw %q, want a check after the refused POST", ops)
		}
		if got := b.openai.Assignments(openaitest.DefaultProjectID, openaitest.DefaultGroupID); len(got) != 1 {
			t.Errorf("assignments %v", got)
		}
	})
	t.Run("role absent: failed verbatim", func(t *testing.T) {
		t.Parallel()
		b := newBot(t, nil)
		b.openai.FailNextOp(openaitest.OpAssign, 1, http.StatusServiceUnavailable) // ambiguous, did not act
		b.openai.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: 403, Message: "Organization owners only.", Code: "owner_required"})
		id := b.approve(defaultTarget + " refused after a 503")
		r := b.waitSettled(id)
		if r.State != approvals.StateFailed || r.Failure == nil {
			t.Fatalf("state %s, want failed", r.State)
		}
		if ops := opSequence(b.openai); !strings.HasPrefix(ops, "list POST list POST list") {
			t.Errorf("OpenAI saw %q, want a check after the 403 before failing", ops)
		}
		posts := openaiCalls(b.openai, openaitest.OpAssign)
		want := approvals.Failure{Status: 403, Message: "Organization owners only.", Type: "invalid_request_error", Code: "owner_required", RequestID: posts[len(posts)-1].RequestID}
		if *r.Failure != want {
			t.Errorf("failure %+v, want %+v", *r.Failure, want)
		}
		b.wantFailurePosted(id, want)
	})
}

// opSequence names the fake's requests in order: "list" for a group's role
// list, "POST" for an assignment, "group" for a group look-up.
func opSequence(oa *openaitest.Server) string {
	var ops []string
	reqs := oa.Requests()
	// The checks before approval (look-ups, then one list of the group's
	// roles) come first; the order under test is the assignment's.
	for i, r := range reqs {
		if r.Op == openaitest.OpListProjectRoles {
			for j := i + 1; j < len(reqs); j++ {
				if reqs[j].Op == openaitest.OpListGroupRoles {
					reqs = reqs[j+1:]
					break
				}
			}
			break
		}
	}
	for _, r := range reqs {
		switch r.Op {
		case openaitest.OpListGroupRoles:
			ops = append(ops, "list")
		case openaitest.OpAssign:
			ops = append(ops, "POST")
		case openaitest.OpGetGroup:
			// Group look-ups only fill the summary; leave them out of the order.
		default:
			ops = append(ops, string(r.Op))
		}
	}
	return strings.Join(ops, " ")
}
