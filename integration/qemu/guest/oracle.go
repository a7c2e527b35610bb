package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const policyPath = imaDir + "/policy"

// sentinelRule is written after the corpus: no kernel accepts it, so the
// batch is dropped on close even if every corpus rule was accepted.
const sentinelRule = "imans_oracle_sentinel_never_valid\n"

// oracleCmd opens the policy file for write once, writes each rule of the
// corpus with its own write() and records OK or the errno name. The batch
// is never committed: a rejected write marks it invalid, and the sentinel
// makes sure there is one. Afterwards the policy file must still exist
// (a committed policy removes it until the next boot on these kernels).
func oracleCmd(args []string) error {
	if len(args) != 2 {
		return errors.New("oracle needs a rules file and an output file")
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	rules := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")

	fd, err := unix.Open(policyPath, unix.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", policyPath, err)
	}

	var out bytes.Buffer
	for i, rule := range rules {
		buf := []byte(rule + "\n")
		n, err := unix.Write(fd, buf)
		verdict := "OK"
		switch {
		case err != nil:
			verdict = errnoName(err)
		case n != len(buf):
			verdict = fmt.Sprintf("SHORT%d", n)
		}
		if strings.ContainsAny(rule, "\t") {
			return fmt.Errorf("rule %d has a tab", i+1)
		}
		fmt.Fprintf(&out, "%s\t%s\n", verdict, rule)
	}

	if _, err := unix.Write(fd, []byte(sentinelRule)); err == nil {
		return errors.New("the kernel accepted the sentinel rule: batch may commit")
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", policyPath, err)
	}
	if _, err := os.Stat(policyPath); err != nil {
		return fmt.Errorf("policy file gone after the oracle (batch committed?): %w", err)
	}
	return os.WriteFile(args[1], out.Bytes(), 0o644)
}

// errnoName gives the errno's symbolic name (EINVAL), or the error's text
// for anything else.
func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// loadCmd writes a policy, one rule a write(), and closes the file: the
// kernel commits it. Every write must succeed, and the policy file must be
// gone afterwards (these kernels lack CONFIG_IMA_WRITE_POLICY), else the
// policy was not taken.
func loadCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("load needs a policy file")
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}

	fd, err := unix.Open(policyPath, unix.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", policyPath, err)
	}
	for i, rule := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(rule) == "" {
			continue
		}
		if _, err := unix.Write(fd, []byte(rule+"\n")); err != nil {
			unix.Close(fd)
			return fmt.Errorf("policy line %d %q: %w", i+1, rule, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", policyPath, err)
	}

	if _, err := os.Stat(policyPath); err == nil {
		return errors.New("policy file still there after close: policy not committed")
	}
	return nil
}
