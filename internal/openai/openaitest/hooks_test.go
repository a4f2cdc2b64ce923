package openaitest_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

func TestFaultAfterActing(t *testing.T) {
	s := openaitest.NewServer(key)
	t.Cleanup(s.Close)
	s.Inject(1, openaitest.Fault{Op: openaitest.OpAssign, Status: http.StatusBadGateway, AfterActing: true})
	if got := post(t, s, "Bearer "+key, `{"role_id":"role_01"}`).StatusCode; got != http.StatusBadGateway {
		t.Fatalf("POST answered %d, want the fault's 502", got)
	}
	if roles := s.Assignments("proj_abc", "group_01"); !slices.Equal(roles, []string{"role_01"}) {
		t.Errorf("Assignments = %v, want the role assigned despite the 502", roles)
	}
}

func TestOnServedSeesTheAnswerBeforeTheClient(t *testing.T) {
	s := openaitest.NewServer(key)
	t.Cleanup(s.Close)
	var seen []openaitest.Recorded
	s.OnServed(func(rec openaitest.Recorded) {
		// The POST has taken effect by now, though its answer is not sent.
		if rec.Op == openaitest.OpAssign && len(s.Assignments("proj_abc", "group_01")) != len(seen)+1 {
			t.Errorf("OnServed ran before the assignment was made")
		}
		seen = append(seen, rec)
	})
	post(t, s, "Bearer "+key, `{"role_id":"role_01"}`)
	s.DropAfterActing(1)
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/projects/proj_abc/groups/group_01/roles", strings.NewReader(`{"role_id":"role_02"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the dropped POST was answered")
	}
	s.OnServed(nil)
	post(t, s, "Bearer "+key, `{"role_id":"role_01"}`)
	if len(seen) != 2 || seen[0].Status != http.StatusOK || !seen[1].Dropped || seen[1].Status != 0 {
		t.Fatalf("OnServed saw %+v, want a 200 and a drop, then nothing once removed", seen)
	}
	if seen[0].Header.Get("Authorization") != "Bearer "+key {
		t.Error("OnServed's record lacks the request headers")
	}
}
