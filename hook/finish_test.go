package hook

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	dir, _, err := PrepareRunDir(p, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, SpecFile), []byte("{}"), 0o600)
	rec := NewRecord(p, st, "/b/rootfs", CreateConfig{Mode: "enforce"})
	// Two reasons joined, as the annotation checks join theirs: one line.
	why := errors.Join(errors.New("backend kernel: no ima namespaces"),
		errors.New("annotation io.imans.policy: line 2: unknown action"))
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
	want := "refused by createRuntime (enforce): backend kernel: no ima namespaces; " +
		"annotation io.imans.policy: line 2: unknown action"
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

// keptReport has poststop keep a passing report in the run folder (a plain
// file where the reports folder belongs makes it unwritable, even to root)
// and returns the run folder, with the reports folder writable again.
func keptReport(t *testing.T) *runFolder {
	t.Helper()
	rf := newRunFolder(t, report.Expectations{
		Digests: map[string][]string{
			"/app/demo.sh": {digest("echo hi\n")},
			"/etc/passwd":  {digest("root:x:0:0::/:/bin/sh\n")},
		},
	})
	blocker := rf.p.Reports()
	if err := os.WriteFile(blocker, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rf.dir, measure.BinaryListFile), rf.list, 0o600)
	out := Outcome{Status: measure.Status{Backend: measure.Fanotify, Entries: 2,
		PCR10: rf.replay()}, ContainerExited: true}
	if err := WriteJSON(rf.dir, OutcomeFile, out); err != nil {
		t.Fatal(err)
	}
	res, err := Finish(rf.p, &specs.State{ID: "c1", Bundle: "/b"})
	if err == nil || !res.Kept || res.Path != filepath.Join(rf.dir, KeptReportFile) {
		t.Fatalf("finish with the reports folder blocked: %+v, %v", res, err)
	}
	if res.Report.Verdict != report.Pass {
		t.Fatalf("kept report: %s %q", res.Report.Verdict, res.Report.Incomplete)
	}
	return rf
}

// The next run of the same id moves the kept report to the reports folder,
// with its list, before its run folder is made anew.
func TestPrepareRunDirSalvagesKeptReport(t *testing.T) {
	rf := keptReport(t)
	os.Remove(rf.p.Reports())

	dir, s, err := PrepareRunDir(rf.p, "c1")
	if err != nil || dir != rf.dir {
		t.Fatalf("prepare: %q %v", dir, err)
	}
	if s == nil || s.Err != nil || s.Path != rf.p.Report("c1") || s.ID != "c1" ||
		s.Verdict != report.Pass {
		t.Fatalf("salvaged %+v, want the pass report moved to %s", s, rf.p.Report("c1"))
	}
	r, err := report.Read(s.Path)
	if err != nil || r.Verdict != report.Pass || r.Info.BinaryLog != rf.p.ReportList("c1") {
		t.Fatalf("moved report: %+v %v", r, err)
	}
	if data, err := os.ReadFile(r.Info.BinaryLog); err != nil || string(data) != string(rf.list) {
		t.Errorf("moved list %s: %v", r.Info.BinaryLog, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, KeptReportFile)); err == nil {
		t.Error("the new run folder holds the old report")
	}
}

// The stale cleanup never removes a run folder whose kept report it could
// not move; it moves it once it can.
func TestCleanStaleKeepsUnmovedReport(t *testing.T) {
	rf := keptReport(t)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(rf.dir, past, past)

	removed, salvaged := CleanStale(rf.p)
	if len(removed) != 0 || len(salvaged) != 1 || salvaged[0].Path != "" ||
		salvaged[0].Err == nil || salvaged[0].Verdict != report.Pass {
		t.Fatalf("reports folder blocked: removed %v, salvaged %+v", removed, salvaged)
	}
	if _, err := os.Stat(filepath.Join(rf.dir, KeptReportFile)); err != nil {
		t.Fatalf("the kept report went: %v", err)
	}

	os.Remove(rf.p.Reports())
	removed, salvaged = CleanStale(rf.p)
	if len(removed) != 1 || len(salvaged) != 1 || salvaged[0].Path != rf.p.Report("c1") {
		t.Fatalf("reports folder writable: removed %v, salvaged %+v", removed, salvaged)
	}
	if r, err := report.Read(rf.p.Report("c1")); err != nil || r.Verdict != report.Pass {
		t.Errorf("moved report: %v", err)
	}
	if _, err := os.Stat(rf.dir); !os.IsNotExist(err) {
		t.Errorf("run folder left: %v", err)
	}
}

// A poststop that comes while the container's init still runs ends the
// measurement early: never a pass, whatever the list holds so far.
func TestFinishInitStillRunning(t *testing.T) {
	want := digestsOf()
	rf := newRunFolder(t, report.Expectations{Digests: want})
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	rec := NewRecord(rf.p, &specs.State{ID: "c1", Bundle: "/b", Pid: sleeper.Process.Pid},
		"/b/rootfs", CreateConfig{Mode: "audit", Backend: measure.Fanotify,
			Expect: report.Expectations{Digests: want}})
	if rec.PidStart == 0 {
		t.Fatalf("no start time recorded for pid %d", rec.Pid)
	}
	if err := WriteJSON(rf.dir, RecordFile, rec); err != nil {
		t.Fatal(err)
	}
	r := rf.finish(t, rf.list, rf.replay())
	reason := fmt.Sprintf("init (pid %d) was still running at poststop", rec.Pid)
	if r.Verdict != report.Incomplete || !containsSub(r.Incomplete, reason) {
		t.Errorf("init running: %s %q, want incomplete with %q", r.Verdict, r.Incomplete, reason)
	}

	// The same record once the init has ended (a reused pid would not
	// match its start time either): the run passes.
	sleeper.Process.Kill()
	sleeper.Wait()
	rf2 := newRunFolder(t, report.Expectations{Digests: want})
	if err := WriteJSON(rf2.dir, RecordFile, rec); err != nil {
		t.Fatal(err)
	}
	if r := rf2.finish(t, rf2.list, rf2.replay()); r.Verdict != report.Pass {
		t.Errorf("init ended: %s %q, want pass", r.Verdict, r.Incomplete)
	}
}

// digestsOf returns the expected digests of newRunFolder's files.
func digestsOf() map[string][]string {
	return map[string][]string{
		"/app/demo.sh": {digest("echo hi\n")},
		"/etc/passwd":  {digest("root:x:0:0::/:/bin/sh\n")},
	}
}

// A TPM whose banks the list was not replayed in vouches for nothing.
func TestCheckReplayNoCommonBank(t *testing.T) {
	r := &report.Report{TPM: report.Evidence{
		PCR10:       map[string]string{"sha384": strings.Repeat("00", 48)},
		ReplayPCR10: map[string]string{"sha1": strings.Repeat("00", 20)},
	}}
	checkReplay(r)
	if r.TPM.ListMatches || !containsSub(r.Incomplete, "share no bank") {
		t.Errorf("list matches %v, reasons %q; want no match and a reason", r.TPM.ListMatches,
			r.Incomplete)
	}
}

// A kept report that cannot be moved keeps its folder: the next run of the
// id goes unmeasured, marked so that its poststop reports that and leaves
// the earlier run's folder alone. The cleanup later drops the kept report,
// since the reports folder then holds a newer one.
func TestUnmovableKeptReport(t *testing.T) {
	rf := keptReport(t) // the reports folder stays blocked
	st := &specs.State{ID: "c1", Bundle: "/b"}

	_, s, err := PrepareRunDir(rf.p, "c1")
	if err == nil || s == nil || s.Path != "" || s.Superseded ||
		!strings.Contains(err.Error(), "could not be moved") {
		t.Fatalf("prepare: %v, salvaged %+v; want an error and the folder kept", err, s)
	}
	if _, err := os.Stat(filepath.Join(rf.dir, KeptReportFile)); err != nil {
		t.Fatalf("the kept report went: %v", err)
	}
	if err := MarkUnmeasured(rf.p, "c1", "audit", err); err != nil {
		t.Fatal(err)
	}

	// poststop while the reports folder is still blocked: no report, the
	// mark stays for a later poststop, the folder is untouched.
	if res, err := Finish(rf.p, st); err == nil || res.Path != "" {
		t.Fatalf("finish, reports blocked: %+v, %v", res, err)
	}
	os.Remove(rf.p.Reports())
	res, err := Finish(rf.p, st)
	if err != nil || res.Path != rf.p.Report("c1") {
		t.Fatalf("finish: %+v, %v", res, err)
	}
	r, err := report.Read(res.Path)
	if err != nil || r.Verdict != report.Incomplete || len(r.Incomplete) != 1 ||
		r.Info.Mode != "audit" ||
		!strings.HasPrefix(r.Incomplete[0], "not measured: createRuntime could not make "+
			"the run folder: run folder: previous run of c1 keeps a report") {
		t.Fatalf("report of the unmeasured run: %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(rf.dir, KeptReportFile)); err != nil {
		t.Fatalf("poststop of the unmeasured run touched the earlier run's folder: %v", err)
	}
	// Another poststop of the same run (runc's, after an enforce refusal
	// the hook reported) finds its report written.
	if _, err := Finish(rf.p, st); !errors.Is(err, ErrAlreadyReported) {
		t.Errorf("second poststop of the unmeasured run: %v, want ErrAlreadyReported", err)
	}

	// The cleanup: the kept report is older than the one now there.
	past := time.Now().Add(-time.Hour)
	os.Chtimes(rf.dir, past, past)
	removed, salvaged := CleanStale(rf.p)
	if len(removed) != 1 || len(salvaged) != 1 || !salvaged[0].Superseded ||
		salvaged[0].Verdict != report.Pass {
		t.Fatalf("cleanup: removed %v, salvaged %+v; want the pass dropped as superseded",
			removed, salvaged)
	}
	if r, err := report.Read(rf.p.Report("c1")); err != nil || r.Verdict != report.Incomplete {
		t.Errorf("the newer report was replaced: %+v, %v", r, err)
	}

	// A mark that no poststop took is not the next run's.
	MarkUnmeasured(rf.p, "c1", "audit", errors.New("old"))
	if _, _, err := PrepareRunDir(rf.p, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rf.p.Unmeasured("c1")); !os.IsNotExist(err) {
		t.Errorf("a stale mark survived a good start: %v", err)
	}
}

// A poststop that finds a finished run's folder keeping its report (and no
// mark: this run never asked for imans, say) moves that report into place,
// or drops it when the reports folder holds a newer one; it never reports
// that run's evidence again.
func TestFinishFindsKeptReport(t *testing.T) {
	for _, newer := range []bool{false, true} {
		rf := keptReport(t)
		os.Remove(rf.p.Reports())
		if newer {
			later := &report.Report{Schema: report.Schema, Verdict: report.Incomplete,
				Incomplete: []string{"not measured: later run"},
				Info:       report.Info{ContainerID: "c1", Started: time.Now().Add(time.Hour)}}
			if err := later.Write(rf.p.Report("c1")); err != nil {
				t.Fatal(err)
			}
		}
		res, err := Finish(rf.p, &specs.State{ID: "c1", Bundle: "/b"})
		if res != nil || !errors.Is(err, ErrAlreadyReported) {
			t.Fatalf("newer %v: %+v, %v; want ErrAlreadyReported", newer, res, err)
		}
		want := report.Pass
		if newer {
			want = report.Incomplete
		}
		if r, err := report.Read(rf.p.Report("c1")); err != nil || r.Verdict != want {
			t.Errorf("newer %v: report %+v, %v; want %s", newer, r, err, want)
		}
		if _, err := os.Stat(rf.dir); !os.IsNotExist(err) {
			t.Errorf("newer %v: run folder left: %v", newer, err)
		}
	}
}
