package imans

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/measure/imans/nsenter"
)

// An error crosses the helper boundary with its words, its errno and its
// sentinel intact.
func TestRemoteErrorKeepsMessageAndErrno(t *testing.T) {
	for _, local := range []error{
		stepErr(stepMountSecurityfs, unix.EPERM),
		stepErr("enter the container's user namespace and a new mount namespace",
			&nsenter.Error{Step: "setns(CLONE_NEWUSER)", Errno: unix.EPERM}),
		&StepError{Step: stepWritePolicy, Line: 3, Rule: "appraise func=BPRM_CHECK",
			Err: unix.EINVAL, Meaning: meaning(stepWritePolicy, unix.EINVAL)},
		stepErr(stepReadPolicy, fmt.Errorf("%w: kept none", ErrNotCommitted)),
	} {
		remote := remoteError(failure(local))
		if remote.Error() != local.Error() {
			t.Errorf("message changed:\n local %s\nremote %s", local, remote)
		}
		for _, target := range []error{unix.EPERM, unix.EINVAL, ErrNotCommitted} {
			if errors.Is(local, target) != errors.Is(remote, target) {
				t.Errorf("%v: errors.Is(%v) differs across the boundary", local, target)
			}
		}
	}

	want := "IMA namespace: enter the container's user namespace and a new mount " +
		"namespace: entering the container's namespaces: setns(CLONE_NEWUSER): " +
		"operation not permitted (needs CAP_SYS_ADMIN in the container's user " +
		"namespace: run as host root) (EPERM)"
	got := stepErr("enter the container's user namespace and a new mount namespace",
		&nsenter.Error{Step: "setns(CLONE_NEWUSER)", Errno: unix.EPERM}).Error()
	if got != want {
		t.Errorf("message:\n got %s\nwant %s", got, want)
	}
}
