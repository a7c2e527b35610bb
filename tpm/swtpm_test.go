package tpm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
)

func TestSwtpmDetached(t *testing.T) {
	testenv.Command(t, "swtpm")

	// A descriptor without close-on-exec, as a hook inherits from its
	// runtime: swtpm must not get it.
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])

	s := startSwtpm(t)
	proc := "/proc/" + strconv.Itoa(s.Pid)

	sid, err := os.ReadFile(proc + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name: state ppid pgrp session.
	f := strings.Fields(string(sid[bytes.LastIndexByte(sid, ')')+1:]))
	if f[3] != strconv.Itoa(s.Pid) {
		t.Errorf("swtpm session %s, want its own (%d)", f[3], s.Pid)
	}

	for fd := range 3 {
		target, err := os.Readlink(fmt.Sprintf("%s/fd/%d", proc, fd))
		if err != nil || target != "/dev/null" {
			t.Errorf("swtpm fd %d -> %q (%v), want /dev/null", fd, target, err)
		}
	}
	pipeIno := func(fd int) string {
		l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		return l
	}
	fds, err := os.ReadDir(proc + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		l, _ := os.Readlink(proc + "/fd/" + e.Name())
		if l == pipeIno(p[0]) || l == pipeIno(p[1]) {
			t.Errorf("swtpm inherited fd %s -> %s", e.Name(), l)
		}
	}

	pid, err := os.ReadFile(filepath.Join(s.Dir, SwtpmPidFile))
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(s.Pid) {
		t.Errorf("pid file %q (%v), want %d", pid, err, s.Pid)
	}
	if s.Addr != "unix:"+filepath.Join(s.Dir, SwtpmSocket) {
		t.Errorf("Addr %s", s.Addr)
	}
}

func TestStopSwtpmDir(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	s, err := StartSwtpm(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	// A second instance for the same folder is refused.
	if _, err := StartSwtpm(context.Background(), dir); !errors.Is(err, ErrSwtpmRunning) {
		t.Fatalf("second StartSwtpm: %v, want ErrSwtpmRunning", err)
	}

	// Another process stops it knowing only the folder.
	if err := StopSwtpmDir(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("swtpm still running after StopSwtpmDir")
	}
	for _, name := range []string{SwtpmSocket, SwtpmControl, SwtpmPidFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tpm2-00.permall")); err != nil {
		t.Errorf("TPM state removed: %v", err)
	}

	// Stopping again, or a folder that never had one, is no error.
	if err := StopSwtpmDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := StopSwtpmDir(shortDir(t)); err != nil {
		t.Fatal(err)
	}
}

// A swtpm whose pid file was never written (its starter died first) is
// still found by its command line and stopped.
func TestStopSwtpmDirWithoutPidFile(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	s, err := StartSwtpm(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := os.Remove(filepath.Join(dir, SwtpmPidFile)); err != nil {
		t.Fatal(err)
	}

	if err := StopSwtpmDir(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("swtpm %d still running after StopSwtpmDir without a pid file", s.Pid)
	}
}

// Stop leaves a marker that spares StopSwtpmDir its search of every
// process; a new start in the same folder removes it, so an instance
// started after a stop is still found when its pid file is missing.
func TestStopSwtpmDirAfterStopAndRestart(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	first, err := StartSwtpm(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, swtpmStopped)); err != nil {
		t.Fatalf("no stop marker after Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, SwtpmPidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file after Stop: %v", err)
	}
	if err := StopSwtpmDir(dir); err != nil {
		t.Fatal(err)
	}

	second, err := StartSwtpm(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	if _, err := os.Stat(filepath.Join(dir, swtpmStopped)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stop marker left after a new start: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, SwtpmPidFile)); err != nil {
		t.Fatal(err)
	}
	if err := StopSwtpmDir(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("swtpm %d still running after StopSwtpmDir", second.Pid)
	}
}

func TestSwtpmRestartAfterCrash(t *testing.T) {
	s, tp := openSwtpm(t)
	ak, err := tp.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := ak.PublicWire()
	tp.Close()

	// A crash leaves the sockets and the pid file behind.
	if err := syscall.Kill(s.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	if _, err := os.Stat(filepath.Join(s.Dir, SwtpmSocket)); err != nil {
		t.Fatalf("expected a stale socket: %v", err)
	}

	// The pid of the dead swtpm may meanwhile belong to another program:
	// pretend it is this test process, which must survive.
	if err := os.WriteFile(filepath.Join(s.Dir, SwtpmPidFile),
		[]byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := startSwtpm(t, s.Dir)
	tp2, err := Open(s2.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	ak2, err := tp2.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ak2.Close()
	if !bytes.Equal(key, ak2.PublicWire()) {
		t.Fatal("the restarted TPM has lost its endorsement seed")
	}
	v, err := tp2.ReadPCR(10, "sha256")
	if err != nil || !bytes.Equal(v["sha256"], make([]byte, 32)) {
		t.Fatalf("pcr 10 after restart %x, %v; want zeros", v, err)
	}
}

func TestSwtpmStartFailureIsClear(t *testing.T) {
	testenv.Command(t, "swtpm")
	// A state folder swtpm cannot use: its state file is a folder.
	dir := filepath.Join(shortDir(t), "tpm")
	if err := os.MkdirAll(filepath.Join(dir, "tpm2-00.permall"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := StartSwtpm(ctx, dir)
	if !errors.Is(err, ErrSwtpmStart) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("StartSwtpm on a broken state: %v, want ErrSwtpmStart", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("failure took %v", time.Since(start))
	}
	t.Logf("error: %v", err)
}

func TestOpenTCP(t *testing.T) {
	bin := testenv.Command(t, "swtpm")
	dir := shortDir(t)
	port := freePort(t)
	cmd := exec.Command(bin, "socket", "--tpm2", "--server",
		"type=tcp,port="+strconv.Itoa(port), "--ctrl", "type=tcp,port="+strconv.Itoa(port+1),
		"--tpmstate", "dir="+dir, "--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	addr := "tcp:127.0.0.1:" + strconv.Itoa(port)
	var tp *TPM
	var err error
	for range 200 {
		if tp, err = Open(addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	d := make([]byte, 32)
	d[31] = 7
	digests := map[string][]byte{"sha1": make([]byte, 20), "sha256": d,
		"sha384": make([]byte, 48), "sha512": make([]byte, 64)}
	if err := tp.Extend(10, digests); err != nil {
		t.Fatal(err)
	}
	v, err := tp.ReadPCR(10, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	// sha256(32 zero bytes || 31 zero bytes 07), computed with Python.
	const want = "2ebe6807995c988b9d292b535a81546078d93d753a42bf8d15ddcaf2d84be200"
	if got := hex.EncodeToString(v["sha256"]); got != want {
		t.Fatalf("pcr 10 sha256 over tcp = %s, want %s", got, want)
	}
}

func TestReadClockCountsResets(t *testing.T) {
	s, tp := openSwtpm(t)
	c1, err := tp.ReadClock()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c2, err := tp.ReadClock()
	if err != nil {
		t.Fatal(err)
	}
	if c2.Time < c1.Time+20 || c2.Clock < c1.Clock+20 {
		t.Errorf("clock did not advance 20 ms: %+v then %+v", c1, c2)
	}
	tp.Close()

	// A restart of swtpm on its state is a TPM reset (Startup(CLEAR)).
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s2 := startSwtpm(t, s.Dir)
	tp2, err := Open(s2.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	c3, err := tp2.ReadClock()
	if err != nil {
		t.Fatal(err)
	}
	if c3.ResetCount != c1.ResetCount+1 || c3.RestartCount != 0 {
		t.Errorf("after restart: reset %d restart %d, before reset %d", c3.ResetCount,
			c3.RestartCount, c1.ResetCount)
	}
}

// helperStartEnv makes the test binary a process that starts a swtpm in
// the folder it names and exits at once, as the createRuntime hook does.
const helperStartEnv = "IMANS_TPM_TEST_START_IN"

func TestHelperStartSwtpm(t *testing.T) {
	dir := os.Getenv(helperStartEnv)
	if dir == "" {
		return // not a test: the body of TestSwtpmOutlivesStarter's helper
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := StartSwtpm(ctx, dir); err != nil {
		t.Fatal(err)
	}
}

// TestSwtpmOutlivesStarter starts a swtpm from another process that then
// exits, uses the TPM, and stops it knowing only the folder, as the
// poststop hook does.
func TestSwtpmOutlivesStarter(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartSwtpm$")
	cmd.Env = append(os.Environ(), helperStartEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("starter: %v\n%s", err, out)
	}
	defer StopSwtpmDir(dir)

	pid, err := livePid(dir)
	if err != nil || pid == 0 {
		t.Fatalf("no live swtpm after its starter exited: %d, %v", pid, err)
	}
	tp, err := Open("unix:" + filepath.Join(dir, SwtpmSocket))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.ReadPCR(10, "sha256"); err != nil {
		t.Fatal(err)
	}
	tp.Close()

	if err := StopSwtpmDir(dir); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("swtpm %d still running after StopSwtpmDir", pid)
	}
	if _, err := os.Stat(filepath.Join(dir, SwtpmPidFile)); !os.IsNotExist(err) {
		t.Fatalf("pid file left: %v", err)
	}
}

// TestSwtpmOneConnectionAtATime shows the limit documented in docs/tpm.md:
// while one connection is open, a second one's command waits, here until
// its deadline, and is served once the first closes.
func TestSwtpmOneConnectionAtATime(t *testing.T) {
	s, first := openSwtpm(t)
	if _, err := first.Banks(); err != nil {
		t.Fatal(err)
	}

	second, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetTimeout(300 * time.Millisecond)
	if _, err := second.Banks(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second connection while the first is open: %v, want ErrTimeout", err)
	}

	first.Close()
	third, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.SetTimeout(5 * time.Second)
	if _, err := third.Banks(); err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
}

// LaunchSwtpm returns before the TPM is up, with its sockets bound already
// (mode 0600): a client dials at once, and its first command is answered
// once the TPM is up (PCR 10 of a new TPM: zeros in both banks).
func TestLaunchSwtpmTakesConnectionsAtOnce(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	s, err := LaunchSwtpm(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, name := range []string{SwtpmSocket, SwtpmControl} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want a socket, mode 0600", name, fi.Mode(), err)
		}
	}

	tp, err := Open(s.Addr)
	if err != nil {
		t.Fatalf("dial right after the launch: %v", err)
	}
	defer tp.Close()
	tp.SetTimeout(10 * time.Second)
	v, err := tp.ReadPCR(10, "sha1", "sha256")
	if err != nil || !bytes.Equal(v["sha1"], make([]byte, 20)) ||
		!bytes.Equal(v["sha256"], make([]byte, 32)) {
		t.Fatalf("pcr 10 of a new TPM: %x, %v; want zeros", v, err)
	}
	if err := s.Exited(); err != nil {
		t.Fatalf("Exited of a running swtpm: %v", err)
	}
}

// A launched instance that dies is reported by Exited, with its folder and
// the end of its log, and a client's command fails instead of waiting.
func TestSwtpmExited(t *testing.T) {
	testenv.Command(t, "swtpm")
	// A state folder swtpm cannot use: its state file is a folder.
	dir := filepath.Join(shortDir(t), "tpm")
	if err := os.MkdirAll(filepath.Join(dir, "tpm2-00.permall"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := LaunchSwtpm(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	deadline := time.Now().Add(10 * time.Second)
	for s.Exited() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	err = s.Exited()
	if err == nil || !strings.Contains(err.Error(), dir+" exited") {
		t.Fatalf("Exited of a swtpm that cannot read its state: %v", err)
	}
	if tp, oerr := Open(s.Addr); oerr == nil {
		tp.SetTimeout(5 * time.Second)
		if _, rerr := tp.ReadPCR(10, "sha256"); rerr == nil {
			t.Error("a command to an exited swtpm succeeded")
		}
		tp.Close()
	}
	t.Logf("Exited: %v", err)
}

// A swtpm launched by one process is adopted by another (here: the same
// process, through the pid file only): the adopted handle sees it run,
// reads its PCRs, sees it exit when killed from outside, and stops
// another one, its pid file then gone.
func TestAdoptSwtpm(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	if _, err := AdoptSwtpm(dir); err == nil || !strings.Contains(err.Error(), "none runs in") {
		t.Fatalf("AdoptSwtpm with no swtpm: %v", err)
	}

	launched, err := LaunchSwtpm(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer launched.Stop()
	s, err := AdoptSwtpm(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pid != launched.Pid || s.Addr != launched.Addr || s.Exited() != nil {
		t.Fatalf("adopted %d %s (exited: %v), launched %d %s", s.Pid, s.Addr, s.Exited(),
			launched.Pid, launched.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady of an adopted swtpm: %v", err)
	}
	syscall.Kill(s.Pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for s.Exited() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Exited(); err == nil || !strings.Contains(err.Error(), dir+" exited") {
		t.Fatalf("Exited of an adopted swtpm killed: %v", err)
	}
	launched.Stop()

	dir2 := filepath.Join(shortDir(t), "tpm")
	other, err := LaunchSwtpm(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	s2, err := AdoptSwtpm(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
	if s2.Exited() == nil || alive(other.Pid) {
		t.Errorf("swtpm %d runs on after the adopted handle's Stop", other.Pid)
	}
	if _, err := os.Stat(filepath.Join(dir2, SwtpmPidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after Stop: %v", err)
	}
}

// Discard ends a swtpm at once, its sockets and pid file removed, its
// state left as it was (a SIGKILL saves nothing).
func TestSwtpmDiscard(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	s, err := StartSwtpm(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := s.Exited(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("Exited after Discard: %v, want killed", err)
	}
	for _, name := range []string{SwtpmSocket, SwtpmControl, SwtpmPidFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Discard: %v", name, err)
		}
	}
	if err := s.Discard(); err != nil {
		t.Errorf("second Discard: %v", err)
	}
}

// A swtpm launched to end with its client serves one connection and exits
// when it is gone, as when the process holding it is killed.
func TestSwtpmEndWithClient(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir := filepath.Join(shortDir(t), "tpm")
	s, err := LaunchSwtpm(dir, EndWithClient())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	tp, err := Open(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tp.SetTimeout(10 * time.Second)
	if _, err := tp.ReadPCR(10, "sha256"); err != nil {
		t.Fatal(err)
	}
	if s.Exited() != nil {
		t.Fatal("exited while its client is connected")
	}
	tp.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Exited() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Exited() == nil {
		t.Fatal("still running after its client closed")
	}
}
