// Package nsenter moves a freshly executed process into an existing user
// namespace and a new private mount namespace before the Go runtime starts.
//
// The kernel refuses setns(CLONE_NEWUSER) to a multithreaded process, and a
// Go program has several threads before its first init function runs. A C
// constructor, run by the loader ahead of the runtime, is the one place a Go
// binary can still do it. It acts only when the process is started with
// EnvUserNSFD naming an inherited descriptor of /proc/PID/ns/user; the
// process then enters that user namespace, unshares its mount namespace and
// switches to the namespace's uid and gid 0 where those are mapped. The
// rest of the work is Go code run afterwards (package imans).
//
// Importing this package makes the binary need cgo; without cgo, Available
// is false and Result reports the missing constructor.
package nsenter

import (
	"fmt"
	"syscall"
)

// EnvUserNSFD is the environment variable the constructor reads: the number
// of an inherited descriptor of the target user namespace.
const EnvUserNSFD = "_IMANS_NSENTER_USERNS_FD"

// Error is a failed step of the constructor.
type Error struct {
	Step  string
	Errno syscall.Errno
}

// Error names the step and what its errno means there.
func (e *Error) Error() string {
	return fmt.Sprintf("entering the container's namespaces: %s: %s%s",
		e.Step, e.Errno.Error(), hint(e.Step, e.Errno))
}

// Unwrap gives the errno, so errors.Is(err, syscall.EPERM) works.
func (e *Error) Unwrap() error { return e.Errno }

func stepName(state int) string {
	switch state {
	case -1:
		return "reading " + EnvUserNSFD
	case -2:
		return "setns(CLONE_NEWUSER)"
	case -3:
		return "unshare(CLONE_NEWNS)"
	}
	return fmt.Sprintf("unknown step %d", state)
}

func hint(step string, errno syscall.Errno) string {
	switch {
	case step == "setns(CLONE_NEWUSER)" && errno == syscall.EPERM:
		return " (needs CAP_SYS_ADMIN in the container's user namespace: run as host root)"
	case step == "setns(CLONE_NEWUSER)" && errno == syscall.EINVAL:
		return " (the descriptor is not a user namespace, or is our own)"
	case step == "setns(CLONE_NEWUSER)" && errno == syscall.EBADF:
		return " (the user namespace descriptor was not inherited)"
	case step == "unshare(CLONE_NEWNS)" && errno == syscall.EPERM:
		return " (no CAP_SYS_ADMIN in the container's user namespace)"
	}
	return ""
}
