//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/report"
	"github.com/imans-project/imans/shim"
)

// The engines' tests run the imans hooks the way a host runs them: the
// hook entries carry PATH only, so reports land in the default folder,
// under container ids unique to the test run, removed at the end.
const (
	engReports       = "/var/lib/imans/reports"
	engScript        = "echo hello from imans\n"
	engChangedScript = "echo hello from imans\necho changed by someone\n"
	engHello         = "hello from imans"
	engReportWait    = 30 * time.Second
)

// engWrapper returns the imans binary and the imans-runtime binary beside
// it, where `imans install` expects it (imansBinary builds both).
func engWrapper(t *testing.T) (imans, wrapper string) {
	t.Helper()
	imans = imansBinary(t)
	return imans, filepath.Join(filepath.Dir(imans), "imans-runtime")
}

// engWorkDir is a folder off tmpfs (the fanotify collector marks the
// container's mounts; tmpfs is not measured by the built-in policy), with
// a short path for sockets.
func engWorkDir(t *testing.T) string {
	t.Helper()
	return tempDir(t, "/var/tmp", "eng")
}

// engRootfs makes a busybox rootfs with /app/demo.sh holding script.
func engRootfs(t *testing.T, dir, script string) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "app", "proc", "dev", "sys", "tmp", "etc"} {
		must(t, os.MkdirAll(filepath.Join(rootfs, d), 0o755))
	}
	bb, err := exec.LookPath("busybox")
	must(t, err)
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755))
	for _, applet := range []string{"sh", "true", "echo", "cat", "sleep"} {
		must(t, os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)))
	}
	engWriteScript(t, rootfs, script)
	return rootfs
}

// engWriteScript replaces /app/demo.sh with a new file (a new inode).
func engWriteScript(t *testing.T, rootfs, script string) {
	t.Helper()
	path := filepath.Join(rootfs, "app", "demo.sh")
	must(t, os.WriteFile(path+".new", []byte(script), 0o755))
	must(t, os.Rename(path+".new", path))
}

// engRun runs a command with a deadline and returns its combined output.
func engRun(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no end within %s\n%s", name, strings.Join(args, " "), timeout, out)
	}
	return string(out), err
}

// engReport waits for a container's report (podman writes it from its
// cleanup process, after `podman run` may have returned) and removes it,
// with its lists, when the test ends.
func engReport(t *testing.T, id string) *report.Report {
	t.Helper()
	path := filepath.Join(engReports, id+".json")
	t.Cleanup(func() {
		for _, suffix := range []string{".json", ".log.bin", ".log.txt"} {
			os.Remove(filepath.Join(engReports, id+suffix))
		}
	})
	deadline := time.Now().Add(engReportWait)
	for {
		r, err := report.Read(path)
		if err == nil {
			return r
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			t.Fatalf("report of %s: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// engRunner runs the demo container once under an engine with the given
// annotations, the script changed or not, and returns the OCI container
// id and what the container printed.
type engRunner func(t *testing.T, name string, changed bool, ann map[string]string) (
	id, out string)

// engThreeVerdicts is the demo's scenario under an engine: a learning run
// (its list holds the script with the digest computed here), a run with
// the learnt expectations (pass), a run with the script changed (fail,
// naming the script and its new digest).
func engThreeVerdicts(t *testing.T, imans string, run engRunner) {
	id, out := run(t, "learn", false, map[string]string{shim.AnnotationEnable: "true"})
	if !strings.Contains(out, engHello) {
		t.Fatalf("learning run printed %q", out)
	}
	learn := engReport(t, id)
	script := findEntry(checkWhole(t, learn), "/app/demo.sh")
	if len(script) != 1 || script[0].digest != sha256Hex(engScript) {
		t.Fatalf("learning run: entries of /app/demo.sh %+v, want one with %s",
			script, sha256Hex(engScript))
	}

	out, err := engRun(t, time.Minute, imans, "expect", "--from-report", id, "--json")
	if err != nil {
		t.Fatalf("imans expect: %v\n%s", err, out)
	}
	var ann map[string]string
	must(t, json.Unmarshal([]byte(out), &ann))
	if ann[shim.AnnotationEnable] != "true" || ann["io.imans.expect.pcr10.sha256"] !=
		learn.TPM.PCR10["sha256"] {
		t.Fatalf("imans expect gave %v; learning run's PCR 10 %v", ann, learn.TPM.PCR10)
	}

	id, out = run(t, "pass", false, ann)
	pass := engReport(t, id)
	checkWhole(t, pass)
	if !strings.Contains(out, engHello) || pass.Verdict != report.Pass ||
		len(pass.Findings) != 0 {
		t.Errorf("second run: verdict %s findings %v output %q, want pass", pass.Verdict,
			pass.Findings, out)
	}

	id, _ = run(t, "changed", true, ann)
	bad := engReport(t, id)
	checkWhole(t, bad)
	found := false
	for _, f := range bad.Findings {
		if f.Kind == report.ChangedFile && f.Path == "/app/demo.sh" &&
			f.Digest == sha256Hex(engChangedScript) {
			found = true
		}
	}
	if bad.Verdict != report.Fail || !found {
		t.Errorf("third run: verdict %s findings %v, want fail with /app/demo.sh changed to %s",
			bad.Verdict, bad.Findings, sha256Hex(engChangedScript))
	}
}

// engBundle makes a runc bundle from `runc spec` running args.
func engBundle(t *testing.T, dir string, args ...string) string {
	t.Helper()
	engRootfs(t, dir, engScript)
	out, err := engRun(t, time.Minute, "runc", "spec", "--bundle", dir)
	if err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	var spec map[string]any
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &spec))
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	data, err = json.MarshalIndent(spec, "", "\t")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644))
	return dir
}

func engSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestEnginesWrapperRunc runs busybox containers with real runc through
// imans-runtime: a bundle without the imans annotation keeps its
// config.json byte for byte; one with it gets the hooks once, the hooks
// run (a report with the script's digest), and a second run changes
// nothing; other commands and exit codes pass through.
func TestEnginesWrapperRunc(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "runc", "swtpm", "busybox")
	imans, wrapper := engWrapper(t)
	dir := engWorkDir(t)
	root := filepath.Join(dir, "runc-root")
	logFile := filepath.Join(dir, "runc-log.json")
	runc := func(args ...string) (string, error) {
		args = append([]string{"--root", root, "--log", logFile, "--log-format", "json"},
			args...)
		return engRun(t, time.Minute, wrapper, args...)
	}
	id := fmt.Sprintf("imans-eng-wrap-%d", os.Getpid())

	// Without the annotation: untouched.
	plain := engBundle(t, filepath.Join(dir, "plain"), "/bin/echo", "plain container")
	before := engSHA256(t, filepath.Join(plain, "config.json"))
	out, err := runc("run", "--bundle", plain, id+"-plain")
	if err != nil || !strings.Contains(out, "plain container") {
		t.Fatalf("wrapper run: %v\n%s", err, out)
	}
	if after := engSHA256(t, filepath.Join(plain, "config.json")); after != before {
		t.Fatalf("config.json without annotation changed: sha256 %s, was %s", after, before)
	}
	if data, _ := os.ReadFile(logFile); len(data) != 0 {
		t.Errorf("log has lines for a container without imans:\n%s", data)
	}

	// With the annotation: hooks added once, and they run.
	b := engBundle(t, filepath.Join(dir, "measured"), "/bin/sh", "/app/demo.sh")
	path := filepath.Join(b, "config.json")
	var spec map[string]any
	data, err := os.ReadFile(path)
	must(t, err)
	must(t, json.Unmarshal(data, &spec))
	spec["annotations"] = map[string]string{shim.AnnotationEnable: "true"}
	spec["x-unknown-to-runc"] = "kept"
	data, err = json.Marshal(spec)
	must(t, err)
	must(t, os.WriteFile(path, data, 0o644))

	// The relative bundle form: -b with a path from the working folder.
	cmd := exec.Command(wrapper, "--root", root, "--log", logFile, "--log-format", "json",
		"run", "-b", filepath.Base(b), id+"-measured")
	cmd.Dir = dir
	outb, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(outb), engHello) {
		t.Fatalf("wrapper run with imans: %v\n%s", err, outb)
	}
	r := engReport(t, id+"-measured")
	script := findEntry(checkWhole(t, r), "/app/demo.sh")
	if len(script) != 1 || script[0].digest != sha256Hex(engScript) {
		t.Errorf("entries of /app/demo.sh %+v, want one with %s", script, sha256Hex(engScript))
	}

	injected, err := os.ReadFile(path)
	must(t, err)
	want, changed, err := shim.InjectHooks(data, imans)
	if err != nil || !changed || !bytes.Equal(injected, want) {
		t.Fatalf("config.json after the run is not the injection of the original (%v)", err)
	}
	if !bytes.Contains(injected, []byte(`"x-unknown-to-runc":"kept"`)) {
		t.Errorf("unknown field lost: %s", injected)
	}
	engCheckLog(t, logFile, "imans hooks added to "+filepath.Join(b, "config.json"))

	if out, err := runc("run", "--bundle", b, id+"-again"); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	engReport(t, id+"-again")
	if again := engSHA256(t, path); again != engSHA256Bytes(injected) {
		t.Errorf("the second run rewrote config.json")
	}

	// The same wrapper as a command of imans.
	out, err = engRun(t, time.Minute, imans, "runtime", "--version")
	if err != nil || !strings.HasPrefix(out, "runc version") {
		t.Errorf("imans runtime --version: %v\n%s", err, out)
	}

	// Pass-through of another command and its exit status.
	_, errWrapped := runc("state", "no-such-container")
	_, errPlain := engRun(t, time.Minute, "runc", "--root", root, "state", "no-such-container")
	if exitCode(errWrapped) != exitCode(errPlain) || exitCode(errPlain) == 0 {
		t.Errorf("state of a missing container: wrapper exit %d, runc %d",
			exitCode(errWrapped), exitCode(errPlain))
	}
}

func engSHA256Bytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// engCheckLog checks that the runtime's JSON log holds the wrapper's line,
// in runc's form.
func engCheckLog(t *testing.T, path, msg string) {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var l struct{ Level, Msg, Time string }
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if l.Msg == msg+" (hook "+imansBinary(t)+")" {
			if l.Level != "info" {
				t.Errorf("level %q, want info", l.Level)
			}
			if _, err := time.Parse(time.RFC3339, l.Time); err != nil {
				t.Errorf("time %q: %v", l.Time, err)
			}
			return
		}
	}
	t.Errorf("log has no line %q:\n%s", msg, data)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestEnginesWrapperCrun runs an annotated busybox container through
// imans-runtime with crun as its runtime (IMANS_RUNTIME), in a private
// mount namespace without the hybrid layout's cgroup v2 mount, which crun
// 1.8 refuses (ENVIRONMENT.md).
func TestEnginesWrapperCrun(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "crun", "runc", "swtpm", "busybox", "unshare")
	imans, wrapper := engWrapper(t)
	dir := engWorkDir(t)
	b := engBundle(t, filepath.Join(dir, "crun"), "/bin/sh", "/app/demo.sh")
	path := filepath.Join(b, "config.json")
	data, err := os.ReadFile(path)
	must(t, err)
	var spec map[string]any
	must(t, json.Unmarshal(data, &spec))
	spec["annotations"] = map[string]string{shim.AnnotationEnable: "true"}
	data, err = json.Marshal(spec)
	must(t, err)
	must(t, os.WriteFile(path, data, 0o644))
	id := fmt.Sprintf("imans-eng-crun-%d", os.Getpid())

	// --cgroup-manager is crun's own option: runc would refuse the line.
	script := fmt.Sprintf("umount /sys/fs/cgroup/unified 2>/dev/null; exec %s --root %s "+
		"--cgroup-manager cgroupfs run --bundle %s %s", wrapper,
		filepath.Join(dir, "crun-root"), b, id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"sh", "-c", script)
	cmd.Env = append(os.Environ(), shim.RuntimeEnv+"=crun")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), engHello) {
		t.Fatalf("crun through the wrapper: %v\n%s", err, out)
	}

	r := engReport(t, id)
	script0 := findEntry(checkWhole(t, r), "/app/demo.sh")
	if len(script0) != 1 || script0[0].digest != sha256Hex(engScript) {
		t.Errorf("entries of /app/demo.sh %+v, want one with %s", script0,
			sha256Hex(engScript))
	}
	injected, err := os.ReadFile(path)
	must(t, err)
	if want, _, _ := shim.InjectHooks(data, imans); !bytes.Equal(injected, want) {
		t.Errorf("config.json after the run is not the injection of the original")
	}
}
