package tpm

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/imans-project/imans/internal/testenv"
)

func TestOpenNoSuchDevice(t *testing.T) {
	dir := shortDir(t)
	cases := []struct {
		addr   string
		osErr  error
		inText string
	}{
		{"/dev/imans-no-such-tpm", fs.ErrNotExist, "/dev/imans-no-such-tpm"},
		{"unix:" + filepath.Join(dir, "none.sock"), fs.ErrNotExist, "none.sock"},
		{"tcp:127.0.0.1:" + strconv.Itoa(freePort(t)), syscall.ECONNREFUSED, "tcp:127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			_, err := Open(c.addr)
			if !errors.Is(err, ErrNoDevice) || !errors.Is(err, c.osErr) {
				t.Fatalf("Open: %v, want ErrNoDevice and %v", err, c.osErr)
			}
			if !strings.Contains(err.Error(), c.inText) {
				t.Fatalf("error does not name the address: %v", err)
			}
		})
	}

	// A socket whose swtpm is gone: refused, also ErrNoDevice.
	sock := filepath.Join(dir, "dead.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := Open("unix:" + sock); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Open of a dead socket: %v", err)
	}
}

func TestOpenBadAddress(t *testing.T) {
	file := filepath.Join(shortDir(t), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"", "tpm0", "unix:", "tcp:", "mssim:localhost:2321", file} {
		if _, err := Open(addr); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Open(%q): %v, want ErrBadAddress", addr, err)
		}
	}
}

// openAs opens addr as user and group id (with no supplementary groups)
// on a thread of its own, which then dies with its goroutine (it stays
// locked), so the rest of the test keeps root. Credentials are per thread
// in Linux; the raw system calls change only this one.
func openAs(id int, addr string) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		keep := ^uintptr(0)
		calls := []struct{ trap, a1, a2, a3 uintptr }{
			{syscall.SYS_SETGROUPS, 0, 0, 0},
			{syscall.SYS_SETRESGID, keep, uintptr(id), keep},
			{syscall.SYS_SETRESUID, keep, uintptr(id), keep},
		}
		for _, c := range calls {
			if _, _, e := syscall.RawSyscall(c.trap, c.a1, c.a2, c.a3); e != 0 {
				done <- e
				return
			}
		}
		tp, err := Open(addr)
		if err == nil {
			tp.Close()
		}
		done <- err
	}()
	return <-done
}

func TestOpenPermissionDenied(t *testing.T) {
	testenv.Root(t)
	s := startSwtpm(t)
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(s.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A character device node like /dev/null's (1, 3) that only root
	// may open.
	dev := filepath.Join(dir, "tpm-root-only")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o600, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	// swtpm's socket is srwxrwx--- root:root.
	for _, addr := range []string{dev, s.Addr} {
		err := openAs(65534, addr)
		if !errors.Is(err, ErrPermission) || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Open(%s) as nobody: %v, want ErrPermission", addr, err)
		}
		if !strings.Contains(err.Error(), strings.TrimPrefix(addr, "unix:")) {
			t.Fatalf("error does not name the address: %v", err)
		}
	}
}

func TestSwtpmMissing(t *testing.T) {
	t.Setenv("PATH", shortDir(t))
	dir := filepath.Join(shortDir(t), "tpm")
	_, err := StartSwtpm(context.Background(), dir)
	if !errors.Is(err, ErrSwtpmMissing) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("StartSwtpm without swtpm on PATH: %v", err)
	}
}

func TestSwtpmDiesMidCommand(t *testing.T) {
	s, tp := openSwtpm(t)
	if _, err := tp.Banks(); err != nil {
		t.Fatal(err)
	}

	// Stopped swtpm: the command is sent and waits; killing swtpm then
	// ends it with ErrGone long before its deadline.
	if err := syscall.Kill(s.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	tp.SetTimeout(5 * time.Second)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := tp.ReadPCR(10)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(s.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ReadPCR still blocked 10 s after swtpm was killed")
	}
	if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), s.Addr) {
		t.Fatalf("ReadPCR on a killed swtpm: %v, want ErrGone naming %s", err, s.Addr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ErrGone came after %v", d)
	}

	// The connection stays unusable; once the process is gone, a new one
	// finds nothing listening.
	if _, err := tp.ReadPCR(10); !errors.Is(err, ErrGone) {
		t.Fatalf("second command: %v", err)
	}
	<-s.done
	if _, err := Open(s.Addr); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Open after swtpm died: %v", err)
	}
}

func TestSwtpmHangsTimesOut(t *testing.T) {
	s, tp := openSwtpm(t)
	if err := syscall.Kill(s.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(s.Pid, syscall.SIGCONT)

	tp.SetTimeout(300 * time.Millisecond)
	start := time.Now()
	_, err := tp.Banks()
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), s.Addr) {
		t.Fatalf("Banks on a stopped swtpm: %v, want ErrTimeout", err)
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("timed out after %v, deadline 300ms", elapsed)
	}
}

func TestBankNotAllocated(t *testing.T) {
	setup := testenv.Command(t, "swtpm_setup")
	dir := filepath.Join(shortDir(t), "tpm")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(setup, "--tpm2", "--pcr-banks", "sha256",
		"--tpmstate", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	s := startSwtpm(t, dir)
	tp, err := Open(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()

	banks, err := tp.Banks()
	if err != nil || len(banks) != 1 || banks[0] != "sha256" {
		t.Fatalf("Banks() = %v, %v; want [sha256]", banks, err)
	}

	if _, err := tp.ReadPCR(10, "sha1"); !errors.Is(err, ErrBankNotAllocated) ||
		!strings.Contains(err.Error(), "sha1") {
		t.Fatalf("ReadPCR sha1: %v", err)
	}
	err = tp.Extend(10, map[string][]byte{"sha1": make([]byte, 20), "sha256": make([]byte, 32)})
	if !errors.Is(err, ErrBankNotAllocated) {
		t.Fatalf("Extend with sha1: %v", err)
	}

	// All allocated banks (sha256 alone) extend and read back.
	d := make([]byte, 32)
	d[0] = 1
	if err := tp.Extend(10, map[string][]byte{"sha256": d}); err != nil {
		t.Fatal(err)
	}
	v, err := tp.ReadPCR(10)
	if err != nil || len(v) != 1 || v["sha256"][0] == 0 && v["sha256"][1] == 0 {
		t.Fatalf("ReadPCR(10) = %x, %v", v, err)
	}

	ak, err := tp.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	if _, err := ak.Quote(map[string][]int{"sha1": {10}}, nil); !errors.Is(err,
		ErrBankNotAllocated) {
		t.Fatalf("Quote of sha1: %v", err)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDeviceWithoutTPM opens a character device that is no TPM (a node
// like /dev/null: writes vanish, reads give end of file): the device path
// reports the end of file as a lost connection, at once.
func TestDeviceWithoutTPM(t *testing.T) {
	testenv.Root(t)
	dev := filepath.Join(shortDir(t), "not-a-tpm")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o600, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	tp, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	tp.SetTimeout(2 * time.Second)
	start := time.Now()
	_, err = tp.Banks()
	if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), dev) {
		t.Fatalf("Banks on /dev/null: %v, want ErrGone naming %s", err, dev)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestDeviceHangsTimesOut sends a command to a character device that
// never answers (the terminal side of a pseudo-terminal nobody writes to):
// ErrTimeout at the deadline, not a hang.
func TestDeviceHangsTimesOut(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testenv.Missing(t, "no /dev/ptmx: %v", err)
	}
	defer master.Close()
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK,
		uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN,
		uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	dev := "/dev/pts/" + strconv.Itoa(int(n))

	tp, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	tp.SetTimeout(300 * time.Millisecond)
	start := time.Now()
	_, err = tp.ReadPCR(10, "sha256")
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), dev) {
		t.Fatalf("ReadPCR on a silent device: %v, want ErrTimeout naming %s", err, dev)
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("timed out after %v, deadline 300ms", elapsed)
	}
}
