package imans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imans-project/imans/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// SecurityfsDir is where securityfs is mounted, on the host and in the
// private mount namespaces of the probe and the activation.
const SecurityfsDir = "/sys/kernel/security"

// The probe's reasons when the answer is no.
const (
	ReasonNoUserNamespaceMount = "securityfs cannot be mounted in a user namespace " +
		"(kernel without IMA namespaces)"
	ReasonNoIMA        = "no IMA in securityfs"
	ReasonNoNamespaces = "IMA without namespace support"
	reasonNoSecurityfs = "the kernel has no securityfs"
	reasonAvailable    = "IMA namespaces available"
	probeTimeout       = 5 * time.Second
)

var probeCache struct {
	sync.Mutex
	bootID string
	ok     bool
	reason string
}

// Probe says whether the kernel has IMA namespaces and, if not, why. It
// starts a child in a new user and mount namespace that mounts securityfs
// there and looks for ima/ and ima/active, without reading or writing any
// of them; the child's namespaces, and the mount, go with it. The answer is
// kept per boot (the kernel cannot change without a reboot).
func Probe() (ok bool, reason string) {
	bootID := readBootID()

	probeCache.Lock()
	defer probeCache.Unlock()

	if bootID != "" && probeCache.bootID == bootID {
		return probeCache.ok, probeCache.reason
	}

	ok, reason = probe()
	if bootID != "" {
		probeCache.bootID, probeCache.ok, probeCache.reason = bootID, ok, reason
	}
	return ok, reason
}

func readBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

type probeResult struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

func probe() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{"imans-ima-namespace-probe"}
	cmd.Env = []string{helperEnv + "=" + helperProbe}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{
			{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{
			{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}

	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return false, "a user namespace cannot be created here: " + err.Error()
		}
		return false, fmt.Sprintf("the probe failed: %v: %s", err,
			strings.TrimSpace(stderr.String()))
	}

	var res probeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Reason == "" {
		return false, fmt.Sprintf("the probe's answer is unreadable: %q", stdout.String())
	}
	return res.OK, res.Reason
}

// probeChild runs in the probe's child, as root of a new user namespace
// with its own mount namespace, and prints its answer as JSON.
func probeChild() int {
	res := probeHere()
	b, _ := json.Marshal(res)
	os.Stdout.Write(append(b, '\n'))
	return 0
}

func probeHere() probeResult {
	no := func(reason string) probeResult { return probeResult{Reason: reason} }

	err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	if err != nil {
		return no("making the probe's mounts private: " + err.Error())
	}

	err = unix.Mount("securityfs", SecurityfsDir, "securityfs",
		unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return no(ReasonNoUserNamespaceMount)
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENOENT):
		return no(reasonNoSecurityfs)
	case err != nil:
		return no("mounting securityfs in a user namespace: " + err.Error())
	}

	var st unix.Stat_t
	if err := unix.Stat(SecurityfsDir+"/ima", &st); err != nil {
		return no(ReasonNoIMA)
	}
	if err := unix.Stat(SecurityfsDir+"/"+ActiveFile, &st); err != nil {
		return no(ReasonNoNamespaces)
	}
	return probeResult{OK: true, Reason: reasonAvailable}
}

// probeFile is the on-disk form of a probe's answer, for ProbeCached.
type probeFile struct {
	BootID string `json:"boot_id"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// ProbeCached is Probe with its answer kept in the file at path for the
// rest of the boot, so that short-lived processes (one hook per container)
// probe once per boot rather than once each: a probe costs a child process
// (about 7 ms), reading the file about a tenth of a millisecond. The file
// is written atomically; one from another boot, or unreadable, is ignored
// and replaced. A failure to write it only costs the next caller a probe.
func ProbeCached(path string) (ok bool, reason string) {
	bootID := readBootID()
	if b, err := os.ReadFile(path); err == nil && bootID != "" {
		var pf probeFile
		if json.Unmarshal(b, &pf) == nil && pf.BootID == bootID && pf.Reason != "" {
			return pf.OK, pf.Reason
		}
	}

	ok, reason = Probe()
	if bootID == "" {
		return ok, reason
	}
	b, _ := json.Marshal(probeFile{BootID: bootID, OK: ok, Reason: reason})
	// A cache that cannot be written only costs the next caller a probe.
	_ = atomicfile.Write(path, append(b, '\n'), atomicfile.Options{NoSync: true})
	return ok, reason
}
