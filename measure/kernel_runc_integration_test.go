//go:build integration

package measure

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/measure/imans"
	"github.com/imans-project/imans/measure/imans/nsenter"
	"github.com/imans-project/imans/policy"
)

// kernelRuncBundle makes a busybox bundle whose createRuntime hook saves
// the state and holds the container until the file "go" appears, so the
// test acts at the moment the kernel backend does. userns maps the
// container's root to host uid 100000 when set.
func kernelRuncBundle(t *testing.T, userns bool) string {
	t.Helper()
	runc := testenv.Command(t, "runc")
	busybox := testenv.Command(t, "busybox")
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)

	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		os.MkdirAll(filepath.Join(dir, "rootfs", d), 0o755)
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rootfs/bin/busybox"), b, 0o755)
	os.Symlink("busybox", filepath.Join(dir, "rootfs/bin/true"))

	cmd := exec.Command(runc, "spec", "--rootless", "--bundle", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	var spec map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(raw, &spec)

	spec["process"].(map[string]any)["args"] = []string{"/bin/true"}
	spec["process"].(map[string]any)["terminal"] = false
	linux := spec["linux"].(map[string]any)
	if userns {
		m := []map[string]int{{"containerID": 0, "hostID": 100000, "size": 65536}}
		linux["uidMappings"], linux["gidMappings"] = m, m
	} else {
		delete(linux, "uidMappings")
		delete(linux, "gidMappings")
		var kept []any
		for _, ns := range linux["namespaces"].([]any) {
			if ns.(map[string]any)["type"] != "user" {
				kept = append(kept, ns)
			}
		}
		linux["namespaces"] = kept
	}
	hold := "cat > " + dir + "/state.json; i=0; while [ ! -e " + dir + "/go ] && " +
		"[ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done"
	spec["hooks"] = map[string]any{"createRuntime": []map[string]any{
		{"path": "/bin/sh", "args": []string{"sh", "-c", hold}}}}
	raw, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
	return dir
}

// kernelRuncHeld runs the bundle and returns the container's host pid at
// createRuntime; cleanup releases the hook and waits for runc.
func kernelRuncHeld(t *testing.T, dir string) int {
	t.Helper()
	id := "imans-kernel-" + filepath.Base(dir)
	cmd := exec.Command("runc", "run", "--bundle", dir, id)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runc run: %v: %s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			exec.Command("runc", "delete", "-f", id).Run()
			t.Error("runc run did not end")
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			Pid    int    `json:"pid"`
			Status string `json:"status"`
		}
		raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
		if err == nil && json.Unmarshal(raw, &st) == nil && st.Pid > 0 {
			return st.Pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the createRuntime hook never ran: %s", out.String())
	return 0
}

// On this kernel (no IMA namespaces), a real runc container in its own
// user namespace: the kernel collector's real helper enters the
// container's user namespace at createRuntime and stops at the mount,
// before ready, with the errno named.
func TestKernelCollectorRuncUserNamespace(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/sys/kernel/security/ima/active"); err == nil {
		t.Skip("this kernel may have IMA namespaces")
	}
	if _, err := nsenter.Lookup(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	pid := kernelRuncHeld(t, kernelRuncBundle(t, true))

	if err := imans.CheckUserNamespace(pid); err != nil {
		t.Errorf("CheckUserNamespace: %v", err)
	}
	if err := KernelPreflight(pid); !errors.Is(err, ErrKernelUnavailable) {
		t.Errorf("KernelPreflight = %v, want ErrKernelUnavailable", err)
	}

	var steps []string
	c, err := NewKernel(Spec{ID: "runc-userns", Dir: t.TempDir(), Pid: pid, Backend: Kernel,
		Policy: policy.BuiltinText()}, WithHostReplayCheck("", ""),
		WithStepLog(func(s, r string) { steps = append(steps, s+" => "+r) }))
	if err != nil {
		t.Fatal(err)
	}
	ready := false
	_, err = c.Run(context.Background(), func() { ready = true })

	if ready || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Run: ready %v, err %v; want EPERM before ready", ready, err)
	}
	want := "enter the container's user namespace and a new mount namespace => ok: " +
		"uid_map 0 100000 65536"
	if len(steps) < 3 || !strings.Contains(strings.Join(steps, "\n"), want) ||
		!strings.HasPrefix(steps[len(steps)-1], "mount securityfs => error") {
		t.Errorf("steps:\n%s", strings.Join(steps, "\n"))
	}
}

// A runc container without a user namespace would get the host's
// securityfs: the kernel backend refuses it.
func TestKernelCollectorRuncNoUserNamespace(t *testing.T) {
	testenv.Root(t)
	pid := kernelRuncHeld(t, kernelRuncBundle(t, false))

	c, err := NewKernel(Spec{ID: "runc-host-userns", Dir: t.TempDir(), Pid: pid,
		Backend: Kernel, Policy: policy.BuiltinText()}, WithHostReplayCheck("", ""))
	if err != nil {
		t.Fatal(err)
	}
	ready := false
	_, err = c.Run(context.Background(), func() { ready = true })
	if ready || !errors.Is(err, ErrNoUserNamespace) {
		t.Fatalf("Run: ready %v, err %v; want ErrNoUserNamespace before ready", ready, err)
	}
	if err := imans.CheckUserNamespace(pid); !errors.Is(err, ErrNoUserNamespace) {
		t.Errorf("CheckUserNamespace = %v", err)
	}
}
