//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imans-project/imans/report"
)

const (
	demoScript    = "echo hello from imans\n"
	changedScript = "echo hello from imans\necho someone was here\n"
)

// threeRuns is the demo's scenario under one runtime: a learning run, a
// run with the learnt expectations (pass), a run with the script changed
// (fail, naming the script, its new digest and PCR 10's values). Every
// value is checked against digests and a replay computed here.
func threeRuns(t *testing.T, runtime string, uid uint32) {
	e := newHookEnv(t, runtime)
	b := e.newBundle("c", demoScript, uid)
	id := fmt.Sprintf("%s-%d", runtime, uid)

	// 1. Learning run: no expectations, so every file is unexpected.
	res := e.run(runtime, b, id+"-learn")
	if res.err != nil || !strings.Contains(res.out, "hello from imans") {
		t.Fatalf("learning run: %v\n%s", res.err, res.out)
	}
	learn := e.reportOf(id + "-learn")
	list := checkWhole(t, learn)
	script := findEntry(list, "/app/demo.sh")
	if len(script) != 1 || script[0].digest != sha256Hex(demoScript) {
		t.Fatalf("learning run: entries of /app/demo.sh %+v, want one with %s",
			script, sha256Hex(demoScript))
	}
	if learn.Verdict != report.Fail || !hasFinding(learn, report.UnexpectedFile, "/app/demo.sh") {
		t.Errorf("learning run: verdict %s findings %v, want fail with /app/demo.sh unexpected",
			learn.Verdict, learn.Findings)
	}
	if learn.Info.Backend == "" || learn.Info.PolicySHA256 == "" || learn.Info.Kernel == "" {
		t.Errorf("learning run: info incomplete: %+v", learn.Info)
	}

	// 2. The learnt annotations, as `imans expect` prints them.
	out, errOut, code := e.imans(nil, "expect", "--from-report", id+"-learn", "--json")
	if code != 0 {
		t.Fatalf("imans expect: exit %d: %s", code, errOut)
	}
	var ann map[string]string
	must(t, json.Unmarshal([]byte(out), &ann))
	if ann["io.imans.expect.pcr10.sha256"] != learn.TPM.PCR10["sha256"] ||
		ann["io.imans.expect.pcr10.sha1"] != learn.TPM.PCR10["sha1"] {
		t.Fatalf("expect: pcr annotations %v, report %v", ann, learn.TPM.PCR10)
	}
	b.spec.Annotations = ann
	b.save(t)
	if res := e.run(runtime, b, id+"-pass"); res.err != nil {
		t.Fatalf("second run: %v\n%s", res.err, res.out)
	}
	pass := e.reportOf(id + "-pass")
	checkWhole(t, pass)
	if pass.Verdict != report.Pass || len(pass.Findings) != 0 {
		t.Errorf("second run: %s %v, want pass", pass.Verdict, pass.Findings)
	}
	if pass.TPM.PCR10["sha256"] != learn.TPM.PCR10["sha256"] {
		t.Errorf("second run: pcr10 %s, learning run %s", pass.TPM.PCR10["sha256"],
			learn.TPM.PCR10["sha256"])
	}

	// 3. The script changed.
	b.writeScript(t, changedScript)
	if res := e.run(runtime, b, id+"-changed"); res.err != nil {
		t.Fatalf("third run: %v\n%s", res.err, res.out)
	}
	bad := e.reportOf(id + "-changed")
	list = checkWhole(t, bad)
	if bad.Verdict != report.Fail {
		t.Errorf("third run: verdict %s, want fail", bad.Verdict)
	}
	var changed, pcr256 *report.Finding
	for i, f := range bad.Findings {
		switch {
		case f.Kind == report.ChangedFile && f.Path == "/app/demo.sh":
			changed = &bad.Findings[i]
		case f.Kind == report.PCRMismatch && f.Bank == "sha256":
			pcr256 = &bad.Findings[i]
		}
	}
	if changed == nil || changed.Digest != sha256Hex(changedScript) ||
		len(changed.Expected) != 1 || changed.Expected[0] != sha256Hex(demoScript) {
		t.Errorf("third run: changed-file finding %+v, want /app/demo.sh %s expected %s",
			changed, sha256Hex(changedScript), sha256Hex(demoScript))
	}
	want := replayPCR10(list)["sha256"]
	if pcr256 == nil || pcr256.ExpectedPCR != learn.TPM.PCR10["sha256"] ||
		pcr256.ActualPCR != want {
		t.Errorf("third run: pcr finding %+v, want expected %s actual %s", pcr256,
			learn.TPM.PCR10["sha256"], want)
	}

	// The human summary leads with the verdict and names the script.
	out, _, _ = e.imans(nil, "report", "show", id+"-changed")
	if !strings.HasPrefix(out, "FAIL") || !strings.Contains(out, "changed file: /app/demo.sh") {
		t.Errorf("report show:\n%s", out)
	}

	// Nothing is left running or lying around.
	if left := e.runFolders(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

func hasFinding(r *report.Report, kind, path string) bool {
	for _, f := range r.Findings {
		if f.Kind == kind && f.Path == path {
			return true
		}
	}
	return false
}

func TestHookRunc(t *testing.T) { threeRuns(t, "runc", 0) }

func TestHookRuncUserNamespace(t *testing.T) { threeRuns(t, "runc", 200000) }

func TestHookCrun(t *testing.T) { threeRuns(t, "crun", 0) }

// TestHookConcurrent starts 20 containers at once, each with its own
// script, and checks each report against its own script's digest.
func TestHookConcurrent(t *testing.T) {
	const n = 20
	e := newHookEnv(t, "runc")
	bundles := make([]*bundle, n)
	for i := range bundles {
		bundles[i] = e.newBundle(fmt.Sprintf("b%d", i), scriptN(i), 0)
	}

	var wg sync.WaitGroup
	results := make([]runResult, n)
	for i := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run("runc", bundles[i], fmt.Sprintf("conc-%d", i))
		}()
	}
	wg.Wait()

	for i := range bundles {
		id := fmt.Sprintf("conc-%d", i)
		if results[i].err != nil {
			t.Errorf("%s: %v\n%s", id, results[i].err, results[i].out)
			continue
		}
		r := e.reportOf(id)
		list := checkWhole(t, r)
		got := findEntry(list, "/app/demo.sh")
		if len(got) != 1 || got[0].digest != sha256Hex(scriptN(i)) {
			t.Errorf("%s: /app/demo.sh entries %+v, want %s", id, got, sha256Hex(scriptN(i)))
		}
		if r.Info.ContainerID != id || r.Info.Bundle != bundles[i].dir {
			t.Errorf("%s: report of %s bundle %s", id, r.Info.ContainerID, r.Info.Bundle)
		}
	}
	if left := e.runFolders(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

func scriptN(i int) string {
	return fmt.Sprintf("echo container %d\n", i)
}

func TestHookCrunUserNamespace(t *testing.T) { threeRuns(t, "crun", 300000) }

// TestHookRuncCreateStartDelete runs the container the way engines do:
// create, start, and delete only after it stopped. The collector ends on
// its own when the container exits; poststop comes later and still finds
// the whole record.
func TestHookRuncCreateStartDelete(t *testing.T) {
	e := newHookEnv(t, "runc")
	b := e.newBundle("csd", demoScript, 0)
	// Output goes through a file: the created container inherits runc
	// create's stdio and would hold a pipe open until it exits.
	runc := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
		defer cancel()
		out, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", e.runcRoot}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		data, _ := os.ReadFile(out.Name())
		if err != nil {
			t.Fatalf("runc %v: %v\n%s", args, err, data)
		}
		return string(data)
	}
	runc("create", "--bundle", b.dir, "csd")
	runc("start", "csd")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(runc("state", "csd"), `"status": "stopped"`) {
		if time.Now().After(deadline) {
			t.Fatal("container did not stop within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let the collector notice and end before poststop comes.
	time.Sleep(500 * time.Millisecond)
	runc("delete", "csd")

	r := e.reportOf("csd")
	list := checkWhole(t, r)
	if got := findEntry(list, "/app/demo.sh"); len(got) != 1 ||
		got[0].digest != sha256Hex(demoScript) {
		t.Errorf("/app/demo.sh entries %+v", got)
	}
}
