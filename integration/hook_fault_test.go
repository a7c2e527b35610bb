//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/policy"
	"github.com/imans-project/imans/report"
)

// startRun starts a container in the background; the returned function
// waits for it with the run deadline.
func (e *hookEnv) startRun(b *bundle, id string) func() runResult {
	return e.startRunWith("runc", b, id)
}

// startRunWith is startRun with another runtime (runc or crun).
func (e *hookEnv) startRunWith(runtime string, b *bundle, id string) func() runResult {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	cmd := e.runCmd(ctx, runtime, b, id)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		e.t.Fatal(err)
	}
	return func() runResult {
		defer cancel()
		err := cmd.Wait()
		if ctx.Err() != nil {
			e.t.Fatalf("%s run %s: no end within %s (a hang)\n%s", runtime, id, runTimeout,
				out.String())
		}
		return runResult{out: out.String(), err: err, took: time.Since(start)}
	}
}

// waitFile waits until path exists and returns its first number.
func waitPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(path)
		if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
			if pid, err := strconv.Atoi(f[0]); err == nil && pid > 0 {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: no pid within 10s", path)
	return 0
}

// waitCreated waits until runc says the container is created or running,
// so its createRuntime hook has returned; at most 10 s.
func (e *hookEnv) waitCreated(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		out, err := exec.Command("runc", "--root", e.runcRoot, "state", id).Output()
		var st struct {
			Status string `json:"status"`
		}
		if err == nil && json.Unmarshal(out, &st) == nil {
			if st.Status == "created" || st.Status == "running" {
				return
			}
			last = st.Status
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("container %s not created within 10s (last status %q)", id, last)
}

// sleeper is a script that reads itself, then waits for a file in /tmp of
// the container... which the test cannot reach; it just sleeps long enough
// for the test to act.
const sleeper = "echo started\nsleep 2\necho done\n"

func TestHookCollectorKilled(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("k", sleeper, 0)
	wait := e.startRun(b, "killed-collector")

	pid := waitPid(t, filepath.Join(e.runDir, "killed-collector", "collector.pid"))
	// The collector is measuring once createRuntime has returned, which
	// runc shows as the container being created or running.
	e.waitCreated(t, "killed-collector")
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	res := wait()
	if res.err != nil {
		t.Fatalf("run: %v\n%s", res.err, res.out)
	}
	t.Logf("run took %s", res.took)

	r := e.reportOf("killed-collector")
	t.Logf("reasons: %q", r.Incomplete)
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, "was not running at stop") {
		t.Errorf("verdict %s, reasons %q: want incomplete naming the collector", r.Verdict,
			r.Incomplete)
	}
	if left := e.runFolders(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	if swtpmOf(t, e.runDir) {
		t.Error("a swtpm of the test is still running")
	}
}

func TestHookTPMKilled(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("k", sleeper, 0)
	wait := e.startRun(b, "killed-tpm")

	tpmDir := hook.TPMFolder(filepath.Join(e.runDir, "killed-tpm"))
	pid := waitPid(t, filepath.Join(tpmDir, "swtpm.pid"))
	time.Sleep(300 * time.Millisecond)
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	if res := wait(); res.err != nil {
		t.Fatalf("run: %v\n%s", res.err, res.out)
	}

	r := e.reportOf("killed-tpm")
	t.Logf("reasons: %q", r.Incomplete)
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, "tpm") {
		t.Errorf("verdict %s, reasons %q: want incomplete naming the tpm", r.Verdict,
			r.Incomplete)
	}
	// The collector's word on the dead TPM is the reason; poststop does
	// not try the dead socket again and say it twice.
	if anyContains(r.Incomplete, "container tpm unreachable") {
		t.Errorf("reasons %q: the TPM's death given twice", r.Incomplete)
	}
}

func TestHookLongID(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("l", demoScript, 0)
	b.save(t)
	// Longer than a unix socket path allows under the run folder: the
	// TPM's sockets live in a short hashed folder instead.
	id := strings.Repeat("l", hook.MaxIDLength)
	if res := e.run("runc", b, id); res.err != nil {
		t.Fatalf("run: %v\n%s", res.err, res.out)
	}
	r := e.reportOf(id)
	checkWhole(t, r)
	if len(r.TPM.PCR10["sha256"]) != 64 {
		t.Errorf("pcr10 %v", r.TPM.PCR10)
	}
	if left := e.runFolders(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	if swtpmOf(t, e.runDir) {
		t.Error("a swtpm of the test is still running")
	}
}

func TestHookReportFolderNotWritable(t *testing.T) {
	e := newHookEnv(t, "runc")
	// A file where the reports folder should be: even root cannot write
	// into it.
	must(t, os.MkdirAll(e.stateDir, 0o700))
	must(t, os.WriteFile(filepath.Join(e.stateDir, "reports"), nil, 0o600))
	b := e.newBundle("w", demoScript, 0)
	res := e.run("runc", b, "unwritable")
	if res.err != nil {
		t.Fatalf("run: %v\n%s (poststop must not fail the run)", res.err, res.out)
	}

	// The report is kept in the run folder, whole, and the log says so.
	kept := filepath.Join(e.runDir, "unwritable", "report.json")
	r, err := report.Read(kept)
	if err != nil {
		t.Fatalf("report kept in the run folder: %v", err)
	}
	checkWhole(t, r)
	logData, _ := os.ReadFile(filepath.Join(e.stateDir, "imans.log"))
	if !strings.Contains(string(logData), "write report") {
		t.Errorf("log does not name the failed write:\n%s", logData)
	}
}

func TestHookContainerExitsAtOnce(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("q", demoScript, 0)
	b.spec.Process.Args = []string{"/bin/true"}
	b.save(t)
	if res := e.run("runc", b, "at-once"); res.err != nil {
		t.Fatalf("run: %v\n%s", res.err, res.out)
	}
	r := e.reportOf("at-once")
	checkWhole(t, r)
	if r.Verdict == report.Incomplete {
		t.Errorf("verdict %s", r.Verdict)
	}
}

func TestHookEnforceRefuses(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("x", demoScript, 0)
	// No IMA namespaces on this kernel: the kernel backend cannot start,
	// and enforce mode refuses the container.
	b.spec.Annotations["io.imans.mode"] = "enforce"
	b.spec.Annotations["io.imans.backend"] = "kernel"
	b.save(t)
	res := e.run("runc", b, "refused")
	if res.err == nil || !strings.Contains(res.out, "imans: create-runtime refused:") {
		t.Fatalf("enforce with an impossible backend: %v\n%s", res.err, res.out)
	}
	if strings.Contains(res.out, "hello from imans") {
		t.Error("the refused container ran")
	}
	// poststop, which runc still runs, reports the refusal's reason.
	r := e.reportOf("refused")
	if r.Verdict != report.Incomplete ||
		!anyContains(r.Incomplete, "refused by createRuntime (enforce): backend kernel") ||
		anyContains(r.Incomplete, "did not run") || r.Info.Backend != "kernel" {
		t.Errorf("report of the refused container: %s %q, backend %q (want kernel, "+
			"the one asked for)", r.Verdict, r.Incomplete, r.Info.Backend)
	}

	// A bad annotation in enforce mode: refused, naming the key.
	b.spec.Annotations["io.imans.backend"] = "fanotify"
	b.spec.Annotations["io.imans.expect.digests"] = "{not json"
	b.save(t)
	res = e.run("runc", b, "refused-bad")
	if res.err == nil || !strings.Contains(res.out, "io.imans.expect.digests") {
		t.Fatalf("enforce with a bad annotation: %v\n%s", res.err, res.out)
	}
	delete(b.spec.Annotations, "io.imans.expect.digests")

	// A typo in the mode fails closed: refused, naming the key, even
	// though the measurement itself could start.
	b.spec.Annotations["io.imans.mode"] = "enforced"
	b.save(t)
	res = e.run("runc", b, "refused-typo")
	if res.err == nil || !strings.Contains(res.out, "io.imans.mode") ||
		strings.Contains(res.out, "hello from imans") {
		t.Fatalf("mode typo: %v\n%s", res.err, res.out)
	}
	b.spec.Annotations["io.imans.backend"] = "kernel"

	// In audit mode the same container runs, and its report says why it
	// is incomplete.
	b.spec.Annotations["io.imans.mode"] = "audit"
	b.save(t)
	if res := e.run("runc", b, "audited"); res.err != nil {
		t.Fatalf("audit run: %v\n%s", res.err, res.out)
	}
	r = e.reportOf("audited")
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, "backend kernel") {
		t.Errorf("audit: %s %q", r.Verdict, r.Incomplete)
	}
}

func TestHookUnusableID(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("u", demoScript, 0)
	b.save(t)
	// runc accepts these ids; imans will not make files of them. Audit
	// mode: the container runs, and its report, under a hashed name,
	// says why nothing was measured.
	for _, id := range []string{".hidden", strings.Repeat("i", 250)} {
		res := e.run("runc", b, id)
		if res.err != nil || !strings.Contains(res.out, "hello from imans") {
			t.Fatalf("audit, id %.20q: %v\n%s", id, res.err, res.out)
		}
		sum := sha256.Sum256([]byte(id))
		r := e.reportOf("-sha256-" + hex.EncodeToString(sum[:16]))
		if r.Verdict != report.Incomplete || r.Info.ContainerID != id ||
			!anyContains(r.Incomplete, "bad container id") {
			t.Errorf("audit, id %.20q: %s %q %q", id, r.Verdict, r.Info.ContainerID,
				r.Incomplete)
		}
	}

	// Enforce mode refuses it with one line.
	b.spec.Annotations["io.imans.mode"] = "enforce"
	b.save(t)
	res := e.run("runc", b, ".refused")
	if res.err == nil || !strings.Contains(res.out, "imans: create-runtime refused:") ||
		!strings.Contains(res.out, "starts with '.'") ||
		strings.Contains(res.out, "hello from imans") {
		t.Fatalf("enforce, id .refused: %v\n%s", res.err, res.out)
	}
	if left := e.runFolders(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

func TestHookPoststopAlone(t *testing.T) {
	e := newHookEnv(t)
	state := []byte(`{"ociVersion":"1.0","id":"lonely","status":"stopped","pid":0,` +
		`"bundle":"/nonexistent","annotations":{"io.imans.enable":"true"}}`)
	_, errOut, code := e.imans(state, "hook", "poststop")
	if code != 0 {
		t.Fatalf("poststop without createRuntime: exit %d %s", code, errOut)
	}
	r := e.reportOf("lonely")
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, "createRuntime did not run") {
		t.Errorf("%s %q", r.Verdict, r.Incomplete)
	}
	before, _ := os.ReadFile(filepath.Join(e.stateDir, "reports", "lonely.json"))

	// Again: harmless, the report stays.
	if _, errOut, code := e.imans(state, "hook", "poststop"); code != 0 {
		t.Fatalf("second poststop: exit %d %s", code, errOut)
	}
	after, _ := os.ReadFile(filepath.Join(e.stateDir, "reports", "lonely.json"))
	if !bytes.Equal(before, after) {
		t.Error("second poststop rewrote the report")
	}

	// A container without io.imans.enable gets nothing.
	other := []byte(`{"ociVersion":"1.0","id":"plain","status":"stopped","bundle":"/x"}`)
	if _, _, code := e.imans(other, "hook", "poststop"); code != 0 {
		t.Fatalf("poststop of a plain container: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "reports", "plain.json")); err == nil {
		t.Error("a report for a container without io.imans.enable")
	}
}

func TestHookBadStdin(t *testing.T) {
	e := newHookEnv(t)
	cases := []struct {
		name  string
		stdin []byte
		want  string
	}{
		{"malformed", []byte(`{"id": "a", "bundle": `), "oci state"},
		{"empty id", []byte(`{"id":"","bundle":"/b"}`), "bad container id: empty"},
		{"oversized", bytes.Repeat([]byte("x"), 17<<20), "larger than 16 MiB"},
		{"empty", nil, "stdin is empty"},
	}
	for _, c := range cases {
		start := time.Now()
		_, errOut, code := e.imans(c.stdin, "hook", "create-runtime")
		if code != 1 || !strings.Contains(errOut, c.want) ||
			strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("create-runtime, %s stdin: exit %d, stderr %q; want 1 and one line with %q",
				c.name, code, errOut, c.want)
		}
		_, errOut, code = e.imans(c.stdin, "hook", "poststop")
		if code != 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("poststop, %s stdin: exit %d, stderr %q; want 0 and %q",
				c.name, code, errOut, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s", c.name, d)
		}
	}
	if left := e.runFolders(); len(left) != 0 {
		t.Errorf("bad stdin left run folders: %v", left)
	}
}

func anyContains(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// swtpmOf reports whether a swtpm serving a folder under dir still runs.
func swtpmOf(t *testing.T, dir string) bool {
	out, _ := exec.Command("pgrep", "-af", "swtpm").Output()
	return strings.Contains(string(out), dir)
}

// Expectations over their limit (a learnt run over many files pasted
// inline) reach the annotation check through a state of several MiB: in
// audit mode the container runs, and its report is incomplete, naming the
// key. Never a refusal without a report.
func TestHookOversizedExpectations(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("big", demoScript, 0)
	digests := map[string][]string{}
	for i := 0; len(digests)*100 < 3<<20/2; i++ {
		name := fmt.Sprintf("/data/file-with-a-reasonably-long-name-%06d.txt", i)
		digests[name] = []string{"sha256:" + strings.Repeat("ab", 32)}
	}
	value, err := json.Marshal(digests)
	must(t, err)
	if len(value) <= policy.MaxDigestsSize {
		t.Fatalf("digests annotation of %d bytes: want over %d", len(value), policy.MaxDigestsSize)
	}
	b.spec.Annotations[policy.AnnotationExpectDigests] = string(value)
	b.save(t)
	if res := e.run("runc", b, "big"); res.err != nil {
		t.Fatalf("audit mode refused the container: %v\n%s", res.err, res.out)
	}
	r := e.reportOf("big")
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, policy.AnnotationExpectDigests) {
		t.Errorf("verdict %s, incomplete %q; want incomplete naming %s", r.Verdict,
			r.Incomplete, policy.AnnotationExpectDigests)
	}
}

// A container whose program cannot be executed leaves a list that is not
// empty (runc reads /etc/passwd in the container before its exec), yet
// measures no run: its report is incomplete, and never passes, even with
// that list learnt as expected.
func TestHookProgramNeverRuns(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("never", demoScript, 0)
	b.spec.Process.Args = []string{"/nonexistent"}
	b.save(t)
	if res := e.run("runc", b, "never"); res.err == nil {
		t.Fatalf("runc ran /nonexistent:\n%s", res.out)
	}
	r := e.reportOf("never")
	if r.Verdict != report.Incomplete || !anyContains(r.Incomplete, "executed no program") {
		t.Errorf("verdict %s, incomplete %q, entries %d; want incomplete: executed no program",
			r.Verdict, r.Incomplete, r.TPM.Entries)
	}
}
