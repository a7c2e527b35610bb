package measure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/measure/imans"
	"github.com/imans-project/imans/policy"
)

// KernelStepsFile is the file of the run folder where the kernel collector
// records each kernel-facing step with its result, one per line, so that a
// run on a kernel with IMA namespaces can be checked line by line.
const KernelStepsFile = "kernel_steps.log"

// Defaults of the kernel collector's options.
const (
	// DefaultKernelPoll is how often the collector looks for new entries
	// in the namespace's list (securityfs files cannot be polled).
	DefaultKernelPoll = 50 * time.Millisecond
	// DefaultActivateTimeout bounds the activation, helper included.
	DefaultActivateTimeout = 10 * time.Second
)

// Errors of the kernel backend, to test with errors.Is; the hook decides
// what each means in enforce and audit mode.
var (
	// ErrKernelUnavailable: the kernel has no IMA namespaces. The error
	// carries ProbeKernel's reason.
	ErrKernelUnavailable = imans.ErrUnavailable
	// ErrNoUserNamespace: the container shares the host's user
	// namespace; measuring it would mean the host's own IMA.
	ErrNoUserNamespace = imans.ErrNoUserNamespace
)

// ProbeKernel says whether this kernel has IMA namespaces and, if not,
// why ("securityfs cannot be mounted in a user namespace (kernel without
// IMA namespaces)", "no IMA in securityfs", "IMA without namespace
// support"). It runs a short-lived child in throwaway namespaces, reads
// and writes no IMA file, and keeps its answer for the rest of the boot.
func ProbeKernel() (ok bool, reason string) {
	return imans.Probe()
}

// ProbeKernelCached is ProbeKernel with the answer kept in the file at path
// for the rest of the boot (for example /run/imans/kernel-probe.json), so
// that each short-lived hook process does not pay for a probe (about 7 ms
// against about 0.1 ms for reading the file).
func ProbeKernelCached(path string) (ok bool, reason string) {
	return imans.ProbeCached(path)
}

// KernelPreflight checks what the kernel backend needs before a container
// pid is measured with it: IMA namespaces (an error wrapping
// ErrKernelUnavailable with the probe's reason) and a user namespace of the
// container's own (ErrNoUserNamespace).
func KernelPreflight(pid int) error {
	if ok, reason := ProbeKernel(); !ok {
		return fmt.Errorf("%w: %s", ErrKernelUnavailable, reason)
	}
	return imans.CheckUserNamespace(pid)
}

// KernelOption changes a setting of the kernel collector.
type KernelOption func(*kernelConfig)

type kernelConfig struct {
	poll            time.Duration
	activateTimeout time.Duration
	closeTimeout    time.Duration
	stepLog         func(step, result string)
	hostList        string
	hostTPM         string
	tpmConn         net.Conn
	enter           func(ctx context.Context, pid int, o imans.EnterOptions) (*kernelNS, error)
}

// WithKernelTPMConn has the collector extend the TPM through c, a
// connection to spec.TPM made beforehand, instead of dialling it.
func WithKernelTPMConn(c net.Conn) KernelOption {
	return func(cfg *kernelConfig) { cfg.tpmConn = c }
}

// WithKernelPoll sets how often the namespace's list is read for new
// entries (DefaultKernelPoll).
func WithKernelPoll(d time.Duration) KernelOption {
	return func(c *kernelConfig) { c.poll = d }
}

// WithActivateTimeout bounds the activation (DefaultActivateTimeout).
func WithActivateTimeout(d time.Duration) KernelOption {
	return func(c *kernelConfig) { c.activateTimeout = d }
}

// WithStepLog also hands each kernel-facing step and its result to fn
// (for example a debug-level log line), besides KernelStepsFile.
func WithStepLog(fn func(step, result string)) KernelOption {
	return func(c *kernelConfig) { c.stepLog = fn }
}

// WithHostReplayCheck sets the host's binary list and TPM used to detect
// the kernel that extends namespace entries into the host's PCR 10
// (defaults: /sys/kernel/security/ima/binary_runtime_measurements and
// /dev/tpmrm0; empty strings turn the check off).
func WithHostReplayCheck(list, tpmAddr string) KernelOption {
	return func(c *kernelConfig) { c.hostList, c.hostTPM = list, tpmAddr }
}

// kernelNS is an activated namespace as the collector uses it.
type kernelNS struct {
	list  io.Reader
	close func() error
}

// kernelCollector measures one container with its kernel's IMA
// namespace. See docs/kernel-backend.md.
type kernelCollector struct {
	spec Spec
	cfg  kernelConfig

	mu         sync.Mutex
	incomplete []string
	steps      *os.File
}

// NewKernel returns the collector of the container spec describes, for a
// kernel with IMA namespaces: Run activates IMA in the container's user
// namespace with the container's policy, calls ready, then copies each new
// entry of the namespace's list to the run folder (extending the
// container's TPM in list order) until its context ends, reads the rest
// and lets the namespace go.
func NewKernel(spec Spec, opts ...KernelOption) (Collector, error) {
	cfg := kernelConfig{
		poll:            DefaultKernelPoll,
		activateTimeout: DefaultActivateTimeout,
		closeTimeout:    DefaultCloseTimeout,
		hostList:        imans.SecurityfsDir + "/" + imans.BinaryListFile,
		hostTPM:         "/dev/tpmrm0",
		enter:           enterKernel,
	}
	for _, o := range opts {
		o(&cfg)
	}

	if spec.Pid <= 0 {
		return nil, fmt.Errorf("kernel collector: container pid %d", spec.Pid)
	}
	if spec.Dir == "" {
		return nil, errors.New("kernel collector: no run folder")
	}
	if err := imans.CheckPolicy(spec.Policy); err != nil {
		return nil, fmt.Errorf("kernel collector: %w", err)
	}
	// The development tree's rules: a policy it refuses (appraise, hash)
	// is named by line and word here, before anything is activated. A
	// kernel with only v15 also refuses measure rules; its EINVAL names
	// the rule at activation.
	prof := policy.DefaultProfile().InNamespace(policy.NamespaceDev)
	if _, err := policy.ParseProfile(spec.Policy, prof); err != nil {
		return nil, fmt.Errorf("kernel collector: policy for an IMA namespace: %w", err)
	}
	return &kernelCollector{spec: spec, cfg: cfg}, nil
}

// enterKernel is the real activation: package imans's helper.
func enterKernel(ctx context.Context, pid int, o imans.EnterOptions) (*kernelNS, error) {
	ns, err := imans.Enter(ctx, pid, o)
	if err != nil {
		return nil, err
	}
	return &kernelNS{list: ns.List, close: ns.Close}, nil
}

// Run activates the namespace, calls ready and copies entries until ctx
// is done. An error before ready means the container is not measured.
func (c *kernelCollector) Run(ctx context.Context, ready func()) (Status, error) {
	st := Status{Backend: Kernel}

	steps, err := os.OpenFile(filepath.Join(c.spec.Dir, KernelStepsFile),
		os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return st, fmt.Errorf("kernel collector: %w", err)
	}
	c.steps = steps
	defer steps.Close()

	log, err := OpenLog(c.spec.Dir)
	if err != nil {
		return st, fmt.Errorf("kernel collector: %w", err)
	}

	host := c.hostReplayAtStart()

	ns, err := c.cfg.enter(ctx, c.spec.Pid, imans.EnterOptions{
		Policy:  c.spec.Policy,
		StepLog: c.step,
		Timeout: c.cfg.activateTimeout,
	})
	if err != nil {
		log.Close(time.Second)
		return st, fmt.Errorf("kernel collector: %w", err)
	}

	tpmDone := attachTPM(ctx, c.spec.TPM, c.cfg.tpmConn, log, c.addIncomplete)
	ready()

	copyErr := c.copyEntries(ctx, ns.list, log)
	closeNSErr := ns.close()
	c.step("let go of the namespace", errText(closeNSErr))
	c.hostReplayAtStop(host)

	if err := finish(&st, log, tpmDone, c.cfg.closeTimeout, c.incompleteReasons,
		copyErr); err != nil {
		return st, fmt.Errorf("kernel collector: %w", err)
	}
	return st, nil
}

// copyEntries reads the namespace's binary list as it grows and appends
// each entry to log, until ctx is done; then it reads what is left. The
// kernel appends an entry before the measured access proceeds, so once the
// container has stopped, one last read finds every entry.
func (c *kernelCollector) copyEntries(ctx context.Context, list io.Reader, log *Log) error {
	rd := ima.NewBinaryReader(list, ima.Follow(), ima.HostOrder(), ima.Bank(ima.SHA1))
	ticker := time.NewTicker(c.cfg.poll)
	defer ticker.Stop()
	stopping := false

	for {
		e, err := rd.Next()
		switch {
		case err == nil:
		case errors.Is(err, ima.ErrTemplateHash):
			// Kept as the kernel wrote it; the replay will show it.
			c.addIncomplete(fmt.Sprintf("namespace list entry %d: %v", rd.Index()-1, err))
		case errors.Is(err, io.EOF) || errors.Is(err, ima.ErrPartial):
			if stopping {
				c.step("read the rest of the namespace list",
					fmt.Sprintf("ok: %d entries", rd.Index()))
				if errors.Is(err, ima.ErrPartial) {
					return fmt.Errorf("namespace list ends inside entry %d", rd.Index())
				}
				return nil
			}
			select {
			case <-ctx.Done():
				stopping = true
			case <-ticker.C:
			}
			continue
		default:
			return fmt.Errorf("reading the namespace list: %w", err)
		}

		if err := log.Append(e); err != nil {
			return err
		}
	}
}

// step records one kernel-facing step in KernelStepsFile and hands it to
// the step log option.
func (c *kernelCollector) step(step, result string) {
	line := time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + " " + step + " => " +
		result + "\n"
	if c.steps != nil {
		c.steps.WriteString(line)
	}
	if c.cfg.stepLog != nil {
		c.cfg.stepLog(step, result)
	}
}

// incompleteReasons returns a copy of the collector's own reasons.
func (c *kernelCollector) incompleteReasons() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.incomplete...)
}

// addIncomplete records why the record is not whole.
func (c *kernelCollector) addIncomplete(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.incomplete = append(c.incomplete, reason)
}

func errText(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}
