package imans

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Sentinel errors, to test with errors.Is.
var (
	// ErrUnavailable: the kernel has no IMA namespaces.
	ErrUnavailable = errors.New("IMA namespaces unavailable")
	// ErrNoUserNamespace: the container shares the host's user
	// namespace, so securityfs there would be the host's own IMA.
	ErrNoUserNamespace = errors.New("the container has no user namespace of its own: " +
		"its securityfs is the host's, so the host's policy and list would be used")
	// ErrAlreadyActive: IMA was already active in the namespace.
	ErrAlreadyActive = errors.New("IMA is already active in the container's namespace")
	// ErrNotCommitted: the policy read back is not the policy written.
	ErrNotCommitted = errors.New("the IMA policy was not committed")
)

// StepError is a kernel-facing step that failed: which step, which rule
// (for policy writes), the errno and what that errno means at that step.
type StepError struct {
	// Step names the step: "write ima/active", "write ima/policy", ...
	Step string
	// Line and Rule are the policy line number and text, for policy
	// writes; Line is 0 otherwise.
	Line int
	Rule string
	// Err is the underlying error, usually a unix.Errno.
	Err error
	// Meaning says what the errno means at this step; may be empty.
	Meaning string
}

// Error reads as one sentence: step, rule, errno, meaning.
func (e *StepError) Error() string {
	msg := "IMA namespace: " + e.Step
	if e.Line > 0 {
		msg += fmt.Sprintf(": policy line %d %q", e.Line, e.Rule)
	}
	msg += ": " + errnoName(e.Err)
	if e.Meaning != "" {
		msg += " (" + e.Meaning + ")"
	}
	return msg
}

// Unwrap gives the errno (errors.Is(err, unix.EBUSY)), or the sentinel the
// step maps to.
func (e *StepError) Unwrap() error { return e.Err }

// errnoName gives "EBUSY: device or resource busy" for a bare errno, and
// the message followed by the errno's name for one wrapped in more words.
func errnoName(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) || unix.ErrnoName(errno) == "" {
		return err.Error()
	}
	if err.Error() == errno.Error() {
		return unix.ErrnoName(errno) + ": " + errno.Error()
	}
	return err.Error() + " (" + unix.ErrnoName(errno) + ")"
}

// stepErr builds the StepError of step with err, with the meaning looked
// up for that step and errno.
func stepErr(step string, err error) *StepError {
	return &StepError{Step: step, Err: err, Meaning: meaning(step, err)}
}

// meanings of an errno at a step, as the IMA namespace series behaves.
var meanings = []struct {
	step  string
	errno unix.Errno
	text  string
}{
	{stepMountSecurityfs, unix.EPERM, "the kernel refuses securityfs in a user namespace: " +
		"it has no IMA namespaces"},
	{stepMountSecurityfs, unix.ENODEV, "the kernel has no securityfs"},
	{stepReadActive, unix.ENOENT, "securityfs has no ima/active: IMA without namespaces"},
	{stepReadActive, unix.EACCES, "not allowed to read ima/active in this namespace"},
	{stepWriteActive, unix.EBUSY, "IMA is already active in this namespace " +
		"(activated by someone else, possibly the container's own root)"},
	{stepWriteActive, unix.EINVAL, "ima/active accepts only 1"},
	{stepWriteActive, unix.EACCES, "not allowed to activate: needs CAP_SYS_ADMIN " +
		"in the container's user namespace"},
	{stepWriteActive, unix.EPERM, "not allowed to activate: needs CAP_SYS_ADMIN " +
		"in the container's user namespace"},
	{stepOpenList, unix.EACCES, "the list is closed until IMA is active in the namespace"},
	{stepOpenPolicyRead, unix.EACCES, "the policy cannot be read back " +
		"(IMA inactive, or a kernel without CONFIG_IMA_READ_POLICY): " +
		"its commit cannot be confirmed"},
	{stepOpenPolicyRead, unix.EPERM, "the policy cannot be read back: " +
		"its commit cannot be confirmed"},
	{stepOpenPolicyWrite, unix.EBUSY, "another process has the policy open for writing"},
	{stepOpenPolicyWrite, unix.EACCES, "writing the policy is refused: IMA inactive, " +
		"or the policy was already written once and the kernel lacks " +
		"CONFIG_IMA_WRITE_POLICY"},
	{stepWritePolicy, unix.EINVAL, "the kernel refused this rule; inside an IMA namespace " +
		"appraise and hash rules are refused, and a kernel with only the posted v15 " +
		"series refuses measure rules too; the whole batch is dropped"},
	{stepWritePolicy, unix.EACCES, "the kernel refused this rule; the whole batch is dropped"},
	{stepWritePolicy, unix.EPERM, "the rule needs a privilege the namespace lacks " +
		"(an audit rule needs host root or CAP_AUDIT_WRITE); the whole batch is dropped"},
	{stepWritePolicy, unix.ENOMEM, "the kernel ran out of memory for the rule"},
}

func meaning(step string, err error) string {
	for _, m := range meanings {
		if m.step == step && errors.Is(err, m.errno) {
			return m.text
		}
	}
	return ""
}
