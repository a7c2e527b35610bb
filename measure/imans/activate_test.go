package imans_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/measure/imans"
	"github.com/imans-project/imans/measure/imans/imanstest"
)

// testPolicy is a container policy in the forms a user writes: a
// zero-padded fsmagic, comments, blank lines and a func alias.
const testPolicy = `# proc
dont_measure fsmagic=0x9fa0
# tmpfs, zero-padded as people write it
dont_measure fsmagic=0x01021994

measure func=FILE_MMAP mask=MAY_EXEC
measure func=BPRM_CHECK
measure func=FILE_CHECK mask=MAY_READ uid=0
`

type stepRecorder struct{ lines []string }

func (r *stepRecorder) log(step, result string) {
	r.lines = append(r.lines, step+" => "+result)
}

func TestActivateCommitsPolicyOneRulePerWrite(t *testing.T) {
	fs := imanstest.New(imanstest.Measure)
	var rec stepRecorder

	act, err := imans.Activate(fs, testPolicy, rec.log)
	if err != nil {
		t.Fatal(err)
	}

	want := []string{
		"dont_measure fsmagic=0x9fa0",
		"dont_measure fsmagic=0x1021994",
		"measure func=FILE_MMAP mask=MAY_EXEC",
		"measure func=BPRM_CHECK",
		"measure func=FILE_CHECK mask=MAY_READ uid=0",
	}
	if got := fs.Rules(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("committed rules:\n%s\nwant:\n%s", strings.Join(got, "\n"),
			strings.Join(want, "\n"))
	}
	if n := fs.Writes(imans.PolicyFile); n != 5 {
		t.Errorf("%d writes to the policy, want 5 (one per rule)", n)
	}
	if n := fs.Writes(imans.ActiveFile); n != 1 {
		t.Errorf("%d writes to ima/active, want 1", n)
	}
	if act.Rules != 5 {
		t.Errorf("Activation.Rules = %d, want 5", act.Rules)
	}
	if n := fs.OpenFiles(); n != 1 {
		t.Errorf("%d descriptors left open, want 1 (the list)", n)
	}

	wantSteps := []string{
		"read ima/active => ok: 0",
		"write ima/active => ok: 1",
		"open ima/binary_runtime_measurements => ok",
		"open ima/policy for reading => ok (baseline)",
		"open ima/policy for reading => ok (read-back)",
		"read ima/policy back => ok: 0 rules before ours",
		"open ima/policy for writing => ok",
		"write ima/policy rule 1/5 (line 2) => ok: dont_measure fsmagic=0x9fa0",
		"write ima/policy rule 2/5 (line 4) => ok: dont_measure fsmagic=0x01021994",
		"write ima/policy rule 3/5 (line 6) => ok: measure func=FILE_MMAP mask=MAY_EXEC",
		"write ima/policy rule 4/5 (line 7) => ok: measure func=BPRM_CHECK",
		"write ima/policy rule 5/5 (line 8) => ok: measure func=FILE_CHECK mask=MAY_READ uid=0",
		"close ima/policy => ok",
		"read ima/policy back => ok: 5 rules committed",
	}
	if got := strings.Join(rec.lines, "\n"); got != strings.Join(wantSteps, "\n") {
		t.Errorf("step log:\n%s\nwant:\n%s", got, strings.Join(wantSteps, "\n"))
	}

	// The list was opened before the policy and reads what the kernel
	// appends, whole entries at a time.
	fs.Measure([]byte("entry-one"))
	buf := make([]byte, 64)
	n, err := fs.Read(act.List, buf)
	if err != nil || string(buf[:n]) != "entry-one" {
		t.Errorf("list read %q, %v; want entry-one", buf[:n], err)
	}
}

func TestStandinClosedBeforeActivation(t *testing.T) {
	fs := imanstest.New(imanstest.Measure)
	for _, name := range []string{imans.PolicyFile, imans.BinaryListFile, imans.ASCIIListFile,
		"ima/runtime_measurements_count", "ima/violations"} {
		if _, err := fs.Open(name, unix.O_RDONLY); !errors.Is(err, unix.EACCES) {
			t.Errorf("open %s before activation: %v, want EACCES", name, err)
		}
	}
	fd, err := fs.Open(imans.ActiveFile, unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, _ := fs.Read(fd, buf)
	if string(buf[:n]) != "0\n" {
		t.Errorf("ima/active reads %q before activation, want 0", buf[:n])
	}
}

func TestStandinActiveValues(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  error
	}{
		{"1", nil}, {"1\n", nil}, {"1\x00", nil},
		{"0", unix.EINVAL}, {"2", unix.EINVAL}, {"1 ", unix.EINVAL}, {"yes", unix.EINVAL},
	} {
		fs := imanstest.New(imanstest.Measure)
		fd, _ := fs.Open(imans.ActiveFile, unix.O_WRONLY)
		_, err := fs.Write(fd, []byte(tc.value))
		if !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("write %q to ima/active: %v, want %v", tc.value, err, tc.want)
		}
		if tc.want == nil {
			if _, err := fs.Write(fd, []byte("1")); !errors.Is(err, unix.EBUSY) {
				t.Errorf("second 1 after %q: %v, want EBUSY", tc.value, err)
			}
		}
	}
}

func TestActivateAlreadyActive(t *testing.T) {
	fs := imanstest.New(imanstest.Measure)
	fd, _ := fs.Open(imans.ActiveFile, unix.O_WRONLY)
	fs.Write(fd, []byte("1"))
	fs.Close(fd)

	_, err := imans.Activate(fs, testPolicy, nil)
	if !errors.Is(err, imans.ErrAlreadyActive) {
		t.Fatalf("err = %v, want ErrAlreadyActive", err)
	}
	if len(fs.Rules()) != 0 || fs.Writes(imans.PolicyFile) != 0 {
		t.Errorf("a policy was written into a namespace activated by someone else")
	}
}

// activeRace activates the namespace between Activate's read of
// ima/active and its write, as a racing writer would.
type activeRace struct{ *imanstest.SecurityFS }

func (r activeRace) Open(name string, flag int) (int, error) {
	if name == imans.ActiveFile && flag&unix.O_ACCMODE == unix.O_WRONLY {
		fd, _ := r.SecurityFS.Open(name, flag)
		r.SecurityFS.Write(fd, []byte("1"))
		r.SecurityFS.Close(fd)
	}
	return r.SecurityFS.Open(name, flag)
}

func TestActivateWriteActiveBusy(t *testing.T) {
	fs := activeRace{imanstest.New(imanstest.Measure)}
	_, err := imans.Activate(fs, testPolicy, nil)
	var se *imans.StepError
	if !errors.As(err, &se) || se.Step != "write ima/active" || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("err = %v, want EBUSY at write ima/active", err)
	}
	if !strings.Contains(err.Error(), "already active") {
		t.Errorf("message does not explain EBUSY: %v", err)
	}
}

func TestActivateBadRuleDropsBatch(t *testing.T) {
	policy := testPolicy + "appraise func=BPRM_CHECK\nmeasure func=MODULE_CHECK\n"
	fs := imanstest.New(imanstest.Measure)
	var rec stepRecorder

	_, err := imans.Activate(fs, policy, rec.log)

	var se *imans.StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a StepError", err)
	}
	if se.Line != 9 || se.Rule != "appraise func=BPRM_CHECK" || !errors.Is(err, unix.EINVAL) {
		t.Errorf("StepError = %+v, want line 9, the appraise rule, EINVAL", se)
	}
	for _, want := range []string{"policy line 9", "EINVAL", "appraise and hash rules are refused",
		"whole batch is dropped"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err.Error(), want)
		}
	}
	if got := fs.Rules(); len(got) != 0 {
		t.Errorf("rules committed after a bad rule: %q", got)
	}
	if n := fs.OpenFiles(); n != 0 {
		t.Errorf("%d descriptors left open after the failure", n)
	}
	if n := fs.Writes(imans.PolicyFile); n != 6 {
		t.Errorf("%d policy writes, want 6 (stop at the bad rule)", n)
	}
	last := rec.lines[len(rec.lines)-1]
	if !strings.HasPrefix(last, "write ima/policy rule 6/7 (line 9) => error:") {
		t.Errorf("last step %q, want the failed write of rule 6", last)
	}
}

func TestActivateV15RefusesMeasure(t *testing.T) {
	fs := imanstest.New(imanstest.V15)
	_, err := imans.Activate(fs, testPolicy, nil)
	var se *imans.StepError
	if !errors.As(err, &se) || se.Line != 6 || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("err = %v, want EINVAL at line 6 (the first measure rule)", err)
	}
	if !strings.Contains(err.Error(), "v15") {
		t.Errorf("message does not mention the v15 limit: %v", err)
	}
}

func TestActivateDetectsSilentlyDroppedBatch(t *testing.T) {
	fs := imanstest.New(imanstest.Measure)
	fs.SetMaxRules(4) // the stand-in's limit below the policy's 5 rules

	_, err := imans.Activate(fs, testPolicy, nil)

	if !errors.Is(err, imans.ErrNotCommitted) {
		t.Fatalf("err = %v, want ErrNotCommitted", err)
	}
	if !strings.Contains(err.Error(), "kept none of the 5 rules") {
		t.Errorf("message: %v", err)
	}
	if n := fs.Writes(imans.PolicyFile); n != 5 {
		t.Errorf("%d policy writes, want all 5 (every write succeeds)", n)
	}
}

func TestActivateRefusesOverRuleLimitBeforeTouchingKernel(t *testing.T) {
	var b strings.Builder
	for i := range imans.MaxRules + 1 {
		fmt.Fprintf(&b, "dont_measure uid=%d\n", i)
	}
	fs := imanstest.New(imanstest.Measure)

	_, err := imans.Activate(fs, b.String(), nil)
	if err == nil || !strings.Contains(err.Error(), "1025 rules") {
		t.Fatalf("err = %v, want a refusal naming 1025 rules", err)
	}
	if fs.Writes(imans.ActiveFile) != 0 {
		t.Errorf("the namespace was activated for a policy that cannot commit")
	}

	// Exactly at the limit, the stand-in (limit 1024) commits it.
	b.Reset()
	for i := range imans.MaxRules {
		fmt.Fprintf(&b, "dont_measure uid=%d\n", i)
	}
	if _, err := imans.Activate(imanstest.New(imanstest.Measure), b.String(), nil); err != nil {
		t.Errorf("1024 rules: %v", err)
	}
}

// secondWriter holds ima/policy open for writing as soon as the namespace
// is active, as another process would.
type secondWriter struct{ *imanstest.SecurityFS }

func (w secondWriter) Write(fd int, p []byte) (int, error) {
	n, err := w.SecurityFS.Write(fd, p)
	if string(p) == "1" && err == nil {
		w.SecurityFS.Open(imans.PolicyFile, unix.O_WRONLY)
	}
	return n, err
}

func TestActivateSecondWriterBusy(t *testing.T) {
	fs := secondWriter{imanstest.New(imanstest.Measure)}
	_, err := imans.Activate(fs, testPolicy, nil)
	var se *imans.StepError
	if !errors.As(err, &se) || se.Step != "open ima/policy for writing" ||
		!errors.Is(err, unix.EBUSY) {
		t.Fatalf("err = %v, want EBUSY opening the policy for writing", err)
	}
	if !strings.Contains(err.Error(), "another process has the policy open") {
		t.Errorf("message: %v", err)
	}
}

// rewriter changes how the policy reads back.
type rewriter struct {
	*imanstest.SecurityFS
	from, to string
}

func (r rewriter) Read(fd int, p []byte) (int, error) {
	n, err := r.SecurityFS.Read(fd, p)
	s := strings.Replace(string(p[:n]), r.from, r.to, 1)
	return copy(p, s), err
}

func TestActivateReadBackMismatch(t *testing.T) {
	fs := rewriter{imanstest.New(imanstest.Measure), "uid=0", "uid=1"}
	_, err := imans.Activate(fs, testPolicy, nil)
	if !errors.Is(err, imans.ErrNotCommitted) ||
		!strings.Contains(err.Error(), `line 8 "measure func=FILE_CHECK mask=MAY_READ uid=0"`) {
		t.Fatalf("err = %v, want the mismatch at line 8", err)
	}
}

func TestActivateEmptyPolicy(t *testing.T) {
	fs := imanstest.New(imanstest.Measure)
	if _, err := imans.Activate(fs, "# nothing\n\n", nil); err == nil ||
		!strings.Contains(err.Error(), "no rules") {
		t.Fatalf("err = %v, want no rules", err)
	}
	if fs.Writes(imans.ActiveFile) != 0 {
		t.Errorf("activated for an empty policy")
	}
}

// FuzzActivateStandin checks, for any policy text, that the activation
// and the stand-in agree: either the policy is committed whole and the
// list alone is left open, or an error leaves no rule and no descriptor.
func FuzzActivateStandin(f *testing.F) {
	f.Add(testPolicy)
	f.Add("appraise func=BPRM_CHECK\n")
	f.Add("dont_measure fsmagic=10\nmeasure uid=007 pcr=11\n# c\n\n")
	f.Add("measure func=FILE_CHECK mask=^MAY_READ euid>5\n")

	f.Fuzz(func(t *testing.T, policy string) {
		fs := imanstest.New(imanstest.Measure)
		act, err := imans.Activate(fs, policy, nil)
		rules := fs.Rules()

		if err != nil {
			if len(rules) != 0 {
				t.Fatalf("error %v, yet %d rules committed: %q", err, len(rules), rules)
			}
			if n := fs.OpenFiles(); n != 0 {
				t.Fatalf("error %v left %d descriptors open", err, n)
			}
			return
		}
		if len(rules) != act.Rules || act.Rules == 0 {
			t.Fatalf("%d rules committed, Activation says %d", len(rules), act.Rules)
		}
		if n := fs.OpenFiles(); n != 1 {
			t.Fatalf("%d descriptors open after success, want 1", n)
		}
	})
}

// DirFS, the real implementation, runs the same activation on plain
// files laid out as securityfs: no kernel semantics, but real openat,
// read, write and close on real descriptors, and the policy written one
// rule per write reads back whole.
func TestActivateDirFSOnPlainFiles(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "ima"), 0o755)
	for name, content := range map[string]string{
		imans.ActiveFile: "0\n", imans.PolicyFile: "", imans.BinaryListFile: "entry",
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	fs := imans.DirFS{Dir: root}

	act, err := imans.Activate(fs, "dont_measure fsmagic=0x9fa0\nmeasure func=BPRM_CHECK\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close(act.List)

	active, _ := os.ReadFile(filepath.Join(dir, imans.ActiveFile))
	policy, _ := os.ReadFile(filepath.Join(dir, imans.PolicyFile))
	if string(active) != "1\n" || string(policy) !=
		"dont_measure fsmagic=0x9fa0\nmeasure func=BPRM_CHECK\n" {
		t.Errorf("active %q, policy %q", active, policy)
	}
	buf := make([]byte, 16)
	if n, err := fs.Read(act.List, buf); err != nil || string(buf[:n]) != "entry" {
		t.Errorf("list read %q, %v", buf[:n], err)
	}

	// A symbolic link in place of a securityfs file is not followed.
	os.Remove(filepath.Join(dir, imans.ActiveFile))
	os.Symlink("/etc/passwd", filepath.Join(dir, imans.ActiveFile))
	if _, err := imans.Activate(fs, testPolicy, nil); !errors.Is(err, unix.ELOOP) {
		t.Errorf("activation through a symbolic link: %v, want ELOOP", err)
	}
}
