package imans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/measure/imans/nsenter"
)

// EnterOptions are the inputs of Enter. The zero value is not usable: a
// policy is required.
type EnterOptions struct {
	// Policy is the container's IMA policy text, one rule per line.
	Policy string
	// StepLog receives each kernel-facing step with its result, the
	// helper's included. May be nil.
	StepLog StepLog
	// Timeout bounds the whole activation, helper included; default 10s.
	Timeout time.Duration
	// VTPM, when set, is a /dev/vtpmx client descriptor that the helper
	// attaches to the namespace before activation, so that the kernel
	// extends that vTPM's PCR 10 itself. Optional; kernels without the
	// development tree's ioctl refuse it (ENOTTY).
	VTPM *os.File
}

// Namespace is an activated IMA namespace as the host holds it: its binary
// measurement list, opened inside the namespace before the policy was
// written and read from the host, and the mount namespace in which its
// securityfs stays mounted. Either keeps the namespace and its list alive
// after the container's last process is gone; Close lets go of both.
type Namespace struct {
	// List is ima/binary_runtime_measurements. Each read returns whole
	// entries or pieces of one, and 0 at the current end; later reads
	// return entries appended since.
	List *os.File
	// Rules is the number of policy rules committed.
	Rules int

	mountNS *os.File
}

// Close closes the list and the mount namespace.
func (n *Namespace) Close() error {
	return errors.Join(n.List.Close(), n.mountNS.Close())
}

// CheckUserNamespace returns ErrNoUserNamespace when the process pid
// shares this process's user namespace: its securityfs would be the
// host's own, with the host's policy and list.
func CheckUserNamespace(pid int) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return fmt.Errorf("the container's user namespace: %w", err)
	}
	defer f.Close()
	return checkOtherUserNS(f, pid)
}

func checkOtherUserNS(f *os.File, pid int) error {
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &theirs); err != nil {
		return fmt.Errorf("the container's user namespace: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/user", &ours); err != nil {
		return fmt.Errorf("our own user namespace: %w", err)
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return fmt.Errorf("pid %d: %w", pid, ErrNoUserNamespace)
	}
	return nil
}

// Enter activates IMA in the user namespace of process pid (the
// container's init, host pid) and installs the policy. A helper, this
// binary re-executed, enters that user namespace and a new private mount
// namespace, mounts securityfs there, writes 1 to ima/active, opens the
// binary list, writes the policy one rule per write() and reads it back;
// it then hands the list and its mount namespace to this process and
// exits. Errors name the failed step (a *StepError, testable with
// errors.Is for errnos and ErrAlreadyActive, ErrNotCommitted).
func Enter(ctx context.Context, pid int, opts EnterOptions) (*Namespace, error) {
	if err := CheckPolicy(opts.Policy); err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return nil, fmt.Errorf("the container's user namespace: %w", err)
	}
	defer userns.Close()
	if err := checkOtherUserNS(userns, pid); err != nil {
		return nil, err
	}
	tools, err := nsenter.Lookup()
	if err != nil {
		return nil, fmt.Errorf("IMA namespace helper: %w", err)
	}

	ours, theirs, err := seqpacketPair()
	if err != nil {
		return nil, err
	}
	defer ours.Close()

	cmd, stderr, err := startHelper(ctx, tools, userns, theirs, opts)
	theirs.Close()
	if err != nil {
		return nil, err
	}

	ns, err := receive(ctx, ours, opts.StepLog)
	werr := cmd.Wait()
	if err == nil {
		return ns, nil
	}

	// nsenter failed before the helper ran: its last line names the step
	// and the errno.
	if nerr := nsenter.ParseError(stderr.String()); nerr != nil && werr != nil {
		StepLog(opts.StepLog).log(stepEnter, nerr, "")
		return nil, stepErr(stepEnter, nerr)
	}
	if werr != nil {
		err = fmt.Errorf("%w (helper: %v: %s)", err, werr, lastLine(stderr.String()))
	}
	return nil, err
}

func seqpacketPair() (ours *net.UnixConn, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("IMA namespace helper: socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "imans-helper-parent")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("IMA namespace helper: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "imans-helper-child"), nil
}

func startHelper(ctx context.Context, tools nsenter.Tools, userns, conn *os.File,
	opts EnterOptions) (*exec.Cmd, *bytes.Buffer, error) {
	mnt, err := nsenter.MountNS()
	if err != nil {
		return nil, nil, fmt.Errorf("IMA namespace helper: %w", err)
	}
	req, err := json.Marshal(request{Policy: opts.Policy, VTPM: opts.VTPM != nil,
		ParentMountNS: mnt})
	if err != nil {
		return nil, nil, err
	}

	// The helper is this binary, handed over as a descriptor: executed as
	// the container's mapped root, it may not be able to reach the
	// binary's directory by path.
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, nil, fmt.Errorf("IMA namespace helper: this binary: %w", err)
	}
	defer exe.Close()

	stderr := &bytes.Buffer{}
	cmd := tools.Command(ctx, helperUserNSFD, helperExeFD)
	// LC_ALL=C: nsenter reports errors in words ParseError reads.
	cmd.Env = []string{helperEnv + "=" + helperActivate, "LC_ALL=C"}
	cmd.Stdin = bytes.NewReader(req)
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{userns, conn, exe}
	if opts.VTPM != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, opts.VTPM)
	}
	cmd.WaitDelay = time.Second

	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("IMA namespace helper: %w", err)
	}
	return cmd, stderr, nil
}

// receive forwards the helper's step messages to log until the final one,
// and turns that into a Namespace or an error.
func receive(ctx context.Context, conn *net.UnixConn, log StepLog) (*Namespace, error) {
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(deadline)
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(2*4))

	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return nil, fmt.Errorf("IMA namespace helper: no answer: %w", err)
		}
		if n == 0 {
			return nil, errors.New("IMA namespace helper: exited without an answer")
		}

		var m message
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			return nil, fmt.Errorf("IMA namespace helper: unreadable message: %w", err)
		}
		fds, ferr := receivedFDs(oob[:oobn])
		if !m.Done {
			closeFDs(fds)
			if log != nil {
				log(m.Step, m.Result)
			}
			continue
		}

		if m.Error != "" {
			closeFDs(fds)
			return nil, remoteError(m)
		}
		if ferr != nil || len(fds) != 2 {
			closeFDs(fds)
			return nil, fmt.Errorf("IMA namespace helper: expected 2 descriptors, got %d (%v)",
				len(fds), ferr)
		}
		return &Namespace{
			List:    os.NewFile(uintptr(fds[0]), BinaryListFile),
			mountNS: os.NewFile(uintptr(fds[1]), "ima-namespace-mnt"),
			Rules:   m.Rules,
		}, nil
	}
}

func receivedFDs(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, msg := range msgs {
		got, err := unix.ParseUnixRights(&msg)
		if err != nil {
			return fds, err
		}
		for _, fd := range got {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
