package hook

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// fakeCollector writes a shell script standing in for the imans binary:
// it is started as `exe collector --dir D` with the ready pipe on fd 3.
func fakeCollector(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imans")
	script := "#!/bin/sh\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCollectorLifecycle(t *testing.T) {
	dir := t.TempDir()
	// Ready at once, then wait for SIGTERM and leave an outcome.
	exe := fakeCollector(t, `[ "$1 $2 $3" = "collector --dir `+dir+`" ] || exit 9
trap 'echo drained > "$3/done"; exit 0' TERM
echo ready >&3
exec 3>&-
while :; do sleep 0.01; done`)
	start := time.Now()
	pid, err := StartCollector(exe, dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ready took %s", d)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("collector %d not running: %v", pid, err)
	}
	sid, _ := syscall.Getpgid(pid)
	if sid != pid {
		t.Errorf("collector's process group %d, want its own (%d)", sid, pid)
	}

	res, err := StopCollector(dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pid != pid || !res.WasRunning || res.Killed {
		t.Errorf("stop: %+v", res)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "done")); string(data) != "drained\n" {
		t.Errorf("collector did not drain on SIGTERM: %q", data)
	}

	// A second stop finds nothing running: harmless.
	res, err = StopCollector(dir, time.Second)
	if err != nil || res.WasRunning {
		t.Errorf("second stop: %+v %v", res, err)
	}
}

func TestCollectorStubbornIsKilled(t *testing.T) {
	dir := t.TempDir()
	exe := fakeCollector(t, `trap '' TERM
echo ready >&3
exec 3>&-
while :; do sleep 0.01; done`)
	if _, err := StartCollector(exe, dir, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := StopCollector(dir, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Killed {
		t.Errorf("stop: %+v, want killed", res)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %s", d)
	}
}

// A collector that has written its outcome is done with the run folder:
// the stop does not wait for its exit (a fanotify group's release alone
// takes milliseconds), nor kills it.
func TestCollectorDoneAtOutcome(t *testing.T) {
	dir := t.TempDir()
	exe := fakeCollector(t, `trap 'echo "{}" > "$3/collector.json"' TERM
echo ready >&3
exec 3>&-
while :; do sleep 0.01; done`)
	pid, err := StartCollector(exe, dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	res, err := StopCollector(dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pid != pid || !res.WasRunning || res.Killed {
		t.Errorf("stop: %+v, want running, not killed", res)
	}
	if p, _ := readPidFile(dir); !p.alive() {
		t.Error("collector gone: the stop should not have waited for its exit")
	}
}

func TestCollectorStartFailures(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"error line", `echo "error fanotify_init: operation not permitted" >&3`,
			"fanotify_init: operation not permitted"},
		{"dies silently", `exit 3`, "collector exited before it was ready"},
		{"dies with words", `echo "panic: boom" >&2; exit 2`, "panic: boom"},
		{"never ready", `sleep 30`, "not ready within"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		exe := fakeCollector(t, c.body)
		start := time.Now()
		pid, err := StartCollector(exe, dir, 300*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %s", c.name, d)
		}
		if pid > 0 {
			// Killed on failure: gone (or a zombie) shortly after.
			p, _ := readPidFile(dir)
			if !waitExit(p, -1, 2*time.Second, nil) {
				t.Errorf("%s: collector %d still running", c.name, pid)
			}
		}
	}
}

func TestStopCollectorNone(t *testing.T) {
	if _, err := StopCollector(t.TempDir(), time.Second); err == nil ||
		!strings.Contains(err.Error(), ErrNoCollector.Error()) {
		t.Errorf("no pid file: %v", err)
	}
}

func TestStaleRunFolder(t *testing.T) {
	p := Paths{RunDir: t.TempDir(), StateDir: t.TempDir()}
	old := filepath.Join(p.RunDir, "gone")
	fresh := filepath.Join(p.RunDir, "starting")
	for _, d := range []string{old, fresh} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A collector pid that cannot be alive (pid 1 with a wrong start).
	os.WriteFile(filepath.Join(old, PidFile), []byte("1 12345678901\n"), 0o600)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)

	removed, salvaged := CleanStale(p)
	if len(removed) != 1 || removed[0] != "gone" || len(salvaged) != 0 {
		t.Errorf("removed %v, salvaged %v, want [gone] and none", removed, salvaged)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh folder was removed: %v", err)
	}
}

func TestCollectorLaunchAbort(t *testing.T) {
	dir := t.TempDir()
	// The go socket keeps message boundaries: read the message whole
	// (the shell's read takes a byte at a time and would lose the rest).
	exe := fakeCollector(t, `line=$(dd bs=64 count=1 <&4 2>/dev/null)
[ "$line" = go ] || { echo "not let go" > "$3/aborted"; exit 0; }
echo ready >&3
sleep 30`)
	l, err := LaunchCollector(exe, dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := readPidFile(dir)
	if err != nil || p.pid != l.Pid {
		t.Fatalf("pid file: %+v %v, want pid %d", p, err, l.Pid)
	}
	l.Abort()
	if !waitExit(p, -1, 3*time.Second, nil) {
		t.Fatal("aborted collector still running")
	}
	l.Abort() // twice: harmless

	// Let go, it runs; Abort after Go leaves it alone.
	dir = t.TempDir()
	l, err = LaunchCollector(exe, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Go(5*time.Second, Given{}); err != nil {
		t.Fatal(err)
	}
	l.Abort()
	time.Sleep(50 * time.Millisecond)
	if p, _ := readPidFile(dir); !p.alive() {
		t.Error("Abort after Go killed the collector")
	}
	StopCollector(dir, time.Second)
}

func TestRunDirNotAFolder(t *testing.T) {
	p := Paths{RunDir: t.TempDir(), StateDir: t.TempDir()}
	target := t.TempDir()
	keep := filepath.Join(target, "keep")
	os.WriteFile(keep, []byte("x"), 0o600)

	// A plain file and a link where a run folder belongs: PrepareRunDir
	// replaces them, removing the link itself and not what it points to.
	os.WriteFile(p.Run("plain"), []byte("stale"), 0o600)
	os.Symlink(target, p.Run("link"))
	for _, id := range []string{"plain", "link"} {
		dir, salvaged, err := PrepareRunDir(p, id)
		if err != nil || salvaged != nil {
			t.Fatalf("%s: %v, salvaged %+v", id, err, salvaged)
		}
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v %v, want a folder", id, fi, err)
		}
	}

	// Stale ones of other ids go with the cleanup.
	os.WriteFile(p.Run("plain2"), []byte("stale"), 0o600)
	os.Symlink(target, p.Run("link2"))
	past := time.Now().Add(-time.Hour)
	probe := filepath.Join(p.RunDir, KernelProbePrefix+".json")
	os.WriteFile(probe, []byte("{}"), 0o600)
	tv := []unix.Timeval{unix.NsecToTimeval(past.UnixNano()),
		unix.NsecToTimeval(past.UnixNano())}
	for _, f := range []string{p.Run("plain2"), p.Run("link2"), probe} {
		if err := unix.Lutimes(f, tv); err != nil {
			t.Fatal(err)
		}
	}
	removed, _ := CleanStale(p)
	sort.Strings(removed)
	if strings.Join(removed, " ") != "link2 plain2" {
		t.Errorf("removed %v, want [link2 plain2]", removed)
	}
	if _, err := os.Lstat(p.Run("link2")); err == nil {
		t.Error("stale link kept")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a link's target was touched: %v", err)
	}
	if _, err := os.Stat(probe); err != nil {
		t.Errorf("the kernel probe's answer was removed: %v", err)
	}
}

// A pid file that names some other process, with its true start time, is
// not obeyed: the process is not signalled and the stop finds no collector.
func TestStopCollectorLeavesOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Wait()
	defer other.Process.Kill()
	if err := writePidFile(dir, other.Process.Pid); err != nil {
		t.Fatal(err)
	}
	res, err := StopCollector(dir, time.Second)
	if err != nil || res.WasRunning || res.Killed || res.Pid != other.Process.Pid {
		t.Errorf("stop: %+v, %v; want the pid named, not running, not killed", res, err)
	}
	if p, _ := readPidFile(dir); !p.alive() {
		t.Error("the process named by the forged pid file was signalled")
	}
}

// The cleanup passes by a folder whose container's init still runs, and
// takes one whose recorded init is gone even when its pid is reused.
func TestStaleRunFolderInitRuns(t *testing.T) {
	p := Paths{RunDir: t.TempDir(), StateDir: t.TempDir()}
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	past := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		id    string
		start func(uint64) uint64
	}{
		{"running", func(s uint64) uint64 { return s }},
		{"reused", func(s uint64) uint64 { return s - 1 }},
	} {
		dir := p.Run(c.id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		rec := NewRecord(p, &specs.State{ID: c.id, Pid: sleeper.Process.Pid}, "/r", CreateConfig{})
		rec.PidStart = c.start(rec.PidStart)
		if err := WriteJSON(dir, RecordFile, rec); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(dir, past, past)
	}
	removed, _ := CleanStale(p)
	if len(removed) != 1 || removed[0] != "reused" {
		t.Errorf("removed %v, want [reused]", removed)
	}
}
