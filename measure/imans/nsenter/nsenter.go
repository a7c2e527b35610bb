// Package nsenter takes a freshly executed program into an existing user
// namespace, through the nsenter(1) program of util-linux (or busybox's),
// and gives it a new mount namespace of its own once it runs.
//
// The kernel refuses setns(CLONE_NEWUSER) to a multithreaded process, and a
// Go program has several threads before its first init function runs; the
// SysProcAttr of package syscall can create namespaces for a child but not
// join existing ones. nsenter(1) is a single-threaded C program that does
// the setns, switches to the namespace's uid and gid 0 (its default when
// entering a user namespace; with them the program keeps its capabilities
// there across execve) and executes the program, keeping the descriptors
// it inherited. The program then calls EnterMountNS: unshare(CLONE_NEWNS)
// is allowed to one thread of a multithreaded process, and the new mount
// namespace belongs to the user namespace just entered.
//
// Both the user namespace and the program are passed as inherited
// descriptors (/proc/self/fd/N): no pid-to-path race, and the program, run
// as the container's mapped root, need not be able to reach the binary's
// directory on the host.
package nsenter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// systemDirs are searched for nsenter before PATH, so that a hook run as
// root with an odd PATH still gets the system's program.
var systemDirs = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}

// Tools is the absolute path of nsenter(1).
type Tools struct {
	Nsenter string
}

// Lookup finds nsenter, first in the system directories, then in PATH.
// The error names the missing program and its Debian package.
func Lookup() (Tools, error) {
	p, err := lookPath("nsenter")
	return Tools{Nsenter: p}, err
}

func lookPath(name string) (string, error) {
	for _, dir := range systemDirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() &&
			st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s(1) is needed to enter a container's user namespace "+
			"(Debian package util-linux): %w", name, err)
	}
	return filepath.Abs(p)
}

// Command returns a command that runs the program open at descriptor
// exeFD with args, in the user namespace open at descriptor usernsFD, as
// that namespace's uid and gid 0. Both numbers are as the child sees
// them: the caller puts the files in cmd.ExtraFiles (descriptor 3 is
// ExtraFiles[0]). The program's argv[0] is /proc/self/fd/EXEFD. nsenter
// does not fork (no --pid), so the program is the process started.
func (t Tools) Command(ctx context.Context, usernsFD, exeFD int,
	args ...string) *exec.Cmd {
	argv := []string{
		fmt.Sprintf("--user=/proc/self/fd/%d", usernsFD), "--",
		fmt.Sprintf("/proc/self/fd/%d", exeFD),
	}
	return exec.CommandContext(ctx, t.Nsenter, append(argv, args...)...)
}

// Steps of the way in, as Error names them.
const (
	StepOpen    = "open the user namespace descriptor"
	StepSetns   = "setns(CLONE_NEWUSER)"
	StepIDs     = "switch to the namespace's uid and gid 0"
	StepExec    = "execute the helper"
	StepUnshare = "unshare(CLONE_NEWNS)"
)

// Error is a failed step on the way in: nsenter's, or EnterMountNS's.
type Error struct {
	Step  string
	Errno syscall.Errno
	// Text is the program's own line, kept when no errno could be read
	// from it.
	Text string
}

// Error names the step and what its errno means there.
func (e *Error) Error() string {
	if e.Errno == 0 {
		return fmt.Sprintf("entering the container's namespaces: %s: %s", e.Step, e.Text)
	}
	return fmt.Sprintf("entering the container's namespaces: %s: %s%s",
		e.Step, e.Errno.Error(), hint(e.Step, e.Errno))
}

// Unwrap gives the errno, so errors.Is(err, syscall.EPERM) works.
func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ParseError reads the last line nsenter wrote to stderr before failing
// ("nsenter: reassociate to namespace 'ns/user' failed: Operation not
// permitted", or busybox's wording) and returns the step and errno it
// names. It returns nil when no line of stderr is nsenter's. nsenter
// prints strerror in the C locale, which the caller sets.
func ParseError(stderr string) *Error {
	msg, found := "", false
	for _, line := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, "nsenter: "); ok {
			msg, found = rest, true
		}
	}
	if !found {
		return nil
	}

	e := &Error{Step: step(msg), Text: "nsenter: " + msg}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		e.Errno = errnoFromText(msg[i+2:])
	}
	return e
}

func step(msg string) string {
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(msg, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("reassociate"):
		return StepSetns
	case has("setgroups", "setgid", "setuid"):
		return StepIDs
	case has("execute"):
		return StepExec
	case has("open"):
		return StepOpen
	}
	return "nsenter(1)"
}

// errnoFromText maps a C-locale strerror text back to its errno; Go's
// texts are glibc's, in lower case.
func errnoFromText(text string) syscall.Errno {
	text = strings.TrimSpace(text)
	for n := syscall.Errno(1); n < 134; n++ {
		if strings.EqualFold(n.Error(), text) {
			return n
		}
	}
	return 0
}

func hint(step string, errno syscall.Errno) string {
	switch {
	case step == StepSetns && errno == syscall.EPERM:
		return " (needs CAP_SYS_ADMIN in the container's user namespace: run as host root)"
	case step == StepSetns && errno == syscall.EINVAL:
		return " (the descriptor is not a user namespace, or is our own)"
	case step == StepOpen && (errno == syscall.ENOENT || errno == syscall.EBADF):
		return " (the user namespace descriptor was not inherited)"
	case step == StepIDs && errno == syscall.EINVAL:
		return " (uid or gid 0 is not mapped in the container's user namespace: a " +
			"program executed there as another user has no capabilities in it)"
	case step == StepUnshare && errno == syscall.EPERM:
		return " (no CAP_SYS_ADMIN in the container's user namespace)"
	case step == StepExec && errno == syscall.EACCES:
		return " (the container's mapped root may not execute the imans binary: " +
			"it must be executable by others, mode 0755)"
	}
	return ""
}

// EnterMountNS moves the calling goroutine's thread into a new mount
// namespace, owned by the process's user namespace, and locks the
// goroutine to that thread for good: the other threads stay in the old
// mount namespace, so whatever depends on the new one (mounts, path
// lookups outside descriptors opened in it) must run on this goroutine.
// Its namespace is /proc/thread-self/ns/mnt. The runtime starts no thread
// from a locked one, so none inherits it; the thread ends with the
// goroutine or the process.
func EnterMountNS() error {
	runtime.LockOSThread()
	if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		return &Error{Step: StepUnshare, Errno: errno, Text: err.Error()}
	}
	return nil
}

// ErrNotEntered is returned by Check when the process is not where
// Command and EnterMountNS put it.
var ErrNotEntered = errors.New("not in the container's namespaces")

// Check verifies, after EnterMountNS and on its goroutine, that the
// process runs in the user namespace open at descriptor usernsFD and the
// thread in a mount namespace other than the one identified by
// parentMount (see MountNS).
func Check(usernsFD int, parentMount string) error {
	var want, got syscall.Stat_t
	if err := syscall.Fstat(usernsFD, &want); err != nil {
		return fmt.Errorf("%w: the user namespace descriptor %d: %w",
			ErrNotEntered, usernsFD, err)
	}
	if err := syscall.Stat("/proc/self/ns/user", &got); err != nil {
		return fmt.Errorf("%w: %w", ErrNotEntered, err)
	}
	if want.Dev != got.Dev || want.Ino != got.Ino {
		return fmt.Errorf("%w: another user namespace", ErrNotEntered)
	}
	mnt, err := mountNS("/proc/thread-self/ns/mnt")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotEntered, err)
	}
	if mnt == parentMount {
		return fmt.Errorf("%w: still in the parent's mount namespace", ErrNotEntered)
	}
	return nil
}

// MountNS identifies this process's mount namespace ("dev:ino").
func MountNS() (string, error) {
	return mountNS("/proc/self/ns/mnt")
}

func mountNS(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", fmt.Errorf("our mount namespace: %w", err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}
