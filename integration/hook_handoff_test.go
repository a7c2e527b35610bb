//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imans-project/imans/report"
)

// A container whose measurement cannot start, in audit mode, under crun:
// the hook launched its swtpm before it knew, and crun, a subreaper, would
// wait for that swtpm before poststop. It must be gone: crun returns, the
// container has run, the report is incomplete with the reason.
func TestHookAuditAbandonUnderCrun(t *testing.T) {
	e := newHookEnv(t, "crun")
	b := e.newBundle("abandon", demoScript, 0)
	b.spec.Annotations["io.imans.backend"] = "kernel" // no IMA namespaces here
	b.save(t)
	res := e.run("crun", b, "abandon")
	if res.err != nil || !strings.Contains(res.out, "hello from imans") {
		t.Fatalf("crun run in audit mode: %v\n%s", res.err, res.out)
	}
	if res.took > 20*time.Second {
		t.Errorf("crun run took %s: it waited for something left behind", res.took)
	}
	r := e.reportOf("abandon")
	if r.Verdict != report.Incomplete ||
		!anyContains(r.Incomplete, "measurement did not start") {
		t.Errorf("report: %s %q", r.Verdict, r.Incomplete)
	}
}

// A container with more mounts than one message can hand on (260 bind
// volumes; the kernel passes at most 253 descriptors at once) is measured
// all the same, in both modes: the collector marks them itself.
func TestHookManyMounts(t *testing.T) {
	e := newHookEnv(t, "runc")
	vol := filepath.Join(e.base, "vol")
	must(t, os.MkdirAll(vol, 0o755))
	must(t, os.WriteFile(filepath.Join(vol, "v.txt"), []byte("volume\n"), 0o644))
	b := e.newBundle("mounts", demoScript+"cat /v7/v.txt\n", 0)
	for i := 1; i <= 260; i++ {
		dest := fmt.Sprintf("/v%d", i)
		must(t, os.MkdirAll(filepath.Join(b.rootfs, dest), 0o755))
		b.spec.Mounts = append(b.spec.Mounts, specs.Mount{Destination: dest, Type: "bind",
			Source: vol, Options: []string{"rbind", "ro"}})
	}
	for _, mode := range []string{"audit", "enforce"} {
		b.spec.Annotations["io.imans.mode"] = mode
		b.save(t)
		id := "mounts-" + mode
		res := e.run("runc", b, id)
		if res.err != nil || !strings.Contains(res.out, "hello from imans") {
			t.Fatalf("%s: runc run: %v\n%s", mode, res.err, res.out)
		}
		r := e.reportOf(id)
		if len(r.Incomplete) > 0 {
			t.Errorf("%s: report incomplete: %q", mode, r.Incomplete)
		}
		if !reportNames(r, "/v7/v.txt") {
			t.Errorf("%s: no finding or entry for /v7/v.txt in %+v", mode, r.Findings)
		}
	}
}

// reportNames reports whether a finding of r names path (a run without
// expectations lists every measured file as unexpected).
func reportNames(r *report.Report, path string) bool {
	for _, f := range r.Findings {
		if f.Path == path {
			return true
		}
	}
	return false
}

// crun runs no poststop after a failed createRuntime (podman neither): a
// container refused in enforce mode still has its report, written by the
// hook as it refuses, and leaves no run folder.
func TestHookRefusedUnderCrun(t *testing.T) {
	e := newHookEnv(t, "crun")
	b := e.newBundle("refused", demoScript, 0)
	b.spec.Annotations["io.imans.mode"] = "enforce"
	b.spec.Annotations["io.imans.backend"] = "kernel" // no IMA namespaces here
	b.save(t)
	res := e.run("crun", b, "refused")
	if res.err == nil || strings.Contains(res.out, "hello from imans") {
		t.Fatalf("crun run of a refused container: %v\n%s", res.err, res.out)
	}
	r := e.reportOf("refused")
	if r.Verdict != report.Incomplete ||
		!anyContains(r.Incomplete, "refused by createRuntime (enforce): backend kernel") {
		t.Errorf("report: %s %q", r.Verdict, r.Incomplete)
	}
	if left := e.runFolders(); len(left) > 0 {
		t.Errorf("run folders left: %q", left)
	}
}

// A collector killed mid-run under crun, which waits for every process it
// inherits before poststop: the container's swtpm ends with the
// collector's connection, so crun is not held back; the report is
// incomplete, naming the collector, and nothing is left running.
func TestHookCollectorKilledUnderCrun(t *testing.T) {
	e := newHookEnv(t, "crun")
	b := e.newBundle("k", sleeper, 0)
	wait := e.startRunWith("crun", b, "killed-crun")

	pid := waitPid(t, filepath.Join(e.runDir, "killed-crun", "collector.pid"))
	time.Sleep(500 * time.Millisecond) // the container sleeps 2 s
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	res := wait()
	if res.err != nil {
		t.Fatalf("run: %v\n%s", res.err, res.out)
	}
	if res.took > 20*time.Second {
		t.Errorf("crun run took %s: it waited for something left behind", res.took)
	}
	r := e.reportOf("killed-crun")
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, "was not running at stop") {
		t.Errorf("verdict %s, reasons %q: want incomplete naming the collector", r.Verdict,
			r.Incomplete)
	}
	if swtpmOf(t, e.runDir) {
		t.Error("a swtpm of the test is still running")
	}
}

// The collector killed at any moment of its start under crun: before the
// hook lets it go, while the go message (with the TPM connection) waits
// for it, or before its backend has used that connection. crun is never
// held back (the swtpm ends with its only connection, wherever that is),
// and no report says pass.
func TestHookCollectorKilledEarlyUnderCrun(t *testing.T) {
	e := newHookEnv(t, "crun")
	b := e.newBundle("early", "sleep 0.3\necho done\n", 0)
	for i, delay := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond,
		3 * time.Millisecond, 5 * time.Millisecond, 8 * time.Millisecond} {
		id := fmt.Sprintf("early-%d", i)
		wait := e.startRunWith("crun", b, id)
		pid := waitPid(t, filepath.Join(e.runDir, id, "collector.pid"))
		time.Sleep(delay)
		syscall.Kill(pid, syscall.SIGKILL)
		res := wait()
		if res.took > 20*time.Second {
			t.Errorf("%s: crun run took %s: it waited for something left behind", id, res.took)
		}
		r := e.reportOf(id)
		if r.Verdict == report.Pass {
			t.Errorf("%s: pass with the collector killed %s after its start", id, delay)
		}
		if swtpmOf(t, e.runDir) {
			t.Errorf("%s: a swtpm of the test is still running", id)
		}
	}
}
