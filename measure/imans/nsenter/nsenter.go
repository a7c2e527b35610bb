// Package nsenter starts a program inside an existing user namespace and a
// new private mount namespace of its own, through the nsenter(1) and
// unshare(1) programs of util-linux (or their busybox equivalents).
//
// The kernel refuses setns(CLONE_NEWUSER) to a multithreaded process, and a
// Go program has several threads before its first init function runs; the
// SysProcAttr of package syscall can create namespaces for a child but not
// join existing ones. nsenter(1) is a single-threaded C program that does
// the setns, switches to the namespace's uid and gid 0 (its default when
// entering a user namespace) and executes unshare(1), which creates the
// mount namespace, owned by the user namespace just entered, makes its
// mounts private and executes the program. Each step keeps the descriptors
// it inherited, so the program receives the caller's ExtraFiles.
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
	"strings"
	"syscall"
)

// systemDirs are searched for nsenter and unshare before PATH, so that a
// hook run as root with an odd PATH still gets the system's programs.
var systemDirs = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}

// Tools are the absolute paths of nsenter(1) and unshare(1).
type Tools struct {
	Nsenter string
	Unshare string
}

// Lookup finds nsenter and unshare, first in the system directories, then
// in PATH. The error names the missing program and its Debian package.
func Lookup() (Tools, error) {
	var t Tools
	var err error
	if t.Nsenter, err = lookPath("nsenter"); err != nil {
		return t, err
	}
	if t.Unshare, err = lookPath("unshare"); err != nil {
		return t, err
	}
	return t, nil
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
// that namespace's uid and gid 0, in a new mount namespace with private
// propagation. Both numbers are as the child sees them: the caller puts
// the files in cmd.ExtraFiles (descriptor 3 is ExtraFiles[0]). The
// program's argv[0] is /proc/self/fd/EXEFD.
func (t Tools) Command(ctx context.Context, usernsFD, exeFD int,
	args ...string) *exec.Cmd {
	argv := []string{
		fmt.Sprintf("--user=/proc/self/fd/%d", usernsFD), "--",
		t.Unshare, "--mount", "--propagation", "private", "--",
		fmt.Sprintf("/proc/self/fd/%d", exeFD),
	}
	return exec.CommandContext(ctx, t.Nsenter, append(argv, args...)...)
}

// Steps of the way in, as Error names them.
const (
	StepOpen    = "open the user namespace descriptor"
	StepSetns   = "setns(CLONE_NEWUSER)"
	StepIDs     = "switch to the namespace's uid and gid 0"
	StepExecUn  = "execute unshare(1)"
	StepUnshare = "unshare(CLONE_NEWNS)"
	StepPrivate = "make the new mount namespace private"
	StepExec    = "execute the helper"
)

// Error is a failed step on the way in, as nsenter or unshare reported it.
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

// ParseError reads the last line nsenter or unshare wrote to stderr
// before failing ("nsenter: reassociate to namespace 'ns/user' failed:
// Operation not permitted", or busybox's wording) and returns the step and
// errno it names. It returns nil when no line of stderr is theirs. Both
// programs print strerror in the C locale, which the caller sets.
func ParseError(stderr string) *Error {
	var tool, msg string
	for _, line := range strings.Split(stderr, "\n") {
		for _, prefix := range []string{"nsenter: ", "unshare: "} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				tool, msg = prefix[:len(prefix)-2], rest
			}
		}
	}
	if tool == "" {
		return nil
	}

	e := &Error{Step: step(tool, msg), Text: tool + ": " + msg}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		e.Errno = errnoFromText(msg[i+2:])
	}
	return e
}

func step(tool, msg string) string {
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(msg, w) {
				return true
			}
		}
		return false
	}
	switch {
	case tool == "nsenter" && has("reassociate"):
		return StepSetns
	case tool == "nsenter" && has("setgroups", "setgid", "setuid"):
		return StepIDs
	case tool == "nsenter" && has("execute"):
		return StepExecUn
	case tool == "nsenter" && has("open"):
		return StepOpen
	case tool == "unshare" && has("execute"):
		return StepExec
	case tool == "unshare" && has("propagation", "mount"):
		return StepPrivate
	case tool == "unshare" && has("unshare"):
		return StepUnshare
	}
	return tool + "(1)"
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

// ErrNotEntered is returned by Check when the process is not where
// Command puts it.
var ErrNotEntered = errors.New("not in the container's namespaces")

// Check verifies, in the program started by Command, that it runs in the
// user namespace open at descriptor usernsFD and in a mount namespace other
// than the one identified by parentMount (see MountNS).
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
	mnt, err := MountNS()
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
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/mnt", &st); err != nil {
		return "", fmt.Errorf("our mount namespace: %w", err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}
