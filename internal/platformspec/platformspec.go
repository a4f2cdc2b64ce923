// Package platformspec finds the platforms' published definitions (OpenAI's
// OpenAPI excerpt, Slack's manifest schema) that tests check rolegate against.
// They live outside the repository, in ../shared/testdata beside the checkout,
// or wherever ROLEGATE_TESTDATA points.
package platformspec

import (
	"os"
	"path/filepath"
	"testing"
)

// OpenAIAdmin is the OpenAI admin OpenAPI excerpt, relative to the testdata dir.
const OpenAIAdmin = "openai/admin-openapi.yaml"

// SlackManifestSchema is Slack's manifest JSON Schema, relative to the testdata dir.
const SlackManifestSchema = "slack/manifest.schema.1.0.0.json"

// Dir returns the testdata directory: $ROLEGATE_TESTDATA when set, else
// shared/testdata in the parent of the module root. ok is false when neither
// exists.
func Dir() (dir string, ok bool) {
	if d := os.Getenv("ROLEGATE_TESTDATA"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d, true
		}
		return d, false
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			td := filepath.Join(filepath.Dir(d), "shared", "testdata")
			if st, err := os.Stat(td); err == nil && st.IsDir() {
				return td, true
			}
			return td, false
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

// Path returns the path of the named spec file, skipping the test with a
// message saying where it looked when the file is not there. In CI
// (CI=true) a missing spec fails the test instead: CI always has them.
func Path(t testing.TB, name string) string {
	t.Helper()
	dir, _ := Dir()
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("platform spec %s not found (looked in %q; set ROLEGATE_TESTDATA)", name, dir)
		}
		t.Skipf("platform spec %s not found (looked in %q; set ROLEGATE_TESTDATA to run this test)", name, dir)
	}
	return p
}
