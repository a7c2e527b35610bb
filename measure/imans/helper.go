package imans

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/measure/imans/nsenter"
)

// helperEnv makes a process started from this binary act as one of the
// helpers below instead of running its main: the probe's child, or the
// activation run inside the container's user namespace. Any binary that
// links this package (the imans command, test binaries) can be re-executed
// as a helper through /proc/self/exe.
const helperEnv = "_IMANS_IMA_NAMESPACE_HELPER"

const (
	helperProbe    = "probe"
	helperActivate = "activate"
)

// Descriptors the activation helper inherits.
const (
	helperUserNSFD = 3 // /proc/PID/ns/user, entered by nsenter(1)
	helperConnFD   = 4 // SOCK_SEQPACKET to the parent
	helperExeFD    = 5 // this binary, executed by nsenter(1)
	helperVTPMFD   = 6 // optional /dev/vtpmx client descriptor
)

// vtpmAttachIoctl attaches a vTPM proxy device to the IMA namespace of the
// caller, before activation: _IO(0xa1, 0x10) on the /dev/vtpmx client
// descriptor, from the namespace series' development tree.
const vtpmAttachIoctl = 0xa1<<8 | 0x10

func init() {
	switch os.Getenv(helperEnv) {
	case "":
	case helperProbe:
		os.Exit(probeChild())
	case helperActivate:
		os.Exit(activateChild())
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown helper %q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// request is what the parent sends on the helper's stdin.
type request struct {
	Policy string `json:"policy"`
	VTPM   bool   `json:"vtpm,omitempty"`
	// ParentMountNS identifies the parent's mount namespace (dev:ino):
	// the helper checks that it has a new one.
	ParentMountNS string `json:"parent_mount_ns"`
}

// message is one SOCK_SEQPACKET message from the helper: a step and its
// result, or the final answer (Done), which carries the descriptors of the
// binary list and of the helper's mount namespace on success.
type message struct {
	Step   string `json:"step,omitempty"`
	Result string `json:"result,omitempty"`

	Done     bool   `json:"done,omitempty"`
	Error    string `json:"error,omitempty"`
	ErrStep  string `json:"err_step,omitempty"`
	Errno    int    `json:"errno,omitempty"`
	Sentinel string `json:"sentinel,omitempty"`
	Line     int    `json:"line,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Meaning  string `json:"meaning,omitempty"`
	Rules    int    `json:"rules,omitempty"`
}

var sentinels = map[string]error{
	"already_active": ErrAlreadyActive,
	"not_committed":  ErrNotCommitted,
}

// activateChild runs in the container's user namespace, as its uid 0
// (nsenter(1) put it there, see Enter); it makes a mount namespace of its
// own on its thread first.
func activateChild() int {
	send := func(m message, fds ...int) error {
		b, _ := json.Marshal(m)
		return unix.Sendmsg(helperConnFD, b, unix.UnixRights(fds...), nil, 0)
	}
	log := StepLog(func(step, result string) {
		send(message{Step: step, Result: result})
	})

	final, fds := activateHere(log)
	final.Done = true
	if err := send(final, fds...); err != nil {
		fmt.Fprintln(os.Stderr, "sending the activation's result:", err)
		return 1
	}
	return 0
}

// stepEnter is the way in: nsenter(1), the helper's new mount namespace
// and its check.
const stepEnter = "enter the container's user namespace and a new mount namespace"

func activateHere(log StepLog) (message, []int) {
	var req request
	b, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = json.Unmarshal(b, &req)
	}
	if err != nil {
		return failure(fmt.Errorf("reading the activation request: %w", err)), nil
	}

	// From here on, this goroutine stays on the one thread that is in the
	// new mount namespace: mounts and path lookups happen there.
	err = nsenter.EnterMountNS()
	if err == nil {
		err = nsenter.Check(helperUserNSFD, req.ParentMountNS)
	}
	log.log(stepEnter, err, ": uid_map %s", uidMap())
	if err != nil {
		return failure(stepErr(stepEnter, err)), nil
	}
	unix.Close(helperUserNSFD)
	unix.Close(helperExeFD)

	const stepPrivate = "make the helper's mounts private"
	err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	log.log(stepPrivate, err, "")
	if err != nil {
		return failure(stepErr(stepPrivate, err)), nil
	}

	err = unix.Mount("securityfs", SecurityfsDir, "securityfs",
		unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	log.log(stepMountSecurityfs, err, " on %s", SecurityfsDir)
	if err != nil {
		return failure(stepErr(stepMountSecurityfs, err)), nil
	}
	dir, err := unix.Open(SecurityfsDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return failure(stepErr("open "+SecurityfsDir, err)), nil
	}

	if req.VTPM {
		const stepVTPM = "attach the vTPM to the IMA namespace (ioctl 0xa110)"
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, helperVTPMFD, vtpmAttachIoctl, 0)
		err = nil
		if errno != 0 {
			err = errno
		}
		log.log(stepVTPM, err, "")
		if err != nil {
			return failure(stepErr(stepVTPM, err)), nil
		}
	}

	// Opened before the policy is in place: nothing the helper opens
	// afterwards may add an entry to the container's list.
	const stepHold = "open the helper's mount namespace (keeps the mount)"
	mntns, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	log.log(stepHold, err, "")
	if err != nil {
		return failure(stepErr(stepHold, err)), nil
	}

	act, err := Activate(DirFS{Dir: dir}, req.Policy, log)
	if err != nil {
		return failure(err), nil
	}

	return message{Rules: act.Rules}, []int{act.List, mntns}
}

// failure turns an error into the final message, keeping what the parent
// needs to rebuild it (step, errno, rule, sentinel).
func failure(err error) message {
	m := message{Error: err.Error()}
	var se *StepError
	if errors.As(err, &se) {
		m.ErrStep, m.Line, m.Rule, m.Meaning = se.Step, se.Line, se.Rule, se.Meaning
		m.Error = se.Err.Error()
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		m.Errno = int(errno)
	}
	for name, s := range sentinels {
		if errors.Is(err, s) {
			m.Sentinel = name
		}
	}
	return m
}

// remoteError rebuilds the helper's error on the parent's side, so that
// errors.Is works with errnos and sentinels as if it were local.
func remoteError(m message) error {
	var cause error = errors.New(m.Error)
	switch {
	case sentinels[m.Sentinel] != nil:
		cause = &remoteCause{msg: m.Error, is: sentinels[m.Sentinel]}
	case m.Errno != 0 && m.Error == unix.Errno(m.Errno).Error():
		cause = unix.Errno(m.Errno)
	case m.Errno != 0:
		cause = &remoteCause{msg: m.Error, is: unix.Errno(m.Errno)}
	}
	if m.ErrStep == "" {
		return cause
	}
	return &StepError{Step: m.ErrStep, Line: m.Line, Rule: m.Rule, Err: cause,
		Meaning: m.Meaning}
}

// remoteCause is a sentinel error as the helper worded it.
type remoteCause struct {
	msg string
	is  error
}

func (r *remoteCause) Error() string { return r.msg }
func (r *remoteCause) Unwrap() error { return r.is }

// uidMap is the first line of this process's uid_map, squeezed: it shows
// which user namespace the helper is in ("0 100000 65536").
func uidMap() string {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return "unreadable"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.Join(strings.Fields(line), " ")
}
