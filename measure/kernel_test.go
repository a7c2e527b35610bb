package measure

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/measure/imans"
	"github.com/imans-project/imans/measure/imans/imanstest"
	"github.com/imans-project/imans/policy"
	"github.com/imans-project/imans/tpm"
)

const kernelTestPolicy = `dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x01021994
measure func=BPRM_CHECK
measure func=FILE_CHECK mask=MAY_READ uid=0
`

// standinList reads the stand-in's binary list as the collector reads
// the real one: whole entries, then 0 bytes (io.EOF) at the current end.
type standinList struct {
	fs *imanstest.SecurityFS
	fd int
}

func (l standinList) Read(p []byte) (int, error) {
	n, err := l.fs.Read(l.fd, p)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

// withStandin makes the collector activate fs through the real activation
// code instead of the helper.
func withStandin(fs *imanstest.SecurityFS, closed *bool) KernelOption {
	return func(c *kernelConfig) {
		c.enter = func(_ context.Context, _ int, o imans.EnterOptions) (*kernelNS, error) {
			act, err := imans.Activate(fs, o.Policy, o.StepLog)
			if err != nil {
				return nil, err
			}
			return &kernelNS{
				list: standinList{fs, act.List},
				close: func() error {
					*closed = true
					return fs.Close(act.List)
				},
			}, nil
		}
	}
}

func kernelTestSwtpm(t *testing.T) *tpm.Swtpm {
	t.Helper()
	testenv.Command(t, "swtpm")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sw, err := tpm.StartSwtpm(ctx, filepath.Join(t.TempDir(), "tpm"))
	if err != nil {
		t.Fatalf("StartSwtpm: %v", err)
	}
	t.Cleanup(func() { sw.Stop() })
	return sw
}

func kernelTestEntry(t *testing.T, name, content string) *ima.Entry {
	t.Helper()
	d := sha256.Sum256([]byte(content))
	e, err := ima.NewNG(10, ima.SHA256, d[:], name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func sha1Of(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}

type kernelRun struct {
	status Status
	err    error
	ready  bool
}

func runKernel(t *testing.T, c Collector, during func()) kernelRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyCh := make(chan struct{})
	done := make(chan struct{})
	var out kernelRun
	go func() {
		defer close(done)
		out.status, out.err = c.Run(ctx, func() { out.ready = true; close(readyCh) })
	}()

	select {
	case <-readyCh:
		during()
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("Run neither called ready nor returned within 10s")
	}
	cancel()
	<-done
	return out
}

func TestKernelCollectorCopiesListAndExtendsTPM(t *testing.T) {
	sw := kernelTestSwtpm(t)
	host := kernelTestSwtpm(t)
	dir := t.TempDir()
	fs := imanstest.New(imanstest.Measure)
	var closed bool
	var steps []string

	// The host list and TPM agree at the start; then this kernel extends
	// the host PCR 10 with the namespace's entries, as the v15-plus-measure
	// kernels do.
	hostList := filepath.Join(dir, "host_binary_runtime_measurements")
	hostEntry := kernelTestEntry(t, "/usr/bin/containerd", "host")
	os.WriteFile(hostList, hostEntry.AppendBinary(nil, binary.NativeEndian), 0o644)
	extendTPM(t, host.Addr, hostEntry)

	c, err := NewKernel(Spec{ID: "k1", Dir: dir, Pid: 1, Backend: Kernel,
		Policy: kernelTestPolicy, HashAlgo: "sha256", TPM: sw.Addr},
		withStandin(fs, &closed), WithKernelPoll(5*time.Millisecond),
		WithHostReplayCheck(hostList, host.Addr),
		WithStepLog(func(s, r string) { steps = append(steps, s+" => "+r) }))
	if err != nil {
		t.Fatal(err)
	}

	var entries []*ima.Entry
	boot, _ := ima.NewNG(10, ima.SHA256, make([]byte, 32), "boot_aggregate")
	entries = append(entries, boot,
		kernelTestEntry(t, "/bin/sh", "shell"),
		kernelTestEntry(t, "/etc/my app.conf", "conf"),
		ima.NewViolation(10, "/var/log/x"),
		kernelTestEntry(t, "/bin/true", "true"))
	run := runKernel(t, c, func() {
		for i, e := range entries {
			fs.Measure(e.AppendBinary(nil, binary.NativeEndian))
			if i == 2 {
				time.Sleep(30 * time.Millisecond) // some now, some later
				extendTPM(t, host.Addr, entries[1])
			}
		}
	})

	if run.err != nil || !run.ready {
		t.Fatalf("Run: %v (ready %v)", run.err, run.ready)
	}
	if run.status.Entries != 5 || run.status.Violations != 1 || run.status.Backend != Kernel {
		t.Errorf("status %+v, want 5 entries, 1 violation, backend kernel", run.status)
	}
	if !closed {
		t.Error("the namespace was not let go")
	}
	if len(run.status.Incomplete) != 1 || run.status.Incomplete[0] != quirkHostPCR {
		t.Errorf("Incomplete = %q, want only the host PCR quirk", run.status.Incomplete)
	}

	// The run folder's binary list is the namespace's, byte for byte.
	var want []byte
	for _, e := range entries {
		want = e.AppendBinary(want, binary.NativeEndian)
	}
	got, _ := os.ReadFile(filepath.Join(dir, BinaryListFile))
	if !bytes.Equal(got, want) {
		t.Errorf("binary list: %d bytes, want the namespace's %d", len(got), len(want))
	}
	ascii, _ := os.ReadFile(filepath.Join(dir, ASCIIListFile))
	if !strings.Contains(string(ascii), " /etc/my_app.conf\n") {
		t.Errorf("ASCII list:\n%s", ascii)
	}

	// The container's PCR 10 follows the list, computed independently;
	// the violation extends all 0xff.
	s1, s256 := make([]byte, 20), make([]byte, 32)
	for _, e := range entries {
		d1, d256 := sha1Of(e.Data), sha256.Sum256(e.Data)
		if e.IsViolation() {
			d1, d256 = bytes.Repeat([]byte{0xff}, 20), [32]byte(bytes.Repeat([]byte{0xff}, 32))
		}
		h1 := sha1.Sum(append(s1, d1...))
		h256 := sha256.Sum256(append(s256, d256[:]...))
		s1, s256 = h1[:], h256[:]
	}
	pcr := readTPM10(t, sw.Addr)
	if !bytes.Equal(pcr["sha1"], s1) || !bytes.Equal(pcr["sha256"], s256) {
		t.Errorf("container PCR 10 sha1 %x sha256 %x, want %x %x",
			pcr["sha1"], pcr["sha256"], s1, s256)
	}

	// Each kernel-facing step is in the run folder, in order.
	log, _ := os.ReadFile(filepath.Join(dir, KernelStepsFile))
	for _, want := range []string{
		"check the host list against the host PCR 10 (before) => ok: replays",
		"read ima/active => ok: 0",
		"write ima/active => ok: 1",
		"write ima/policy rule 4/4 (line 4) => ok: measure func=FILE_CHECK mask=MAY_READ uid=0",
		"read ima/policy back => ok: 4 rules committed",
		"read the rest of the namespace list => ok: 5 entries",
		"let go of the namespace => ok",
		"check the host list against the host PCR 10 (after) => does not replay",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("%s lacks %q:\n%s", KernelStepsFile, want, log)
		}
	}
	if len(steps) != strings.Count(string(log), "\n") {
		t.Errorf("step log option got %d steps, the file %d lines", len(steps),
			strings.Count(string(log), "\n"))
	}
}

func TestKernelCollectorActivationFailureBeforeReady(t *testing.T) {
	fs := imanstest.New(imanstest.V15) // refuses measure rules
	var closed bool
	c, err := NewKernel(Spec{ID: "k2", Dir: t.TempDir(), Pid: 1, Backend: Kernel,
		Policy: kernelTestPolicy}, withStandin(fs, &closed), WithHostReplayCheck("", ""))
	if err != nil {
		t.Fatal(err)
	}

	run := runKernel(t, c, func() {})

	if run.ready {
		t.Error("ready was called although the policy was refused")
	}
	var se *imans.StepError
	if !errors.As(run.err, &se) || se.Line != 3 || !errors.Is(run.err, unix.EINVAL) {
		t.Fatalf("err = %v, want EINVAL at policy line 3", run.err)
	}
	if !strings.HasPrefix(run.err.Error(), "kernel collector: IMA namespace: write ima/policy: "+
		`policy line 3 "measure func=BPRM_CHECK": EINVAL`) {
		t.Errorf("message: %v", run.err)
	}
}

func TestNewKernelChecksSpec(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Dir: "/run/imans/x", Policy: kernelTestPolicy}, "container pid 0"},
		{Spec{Pid: 5, Policy: kernelTestPolicy}, "no run folder"},
		{Spec{Pid: 5, Dir: "/run/imans/x", Policy: "# only a comment\n"}, "no rules"},
		{Spec{Pid: 5, Dir: "/run/imans/x", Policy: "measure func=BPRM_CHECK\n" +
			"appraise func=BPRM_CHECK\n"},
			`policy for an IMA namespace: line 2: "appraise": action not allowed`},
	} {
		if _, err := NewKernel(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewKernel(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestKernelCollectorBuiltinPolicy(t *testing.T) {
	fs := imanstest.New(imanstest.Measure)
	var closed bool
	c, err := NewKernel(Spec{ID: "k3", Dir: t.TempDir(), Pid: 1, Backend: Kernel,
		Policy: policy.BuiltinText()}, withStandin(fs, &closed), WithHostReplayCheck("", ""))
	if err != nil {
		t.Fatal(err)
	}

	run := runKernel(t, c, func() {})

	if run.err != nil || !run.ready {
		t.Fatalf("Run: %v", run.err)
	}
	rules := fs.Rules()
	// 21 dont_* rules for the file systems, 8 measure rules, the
	// dont_appraise fowner=0 rule; tmpfs reads back without its zero.
	if len(rules) != 30 || rules[6] != "dont_measure fsmagic=0x1021994" ||
		rules[29] != "dont_appraise fowner=0" {
		t.Errorf("%d rules committed:\n%s", len(rules), strings.Join(rules, "\n"))
	}
	if len(run.status.Incomplete) != 1 || !strings.Contains(run.status.Incomplete[0], "no TPM") {
		t.Errorf("Incomplete = %q, want only the missing TPM", run.status.Incomplete)
	}
}

func TestKernelPreflightOnThisKernel(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/sys/kernel/security/ima/active"); err == nil {
		t.Skip("this kernel may have IMA namespaces")
	}
	err := KernelPreflight(os.Getpid())
	if !errors.Is(err, ErrKernelUnavailable) ||
		!strings.Contains(err.Error(), "securityfs cannot be mounted in a user namespace") {
		t.Fatalf("KernelPreflight = %v", err)
	}
	ok, reason := ProbeKernel()
	if ok || reason != imans.ReasonNoUserNamespaceMount {
		t.Errorf("ProbeKernel = %v, %q", ok, reason)
	}
}

func extendTPM(t *testing.T, addr string, e *ima.Entry) {
	t.Helper()
	tp, err := tpm.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	banks, err := tp.Banks()
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string][]byte{}
	for _, b := range banks {
		h, err := ima.Hash(b).New()
		if err != nil {
			t.Fatal(err)
		}
		h.Write(e.Data)
		digests[b] = h.Sum(nil)
	}
	if err := tp.Extend(10, digests); err != nil {
		t.Fatal(err)
	}
}

func readTPM10(t *testing.T, addr string) map[string][]byte {
	t.Helper()
	tp, err := tpm.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	v, err := tp.ReadPCR(10, "sha1", "sha256")
	if err != nil {
		t.Fatal(err)
	}
	return v
}
