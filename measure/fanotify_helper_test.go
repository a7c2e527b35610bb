package measure

import (
	"bufio"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/internal/testenv"
)

// testContainer is a process in new mount and pid namespaces whose root
// filesystem is a folder bind-mounted on itself (as runc does), on the
// file system of the test's temporary folder. It waits for a line on its
// stdin, then chroots into the root filesystem and runs its workload.
type testContainer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	rootfs string
	done   chan error
}

// initScript runs as the container's init on the host's /bin/sh.
const initScript = `set -e
mount --make-rprivate /
mount --bind "$ROOTFS" "$ROOTFS"
eval "$SETUP"
echo ready
read go
if [ -n "$HELPER" ]; then exec "$HELPER"; fi
exec chroot "$ROOTFS" /bin/sh -c "$WORKLOAD"
`

// newRootfs makes a root filesystem with busybox as /bin/busybox and its
// sh and cat applets, plus the given files (mode 0755 for names ending
// in .sh).
func newRootfs(t testing.TB, files map[string]string) string {
	t.Helper()
	testenv.Root(t)
	bb := testenv.Command(t, "busybox")

	rootfs := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "app", "data", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "bin/busybox"), string(data), 0o755)
	for _, applet := range []string{"sh", "cat", "true"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	err = unix.Mknod(filepath.Join(rootfs, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		writeFile(t, filepath.Join(rootfs, name), body, mode)
	}
	return rootfs
}

func writeFile(t testing.TB, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// startContainer starts the container's init and waits until its mounts
// are in place.
func startContainer(t testing.TB, rootfs, workload string, env ...string) *testContainer {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", initScript)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "ROOTFS=" + rootfs,
		"WORKLOAD=" + workload}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &testContainer{cmd: cmd, stdin: stdin, rootfs: rootfs, done: make(chan error, 1)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
	})

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("container init: %q, %v", line, err)
	}
	go func() {
		io.Copy(io.Discard, stdout)
		c.done <- cmd.Wait()
	}()
	return c
}

// run lets the container's workload start and waits for it to end.
func (c *testContainer) run(t testing.TB) {
	t.Helper()
	c.runFor(t, 60*time.Second)
}

// runFor is run with a time limit other than a minute.
func (c *testContainer) runFor(t testing.TB, limit time.Duration) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("container workload: %v", err)
		}
	case <-time.After(limit):
		t.Fatalf("container workload did not end within %s", limit)
	}
}

// collect runs a fanotify collector on the container while fn runs, and
// returns its status.
func collect(t testing.TB, spec Spec, fn func(), opts ...FanotifyOption) Status {
	t.Helper()
	return collectWith(t, spec, nil, fn, opts...)
}

// collectWith is collect with a collector made beforehand (when col is
// not nil).
func collectWith(t testing.TB, spec Spec, col Collector, fn func(),
	opts ...FanotifyOption) Status {
	t.Helper()
	if col == nil {
		var err error
		if col, err = NewFanotify(spec, opts...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	readyc := make(chan struct{})
	type result struct {
		st  Status
		err error
	}
	res := make(chan result, 1)
	go func() {
		st, err := col.Run(ctx, func() { close(readyc) })
		res <- result{st, err}
	}()
	select {
	case <-readyc:
	case r := <-res:
		t.Fatalf("collector ended before ready: %v", r.err)
	}

	fn()
	cancel()
	r := <-res
	if r.err != nil {
		t.Fatalf("collector: %v", r.err)
	}
	return r.st
}

func sha256Of(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}
