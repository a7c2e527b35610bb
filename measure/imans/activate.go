package imans

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Files of an IMA namespace's securityfs, relative to the mount's root.
const (
	ActiveFile     = "ima/active"
	PolicyFile     = "ima/policy"
	BinaryListFile = "ima/binary_runtime_measurements"
	ASCIIListFile  = "ima/ascii_runtime_measurements"
)

// The kernel-facing steps, as named in step logs and errors.
const (
	stepMountSecurityfs = "mount securityfs"
	stepReadActive      = "read " + ActiveFile
	stepWriteActive     = "write " + ActiveFile
	stepOpenList        = "open " + BinaryListFile
	stepOpenPolicyRead  = "open " + PolicyFile + " for reading"
	stepOpenPolicyWrite = "open " + PolicyFile + " for writing"
	stepWritePolicy     = "write " + PolicyFile
	stepClosePolicy     = "close " + PolicyFile
	stepReadPolicy      = "read " + PolicyFile + " back"
)

// StepLog receives each kernel-facing step with its result ("ok", or the
// error), in order, so that a run on a kernel with IMA namespaces can be
// checked line by line. A nil StepLog discards them.
type StepLog func(step, result string)

func (l StepLog) log(step string, err error, format string, args ...any) {
	if l == nil {
		return
	}
	if err != nil {
		l(step, "error: "+err.Error())
		return
	}
	l(step, "ok"+fmt.Sprintf(format, args...))
}

// Activation is what Activate leaves open: the binary measurement list,
// opened before the policy was written so that reading it adds nothing.
type Activation struct {
	// List is the descriptor of ima/binary_runtime_measurements in the
	// FS given to Activate; the caller closes it.
	List int
	// Rules is the number of policy rules committed.
	Rules int
}

// CheckPolicy checks what can be checked of a policy before the kernel
// sees it: not empty, and within the kernel's rule limit.
func CheckPolicy(policy string) error {
	rules := splitRules(policy)
	switch {
	case len(rules) == 0:
		return errors.New("IMA namespace policy: no rules: nothing would be measured")
	case len(rules) > MaxRules:
		return fmt.Errorf("IMA namespace policy: %d rules; a namespace keeps at most %d "+
			"and the kernel drops a longer batch silently", len(rules), MaxRules)
	}
	return nil
}

// Activate turns IMA on in the namespace whose securityfs fsys is and
// installs policy, in the order the kernel needs: check ima/active reads
// 0, write 1 to it, open the binary list, then write the policy one rule
// per write() and read it back, since close() reports success even when
// the kernel dropped the batch. Every failed step is a *StepError.
func Activate(fsys FS, policy string, log StepLog) (*Activation, error) {
	if err := CheckPolicy(policy); err != nil {
		return nil, err
	}
	rules := splitRules(policy)

	if err := checkInactive(fsys, log); err != nil {
		return nil, err
	}

	if err := writeActive(fsys, log); err != nil {
		return nil, err
	}

	list, err := fsys.Open(BinaryListFile, unix.O_RDONLY)
	log.log(stepOpenList, err, "")
	if err != nil {
		return nil, stepErr(stepOpenList, err)
	}

	if err := installPolicy(fsys, rules, log); err != nil {
		fsys.Close(list)
		return nil, err
	}
	return &Activation{List: list, Rules: len(rules)}, nil
}

// checkInactive reads ima/active and expects 0.
func checkInactive(fsys FS, log StepLog) error {
	fd, err := fsys.Open(ActiveFile, unix.O_RDONLY)
	if err != nil {
		log.log(stepReadActive, err, "")
		return stepErr(stepReadActive, err)
	}
	defer fsys.Close(fd)

	buf := make([]byte, 16)
	n, err := fsys.Read(fd, buf)
	if err != nil {
		log.log(stepReadActive, err, "")
		return stepErr(stepReadActive, err)
	}

	value := strings.TrimRight(string(buf[:n]), "\n\x00")
	switch value {
	case "0":
		log.log(stepReadActive, nil, ": 0")
		return nil
	case "1":
		log.log(stepReadActive, ErrAlreadyActive, "")
		return &StepError{Step: stepReadActive, Err: ErrAlreadyActive,
			Meaning: "activated before imans: its policy is not ours"}
	}
	err = fmt.Errorf("unexpected content %q", value)
	log.log(stepReadActive, err, "")
	return stepErr(stepReadActive, err)
}

// writeActive writes "1" to ima/active.
func writeActive(fsys FS, log StepLog) error {
	fd, err := fsys.Open(ActiveFile, unix.O_WRONLY)
	if err != nil {
		log.log(stepWriteActive, err, "")
		return stepErr(stepWriteActive, err)
	}

	n, err := fsys.Write(fd, []byte("1"))
	if err == nil && n != 1 {
		err = fmt.Errorf("short write: %d of 1 byte", n)
	}
	if cerr := fsys.Close(fd); err == nil {
		err = cerr
	}
	log.log(stepWriteActive, err, ": 1")
	if err != nil {
		return stepErr(stepWriteActive, err)
	}
	return nil
}

// installPolicy writes the rules one per write() and reads the policy
// back. Both readers are opened before the first rule, so that opening
// them cannot be measured under the new policy.
func installPolicy(fsys FS, rules []rule, log StepLog) error {
	before, err := fsys.Open(PolicyFile, unix.O_RDONLY)
	log.log(stepOpenPolicyRead, err, " (baseline)")
	if err != nil {
		return stepErr(stepOpenPolicyRead, err)
	}
	after, err := fsys.Open(PolicyFile, unix.O_RDONLY)
	log.log(stepOpenPolicyRead, err, " (read-back)")
	if err != nil {
		fsys.Close(before)
		return stepErr(stepOpenPolicyRead, err)
	}
	defer fsys.Close(after)

	baseline, err := readAll(fsys, before, 1<<20)
	fsys.Close(before)
	log.log(stepReadPolicy, err, ": %d rules before ours", len(policyLines(baseline)))
	if err != nil {
		return stepErr(stepReadPolicy, err)
	}

	if err := writeRules(fsys, rules, log); err != nil {
		return err
	}

	got, err := readAll(fsys, after, 1<<20)
	if err == nil {
		err = compareRules(policyLines(baseline), policyLines(got), rules)
	}
	log.log(stepReadPolicy, err, ": %d rules committed", len(rules))
	if err != nil {
		return stepErr(stepReadPolicy, err)
	}
	return nil
}

// writeRules opens the policy for writing, writes each rule with its own
// write() and closes it, which commits the batch.
func writeRules(fsys FS, rules []rule, log StepLog) error {
	w, err := fsys.Open(PolicyFile, unix.O_WRONLY)
	log.log(stepOpenPolicyWrite, err, "")
	if err != nil {
		return stepErr(stepOpenPolicyWrite, err)
	}

	for i, r := range rules {
		step := fmt.Sprintf("%s rule %d/%d (line %d)", stepWritePolicy, i+1, len(rules), r.line)
		b := []byte(r.text + "\n")
		n, err := fsys.Write(w, b)
		if err == nil && n != len(b) {
			err = fmt.Errorf("short write: the kernel took %d of %d bytes", n, len(b))
		}
		log.log(step, err, ": %s", r.text)
		if err != nil {
			// Closing drops the batch: the kernel keeps nothing of it.
			fsys.Close(w)
			e := stepErr(stepWritePolicy, err)
			e.Line, e.Rule = r.line, r.text
			return e
		}
	}

	err = fsys.Close(w)
	log.log(stepClosePolicy, err, "")
	if err != nil {
		return stepErr(stepClosePolicy, err)
	}
	return nil
}
