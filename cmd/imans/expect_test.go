package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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

// vouchedOne is the evidence of a whole record of one entry: reports read
// back must have a verdict their contents give (report.CheckVerdict).
var vouchedOne = report.Evidence{PCR10: map[string]string{"sha1": strings.Repeat("ab", 20)},
	ReplayPCR10: map[string]string{"sha1": strings.Repeat("ab", 20)},
	ListMatches: true, Entries: 1}

// unexpectedDemo is the finding of a learning run: a file measured with no
// expectation.
var unexpectedDemo = report.Finding{Kind: report.UnexpectedFile, Path: "/app/demo.sh",
	Digest: "sha256:" + strings.Repeat("72", 32)}

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
			ReplayPCR10: map[string]string{"sha1": strings.Repeat("ab", 20)},
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
	// A bank the TPM has but the list was not replayed in is not learnt:
	// the hook would refuse its annotation.
	r.TPM.PCR10["sha384"] = strings.Repeat("ef", 48)
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
	if got := run([]string{"imans", "expect", "--from-report", bad, "--json",
		"--podman"}); got != 2 {
		t.Errorf("expect --json --podman: exit status %d, want 2", got)
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
		Findings: []report.Finding{unexpectedDemo}, TPM: vouchedOne,
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
	r.Findings = []report.Finding{unexpectedDemo}
	r.Decide()
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

// A report kept in the run folder is newer than the one in the reports
// folder: show prefers it. A run folder without one (a run in progress)
// leaves the reports folder's.
func TestReportShowPrefersKeptReport(t *testing.T) {
	state, runDir := t.TempDir(), t.TempDir()
	t.Setenv("IMANS_STATE_DIR", state)
	t.Setenv("IMANS_RUN_DIR", runDir)
	paths := hook.DefaultPaths()
	if err := os.Mkdir(paths.Reports(), 0o700); err != nil {
		t.Fatal(err)
	}
	// A run in progress, no report yet: the error says so.
	if err := os.Mkdir(paths.Run("c0"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := reportLoad("c0"); err == nil || !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "has not reached its poststop") {
		t.Errorf("run in progress without a report: %v", err)
	}

	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	older := &report.Report{Schema: report.Schema, Verdict: report.Pass, Findings: []report.Finding{},
		TPM: vouchedOne, Info: report.Info{ContainerID: "c1", Started: t0}}
	if err := older.Write(paths.Report("c1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(paths.Run("c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got, err := reportLoad("c1"); err != nil || got.Verdict != report.Pass {
		t.Fatalf("run in progress: %+v, %v; want the earlier pass", got, err)
	}

	newer := &report.Report{Schema: report.Schema, Verdict: report.Incomplete,
		Incomplete: []string{"collector 12 was not running at stop"},
		Info:       report.Info{ContainerID: "c1", Started: t0.Add(time.Minute)}}
	if err := newer.Write(filepath.Join(paths.Run("c1"), hook.KeptReportFile)); err != nil {
		t.Fatal(err)
	}
	got, err := reportLoad("c1")
	if err != nil || got.Verdict != report.Incomplete || len(got.Incomplete) != 1 {
		t.Errorf("kept report beside an older pass: %+v, %v; want the kept incomplete", got, err)
	}

	// A kept report older than the reports folder's (a later run was
	// reported there) is not shown.
	older.Info.Started = t0.Add(time.Hour)
	older.Verdict, older.Incomplete = report.Incomplete, []string{"not measured: later"}
	if err := older.Write(paths.Report("c1")); err != nil {
		t.Fatal(err)
	}
	if got, err := reportLoad("c1"); err != nil || got.Info.Started != older.Info.Started {
		t.Errorf("kept report older than the reports folder's: %+v, %v; want the later", got, err)
	}
}

// An incomplete report holds partial evidence: learning from a run that
// measured nothing would print an empty digests object and the PCR 10 of
// an empty list, which the next run, measuring nothing again, would pass.
// A learning run's report, "fail" with every file unexpected, still
// teaches.
func TestExpectRefusesIncompleteReport(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	if err := os.WriteFile(r.Info.BinaryLog, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := sha256.Sum256(nil)
	r.TPM = report.Evidence{
		PCR10: map[string]string{"sha1": strings.Repeat("0", 40),
			"sha256": strings.Repeat("0", 64)},
		ReplayPCR10: map[string]string{"sha1": strings.Repeat("0", 40),
			"sha256": strings.Repeat("0", 64)},
		ListMatches: true,
		LogSHA256:   hex.EncodeToString(empty[:]),
	}
	r.Decide()
	file := filepath.Join(t.TempDir(), "r.json")
	if err := r.Write(file); err != nil {
		t.Fatal(err)
	}

	code, out := tpmStdout(t, "expect", "--from-report", file)
	if code != 1 || out != "" {
		t.Errorf("nothing measured: exit %d, output %q; want 1 and no annotations", code, out)
	}
	_, err := learnAnnotations(r, file, learnOptions{})
	want := "expect: report " + file + " is incomplete, so there is nothing to learn " +
		`from it: "nothing was measured: the list is empty (the container's process never ` +
		"started, every file it used is on a filesystem the policy does not measure, such " +
		`as tmpfs, or the policy measures none of them)"`
	if err == nil || err.Error() != want {
		t.Errorf("nothing measured:\n%v\nwant\n%s", err, want)
	}

	// Every reason is named, even with the list vouched for.
	r, _ = learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	r.Incomplete = []string{"collector 12 was not running at stop", "backend: lost 3 events"}
	r.Decide()
	_, err = learnAnnotations(r, "c1", learnOptions{})
	want = `expect: report c1 is incomplete, so there is nothing to learn from it: ` +
		`"collector 12 was not running at stop"; "backend: lost 3 events"`
	if err == nil || err.Error() != want {
		t.Errorf("collector died:\n%v\nwant\n%s", err, want)
	}

	// The learning run.
	r, _ = learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	r.Findings = []report.Finding{{Kind: report.UnexpectedFile, Path: "/app/s.sh",
		Digest: "sha256:ab08508fdf5ca4da5c4995987bc41c56c048aaa5eeb046417ae4049b7d40286e"}}
	r.Decide()
	if r.Verdict != report.Fail {
		t.Fatalf("learning run decided %s, want fail", r.Verdict)
	}
	if err := r.Write(file); err != nil {
		t.Fatal(err)
	}
	code, out = tpmStdout(t, "expect", "--from-report", file)
	if code != 0 || !strings.Contains(out, policy.AnnotationExpectDigests+`={"/app/s.sh":[`) {
		t.Errorf("learning run: exit %d, output %q", code, out)
	}
}

// A report edited to "pass" over its incomplete reasons is refused when
// read: neither report show nor expect takes its word.
func TestReportShowRefusesEditedVerdict(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	r.Incomplete = []string{"collector 12 was not running at stop"}
	r.Verdict = report.Pass
	file := filepath.Join(t.TempDir(), "r.json")
	if err := r.Write(file); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"report", "show", file}, {"expect", "--from-report", file}} {
		if code, out := tpmStdout(t, args...); code != 1 || out != "" {
			t.Errorf("%s: exit %d, output %q; want 1 and nothing", args[0], code, out)
		}
	}
	_, err := reportLoad(file)
	want := "read report " + file + `: verdict contradicts the report: it says "pass", ` +
		`but it lists 1 incomplete reason (the first: "collector 12 was not running at ` +
		`stop"), which makes it "incomplete"`
	if err == nil || err.Error() != want {
		t.Errorf("edited verdict:\n%v\nwant\n%s", err, want)
	}
}

// bigList replaces the list of a report made by learnt with one of n
// files, /usr/lib/python3/site-packages/pkg/moduleNNNNN.py (49 bytes)
// each with one sha256 digest, and returns the report.
func bigList(t *testing.T, r *report.Report, n int) *report.Report {
	t.Helper()
	var list []byte
	for i := 0; i < n; i++ {
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		e, err := ima.NewNG(10, "sha256", sum[:],
			fmt.Sprintf("/usr/lib/python3/site-packages/pkg/module%05d.py", i))
		if err != nil {
			t.Fatal(err)
		}
		list = e.AppendBinary(list, binary.LittleEndian)
	}
	setList(t, r, list, n)
	return r
}

// setList makes list the report's binary list of n entries: written where
// the report names it, with its sha256 and length in the TPM evidence.
func setList(t *testing.T, r *report.Report, list []byte, n int) {
	t.Helper()
	if err := os.WriteFile(r.Info.BinaryLog, list, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(list)
	r.TPM.LogSHA256, r.TPM.Entries = hex.EncodeToString(sum[:]), n
}

// A run of 12,000 files learns digests too large for the inline
// annotation: expect refuses to print it, and writes them to a file that
// the annotation names instead when asked.
func TestExpectDigestsOverInlineLimit(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	bigList(t, r, 12000)

	// Each file is `"PATH":["sha256:HEX"]`, 2+49+1+1+73+1 = 127 bytes:
	// 12000 of them, 11999 commas and the braces make 1536001.
	_, err := learnAnnotations(r, "c1", learnOptions{})
	want := "expect: the io.imans.expect.digests annotation would be 1536001 bytes, over " +
		"its limit of 1048576 for an inline value: write the digests to a file with " +
		"--digests-file /etc/imans/expectations/NAME, which prints " +
		"io.imans.expect.digests=@NAME instead"
	if err == nil || err.Error() != want {
		t.Fatalf("12000 files inline:\n%v\nwant\n%s", err, want)
	}

	var warn strings.Builder
	expectWarn = &warn
	defer func() { expectWarn = os.Stderr }()
	config := t.TempDir()
	dir := filepath.Join(config, "expectations")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "big.json")
	ann, err := learnAnnotations(r, "c1", learnOptions{digestsFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if ann[policy.AnnotationExpectDigests] != "@big.json" {
		t.Errorf("annotation %q, want @big.json", ann[policy.AnnotationExpectDigests])
	}
	if want := file + " is not in /etc/imans/expectations, the only folder " +
		"io.imans.expect.digests=@big.json is read from: copy it there"; !strings.Contains(
		warn.String(), want) {
		t.Errorf("warning %q, want one saying %q", warn.String(), want)
	}

	// The next run's hook takes the file.
	spec, err := policy.SpecFromAnnotations(ann, config)
	if err != nil {
		t.Fatal(err)
	}
	got := spec.Expect.Digests["/usr/lib/python3/site-packages/pkg/module11999.py"]
	if len(spec.Expect.Digests) != 12000 || len(got) != 1 || spec.Expect.Source != "@big.json" {
		t.Errorf("expectations read back: %d paths, source %s, last %v",
			len(spec.Expect.Digests), spec.Expect.Source, got)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("expectations file: %v, %v; want mode 0644", fi, err)
	}
	// Keylime's form: bare hex, the algorithm told by the length.
	var kl struct{ Digests map[string][]string }
	data, _ := os.ReadFile(file)
	if err := json.Unmarshal(data, &kl); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte{byte(11999 % 256), byte(11999 >> 8)})
	if d := kl.Digests["/usr/lib/python3/site-packages/pkg/module11999.py"]; len(d) != 1 ||
		d[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("digest in the file %v, want bare hex %x", d, sum)
	}

	if _, err := learnAnnotations(r, "c1", learnOptions{digestsFile: dir + "/"}); err == nil ||
		!strings.Contains(err.Error(), "want a file path") {
		t.Errorf("--digests-file naming a folder: %v", err)
	}
	missing := filepath.Join(config, "nowhere", "big.json")
	if _, err := learnAnnotations(r, "c1", learnOptions{digestsFile: missing}); err == nil ||
		!strings.Contains(err.Error(), "no folder "+filepath.Dir(missing)) {
		t.Errorf("--digests-file in a missing folder: %v", err)
	}
}

// All annotations travel in the OCI state, JSON-escaped once more: learnt
// ones that would make it larger than the hook reads are refused.
func TestExpectAnnotationsOverStateLimit(t *testing.T) {
	ann := map[string]string{
		policy.AnnotationEnable:        "true",
		policy.AnnotationExpectDigests: `{"/a":["sha1:` + strings.Repeat("0", 40) + `"]}`,
	}
	// In the state, {"io.imans.enable":"true","io.imans.expect.digests":
	// "{\"/a\":[\"sha1:HEX\"]}"}: braces 2, keys 17+25, colons 2, comma 1,
	// "true" 6, the digests 1+16+40+4+1 = 62, in all 115 bytes; with 8192
	// for the rest of the state, 8307.
	err := checkAnnotationSizes(ann, 8306)
	want := "expect: the annotations would make an oci state of about 8307 bytes, over the " +
		"8306 the hook reads: write the digests to a file with --digests-file " +
		"/etc/imans/expectations/NAME, which prints io.imans.expect.digests=@NAME instead"
	if err == nil || err.Error() != want {
		t.Errorf("over the state limit:\n%v\nwant\n%s", err, want)
	}
	if err := checkAnnotationSizes(ann, 8307); err != nil {
		t.Errorf("at the state limit: %v", err)
	}
}

// Two names that are not UTF-8 and differ only in their invalid bytes are
// one key in JSON: the learnt annotation gives that key once, with the
// digests of both, since a path given twice is refused.
func TestExpectNamesJSONSpellsAlike(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	var list []byte
	for i, name := range []string{"/app/\xffz", "/app/\xfez"} {
		e, err := ima.NewNG(10, "sha256", bytesOf(byte(i+1), 32), name)
		if err != nil {
			t.Fatal(err)
		}
		list = e.AppendBinary(list, binary.LittleEndian)
	}
	setList(t, r, list, 2)

	ann, err := learnAnnotations(r, "c1", learnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"/app/` + "\uFFFD" + `z":["sha256:` + strings.Repeat("01", 32) + `","sha256:` +
		strings.Repeat("02", 32) + `"]}`
	if got := ann[policy.AnnotationExpectDigests]; got != want {
		t.Errorf("digests %q, want %q", got, want)
	}
	if _, err := policy.SpecFromAnnotations(ann, t.TempDir()); err != nil {
		t.Errorf("learnt annotations refused: %v", err)
	}
}

// bytesOf returns n bytes of value b.
func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// report show --check exits with the verdict; without it, 0 for any
// report it could read.
func TestReportShowCheck(t *testing.T) {
	dir := t.TempDir()
	reports := map[report.Verdict]*report.Report{
		report.Pass: {Schema: report.Schema, Verdict: report.Pass, Findings: []report.Finding{},
			TPM: vouchedOne},
		report.Fail: {Schema: report.Schema, Verdict: report.Fail,
			Findings: []report.Finding{{Kind: report.UnexpectedFile, Path: "/x", Index: 0,
				Digest: "sha256:" + strings.Repeat("cd", 32)}},
			TPM: vouchedOne},
		report.Incomplete: {Schema: report.Schema, Verdict: report.Incomplete,
			Incomplete: []string{"collector 12 was not running at stop"}},
	}
	want := map[report.Verdict]int{report.Pass: 0, report.Fail: 3, report.Incomplete: 4}
	for v, r := range reports {
		path := filepath.Join(dir, string(v)+".json")
		if err := r.Write(path); err != nil {
			t.Fatal(err)
		}
		if got := run([]string{"imans", "report", "show", "--check", path}); got != want[v] {
			t.Errorf("--check on a %s report: exit %d, want %d", v, got, want[v])
		}
		if got := run([]string{"imans", "report", "show", path}); got != 0 {
			t.Errorf("show of a %s report: exit %d, want 0", v, got)
		}
	}
}

// An id may end in .json: it is looked for as an id first; a file of that
// name in the current folder is read only when the id has no report.
func TestReportShowIDEndingInJSON(t *testing.T) {
	state, runDir, cwd := t.TempDir(), t.TempDir(), t.TempDir()
	t.Setenv("IMANS_STATE_DIR", state)
	t.Setenv("IMANS_RUN_DIR", runDir)
	t.Chdir(cwd)
	paths := hook.DefaultPaths()
	if err := os.Mkdir(paths.Reports(), 0o700); err != nil {
		t.Fatal(err)
	}
	ofID := &report.Report{Schema: report.Schema, Verdict: report.Incomplete,
		Incomplete: []string{"the id's"}, Info: report.Info{ContainerID: "c1.json"}}
	must(t, ofID.Write(paths.Report("c1.json")))
	file := &report.Report{Schema: report.Schema, Verdict: report.Incomplete,
		Incomplete: []string{"the file's"}, Info: report.Info{ContainerID: "other"}}
	must(t, file.Write(filepath.Join(cwd, "c1.json")))
	must(t, file.Write(filepath.Join(cwd, "c2.json")))

	if r, err := reportLoad("c1.json"); err != nil || r.Info.ContainerID != "c1.json" {
		t.Errorf("id c1.json: %+v, %v; want the id's report", r, err)
	}
	if r, err := reportLoad("c2.json"); err != nil || r.Info.ContainerID != "other" {
		t.Errorf("c2.json, no such id: %+v, %v; want the file", r, err)
	}
	if _, err := reportLoad("c3.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("c3.json, neither: %v, want not found", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// report show warns when the list beside a report is not the one it was
// made from.
func TestReportShowListReplaced(t *testing.T) {
	r, _ := learnt(t, map[string]string{policy.AnnotationEnable: "true"}, policy.BuiltinText())
	if w := listMismatch(r); w != "" {
		t.Errorf("the report's own list: %q, want no warning", w)
	}
	if err := os.WriteFile(r.Info.BinaryLog, []byte("another run's list"), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := listMismatch(r); !strings.Contains(w, "is not this report's") {
		t.Errorf("a replaced list: %q, want a warning", w)
	}
}
