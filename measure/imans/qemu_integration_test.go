//go:build integration

package imans_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/integration/qemu"
)

// buildKernelcheck builds the kernelcheck command static (pure Go), so
// that it runs in the harness's busybox guest, where busybox's nsenter and
// unshare applets take it into the user namespace.
func buildKernelcheck(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kernelcheck")
	cmd := exec.Command("go", "build", "-o", out,
		"github.com/imans-project/imans/measure/imans/internal/kernelcheck")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kernelcheck: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// On Debian's kernels (IMA on, no IMA namespaces), the probe says no for
// the reason a stock kernel gives, although the host's securityfs has
// ima/; and the activation helper really enters a process's user
// namespace (its uid_map shows) and stops at the mount with EPERM.
func TestDebianKernelsInQemu(t *testing.T) {
	qemu.Require(t)
	bin := buildKernelcheck(t)

	for _, series := range qemu.Series() {
		t.Run(series, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := qemu.Boot(ctx, qemu.Config{
				Kernel:  series,
				Cmdline: "ima_policy=tcb",
				NoTPM:   true,
				Files:   map[string][]byte{"/bin/kernelcheck": bin},
				Script: "test -e /sys/kernel/security/ima/policy && echo host-ima\n" +
					"kernelcheck probe\n" +
					"unshare -r sleep 60 &\nsleep 1\n" +
					"kernelcheck enter $!\n",
			})
			if err != nil {
				t.Fatal(err)
			}
			got := string(res.Output)
			t.Logf("kernel %s:\n%s", res.Kernel.Version, got)

			for _, want := range []string{
				"host-ima\n",
				"no: securityfs cannot be mounted in a user namespace " +
					"(kernel without IMA namespaces)\n",
				"step: enter the container's user namespace and a new mount namespace " +
					"=> ok: uid_map 0 0 1\n",
				"step: make the helper's mounts private => ok\n",
				"step: mount securityfs => error: operation not permitted\n",
				"error: IMA namespace: mount securityfs: EPERM",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("guest output lacks %q", want)
				}
			}
		})
	}
}
