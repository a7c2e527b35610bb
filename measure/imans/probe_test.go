package imans_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/measure/imans"
	"github.com/imans-project/imans/measure/imans/nsenter"
)

// requireNoIMANamespaces skips the test on a kernel that may have the
// series, judged from the kernel's own securityfs: the tests below expect
// the answer of a kernel without it.
func requireNoIMANamespaces(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/security/ima/active"); err == nil {
		t.Skip("this kernel may have IMA namespaces: the expectations below are for one without")
	}
}

func TestProbeOnThisKernel(t *testing.T) {
	testenv.Root(t)
	requireNoIMANamespaces(t)

	// A stock kernel refuses securityfs in a user namespace with EPERM,
	// which the probe must name.
	ok, reason := imans.Probe()
	if ok || reason != imans.ReasonNoUserNamespaceMount {
		t.Fatalf("Probe() = %v, %q; want false, %q", ok, reason,
			imans.ReasonNoUserNamespaceMount)
	}

	// Cached per boot: the second answer is the same and costs no child.
	start := time.Now()
	ok2, reason2 := imans.Probe()
	if ok2 != ok || reason2 != reason {
		t.Errorf("second Probe() = %v, %q", ok2, reason2)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("cached Probe() took %s", d)
	}
}

// userNamespaceChild starts a process in a new user namespace mapping
// root to host uid and gid 100000, as a remapped container's init is.
func userNamespaceChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process in a user namespace: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// requireHelper skips where nsenter(1) or unshare(1) is missing.
func requireHelper(t testing.TB) {
	t.Helper()
	if _, err := nsenter.Lookup(); err != nil {
		testenv.Missing(t, "%v", err)
	}
}

func TestEnterOnThisKernelStopsAtMount(t *testing.T) {
	testenv.Root(t)
	requireHelper(t)
	requireNoIMANamespaces(t)
	pid := userNamespaceChild(t)
	var rec stepRecorder

	ns, err := imans.Enter(context.Background(), pid, imans.EnterOptions{
		Policy: testPolicy, StepLog: rec.log, Timeout: 10 * time.Second})

	if err == nil {
		ns.Close()
		t.Fatal("Enter succeeded on a kernel without IMA namespaces")
	}
	var se *imans.StepError
	if !errors.As(err, &se) || se.Step != "mount securityfs" || !errors.Is(err, unix.EPERM) {
		t.Fatalf("err = %v, want EPERM at mount securityfs", err)
	}
	if !strings.Contains(err.Error(), "it has no IMA namespaces") {
		t.Errorf("message does not explain EPERM: %v", err)
	}

	// The helper really entered the namespace (nsenter's setns and
	// unshare's new mount namespace, checked by the helper) and made its
	// mounts private before failing.
	want := []string{
		"enter the container's user namespace and a new mount namespace => ok: " +
			"uid_map 0 100000 65536",
		"make the helper's mounts private => ok",
		"mount securityfs => error: operation not permitted",
	}
	if got := strings.Join(rec.lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("step log:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// A user namespace without uid 0: the helper, executed there as another
// user, would have no capabilities in it. nsenter(1) refuses to switch,
// and the error names that step and its errno, before any helper step.
func TestEnterUserNamespaceWithoutRoot(t *testing.T) {
	testenv.Root(t)
	requireHelper(t)
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 1000, HostID: 100000, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 1000, HostID: 100000, Size: 1}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var rec stepRecorder

	_, err := imans.Enter(context.Background(), cmd.Process.Pid,
		imans.EnterOptions{Policy: testPolicy, StepLog: rec.log})

	const want = "IMA namespace: enter the container's user namespace and a new mount " +
		"namespace: entering the container's namespaces: switch to the namespace's uid " +
		"and gid 0: invalid argument (uid or gid 0 is not mapped in the container's user " +
		"namespace: a program executed there as another user has no capabilities in it) " +
		"(EINVAL)"
	var se *imans.StepError
	if !errors.As(err, &se) || !errors.Is(err, unix.EINVAL) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if len(rec.lines) != 1 || !strings.HasPrefix(rec.lines[0], "enter the container's "+
		"user namespace and a new mount namespace => error: entering") {
		t.Errorf("step log %q", rec.lines)
	}
}

func TestEnterRefusesSharedUserNamespace(t *testing.T) {
	testenv.Root(t)
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	_, err := imans.Enter(context.Background(), cmd.Process.Pid,
		imans.EnterOptions{Policy: testPolicy})
	if !errors.Is(err, imans.ErrNoUserNamespace) {
		t.Fatalf("err = %v, want ErrNoUserNamespace", err)
	}
	if err := imans.CheckUserNamespace(cmd.Process.Pid); !errors.Is(err, imans.ErrNoUserNamespace) {
		t.Errorf("CheckUserNamespace = %v", err)
	}
	if err := imans.CheckUserNamespace(userNamespaceChild(t)); err != nil {
		t.Errorf("CheckUserNamespace of a process in its own user namespace: %v", err)
	}
}

func TestProbeCachedFile(t *testing.T) {
	testenv.Root(t)
	requireNoIMANamespaces(t)
	path := filepath.Join(t.TempDir(), "kernel-probe.json")

	ok, reason := imans.ProbeCached(path)
	if ok || reason != imans.ReasonNoUserNamespaceMount {
		t.Fatalf("ProbeCached = %v, %q", ok, reason)
	}
	b, err := os.ReadFile(path)
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || !strings.Contains(string(b), strings.TrimSpace(string(boot))) {
		t.Fatalf("cache file %q (%v) lacks this boot's id", b, err)
	}

	// The file's answer is used as long as the boot id matches, and
	// ignored once it does not (another boot).
	fake := `{"boot_id":"` + strings.TrimSpace(string(boot)) + `","ok":true,"reason":"from file"}`
	os.WriteFile(path, []byte(fake), 0o644)
	if ok, reason := imans.ProbeCached(path); !ok || reason != "from file" {
		t.Errorf("ProbeCached ignored a file of this boot: %v, %q", ok, reason)
	}
	os.WriteFile(path, []byte(`{"boot_id":"other","ok":true,"reason":"from file"}`), 0o644)
	if ok, reason := imans.ProbeCached(path); ok || reason != imans.ReasonNoUserNamespaceMount {
		t.Errorf("ProbeCached used another boot's answer: %v, %q", ok, reason)
	}
}

// BenchmarkEnterUntilMount is the cost of the activation helper on a
// kernel without IMA namespaces: nsenter(1), unshare(1), this binary
// executed in the namespace, the request, the steps up to the refused
// mount, the answer.
// On a kernel with the series, the IMA steps come on top of it.
func BenchmarkEnterUntilMount(b *testing.B) {
	testenv.Root(b)
	requireHelper(b)
	cmd := exec.Command("/bin/sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	for b.Loop() {
		_, err := imans.Enter(context.Background(), cmd.Process.Pid,
			imans.EnterOptions{Policy: testPolicy})
		if !errors.Is(err, unix.EPERM) {
			b.Fatalf("Enter: %v, want EPERM at the mount", err)
		}
	}
}
