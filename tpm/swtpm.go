package tpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/internal/atomicfile"
)

// Names of the files StartSwtpm keeps in an instance's folder. The control
// socket is the server socket's name plus ".ctrl", the layout tpm2-tools'
// swtpm TCTI expects, so TPM2TOOLS_TCTI=swtpm:path=DIR/swtpm.sock works.
const (
	SwtpmSocket  = "swtpm.sock"
	SwtpmControl = "swtpm.sock.ctrl"
	SwtpmPidFile = "swtpm.pid"
	// swtpmStopped marks a folder whose instance Stop saw exit: with
	// no pid file, nothing can be running there, and StopSwtpmDir need
	// not look through every process for one.
	swtpmStopped = "swtpm.stopped"
	SwtpmLog     = "swtpm.log"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL, and again
// after SIGKILL before giving up.
const stopGrace = 2 * time.Second

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

// Swtpm is a running swtpm instance serving a TPM 2.0 with its state in
// Dir. Addr is the address to give Open. Pid is the process's id.
type Swtpm struct {
	Dir  string
	Addr string
	Pid  int

	cmd   *exec.Cmd     // set when started by this process
	pidfd int           // set (>0) when adopted (AdoptSwtpm)
	done  chan struct{} // closed once the process has exited; nil when unknown
}

// StartSwtpm starts a swtpm for the TPM state in dir (LaunchSwtpm) and
// waits until it answers a command, within ctx's deadline (DefaultTimeout
// if ctx has none).
func StartSwtpm(ctx context.Context, dir string) (*Swtpm, error) {
	s, err := LaunchSwtpm(dir)
	if err != nil {
		return nil, err
	}
	if err := s.WaitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// LaunchSwtpm starts a swtpm for the TPM state in dir (created if missing;
// an existing state is reused) and returns without waiting for it. Its
// server and control sockets are bound here and handed to swtpm, so they
// accept connections from the start: a client may dial s.Addr at once,
// and its first command is answered as soon as the TPM is up (WaitReady
// waits for exactly that). swtpm serves one connection at a time, the
// others wait in the socket's queue.
//
// The process is detached: its own session, /dev/null as stdin, stdout and
// stderr, no inherited descriptors but its sockets, so it outlives the
// caller and holds none of the caller's pipes open. To that end every
// descriptor of the calling process above 2 is marked close-on-exec,
// which only matters to a caller that meant to pass one through a plain
// exec (os/exec's ExtraFiles still work).
//
// Its pid goes into dir/swtpm.pid for StopSwtpmDir, its log into
// dir/swtpm.log. A stale pid file and sockets left by a crashed instance
// are removed; a live instance for dir gives ErrSwtpmRunning. swtpm
// itself powers the TPM on and sends TPM2_Startup(CLEAR).
func LaunchSwtpm(dir string, opts ...LaunchOption) (*Swtpm, error) {
	var cfg launchConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, fmt.Errorf("start swtpm in %s: %w: %w", dir, ErrSwtpmMissing, err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	sock := filepath.Join(dir, SwtpmSocket)
	if len(sock)+len(".ctrl") > maxSocketPath {
		return nil, fmt.Errorf("start swtpm: socket path %s too long for a unix socket", sock)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}

	if err := cleanStale(dir); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(dir, swtpmStopped)); err != nil &&
		!errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	socks, err := bindSockets(sock, filepath.Join(dir, SwtpmControl))
	if err != nil {
		return nil, fmt.Errorf("start swtpm in %s: %w", dir, err)
	}
	defer func() {
		for _, f := range socks {
			f.Close()
		}
	}()

	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", "type=unixio,fd=3",
		"--ctrl", "type=unixio,fd=4",
		"--tpmstate", "dir="+dir,
		"--log", "file="+filepath.Join(dir, SwtpmLog)+",level=1,truncate",
		"--flags", "not-need-init,startup-clear",
	)
	if cfg.endWithClient {
		cmd.Args = append(cmd.Args, "--terminate")
	}
	cmd.Dir = "/"
	cmd.ExtraFiles = socks
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	closeOnExec()
	if err := cmd.Start(); err != nil {
		removeRuntimeFiles(dir)
		return nil, fmt.Errorf("start swtpm in %s: %w: %w", dir, ErrSwtpmStart, err)
	}
	s := &Swtpm{Dir: dir, Addr: "unix:" + sock, Pid: cmd.Process.Pid, cmd: cmd,
		done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()

	if err := writePid(dir, s.Pid); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// LaunchOption changes how LaunchSwtpm runs swtpm.
type LaunchOption func(*launchConfig)

type launchConfig struct {
	endWithClient bool
}

// EndWithClient has swtpm exit once its first client's connection is gone
// (swtpm's --terminate): a TPM that serves one process and must not
// outlive it, even when that process is killed. Nothing else may connect
// first, a WaitReady probe included.
func EndWithClient() LaunchOption {
	return func(c *launchConfig) { c.endWithClient = true }
}

// bindSockets binds a listening unix socket at each path (mode 0600) and
// returns them as files for a child, the paths staying bound when these
// copies are closed.
func bindSockets(paths ...string) ([]*os.File, error) {
	var files []*os.File
	fail := func(err error) ([]*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		for _, p := range paths {
			os.Remove(p)
		}
		return nil, err
	}
	for _, p := range paths {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return fail(err)
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		l.Close()
		if err != nil {
			return fail(err)
		}
		files = append(files, f)
		if err := os.Chmod(p, 0o600); err != nil {
			return fail(err)
		}
	}
	return files, nil
}

// closeOnExec marks every descriptor above stderr close-on-exec, so that
// swtpm inherits none of them: Go opens its own that way, but a process
// may have inherited others (a hook's from its runtime).
func closeOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// WaitReady waits until the TPM answers a command, within ctx's deadline
// (DefaultTimeout if ctx has none), or fails when the instance exits first.
// Only an instance this process launched or adopted can be waited for.
func (s *Swtpm) WaitReady(ctx context.Context) error {
	if s.done == nil {
		return fmt.Errorf("swtpm in %s: not launched or adopted by this process", s.Dir)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()

	// The socket was bound before swtpm ran: the probe's connection
	// waits in its queue and its command is answered once the TPM is
	// up. A swtpm that exits first resets the connection, and its exit
	// is what is reported; short pauses cover the moment in between.
	pause := 100 * time.Microsecond
	for {
		select {
		case <-s.done:
			return fmt.Errorf("%w: %w", ErrSwtpmStart, s.Exited())
		default:
		}

		err := s.probe(time.Until(deadline))
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNoDevice) && !errors.Is(err, ErrGone) {
			return fmt.Errorf("swtpm in %s: %w: %w", s.Dir, ErrSwtpmStart, err)
		}

		select {
		case <-ctx.Done():
			return fmt.Errorf("swtpm in %s: %w: no answer before the deadline: %w%s",
				s.Dir, ErrSwtpmStart, ctx.Err(), logTail(s.Dir))
		case <-s.done:
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Millisecond)
	}
}

// Exited returns nil while the instance runs, else why it is gone: its exit
// status (for an instance this process launched) and the end of its log.
// It knows only of an instance this process launched or adopted; for any
// other it returns nil.
func (s *Swtpm) Exited() error {
	if s.done == nil {
		return nil
	}
	select {
	case <-s.done:
		status := "exited"
		if s.cmd != nil {
			status = fmt.Sprintf("exited (%s)", s.cmd.ProcessState)
		}
		return fmt.Errorf("swtpm in %s %s%s", s.Dir, status, logTail(s.Dir))
	default:
		return nil
	}
}

// AdoptSwtpm returns the swtpm that another process launched for dir (the
// pid file names it, and it must be a swtpm keeping its state in dir), so
// that this process can tell when it exits (Exited) and stop it (Stop) as
// if it had launched it: through a pidfd, which names that process and no
// later one with its pid.
func AdoptSwtpm(dir string) (*Swtpm, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("adopt swtpm: %w", err)
	}
	pid, err := livePid(dir)
	if err != nil {
		return nil, err
	}
	if pid == 0 {
		return nil, fmt.Errorf("adopt swtpm: none runs in %s%s", dir, logTail(dir))
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("adopt swtpm %d in %s: %w", pid, dir, err)
	}
	unix.CloseOnExec(fd)
	// Checked again with the pidfd held: the pid cannot be reused now.
	if !serves(pid, dir) {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt swtpm: none runs in %s (pid %d exited)", dir, pid)
	}
	s := &Swtpm{Dir: dir, Addr: "unix:" + filepath.Join(dir, SwtpmSocket), Pid: pid,
		pidfd: fd, done: make(chan struct{})}
	go func() {
		// A pidfd polls readable once its process has exited.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		close(s.done)
	}()
	return s, nil
}

// signal sends sig to the instance, launched or adopted.
func (s *Swtpm) signal(sig syscall.Signal) error {
	if s.cmd != nil {
		return s.cmd.Process.Signal(sig)
	}
	return unix.PidfdSendSignal(s.pidfd, sig, nil, 0)
}

// Open opens the instance's TPM; the same as Open(s.Addr).
func (s *Swtpm) Open() (*TPM, error) {
	return Open(s.Addr)
}

// probe sends one cheap command within d.
func (s *Swtpm) probe(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: deadline passed", ErrTimeout)
	}
	t, err := Open(s.Addr)
	if err != nil {
		return err
	}
	defer t.Close()

	t.SetTimeout(d)
	_, err = tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTManufacturer),
		PropertyCount: 1,
	}.Execute(t.ch.with(0))
	return err
}

// Stop stops the instance: SIGTERM, then SIGKILL if it has not exited
// within a grace period. It removes the sockets and the pid file and keeps
// the TPM state. Stopping a stopped instance returns nil.
func (s *Swtpm) Stop() error {
	return s.stop(syscall.SIGTERM)
}

// Discard ends an instance whose TPM state is of no further use at once,
// with SIGKILL: swtpm then saves nothing on its way out (a SIGTERM has it
// write its state first, about a millisecond and a half here). Like Stop,
// it removes the sockets and the pid file, not the state.
func (s *Swtpm) Discard() error {
	return s.stop(syscall.SIGKILL)
}

// stop ends the instance with sig, then SIGKILL if it is still running
// after stopGrace.
func (s *Swtpm) stop(sig syscall.Signal) error {
	if s.done == nil {
		return StopSwtpmDir(s.Dir)
	}

	gone := func() bool {
		select {
		case <-s.done:
			return true
		default:
			return false
		}
	}
	if !gone() {
		_ = s.signal(sig)
		select {
		case <-s.done:
		case <-time.After(stopGrace):
			_ = s.signal(syscall.SIGKILL)
			select {
			case <-s.done:
			case <-time.After(stopGrace):
				return fmt.Errorf("stop swtpm %d in %s: still running after SIGKILL",
					s.Pid, s.Dir)
			}
		}
	}
	// The marker goes before the pid file: whoever finds no pid file
	// then also finds the marker.
	_ = os.WriteFile(filepath.Join(s.Dir, swtpmStopped), nil, 0o600)
	return removeRuntimeFiles(s.Dir)
}

// StopSwtpmDir stops the swtpm serving dir from any process, found by the
// pid file StartSwtpm wrote, and removes its sockets and pid file. The pid
// is trusted only if that process is a swtpm whose command line names
// dir's socket, so a pid reused by another program is never signalled.
// Nothing running (no pid file, dead pid) is not an error.
func StopSwtpmDir(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("stop swtpm: %w", err)
	}

	pid, err := livePid(dir)
	if err != nil {
		return err
	}
	pids := []int{pid}
	if pid == 0 && exists(filepath.Join(dir, swtpmStopped)) {
		pids = nil
	} else if pid == 0 {
		// No pid file: the process that started the swtpm may have died
		// before swtpm wrote it. Look for a swtpm serving dir all the same,
		// or it would run on with nobody to stop it.
		pids = servingPids(dir)
	}
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		if err := killAndWait(pid); err != nil {
			return fmt.Errorf("stop swtpm %d in %s: %w", pid, dir, err)
		}
	}
	return removeRuntimeFiles(dir)
}

// exists reports whether path names anything.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// servingPids returns the live swtpm processes whose command line serves
// dir's socket.
func servingPids(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if alive(pid) && serves(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAndWait sends SIGTERM, then SIGKILL, and waits for the process to
// be gone or a zombie (its parent, not us, reaps it).
func killAndWait(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	if waitGone(pid, stopGrace) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if waitGone(pid, stopGrace) {
		return nil
	}
	return errors.New("still running after SIGKILL")
}

// waitGone polls until pid has exited or d has passed.
func waitGone(pid int, d time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !alive(pid) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return !alive(pid)
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

// livePid returns the pid in dir's pid file if that process is a live
// swtpm serving dir, else 0.
func livePid(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, SwtpmPidFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read swtpm pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, nil
	}
	if !alive(pid) || !serves(pid, dir) {
		return 0, nil
	}
	return pid, nil
}

// serves reports whether pid is a swtpm whose command line keeps its
// state in dir: a pid file's number may have been reused by another
// process. (Its sockets are passed as descriptors, so its command line
// names no socket.)
func serves(pid int, dir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "swtpm" {
		return false
	}
	for i, a := range args[1:] {
		if a == "--tpmstate" && i+2 < len(args) && args[i+2] == "dir="+dir {
			return true
		}
	}
	return false
}

// cleanStale refuses a folder a live swtpm serves and removes what a dead
// one left behind.
func cleanStale(dir string) error {
	pid, err := livePid(dir)
	if err != nil {
		return err
	}
	if pid != 0 {
		return fmt.Errorf("start swtpm in %s: %w (pid %d)", dir, ErrSwtpmRunning, pid)
	}
	return removeRuntimeFiles(dir)
}

// removeRuntimeFiles removes the sockets and the pid file of dir.
func removeRuntimeFiles(dir string) error {
	for _, name := range []string{SwtpmSocket, SwtpmControl, SwtpmPidFile} {
		err := os.Remove(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clean up swtpm files: %w", err)
		}
	}
	return nil
}

// writePid writes the pid file atomically.
func writePid(dir string, pid int) error {
	err := atomicfile.Write(filepath.Join(dir, SwtpmPidFile), []byte(strconv.Itoa(pid)+"\n"),
		atomicfile.Options{NoSync: true})
	if err != nil {
		return fmt.Errorf("swtpm pid file: %w", err)
	}
	return nil
}

// logTail returns the last lines of the instance's log, for an error
// message, or "".
func logTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, SwtpmLog))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	b = bytes.TrimSpace(b)
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return "; swtpm log: " + strings.ReplaceAll(string(b), "\n", " | ")
}
