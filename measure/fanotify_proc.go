package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// nsID identifies a namespace: the device and inode of its nsfs file.
type nsID struct {
	dev, ino uint64
}

// idRange is one line of a uid_map or gid_map: ids inside..inside+count
// of the container are outside..outside+count on the host.
type idRange struct {
	inside, outside, count uint32
}

// overflowID is what the kernel shows for an id with no mapping.
const overflowID = 65534

// containerID is how the collector recognises the container's
// processes and maps their ids.
type containerID struct {
	pidNS, mntNS   nsID
	uidMap, gidMap []idRange
}

// readContainerID reads the namespaces and id maps of the container's
// init.
func readContainerID(pid int) (containerID, error) {
	var c containerID
	var err error
	if c.pidNS, err = readNS(pid, "pid"); err != nil {
		return c, err
	}
	if c.mntNS, err = readNS(pid, "mnt"); err != nil {
		return c, err
	}
	if c.uidMap, err = readIDMap(fmt.Sprintf("/proc/%d/uid_map", pid)); err != nil {
		return c, err
	}
	if c.gidMap, err = readIDMap(fmt.Sprintf("/proc/%d/gid_map", pid)); err != nil {
		return c, err
	}
	return c, nil
}

// readNS returns the identity of one namespace of a process.
func readNS(pid int, kind string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		return nsID{}, fmt.Errorf("container %s namespace: %w", kind, err)
	}
	return nsID{dev: st.Dev, ino: st.Ino}, nil
}

// readIDMap parses a uid_map or gid_map file.
func readIDMap(name string) ([]idRange, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("container id map: %w", err)
	}
	var out []idRange
	for n, line := range bytes.Split(data, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("%s line %d: want 3 numbers", name, n+1)
		}
		var v [3]uint32
		for i := range v {
			x, err := strconv.ParseUint(string(f[i]), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %q is no id", name, n+1, f[i])
			}
			v[i] = uint32(x)
		}
		out = append(out, idRange{inside: v[0], outside: v[1], count: v[2]})
	}
	return out, nil
}

// mapID returns the container's view of a host id.
func mapID(m []idRange, host uint32) uint32 {
	for _, r := range m {
		if host >= r.outside && uint64(host) < uint64(r.outside)+uint64(r.count) {
			return host - r.outside + r.inside
		}
	}
	return overflowID
}

// inContainer reports whether the thread tid belongs to the container:
// it shares the container's pid namespace, or its mount namespace (a
// process of the container that made a pid namespace of its own).
//
// A thread found in the container is remembered for tidMemory, which
// saves the two lookups in /proc for the bursts of events a process
// makes. A thread id is reused only after the kernel's pid counter has
// gone round, so within that time the answer stays right; a thread found
// outside is never remembered, so no container access is ever missed.
func (c *fanotifyCollector) inContainer(tid int) bool {
	if tid == c.self {
		return false
	}
	now := time.Now()
	if until, ok := c.tids[tid]; ok && now.Before(until) {
		return true
	}
	if !c.checkTid(tid) {
		return false
	}
	if len(c.tids) >= maxTids {
		clear(c.tids)
	}
	c.tids[tid] = now.Add(tidMemory)
	return true
}

// How long and how many container threads inContainer remembers.
const (
	tidMemory = 100 * time.Millisecond
	maxTids   = 4096
)

// checkTid compares the thread's namespaces with the container's.
func (c *fanotifyCollector) checkTid(tid int) bool {
	c.pathBuf = strconv.AppendInt(append(c.pathBuf[:0], "/proc/"...), int64(tid), 10)
	base := len(c.pathBuf)

	var st unix.Stat_t
	if unix.Stat(string(append(c.pathBuf, "/ns/pid"...)), &st) == nil &&
		st.Dev == c.cont.pidNS.dev && st.Ino == c.cont.pidNS.ino {
		return true
	}
	c.pathBuf = c.pathBuf[:base]
	if unix.Stat(string(append(c.pathBuf, "/ns/mnt"...)), &st) == nil &&
		st.Dev == c.cont.mntNS.dev && st.Ino == c.cont.mntNS.ino {
		return true
	}
	return false
}

// creds are a thread's real and effective ids, as the host sees them.
type creds struct {
	uid, euid, gid, egid uint32
}

// readCreds reads a thread's ids from /proc/<tid>/status.
func readCreds(tid int) (creds, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return creds{}, err
	}
	var c creds
	found := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		var dst [2]*uint32
		switch {
		case bytes.HasPrefix(line, []byte("Uid:")):
			dst = [2]*uint32{&c.uid, &c.euid}
		case bytes.HasPrefix(line, []byte("Gid:")):
			dst = [2]*uint32{&c.gid, &c.egid}
		default:
			continue
		}
		f := bytes.Fields(line[4:])
		if len(f) < 2 {
			return creds{}, fmt.Errorf("/proc/%d/status: malformed %q", tid, line)
		}
		for i := range dst {
			v, err := strconv.ParseUint(string(f[i]), 10, 32)
			if err != nil {
				return creds{}, fmt.Errorf("/proc/%d/status: malformed %q", tid, line)
			}
			*dst[i] = uint32(v)
		}
		found++
	}
	if found != 2 {
		return creds{}, fmt.Errorf("/proc/%d/status: no Uid or Gid line", tid)
	}
	return c, nil
}

// syscallTries bounds the retries of /proc/<tid>/syscall while the thread
// is still running (at 10 µs each).
const syscallTries = 1000

// Open system call numbers, and the argument holding the flags (for
// openat2, the argument is a struct open_how whose first field is the
// flags).
type openCall struct {
	flagsArg int
	how      bool // the argument points to a struct open_how
	creat    bool // creat(2): O_CREAT|O_WRONLY|O_TRUNC
}

var openCalls = map[string]map[int64]openCall{
	"amd64": {2: {flagsArg: 1}, 257: {flagsArg: 2}, 437: {flagsArg: 2, how: true},
		85: {creat: true}, 304: {flagsArg: 2}},
	"arm64": {56: {flagsArg: 2}, 437: {flagsArg: 2, how: true}, 265: {flagsArg: 2}},
}

// openFlags returns the flags of the open a thread is blocked in, read
// from /proc/<tid>/syscall while the thread waits for the answer to its
// permission event. ok is false when the thread is not in a known open
// call (an open made by the kernel, io_uring, another architecture).
func openFlags(tid int) (flags uint64, ok bool) {
	dir := "/proc/" + strconv.Itoa(tid)
	var data []byte
	for try := 0; ; try++ {
		var err error
		if data, err = os.ReadFile(dir + "/syscall"); err != nil {
			return 0, false
		}
		// The event can arrive before the thread is asleep waiting for
		// its answer; until then the kernel shows "running".
		if !bytes.HasPrefix(data, []byte("running")) || try == syscallTries {
			break
		}
		time.Sleep(10 * time.Microsecond)
	}
	f := bytes.Fields(data)
	if len(f) < 7 {
		return 0, false
	}
	nr, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0, false
	}
	call, ok := openCalls[runtime.GOARCH][nr]
	if !ok {
		return 0, false
	}
	if call.creat {
		return unix.O_CREAT | unix.O_WRONLY | unix.O_TRUNC, true
	}

	arg, err := strconv.ParseUint(string(bytes.TrimPrefix(f[1+call.flagsArg], []byte("0x"))), 16, 64)
	if err != nil {
		return 0, false
	}
	if !call.how {
		return arg, true
	}

	mem, err := os.Open(dir + "/mem")
	if err != nil {
		return 0, false
	}
	defer mem.Close()
	var b [8]byte
	if _, err := mem.ReadAt(b[:], int64(arg)); err != nil {
		return 0, false
	}
	return binary.NativeEndian.Uint64(b[:]), true
}

// accessMask turns open flags into the kernel's access mask of
// FILE_CHECK: MAY_READ and MAY_WRITE from the access mode, MAY_WRITE for
// O_TRUNC, MAY_APPEND for O_APPEND.
func accessMask(flags uint64) uint32 {
	var m uint32
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		m = mayRead
	case unix.O_WRONLY:
		m = mayWrite
	default:
		m = mayRead | mayWrite
	}
	if flags&unix.O_TRUNC != 0 {
		m |= mayWrite
	}
	if flags&unix.O_APPEND != 0 {
		m |= mayAppend
	}
	return m
}

// The kernel's access mask bits.
const (
	mayExec   uint32 = 1
	mayWrite  uint32 = 2
	mayRead   uint32 = 4
	mayAppend uint32 = 8
)
