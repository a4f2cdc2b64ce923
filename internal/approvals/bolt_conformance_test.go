package approvals_test

import (
	"path/filepath"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
)

// TestBoltConformance runs the engine-agnostic Store suite on bbolt; the
// PostgreSQL engine runs the same suite (internal/pgstore).
func TestBoltConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) approvals.Store {
		s, err := approvals.Open(filepath.Join(t.TempDir(), "rolegate.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Check(); err != nil {
				t.Errorf("bbolt check: %v", err)
			}
			s.Close()
		})
		return s
	})
}
