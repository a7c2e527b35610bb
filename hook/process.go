package hook

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/measure"
)

// ReadyFD is the descriptor on which a collector finds the ready pipe, and
// GoFD the socket on which it waits until the run folder is written (and
// receives the container's fanotify marks).
const (
	ReadyFD = 3
	GoFD    = 4
)

// goLine is what the hook sends on the go socket, before the marks.
const goLine = "go"

// readyLine is what a collector writes on the ready pipe when the container
// may start; anything else is an error line.
const readyLine = "ready"

// ErrNoCollector is returned by StopCollector when the run folder names no
// collector process.
var ErrNoCollector = errors.New("no collector recorded")

// CloseInherited marks every descriptor above keep as close-on-exec, so
// nothing this process inherited (runc's hook stdout and stderr pipes among
// them) reaches a detached child. runc waits for EOF on those pipes.
func CloseInherited(keep int) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= keep {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

// StartCollector starts `exe collector --dir dir` (LaunchCollector), lets
// it go at once and waits until it is ready (Launch.Go).
func StartCollector(exe, dir string, timeout time.Duration) (int, error) {
	l, err := LaunchCollector(exe, dir)
	if err != nil {
		return 0, err
	}
	return l.Go(timeout, Given{})
}

// Launch is a collector process started but not yet let go: it is
// starting up (the runtime's own start is the slow part of a process) while
// the hook writes the run folder's spec.
type Launch struct {
	// Pid is the collector's pid.
	Pid   int
	dir   string
	ready *os.File // read end of the ready pipe
	goW   *os.File // the hook's end of the go socket
	gone  bool     // Go was called
}

// LaunchCollector starts `exe collector --dir dir` detached (own session,
// /dev/null stdin and stdout, stderr to the run folder's collector.log,
// nothing else inherited: runc waits for EOF on a hook's stdout and
// stderr) and records its pid and start time in dir. The collector waits
// for Go before it reads the run folder; a launch never let go ends by
// itself when this process exits.
func LaunchCollector(exe, dir string) (*Launch, error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start collector: %w", err)
	}
	files = append(files, rr, rw)
	// The go channel is a socket: it carries the fanotify marks the
	// hook makes, as descriptors, with the word to go.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("start collector: go socket: %w", err)
	}
	gw, gr := os.NewFile(uintptr(pair[0]), "go"), os.NewFile(uintptr(pair[1]), "go")
	files = append(files, gr, gw)
	logf, err := os.OpenFile(filepath.Join(dir, CollectorLog),
		os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("start collector: %w", err)
	}
	defer logf.Close()
	if err := CloseInherited(2); err != nil {
		closeAll()
		return nil, fmt.Errorf("start collector: %w", err)
	}

	cmd := exec.Command(exe, "collector", "--dir", dir)
	cmd.Args[0] = "imans"
	cmd.Dir = "/"
	cmd.Env = os.Environ()
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{rw, gr} // ReadyFD, GoFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	rw.Close()
	gr.Close()
	if err != nil {
		rr.Close()
		gw.Close()
		return nil, fmt.Errorf("start collector: %w", err)
	}
	l := &Launch{Pid: cmd.Process.Pid, dir: dir, ready: rr, goW: gw}
	// The collector outlives this process; release it so no goroutine
	// waits for it. Its new parent (init or a subreaper) reaps it.
	cmd.Process.Release()

	if err := writePidFile(dir, l.Pid); err != nil {
		l.Abort()
		return nil, fmt.Errorf("start collector: %w", err)
	}
	return l, nil
}

// Go lets the collector read the run folder and start measuring, with
// what g hands on, and waits until it says ready or fails, at most
// timeout. On failure or timeout the collector is killed and the error
// carries its message. The caller closes its copies of g's descriptors.
func (l *Launch) Go(timeout time.Duration, g Given) (int, error) {
	l.gone = true
	defer l.ready.Close()
	// A collector that died already makes the send fail (EPIPE); the
	// ready pipe then says why. Any other failure to send is the reason.
	if serr := l.send(g); serr != nil && !errors.Is(serr, unix.EPIPE) {
		l.kill()
		return l.Pid, fmt.Errorf("start collector: %w", serr)
	}

	line, err := readLine(l.ready, timeout)
	if err == nil && line != readyLine {
		err = errors.New(strings.TrimPrefix(line, "error "))
		if line == "" {
			err = errors.New("collector exited before it was ready")
			if tail := lastLine(filepath.Join(l.dir, CollectorLog)); tail != "" {
				err = fmt.Errorf("collector exited before it was ready: %s", tail)
			}
		}
	}
	if err != nil {
		l.kill()
		return l.Pid, fmt.Errorf("start collector: %w", err)
	}
	return l.Pid, nil
}

// Release lets the collector go with the container's fanotify marks and
// returns without waiting for it: the marks already hold every open and
// execution in the container until the collector answers it, so the
// container's start need not wait for the collector's. A collector that
// fails from then on leaves its reason in its outcome or its log, for
// poststop; one that dies closes the group, and the kernel then allows
// what waited. The caller closes its copies of g's descriptors.
func (l *Launch) Release(g Given) (int, error) {
	l.gone = true
	l.ready.Close()
	if err := l.send(g); err != nil {
		l.kill()
		return l.Pid, fmt.Errorf("start collector: %w", err)
	}
	return l.Pid, nil
}

// Given is what the hook hands the collector with the word to go, each
// part optional: the container's fanotify marks, and a connection to the
// container's TPM (LaunchTPM).
type Given struct {
	Marks *measure.Marks
	TPM   *os.File
}

// goMessage is the go message's description of what its descriptors are:
// the TPM connection first when TPM, then the marks' (Marks is their
// description, measure.Marks.Handoff).
type goMessage struct {
	TPM   bool            `json:"tpm,omitempty"`
	Marks json.RawMessage `json:"marks,omitempty"`
}

// encode returns the go message and its descriptors.
func (g Given) encode() ([]byte, []int, error) {
	var m goMessage
	var fds []int
	if g.TPM != nil {
		m.TPM = true
		fds = append(fds, int(g.TPM.Fd()))
	}
	if g.Marks != nil {
		desc, mfds, err := g.Marks.Handoff()
		if err != nil {
			return nil, nil, err
		}
		m.Marks = desc
		fds = append(fds, mfds...)
	}
	msg := []byte(goLine + "\n")
	if len(fds) == 0 {
		return msg, nil, nil
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	return append(msg, body...), fds, nil
}

// Fits reports whether g fits in one go message: within maxGoMessage bytes
// and maxGoFDs descriptors. Marks that do not (hundreds of mounts, or very
// long mount paths) are left for the collector to make itself.
func (g Given) Fits() bool {
	msg, fds, err := g.encode()
	return err == nil && len(msg) <= maxGoMessage && len(fds) <= maxGoFDs
}

// send writes the go message, with its descriptors, and closes the go
// socket.
func (l *Launch) send(g Given) error {
	defer l.goW.Close()
	msg, fds, err := g.encode()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	conn, err := l.goW.SyscallConn()
	if err != nil {
		return fmt.Errorf("go socket: %w", err)
	}
	var serr error
	err = conn.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), msg, oob, nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("go socket: %w", err)
	}
	return nil
}

// Abort ends a launch that is not let go: the collector sees its go socket
// close and exits; it is killed too, in case it does not. After Go it does
// nothing, so it can be deferred.
func (l *Launch) Abort() {
	if l.gone {
		return
	}
	l.gone = true
	l.goW.Close()
	l.ready.Close()
	l.kill()
}

// kill kills the launched collector. Its pid cannot have been reused: it
// was started moments ago and nothing reaps it before this process exits
// (a released child of a living parent stays a zombie until reaped).
func (l *Launch) kill() {
	unix.Kill(l.Pid, unix.SIGKILL)
}

// AwaitGo is the collector's side of the go socket: it blocks until the
// hook lets it go (true) or gives up on it (false), and returns what the
// hook handed on. Without a go socket (the collector run by hand), it
// returns true at once.
func AwaitGo() (bool, Given, error) {
	var st unix.Stat_t
	if err := unix.Fstat(GoFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return true, Given{}, nil
	}
	defer unix.Close(GoFD)
	buf := make([]byte, maxGoMessage)
	oob := make([]byte, unix.CmsgSpace(maxGoFDs*4))
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(GoFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return false, Given{}, fmt.Errorf("go socket: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		for i := range msgs {
			if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				fds = append(fds, got...)
			}
		}
		if perr != nil {
			err = fmt.Errorf("go socket: control message: %w", perr)
		}
	}
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if err == nil && flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		err = errors.New("go socket: message truncated")
	}
	word, body, _ := bytes.Cut(buf[:n], []byte("\n"))
	if err == nil && string(word) != goLine {
		// The hook closed the socket (n == 0): it gave up.
		closeAll()
		return false, Given{}, nil
	}
	var m goMessage
	if err == nil && len(body) > 0 {
		if jerr := json.Unmarshal(body, &m); jerr != nil {
			err = fmt.Errorf("go socket: %w", jerr)
		}
	}
	if err == nil && m.TPM && len(fds) == 0 {
		err = errors.New("go socket: a TPM connection named but not passed")
	}
	if err != nil {
		closeAll()
		return false, Given{}, err
	}

	var g Given
	if m.TPM {
		g.TPM, fds = os.NewFile(uintptr(fds[0]), "tpm"), fds[1:]
	}
	if len(m.Marks) > 0 {
		marks, err := measure.AdoptMarks(m.Marks, fds)
		if err != nil {
			if g.TPM != nil {
				g.TPM.Close()
			}
			return false, Given{}, err
		}
		g.Marks = marks
	} else if len(fds) > 0 {
		closeAll()
		if g.TPM != nil {
			g.TPM.Close()
		}
		return false, Given{}, errors.New("go socket: descriptors passed that the message does not name")
	}
	return true, g, nil
}

// The bounds of a go message: its bytes (the word and the marks'
// description; well within a unix socket's default send buffer of about
// 208 KiB, which bounds a datagram) and its descriptors (the kernel's
// SCM_MAX_FD).
const (
	maxGoMessage = 64 << 10
	maxGoFDs     = 253
)

// readLine reads one line from r within timeout. EOF before a line gives
// the empty string.
func readLine(r *os.File, timeout time.Duration) (string, error) {
	if err := r.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", fmt.Errorf("collector not ready within %s", timeout)
	}
	return strings.TrimSpace(line), nil
}

// lastLine returns the last non-empty line of a small file.
func lastLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// SignalReady is the collector's side of the ready pipe: it writes "ready"
// when err is nil, else the error, and closes the pipe.
func SignalReady(pipe *os.File, err error) {
	if pipe == nil {
		return
	}
	msg := readyLine + "\n"
	if err != nil {
		msg = "error " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
	}
	pipe.WriteString(msg)
	pipe.Close()
}

// proc identifies a process across pid reuse: its pid and start time.
type proc struct {
	pid   int
	start uint64
}

func writePidFile(dir string, pid int) error {
	start, err := startTime(pid)
	if err != nil {
		return err
	}
	data := fmt.Sprintf("%d %d\n", pid, start)
	return os.WriteFile(filepath.Join(dir, PidFile), []byte(data), 0o600)
}

func readPidFile(dir string) (proc, error) {
	data, err := os.ReadFile(filepath.Join(dir, PidFile))
	if errors.Is(err, os.ErrNotExist) {
		return proc{}, ErrNoCollector
	}
	if err != nil {
		return proc{}, err
	}
	var p proc
	if _, err := fmt.Sscanf(string(data), "%d %d", &p.pid, &p.start); err != nil || p.pid <= 0 {
		return proc{}, fmt.Errorf("%s: malformed %q", PidFile, bytes.TrimSpace(data))
	}
	return p, nil
}

// collectorOf reports whether pid runs the collector of run folder dir: its
// command line ends with the arguments LaunchCollector gives it.
func collectorOf(pid int, dir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	return len(args) >= 4 && slices.Equal(args[len(args)-3:], []string{"collector", "--dir", dir})
}

// startTime reads a process's start time (clock ticks after boot) from
// /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields
	// after the last ')' are space separated, start time is the 20th.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// alive reports whether the recorded process still runs (and is not a
// zombie), so a reused pid is never signalled.
func (p proc) alive() bool {
	start, err := startTime(p.pid)
	if err != nil || start != p.start {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// StopResult says how a collector ended.
type StopResult struct {
	// Pid is the collector's pid, 0 when none was recorded.
	Pid int
	// WasRunning is false when the collector had already exited before
	// the stop (it crashed or was killed).
	WasRunning bool
	// Killed is true when it did not exit within the deadline and was
	// sent SIGKILL.
	Killed bool
}

// StopCollector asks the collector of a run folder to stop (SIGTERM), waits
// up to timeout for it to drain and exit, then kills it. A collector that is
// already gone is not an error; the result says so.
func StopCollector(dir string, timeout time.Duration) (StopResult, error) {
	p, err := readPidFile(dir)
	if err != nil {
		return StopResult{}, fmt.Errorf("stop collector: %w", err)
	}
	res := StopResult{Pid: p.pid}
	if !p.alive() || !collectorOf(p.pid, dir) {
		// A pid file naming any other process, even one started at
		// the recorded time, is not obeyed: that process is left alone.
		return res, nil
	}
	res.WasRunning = true

	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		pidfd = -1
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	if err := unix.Kill(p.pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return res, fmt.Errorf("stop collector %d: %w", p.pid, err)
	}
	// The outcome is the collector's last word: once it is there, the
	// process only stops its TPM (StopSwtpmDir waits for that swtpm's
	// exit too) and exits (its fanotify group's release alone takes
	// milliseconds); it writes nothing more into the run folder.
	outcome := filepath.Join(dir, OutcomeFile)
	ended := func() bool { _, err := os.Lstat(outcome); return err == nil }
	if waitExit(p, pidfd, timeout, ended) {
		return res, nil
	}

	res.Killed = true
	unix.Kill(p.pid, unix.SIGKILL)
	if !waitExit(p, pidfd, 2*time.Second, nil) {
		return res, fmt.Errorf("stop collector %d: still running after SIGKILL", p.pid)
	}
	return res, nil
}

// waitExit waits for the process to exit, or for ended (when not nil) to
// say it is done, through its pidfd when there is one, else by polling
// /proc.
func waitExit(p proc, pidfd int, timeout time.Duration, ended func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !p.alive() || (ended != nil && ended()) {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		switch {
		case ended != nil:
			// The outcome is looked for every quarter millisecond for
			// a while, then every 2 ms: it is what poststop waits for
			// on a runtime's critical path, usually within a few
			// milliseconds. (An inotify watch would wake at the rename,
			// but closing it waits in the kernel for a grace period of
			// 10 ms or more.)
			pause := outcomePoll
			if timeout-left > outcomeFastPoll {
				pause = 2 * time.Millisecond
			}
			time.Sleep(min(left, pause))
		case pidfd >= 0:
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			unix.Poll(fds, int(min(left, 50*time.Millisecond).Milliseconds())+1)
		default:
			time.Sleep(min(left, 5*time.Millisecond))
		}
	}
}

// StopCollector looks for the outcome every outcomePoll during its first
// outcomeFastPoll, then less often.
const (
	outcomePoll     = 250 * time.Microsecond
	outcomeFastPoll = 100 * time.Millisecond
)
