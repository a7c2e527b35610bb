package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/policy"
	"github.com/imans-project/imans/report"
)

// expectAnnotations is expectAnnotationsPolicy with the run's policy
// annotation read from the bundle.
func expectAnnotations(r *report.Report, listPath string) (map[string]string, error) {
	return expectAnnotationsPolicy(r, listPath, "", false)
}

// learnt writes a one-entry list and a report of a run whose bundle has the
// annotations ann and whose policy text was policyText, and returns the
// report.
func learnt(t *testing.T, ann map[string]string, policyText string) (*report.Report, string) {
	t.Helper()
	dir := t.TempDir()

	// sha256 of "echo hi\n".
	digest, _ := hex.DecodeString(
		"ab08508fdf5ca4da5c4995987bc41c56c048aaa5eeb046417ae4049b7d40286e")
	e, err := ima.NewNG(10, "sha256", digest, "/app/s.sh")
	if err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "c.log.bin")
	body := e.AppendBinary(nil, binary.LittleEndian)
	if err := os.WriteFile(list, body, 0o600); err != nil {
		t.Fatal(err)
	}
	logSum := sha256.Sum256(body)

	bundle := filepath.Join(dir, "bundle")
	if err := os.Mkdir(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	config, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "annotations": ann})
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}

	sum := sha256.Sum256([]byte(policyText))
	r := &report.Report{
		Schema: report.Schema,
		TPM: report.Evidence{
			PCR10:       map[string]string{"sha1": strings.Repeat("ab", 20)},
			ListMatches: true,
			Entries:     1,
			LogSHA256:   hex.EncodeToString(logSum[:]),
		},
		Info: report.Info{Bundle: bundle, PolicySHA256: hex.EncodeToString(sum[:]),
			BinaryLog: list},
	}
	return r, bundle
}

func TestExpectKeepsTheRunsPolicy(t *testing.T) {
	const text = "measure func=BPRM_CHECK\n"
	run := map[string]string{
		policy.AnnotationEnable:  "true",
		policy.AnnotationPolicy:  text,
		policy.AnnotationBackend: "fanotify",
		policy.AnnotationMode:    "enforce",
		// an earlier run's expectations are not carried over
		policy.AnnotationPCR10SHA256: strings.Repeat("cd", 32),
	}
	r, _ := learnt(t, run, text)
	ann, err := expectAnnotations(r, r.Info.BinaryLog)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		policy.AnnotationEnable:  "true",
		policy.AnnotationPolicy:  text,
		policy.AnnotationBackend: "fanotify",
		policy.AnnotationMode:    "enforce",
		policy.AnnotationExpectDigests: `{"/app/s.sh":["sha256:` +
			"ab08508fdf5ca4da5c4995987bc41c56c048aaa5eeb046417ae4049b7d40286e" + `"]}`,
		policy.AnnotationPCR10SHA1: strings.Repeat("ab", 20),
	}
	if len(ann) != len(want) {
		t.Errorf("annotations %v, want %v", ann, want)
	}
	for k, v := range want {
		if ann[k] != v {
			t.Errorf("%s = %q, want %q", k, ann[k], v)
		}
	}

	// The learnt annotations are valid together.
	if _, err := policy.SpecFromAnnotations(ann, t.TempDir()); err != nil {
		t.Errorf("learnt annotations refused: %v", err)
	}
}

func TestExpectBuiltinPolicyNeedsNoBundle(t *testing.T) {
	r, bundle := learnt(t, map[string]string{policy.AnnotationEnable: "true"},
		policy.BuiltinText())
	if err := os.RemoveAll(bundle); err != nil {
		t.Fatal(err)
	}
	ann, err := expectAnnotations(r, r.Info.BinaryLog)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ann[policy.AnnotationPolicy]; ok {
		t.Errorf("built-in policy given as an annotation: %v", ann)
	}
}

// When the run's policy cannot be found again, the learnt annotations
// would measure with another policy and never pass: say so.
func TestExpectPolicyLost(t *testing.T) {
	const text = "measure func=BPRM_CHECK\n"
	r, bundle := learnt(t, map[string]string{policy.AnnotationEnable: "true",
		policy.AnnotationPolicy: text}, text)

	// the bundle changed its policy since
	changed, _ := json.Marshal(map[string]any{"annotations": map[string]string{
		policy.AnnotationEnable: "true", policy.AnnotationPolicy: "measure func=FILE_CHECK"}})
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), changed, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := expectAnnotations(r, r.Info.BinaryLog)
	if err == nil || !strings.Contains(err.Error(), policy.AnnotationPolicy) ||
		!strings.Contains(err.Error(), r.Info.PolicySHA256) {
		t.Errorf("changed policy: %v, want an error naming %s and the run's policy",
			err, policy.AnnotationPolicy)
	}

	// the bundle is gone
	if err := os.RemoveAll(bundle); err != nil {
		t.Fatal(err)
	}
	_, err = expectAnnotations(r, r.Info.BinaryLog)
	if err == nil || !strings.Contains(err.Error(), policy.AnnotationPolicy) {
		t.Errorf("bundle gone: %v, want an error naming %s", err, policy.AnnotationPolicy)
	}
}

func TestReportCommandErrors(t *testing.T) {
	if got := run([]string{"imans", "report", "shwo", "x"}); got != 2 {
		t.Errorf("an unknown report subcommand: exit status %d, want 2", got)
	}
	if got := run([]string{"imans", "report", "show"}); got != 2 {
		t.Errorf("report show without argument: exit status %d, want 2", got)
	}
	bad := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(bad, []byte(`{"schema":"imans.report/v9"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"imans", "report", "show", bad}); got != 1 {
		t.Errorf("report of another schema: exit status %d, want 1", got)
	}
	if _, err := reportLoad(""); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("report of an empty id: %v, want an error saying it is empty", err)
	}
}

// The list beside a report is a copy the TPM does not vouch for by itself:
// learn only from the one whose sha256 the report recorded.
func TestExpectListNotTheRuns(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	e, err := ima.NewNG(10, "sha256", make([]byte, 32), "/app/other")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Info.BinaryLog, e.AppendBinary(nil, binary.LittleEndian),
		0o600); err != nil {
		t.Fatal(err)
	}
	_, err = expectAnnotations(r, r.Info.BinaryLog)
	if err == nil || !strings.Contains(err.Error(), r.TPM.LogSHA256) {
		t.Errorf("another list: %v, want an error naming the report's log_sha256", err)
	}
}

// podman run --rm removes the bundle: the run's policy can be given on the
// command line instead, and is checked against the report.
func TestExpectPolicyGiven(t *testing.T) {
	const text = "measure func=BPRM_CHECK\n"
	r, bundle := learnt(t, map[string]string{policy.AnnotationEnable: "true",
		policy.AnnotationPolicy: text}, text)
	if err := os.RemoveAll(bundle); err != nil {
		t.Fatal(err)
	}

	ann, err := expectAnnotationsPolicy(r, r.Info.BinaryLog, text, true)
	if err != nil || ann[policy.AnnotationPolicy] != text {
		t.Errorf("policy given: %v, %v", ann, err)
	}
	_, err = expectAnnotationsPolicy(r, r.Info.BinaryLog, "measure func=FILE_CHECK", true)
	if err == nil || !strings.Contains(err.Error(), "--policy") {
		t.Errorf("another policy given: %v, want an error naming --policy", err)
	}
}

// When the reports folder could not be written, poststop leaves the report
// in the run folder: report show ID finds it there.
func TestReportShowRunFolderFallback(t *testing.T) {
	state, runDir := t.TempDir(), t.TempDir()
	t.Setenv("IMANS_STATE_DIR", state)
	t.Setenv("IMANS_RUN_DIR", runDir)
	if err := os.WriteFile(filepath.Join(state, "reports"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"imans", "report", "show", "c1"}); got != 1 {
		t.Errorf("no report anywhere: exit status %d, want 1", got)
	}

	r := &report.Report{Schema: report.Schema, Verdict: report.Fail,
		Info: report.Info{ContainerID: "c1"}}
	if err := os.Mkdir(filepath.Join(runDir, "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(filepath.Join(runDir, "c1", "report.json")); err != nil {
		t.Fatal(err)
	}
	got, err := reportLoad("c1")
	if err != nil || got.Info.ContainerID != "c1" || got.Verdict != report.Fail {
		t.Errorf("report in the run folder: %+v, %v", got, err)
	}
}

// A container id imans cannot use as a file name has its report under the
// id's hash: report show ID finds it by the id.
func TestReportShowHashedID(t *testing.T) {
	state := t.TempDir()
	t.Setenv("IMANS_STATE_DIR", state)
	const id = ".hidden"
	r := &report.Report{Schema: report.Schema, Verdict: report.Incomplete,
		Info: report.Info{ContainerID: id}}
	if err := os.Mkdir(filepath.Join(state, "reports"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := hook.DefaultPaths().Report(id)
	if filepath.Base(path) == id+".json" {
		t.Fatalf("report of %q at %s: want a hashed name", id, path)
	}
	if err := r.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := reportLoad(id)
	if err != nil || got.Info.ContainerID != id {
		t.Errorf("report of %q: %+v, %v", id, got, err)
	}
}

// shellWords splits a line of words written as printPodman writes them:
// single-quoted, a quote itself as '\”.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	in, started := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			in, started = !in, true
		case !in && c == '\\' && i+1 < len(line):
			i++
			w.WriteByte(line[i])
		case !in && c == ' ':
			if started {
				words = append(words, w.String())
				w.Reset()
				started = false
			}
		default:
			w.WriteByte(c)
			started = true
		}
	}
	if in {
		t.Fatalf("unterminated quote in %q", line)
	}
	if started {
		words = append(words, w.String())
	}
	return words
}

// podman reads each --annotation as CSV: a value with a comma or a quote
// (the JSON of the digests) must be one quoted field.
func TestExpectPodmanArgs(t *testing.T) {
	ann := map[string]string{
		policy.AnnotationEnable:        "true",
		policy.AnnotationExpectDigests: `{"/a":["sha256:00"],"/it's":["sha256:01"]}`,
		policy.AnnotationPolicy:        "measure func=BPRM_CHECK\nmeasure func=FILE_CHECK",
	}
	var b strings.Builder
	printPodman(&b, ann)
	line := b.String()
	// one line, but for the newlines inside a quoted value
	if strings.Count(line, "\n") != 2 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("want one line (the policy's newline quoted): %q", line)
	}

	got := map[string]string{}
	for _, w := range shellWords(t, strings.TrimSuffix(line, "\n")) {
		field, ok := strings.CutPrefix(w, "--annotation=")
		if !ok {
			t.Fatalf("word %q", w)
		}
		rec, err := csv.NewReader(strings.NewReader(field)).Read()
		if err != nil || len(rec) != 1 {
			t.Fatalf("field %q: %q, %v", field, rec, err)
		}
		k, v, _ := strings.Cut(rec[0], "=")
		got[k] = v
	}
	if len(got) != len(ann) {
		t.Errorf("got %q, want %q", got, ann)
	}
	for k, v := range ann {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// A container whose processes run side by side measures its files in
// another order each run, so PCR 10 differs while every digest matches:
// --no-pcr10 leaves PCR 10 out of the learnt annotations.
func TestExpectNoPCR10(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	r.Verdict = report.Fail
	stdout := os.Stdout
	rd, wr, _ := os.Pipe()
	os.Stdout = wr
	file := filepath.Join(t.TempDir(), "r.json")
	if err := r.Write(file); err != nil {
		t.Fatal(err)
	}
	code := run([]string{"imans", "expect", "--from-report", file, "--no-pcr10", "--json"})
	wr.Close()
	os.Stdout = stdout
	var ann map[string]string
	if err := json.NewDecoder(rd).Decode(&ann); err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
	for k := range ann {
		if strings.HasPrefix(k, policy.AnnotationExpectPCR10) {
			t.Errorf("--no-pcr10 printed %s", k)
		}
	}
	if ann[policy.AnnotationExpectDigests] == "" {
		t.Errorf("--no-pcr10 dropped the digests: %v", ann)
	}
}

// A violation is a finding of every run that has it, and annotations cannot
// exclude a path: say that the learnt annotations will not pass.
// Learning from a run that failed its own expectations says which files
// had changed: the annotations would accept the changes.
func TestExpectWarnsOfChangedFiles(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	r.Findings = append(r.Findings, report.Finding{Kind: report.ChangedFile, Index: 1,
		Path: "/app/demo.sh", Digest: "sha256:00"})
	var warn strings.Builder
	expectWarn = &warn
	defer func() { expectWarn = os.Stderr }()
	if _, err := expectAnnotations(r, r.Info.BinaryLog); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn.String(), "failed its own expectations, file(s) changed: "+
		"/app/demo.sh;") {
		t.Errorf("warning %q, want one naming /app/demo.sh", warn.String())
	}
}

func TestExpectWarnsOfViolations(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	list, err := os.ReadFile(r.Info.BinaryLog)
	if err != nil {
		t.Fatal(err)
	}
	list = ima.NewViolation(10, "/app/log").AppendBinary(list, binary.LittleEndian)
	if err := os.WriteFile(r.Info.BinaryLog, list, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(list)
	r.TPM.LogSHA256 = hex.EncodeToString(sum[:])

	var warn strings.Builder
	expectWarn = &warn
	defer func() { expectWarn = os.Stderr }()
	if _, err := expectAnnotations(r, r.Info.BinaryLog); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn.String(), "violation") ||
		!strings.Contains(warn.String(), `"/app/log" (entry 1)`) {
		t.Errorf("warning %q, want one naming the violation of /app/log", warn.String())
	}
}

// The mode is the one the run had (the report's), not the bundle's now.
func TestExpectModeFromReport(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true",
		policy.AnnotationMode: "enforce"}, policy.BuiltinText())
	r.Info.Mode = "audit"
	ann, err := expectAnnotations(r, r.Info.BinaryLog)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := ann[policy.AnnotationMode]; ok {
		t.Errorf("run in audit mode learnt %s=%s", policy.AnnotationMode, m)
	}

	r, _ = learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	r.Info.Mode = "enforce"
	ann, err = expectAnnotations(r, r.Info.BinaryLog)
	if err != nil || ann[policy.AnnotationMode] != "enforce" {
		t.Errorf("run in enforce mode: %v, %v", ann, err)
	}
}

// The list named by a report is opened without blocking: a FIFO there is
// refused at once.
func TestExpectListFIFO(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	fifo := filepath.Join(t.TempDir(), "list")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := expectAnnotations(r, fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("fifo: %v, want not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("expect blocks on a fifo")
	}
}
