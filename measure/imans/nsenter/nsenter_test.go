package nsenter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/imans-project/imans/internal/testenv"
)

// Lines nsenter prints, as seen from util-linux 2.38 and busybox 1.35,
// and what ParseError reads from them.
func TestParseError(t *testing.T) {
	for _, tc := range []struct {
		stderr string
		step   string
		errno  syscall.Errno
	}{
		{"nsenter: reassociate to namespace 'ns/user' failed: Operation not permitted\n",
			StepSetns, syscall.EPERM},
		{"nsenter: setns(): can't reassociate to namespace 'user': Invalid argument\n",
			StepSetns, syscall.EINVAL},
		{"nsenter: cannot open /proc/self/fd/9: No such file or directory\n",
			StepOpen, syscall.ENOENT},
		{"nsenter: can't open '/proc/self/fd/9': No such file or directory\n",
			StepOpen, syscall.ENOENT},
		{"nsenter: setgid failed: Invalid argument\n", StepIDs, syscall.EINVAL},
		{"nsenter: setgid: Invalid argument\n", StepIDs, syscall.EINVAL},
		{"nsenter: failed to execute /proc/self/fd/5: Permission denied\n",
			StepExec, syscall.EACCES},
		{"nsenter: can't execute '/proc/self/fd/5': No such file or directory\n",
			StepExec, syscall.ENOENT},
		{"some noise\nnsenter: something new: Weird words\n", "nsenter(1)", 0},
	} {
		e := ParseError(tc.stderr)
		if e == nil || e.Step != tc.step || e.Errno != tc.errno {
			t.Errorf("ParseError(%q) = %+v, want step %q errno %d",
				tc.stderr, e, tc.step, tc.errno)
		}
	}
	if e := ParseError("panic: something\nunshare: unshare failed: Invalid argument\n"); e != nil {
		t.Errorf("ParseError of a line that is not theirs = %+v", e)
	}

	want := "entering the container's namespaces: setns(CLONE_NEWUSER): operation not " +
		"permitted (needs CAP_SYS_ADMIN in the container's user namespace: run as host root)"
	err := error(ParseError("nsenter: reassociate to namespace 'ns/user' failed: " +
		"Operation not permitted"))
	if err.Error() != want || !errors.Is(err, syscall.EPERM) {
		t.Errorf("error %q (EPERM: %v), want %q", err, errors.Is(err, syscall.EPERM), want)
	}
	err = ParseError("nsenter: something new: Weird words")
	if got := err.Error(); got != "entering the container's namespaces: nsenter(1): "+
		"nsenter: something new: Weird words" || errors.Unwrap(err) != nil {
		t.Errorf("unknown line: %q, unwraps to %v", got, errors.Unwrap(err))
	}
}

// userNS starts a process in a new user namespace with the given maps and
// returns its user namespace, opened.
func userNS(t *testing.T, uid, gid []syscall.SysProcIDMap) *os.File {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER, UidMappings: uid, GidMappings: gid}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process in a user namespace: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// EnterMountNS gives the calling thread alone a new mount namespace: a
// mount made there is not seen by the process's other threads (here the
// test's own, locked so that the goroutine below runs elsewhere).
func TestEnterMountNS(t *testing.T) {
	testenv.Root(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := t.TempDir()
	before, err := mountNS("/proc/thread-self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		err          error
		thread, seen string
	}
	done := make(chan result)
	go func() {
		var r result
		if r.err = EnterMountNS(); r.err == nil {
			r.thread, r.err = mountNS("/proc/thread-self/ns/mnt")
		}
		if r.err == nil {
			r.err = syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "")
		}
		if r.err == nil {
			r.err = syscall.Mount("tmpfs", dir, "tmpfs", 0, "")
		}
		if r.err == nil {
			r.err = os.WriteFile(filepath.Join(dir, "here"), nil, 0o600)
			_, serr := os.Stat(filepath.Join(dir, "here"))
			r.seen = fmt.Sprint(serr == nil)
		}
		done <- r
	}()
	r := <-done

	if r.err != nil {
		t.Fatal(r.err)
	}
	after, _ := mountNS("/proc/thread-self/ns/mnt")
	if r.thread == before || after != before {
		t.Errorf("mount namespaces: before %s, the thread's %s, the test's after %s",
			before, r.thread, after)
	}
	entries, err := os.ReadDir(dir)
	if r.seen != "true" || err != nil || len(entries) != 0 {
		t.Errorf("the thread saw its file: %s; the test sees %d entries (%v)",
			r.seen, len(entries), err)
	}
}

// toolSets are util-linux's nsenter and busybox's applet (the qemu
// harness's guest has only the latter).
func toolSets(t *testing.T) map[string]Tools {
	t.Helper()
	sets := map[string]Tools{}
	if tools, err := Lookup(); err != nil {
		testenv.Missing(t, "%v", err)
	} else {
		sets["util-linux"] = tools
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		sets["busybox"] = Tools{} // reported missing by the subtest
		return sets
	}
	link := filepath.Join(t.TempDir(), "nsenter")
	if err := os.Symlink(bb, link); err != nil {
		t.Fatal(err)
	}
	sets["busybox"] = Tools{Nsenter: link}
	return sets
}

func requireTools(t *testing.T, tools Tools) {
	t.Helper()
	if tools.Nsenter == "" {
		testenv.Missing(t, "busybox not found on PATH (Debian package busybox-static)")
	}
}

// run starts /bin/sh through Command with the user namespace and the
// shell as descriptors 3 and 4, and returns its output and error output.
func run(t *testing.T, tools Tools, userns *os.File, script string) (string, string, error) {
	t.Helper()
	sh, err := os.Open("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()

	var out, errOut strings.Builder
	cmd := tools.Command(context.Background(), 3, 4, "-c", script)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = []*os.File{userns, sh}
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// The program runs in the target user namespace as its uid 0, with all
// capabilities there, with the descriptors.
func TestCommandEntersUserNamespace(t *testing.T) {
	testenv.Root(t)
	maps := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	userns := userNS(t, maps, maps)
	target, err := os.Readlink(userns.Name())
	if err != nil {
		t.Fatal(err)
	}
	script := "readlink /proc/self/ns/user; id -u; id -g; " +
		"tr -s ' ' < /proc/self/uid_map; grep CapEff /proc/self/status; " +
		"test -e /proc/self/fd/3 && echo fd3"

	for name, tools := range toolSets(t) {
		t.Run(name, func(t *testing.T) {
			requireTools(t, tools)
			out, errOut, err := run(t, tools, userns, script)
			if err != nil {
				t.Fatalf("%v: %s", err, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			want := []string{target, "0", "0", " 0 100000 65536",
				"CapEff:\t000001ffffffffff", "fd3"}
			if len(lines) != len(want) {
				t.Fatalf("output %q", out)
			}
			for i := range want {
				if lines[i] != want[i] {
					t.Errorf("line %d = %q, want %q", i, lines[i], want[i])
				}
			}
		})
	}
}

// Failures on the way in come back as the step and errno, from the
// programs' real messages.
func TestCommandFailures(t *testing.T) {
	testenv.Root(t)
	noRoot := userNS(t, []syscall.SysProcIDMap{{ContainerID: 1000, HostID: 100000, Size: 1}},
		[]syscall.SysProcIDMap{{ContainerID: 1000, HostID: 100000, Size: 1}})
	netns, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer netns.Close()

	for name, tools := range toolSets(t) {
		t.Run(name, func(t *testing.T) {
			requireTools(t, tools)
			for _, tc := range []struct {
				what   string
				userns *os.File
				step   string
				errno  syscall.Errno
			}{
				{"not a user namespace", netns, StepSetns, syscall.EINVAL},
				{"uid 0 not mapped", noRoot, StepIDs, syscall.EINVAL},
			} {
				_, errOut, err := run(t, tools, tc.userns, "echo entered")
				e := ParseError(errOut)
				if err == nil || e == nil || e.Step != tc.step || e.Errno != tc.errno {
					t.Errorf("%s: %v, stderr %q, parsed %+v; want %s %s",
						tc.what, err, errOut, e, tc.step, tc.errno)
				}
			}
		})
	}
}

// ParseError reads any stderr without panicking; what it returns names a
// step and keeps nsenter's line.
func FuzzParseError(f *testing.F) {
	f.Add("nsenter: reassociate to namespace 'ns/user' failed: Operation not permitted\n")
	f.Add("nsenter: setgid: Invalid argument")
	f.Add("x\nnsenter: : \n")
	f.Fuzz(func(t *testing.T, stderr string) {
		e := ParseError(stderr)
		if e == nil {
			if strings.Contains("\n"+stderr, "\nnsenter: ") {
				t.Fatalf("no error from %q", stderr)
			}
			return
		}
		if e.Step == "" || !strings.HasPrefix(e.Text, "nsenter: ") || e.Error() == "" {
			t.Fatalf("ParseError(%q) = %+v", stderr, e)
		}
	})
}
