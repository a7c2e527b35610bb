//go:build integration

package measure

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/integration/qemu"
)

// guestEnv makes the test binary, run in a qemu guest, measure a
// container with the fanotify collector: "ROOTFS OUTDIR POLICYFILE",
// the workload in IMANS_TEST_GUEST_WORKLOAD. It prints the status as
// JSON and exits.
const guestEnv = "IMANS_TEST_GUEST_COLLECT"

func init() {
	spec := os.Getenv(guestEnv)
	if spec == "" {
		return
	}
	if err := guestCollect(strings.Fields(spec), os.Getenv("IMANS_TEST_GUEST_WORKLOAD")); err != nil {
		fmt.Fprintln(os.Stderr, "guest collector:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// guestCollect starts the container as the host tests do and runs a
// collector on it until its workload ends.
func guestCollect(args []string, workload string) error {
	if len(args) != 3 {
		return fmt.Errorf("want ROOTFS OUTDIR POLICYFILE, got %q", args)
	}
	policy, err := os.ReadFile(args[2])
	if err != nil {
		return err
	}

	cmd := exec.Command("/bin/sh", "-c", initScript)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "ROOTFS=" + args[0],
		"WORKLOAD=" + workload}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	rd := bufio.NewReader(stdout)
	if line, err := rd.ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("container init: %q, %v", line, err)
	}
	go io.Copy(os.Stdout, rd)

	col, err := NewFanotify(Spec{ID: "qemu", Dir: args[1], Pid: cmd.Process.Pid,
		Rootfs: args[0], Policy: string(policy)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	type result struct {
		st  Status
		err error
	}
	res := make(chan result, 1)
	go func() {
		st, err := col.Run(ctx, func() { close(ready) })
		res <- result{st, err}
	}()
	select {
	case <-ready:
	case r := <-res:
		return fmt.Errorf("collector: %v", r.err)
	}

	io.WriteString(stdin, "go\n")
	werr := cmd.Wait()
	cancel()
	r := <-res
	if r.err != nil {
		return r.err
	}
	if werr != nil {
		return fmt.Errorf("workload: %w", werr)
	}
	return json.NewEncoder(os.Stdout).Encode(r.st)
}

// TestFanotifyMatchesKernelIMA runs a workload in a container under the
// collector inside a qemu guest with Debian's 6.12 kernel, whose own IMA
// measures the same accesses under the same policy: every entry of the
// collector's list has the digest the kernel recorded for the same file,
// and both record the same ToMToU and open_writers violations.
func TestFanotifyMatchesKernelIMA(t *testing.T) {
	qemu.Require(t)
	if testing.Short() {
		t.Skip("qemu boot: not in -short")
	}

	bin := filepath.Join(t.TempDir(), "measure.test")
	build := exec.Command("go", "test", "-c", "-tags", "integration", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static test binary: %v\n%s", err, out)
	}
	self, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}

	const ct = "/root/ct"
	policy := strings.Join([]string{
		"dont_measure fsmagic=0x9fa0",     // proc
		"dont_measure fsmagic=0x62656572", // sysfs
		"dont_measure fsmagic=0x73636673", // securityfs
		"dont_measure fsmagic=0x01021994", // tmpfs, devtmpfs
		"measure func=BPRM_CHECK",
		"measure func=FILE_CHECK mask=MAY_READ",
	}, "\n") + "\n"
	files := map[string][]byte{
		"/root/measure.test": self,
		"/root/policy":       []byte(policy),
		ct + "/bin/busybox":  bb,
		ct + "/app/demo.sh":  []byte("#!/bin/sh\necho demo\ncat /data/a.txt\n"),
		ct + "/data/a.txt":   []byte("read by a script\n"),
		ct + "/data/b c.txt": []byte("a name with a space\n"),
		ct + "/data/changed": []byte("before\n"),
		ct + "/data/v.txt":   []byte("read, then written while open\n"),
		ct + "/data/w.txt":   []byte("read while open for write\n"),
	}
	workload := `/app/demo.sh; cat "/data/b c.txt"; cat /data/changed; ` +
		`echo after >/data/changed; cat /data/changed; ` +
		`exec 3</data/v.txt; echo x >/data/v.txt; exec 3<&-; ` +
		`exec 4>>/data/w.txt; cat /data/w.txt; exec 4>&-`
	script := fmt.Sprintf(`for a in sh cat echo; do ln -s busybox %[1]s/bin/$a; done
mkdir -p %[1]s/dev %[1]s/proc /run/out
IMANS_TEST_GUEST_WORKLOAD='%[2]s' %[3]s='%[1]s /run/out /root/policy' /root/measure.test
`, ct, workload, guestEnv)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	snap, res, err := qemu.MeasureRun(ctx, qemu.Config{
		Kernel:   "6.12",
		Cmdline:  "ima_template=ima-ng ima_hash=sha256",
		Files:    files,
		Script:   script,
		Fetch:    []string{"/run/out"},
		Timeout:  4 * time.Minute,
		MemoryMB: 768,
	}, policy)
	if err != nil {
		if res != nil {
			t.Logf("guest output:\n%s\nconsole:\n%s", res.Output, tailLines(res.Console, 30))
		}
		t.Fatalf("guest: %v", err)
	}
	t.Logf("guest output:\n%s", res.Output)

	ours := parseList(t, res.Files["/run/out/"+BinaryListFile])
	kernel := parseList(t, snap.Binary())
	kernelDigests := map[string]map[string]bool{}
	kernelViolations := map[string]int{}
	for _, e := range kernel {
		name, d := entryDigest(t, e)
		if e.IsViolation() {
			kernelViolations[name]++
			continue
		}
		if kernelDigests[name] == nil {
			kernelDigests[name] = map[string]bool{}
		}
		kernelDigests[name][d] = true
	}

	if len(ours) < 10 {
		t.Errorf("collector list has %d entries, want at least 10", len(ours))
	}
	ourViolations := map[string]int{}
	for i, e := range ours {
		name, d := entryDigest(t, e)
		kname := ct + strings.ReplaceAll(name, " ", "_")
		if e.IsViolation() {
			ourViolations[kname]++
			continue
		}
		if !kernelDigests[kname][d] {
			t.Errorf("entry %d %s sha256:%s: the kernel recorded %v for %s",
				i, name, d, kernelDigests[kname], kname)
		}
	}
	// The same violations, for the same files (the kernel also records
	// violations outside the container, which are left out here).
	for name := range kernelViolations {
		if !strings.HasPrefix(name, ct+"/") {
			delete(kernelViolations, name)
		}
	}
	wantViolations := map[string]int{ct + "/data/v.txt": 1, ct + "/data/w.txt": 1}
	if fmt.Sprint(ourViolations) != fmt.Sprint(kernelViolations) ||
		fmt.Sprint(ourViolations) != fmt.Sprint(wantViolations) {
		t.Errorf("violations: ours %v, the kernel's %v, want %v", ourViolations,
			kernelViolations, wantViolations)
	}

	for _, want := range []string{"/data/changed"} {
		n := 0
		for _, e := range ours {
			if name, _ := entryDigest(t, e); name == want {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%s has %d entries in the collector's list, want 2", want, n)
		}
	}
}

// parseList reads a binary list.
func parseList(t *testing.T, b []byte) []*ima.Entry {
	t.Helper()
	var out []*ima.Entry
	rd := ima.NewBinaryReader(bytes.NewReader(b))
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("list entry %d: %v", len(out), err)
		}
		out = append(out, e)
	}
}

// entryDigest returns an entry's name and hex file digest.
func entryDigest(t *testing.T, e *ima.Entry) (string, string) {
	t.Helper()
	name, err := e.FileName()
	if err != nil {
		t.Fatal(err)
	}
	_, d, err := e.FileDigest()
	if err != nil {
		t.Fatal(err)
	}
	return name, hex.EncodeToString(d)
}

// tailLines returns the last n lines of b.
func tailLines(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
