// Package testenv lets tests ask for the real components they need (root,
// runc, swtpm, qemu, ...) and skip loudly where one is missing. Under
// IMANS_REQUIRE_ALL=1, which .ci/run sets, every such skip is a failure.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireAllEnv is the environment variable that turns skips into failures.
const RequireAllEnv = "IMANS_REQUIRE_ALL"

// Missing skips the test with a loud reason, or fails it when every
// component is required.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireAllEnv) == "1" {
		t.Fatalf("required component missing ("+RequireAllEnv+"=1): "+format, args...)
	}
	t.Skipf("SKIPPED, component missing: "+format, args...)
}

// Root requires the test to run as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "this test needs root")
	}
}

// Command requires each named program on PATH and returns the path of the
// first one.
func Command(t testing.TB, names ...string) string {
	t.Helper()
	first := ""
	for _, name := range names {
		path, err := exec.LookPath(name)
		if err != nil {
			Missing(t, "%s not found on PATH (apt-get install it, see .ci/packages)", name)
			return ""
		}
		if first == "" {
			first = path
		}
	}
	return first
}
