//go:build linux && cgo

package nsenter

/*
extern int imans_nsenter_state;
extern int imans_nsenter_errno;
extern int imans_nsenter_uid_errno;
*/
import "C"

import "syscall"

// Available reports whether this binary carries the constructor.
const Available = true

// Result says what the constructor did: whether it was asked to enter
// namespaces, and the error of the step that failed. A failure to switch to
// the namespace's root (uid 0 not mapped) is not an error: the process keeps
// its capabilities in the namespace; UIDErr reports it for the step log.
func Result() (asked bool, err error, uidErr error) {
	state := int(C.imans_nsenter_state)
	errno := syscall.Errno(C.imans_nsenter_errno)
	if n := int(C.imans_nsenter_uid_errno); n != 0 {
		uidErr = syscall.Errno(n)
	}

	switch state {
	case 0:
		return false, nil, nil
	case 1:
		return true, nil, uidErr
	default:
		return true, &Error{Step: stepName(state), Errno: errno}, uidErr
	}
}
