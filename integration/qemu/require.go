package qemu

import (
	"testing"

	"github.com/imans-project/imans/internal/testenv"
)

// Require skips the test (loudly; a failure under IMANS_REQUIRE_ALL=1)
// unless every program a boot needs is installed: qemu-system-x86_64,
// swtpm and swtpm_setup, busybox (static), apt-get and dpkg-deb for the
// kernel download, and go for the guest helper. It is meant for tests
// only; Boot itself returns errors.
func Require(t testing.TB) {
	t.Helper()
	testenv.Command(t, "qemu-system-x86_64", "swtpm", "swtpm_setup", "busybox",
		"apt-get", "apt-cache", "dpkg-deb", "tar")
}
