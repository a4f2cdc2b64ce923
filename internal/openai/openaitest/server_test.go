package openaitest_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

func post(t *testing.T, s *openaitest.Server, auth, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		s.URL()+"/projects/proj_abc/groups/group_01/roles", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestWaitAssignPOSTsAndOnAssign(t *testing.T) {
	s := openaitest.NewServer(key)
	t.Cleanup(s.Close)
	got := make(chan approvals.Target, 1)
	s.OnAssign(func(tg approvals.Target, at time.Time) {
		if time.Since(at) > time.Minute {
			t.Errorf("OnAssign time %v is not the arrival time", at)
		}
		got <- tg
	})

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.WaitAssignPOSTs(ctx, 1); err == nil {
		t.Fatal("WaitAssignPOSTs returned before any POST")
	}

	done := make(chan int)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/projects/proj_abc/groups/group_01/roles", strings.NewReader(`{"role_id":"role_01"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		status := 0
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		done <- status
	}()
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitAssignPOSTs(ctx, 1); err != nil {
		t.Fatalf("WaitAssignPOSTs: %v", err)
	}
	if tg := <-got; tg != (approvals.Target{ProjectID: "proj_abc", GroupID: "group_01", RoleID: "role_01"}) {
		t.Errorf("OnAssign got %+v", tg)
	}
	if status := <-done; status != http.StatusOK {
		t.Errorf("POST answered %d, want 200", status)
	}
}

func TestFaultsAreConsumedInOrder(t *testing.T) {
	s := openaitest.NewServer(key)
	t.Cleanup(s.Close)
	s.FailNextOp(openaitest.OpAssign, 2, 500)
	s.FailNextOp(openaitest.OpListGroupRoles, 1, 502) // must not touch POSTs

	var statuses []int
	for range 3 {
		statuses = append(statuses, post(t, s, "Bearer "+key, `{"role_id":"role_01"}`).StatusCode)
	}
	if want := []int{500, 500, 200}; !slices.Equal(statuses, want) {
		t.Errorf("POST statuses = %v, want %v", statuses, want)
	}
	if got := post(t, s, "Bearer "+key, `{"role_id":"role_01"}`).StatusCode; got != 400 {
		t.Errorf("repeated assignment answered %d, want 400", got)
	}
	if got := post(t, s, "Bearer wrong", `{"role_id":"role_01"}`).StatusCode; got != 401 {
		t.Errorf("wrong key answered %d, want 401", got)
	}
	if n := s.AssignPOSTs(); n != 5 {
		t.Errorf("AssignPOSTs = %d, want 5 (every arrival counts)", n)
	}
	if roles := s.Assignments("proj_abc", "group_01"); !slices.Equal(roles, []string{"role_01"}) {
		t.Errorf("Assignments = %v", roles)
	}
}
