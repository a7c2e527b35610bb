package hook

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/report"
)

// runFolder fabricates the run folder a finished collector leaves: a
// binary list of ima-ng entries for the given files, the record, and an
// outcome with PCR 10 as given (the collector's TPM read).
type runFolder struct {
	p     Paths
	dir   string
	list  []byte
	files map[string]string // path -> content, in list order below
	order []string
}

func newRunFolder(t *testing.T, expect report.Expectations) *runFolder {
	t.Helper()
	p := Paths{RunDir: t.TempDir(), StateDir: t.TempDir()}
	rf := &runFolder{p: p, dir: p.Run("c1"),
		files: map[string]string{"/app/demo.sh": "echo hi\n", "/etc/passwd": "root:x:0:0::/:/bin/sh\n"},
		order: []string{"/etc/passwd", "/app/demo.sh"}}
	if err := os.MkdirAll(rf.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, path := range rf.order {
		sum := sha256.Sum256([]byte(rf.files[path]))
		e, err := ima.NewNG(10, ima.SHA256, sum[:], path)
		if err != nil {
			t.Fatal(err)
		}
		rf.list = e.AppendBinary(rf.list, binary.LittleEndian)
	}

	rec := Record{ID: "c1", Bundle: "/b", Mode: "audit", Backend: "fanotify", Expect: expect}
	if err := WriteJSON(rf.dir, RecordFile, rec); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(rf.dir, SpecFile, measure.Spec{ID: "c1", Dir: rf.dir}); err != nil {
		t.Fatal(err)
	}
	// A collector that has exited: a real, reaped child's pid.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rf.dir, PidFile),
		[]byte(strconv.Itoa(cmd.Process.Pid)+" 1\n"), 0o600)
	return rf
}

// replay computes PCR 10 of both banks from the list by hand: each entry's
// template data is the d-ng and n-ng fields, each after its u32 length.
func (rf *runFolder) replay() map[string]string {
	p1, p256 := make([]byte, 20), make([]byte, 32)
	for _, path := range rf.order {
		sum := sha256.Sum256([]byte(rf.files[path]))
		dng := append([]byte("sha256:\x00"), sum[:]...)
		nng := append([]byte(path), 0)
		var data []byte
		data = binary.LittleEndian.AppendUint32(data, uint32(len(dng)))
		data = append(data, dng...)
		data = binary.LittleEndian.AppendUint32(data, uint32(len(nng)))
		data = append(data, nng...)
		d1, d256 := sha1.Sum(data), sha256.Sum256(data)
		s1 := sha1.Sum(append(p1, d1[:]...))
		s256 := sha256.Sum256(append(p256, d256[:]...))
		p1, p256 = s1[:], s256[:]
	}
	return map[string]string{"sha1": hex.EncodeToString(p1), "sha256": hex.EncodeToString(p256)}
}

func (rf *runFolder) finish(t *testing.T, list []byte, pcr map[string]string) *report.Report {
	t.Helper()
	os.WriteFile(filepath.Join(rf.dir, measure.BinaryListFile), list, 0o600)
	out := Outcome{Status: measure.Status{Backend: measure.Fanotify, Entries: 2,
		PCR10: pcr}, ContainerExited: true}
	if err := WriteJSON(rf.dir, OutcomeFile, out); err != nil {
		t.Fatal(err)
	}
	res, err := Finish(rf.p, &specs.State{ID: "c1", Bundle: "/b"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Read(rf.p.Report("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Verdict != r.Verdict {
		t.Errorf("returned %s, wrote %s", res.Report.Verdict, r.Verdict)
	}
	return r
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestFinishPass(t *testing.T) {
	rf := newRunFolder(t, report.Expectations{})
	want := rf.replay()
	rf2 := newRunFolder(t, report.Expectations{
		Digests: map[string][]string{
			"/app/demo.sh": {digest("echo hi\n")},
			"/etc/passwd":  {digest("root:x:0:0::/:/bin/sh\n")},
		},
		PCR10: want,
	})
	r := rf2.finish(t, rf2.list, want)
	if r.Verdict != report.Pass || len(r.Findings) != 0 || len(r.Incomplete) != 0 {
		t.Fatalf("%s %v %q", r.Verdict, r.Findings, r.Incomplete)
	}
	if r.TPM.ReplayPCR10["sha256"] != want["sha256"] || !r.TPM.ListMatches || r.TPM.Entries != 2 {
		t.Errorf("tpm evidence %+v, want replay %v", r.TPM, want)
	}
	copyData, err := os.ReadFile(r.Info.BinaryLog)
	if err != nil || string(copyData) != string(rf2.list) {
		t.Errorf("list copy %s: %v", r.Info.BinaryLog, err)
	}
	if _, err := os.Stat(rf2.dir); !os.IsNotExist(err) {
		t.Errorf("run folder left: %v", err)
	}

	// A second poststop: nothing to do, the report stays.
	if _, err := Finish(rf2.p, &specs.State{ID: "c1"}); err != ErrAlreadyReported {
		t.Errorf("second finish: %v", err)
	}
}

func TestFinishChangedAndUnexpected(t *testing.T) {
	rf := newRunFolder(t, report.Expectations{
		Digests: map[string][]string{"/app/demo.sh": {digest("echo bye\n")}},
	})
	r := rf.finish(t, rf.list, rf.replay())
	if r.Verdict != report.Fail || len(r.Findings) != 2 {
		t.Fatalf("%s %v %q", r.Verdict, r.Findings, r.Incomplete)
	}
	f := r.Findings[0]
	if f.Kind != report.UnexpectedFile || f.Path != "/etc/passwd" || f.Index != 0 {
		t.Errorf("finding 0: %+v", f)
	}
	if f = r.Findings[1]; f.Kind != report.ChangedFile || f.Digest != digest("echo hi\n") ||
		f.Expected[0] != digest("echo bye\n") || f.Index != 1 {
		t.Errorf("finding 1: %+v", f)
	}
}

func TestFinishIncomplete(t *testing.T) {
	rf := newRunFolder(t, report.Expectations{})
	good := rf.replay()

	// A list cut in its second entry: incomplete, naming entry 1.
	r := rf.finish(t, rf.list[:len(rf.list)-5], good)
	if r.Verdict != report.Incomplete || !containsSub(r.Incomplete, "at entry 1") {
		t.Errorf("truncated list: %s %q", r.Verdict, r.Incomplete)
	}

	// A TPM that disagrees with the list.
	rf = newRunFolder(t, report.Expectations{})
	bad := map[string]string{"sha1": strings.Repeat("0", 40), "sha256": good["sha256"]}
	r = rf.finish(t, rf.list, bad)
	if r.Verdict != report.Incomplete || r.TPM.ListMatches ||
		!containsSub(r.Incomplete, "pcr10 sha1 "+good["sha1"]) {
		t.Errorf("tpm disagrees: %s %q", r.Verdict, r.Incomplete)
	}
}

func containsSub(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func TestFinishAfterRefusal(t *testing.T) {
	p := Paths{RunDir: t.TempDir(), StateDir: t.TempDir()}
	st := &specs.State{ID: "refused", Bundle: "/b", Pid: 1234}
	dir, err := PrepareRunDir(p, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, SpecFile), []byte("{}"), 0o600)
	rec := NewRecord(p, st, "/b/rootfs", CreateConfig{Mode: "enforce"})
	why := errors.New("backend kernel: no ima namespaces")
	if err := Refuse(dir, rec, why); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SpecFile)); err == nil {
		t.Error("refusal kept the run folder's spec")
	}

	res, err := Finish(p, &specs.State{ID: "refused", Bundle: "/b"})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	want := "refused by createRuntime (enforce): backend kernel: no ima namespaces"
	if r.Verdict != report.Incomplete || len(r.Incomplete) != 1 || r.Incomplete[0] != want {
		t.Errorf("report after refusal: %s %q, want incomplete %q", r.Verdict,
			r.Incomplete, want)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("run folder left after poststop")
	}
}

// The collector writes the report itself when the container's init has
// exited; poststop then reads it back instead of redoing the work, and
// still removes the run folder.
func TestEarlyReport(t *testing.T) {
	rf := newRunFolder(t, report.Expectations{})
	want := rf.replay()
	rf = newRunFolder(t, report.Expectations{
		Digests: map[string][]string{"/app/demo.sh": {digest("echo hi\n")},
			"/etc/passwd": {digest("root:x:0:0::/:/bin/sh\n")}},
		PCR10: want,
	})
	os.WriteFile(filepath.Join(rf.dir, measure.BinaryListFile), rf.list, 0o600)
	out := Outcome{Status: measure.Status{Backend: measure.Fanotify, Entries: 2,
		PCR10: want}}
	if _, err := WriteEarlyReport(rf.p, rf.dir, out); err == nil {
		t.Fatal("early report written for a container still running")
	}
	if _, err := os.Stat(rf.p.Report("c1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("report after a refused early report: %v", err)
	}

	out.ContainerExited = true
	path, err := WriteEarlyReport(rf.p, rf.dir, out)
	if err != nil || path != rf.p.Report("c1") {
		t.Fatalf("early report %q: %v", path, err)
	}
	early, err := report.Read(path)
	if err != nil || early.Verdict != report.Pass ||
		early.TPM.ReplayPCR10["sha256"] != want["sha256"] {
		t.Fatalf("early report %+v: %v", early, err)
	}
	out.Report = path
	if err := WriteJSON(rf.dir, OutcomeFile, out); err != nil {
		t.Fatal(err)
	}
	// Without its list, a report written by poststop would be
	// incomplete: a pass proves the early one was kept.
	os.Remove(filepath.Join(rf.dir, measure.BinaryListFile))
	res, err := Finish(rf.p, &specs.State{ID: "c1", Bundle: "/b"})
	if err != nil || res.Report.Verdict != report.Pass || res.Path != path {
		t.Fatalf("finish after an early report: %+v: %v", res, err)
	}
	if _, err := os.Stat(rf.dir); !os.IsNotExist(err) {
		t.Errorf("run folder left: %v", err)
	}
}

// An outcome naming a report that is not there (removed, or never
// renamed into place) leaves the work to poststop.
func TestEarlyReportMissing(t *testing.T) {
	rf := newRunFolder(t, report.Expectations{})
	os.WriteFile(filepath.Join(rf.dir, measure.BinaryListFile), rf.list, 0o600)
	out := Outcome{Status: measure.Status{Backend: measure.Fanotify, Entries: 2,
		PCR10: rf.replay()}, ContainerExited: true, Report: rf.p.Report("c1")}
	if err := WriteJSON(rf.dir, OutcomeFile, out); err != nil {
		t.Fatal(err)
	}
	res, err := Finish(rf.p, &specs.State{ID: "c1", Bundle: "/b"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Read(rf.p.Report("c1"))
	if err != nil || r.Verdict != res.Report.Verdict || r.TPM.Entries != 2 || !r.TPM.ListMatches {
		t.Fatalf("report written by poststop %+v: %v", r, err)
	}
}
