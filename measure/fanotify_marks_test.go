package measure

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Marks made before the collector runs hold the container: its workload,
// let go first, waits at its first execution until a collector that
// adopted the marks through a real descriptor passing answers, and the
// list then has exactly the workload's entries.
func TestFanotifyMarksHandedOn(t *testing.T) {
	demo := "#!/bin/sh\necho demo\n"
	rootfs := newRootfs(t, map[string]string{"app/demo.sh": demo, "data/a.txt": "a\n"})
	bb, err := os.ReadFile(filepath.Join(rootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	c := startContainer(t, rootfs, "/app/demo.sh; cat /data/a.txt")
	dir := t.TempDir()
	spec := Spec{ID: "handoff", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs}

	marks, err := MarkContainer(spec)
	if err != nil {
		t.Fatal(err)
	}
	desc, fds, err := marks.Handoff()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	if err := unix.Sendmsg(pair[0], desc, unix.UnixRights(fds...), nil, 0); err != nil {
		t.Fatal(err)
	}
	marks.Close()

	// The workload starts with nobody reading the group: it must wait.
	if _, err := c.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		t.Fatalf("the workload ran before any collector answered: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(maxHandoffFDs*4))
	n, oobn, _, _, err := unix.Recvmsg(pair[1], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %d, %v", len(msgs), err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := AdoptMarks(buf[:n], got)
	if err != nil {
		t.Fatal(err)
	}
	col, err := NewFanotify(spec, WithMarks(adopted))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := col.Run(ctx, func() {})
		res <- err
	}()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("workload: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the workload did not end once the collector ran")
	}
	cancel()
	if err := <-res; err != nil {
		t.Fatalf("collector: %v", err)
	}
	checkEntries(t, summarize(t, readList(t, dir)), []listEntry{
		{"/bin/busybox", hexSHA256(string(bb))},
		{"/app/demo.sh", hexSHA256(demo)},
		{"/data/a.txt", hexSHA256("a\n")},
	})
}

// A handoff whose descriptors do not match its description is refused,
// naming the counts, and its descriptors are closed.
func TestAdoptMarksMismatch(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	desc := []byte(`{"pidns":[1,2],"mntns":[1,3],"init":true,"mounts":[{"id":7,"dest":"/"}]}`)
	_, err = AdoptMarks(desc, []int{fd})
	if err == nil || !strings.Contains(err.Error(), "1 descriptors, the description names 3") {
		t.Fatalf("AdoptMarks with too few descriptors: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("descriptor %d left open (%v)", fd, err)
	}
	if _, err := AdoptMarks([]byte("{not json"), nil); err == nil ||
		!strings.Contains(err.Error(), "fanotify marks handed on") {
		t.Errorf("AdoptMarks of a bad description: %v", err)
	}
}
