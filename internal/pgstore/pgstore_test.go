package pgstore

import (
	"os"
	"testing"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/approvals/storetest"
	"github.com/rolegate/rolegate/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openTest opens a Store on a fresh database, closed when the test ends.
func openTest(t *testing.T, opts ...Options) *Store {
	t.Helper()
	return openURL(t, pgtest.URL(t), opts...)
}

func openURL(t *testing.T, url string, opts ...Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the engine-agnostic Store suite that bbolt runs too.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) approvals.Store { return openTest(t) })
}
