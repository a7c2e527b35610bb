package measure

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/policy"
)

// The causes the kernel records with a violation.
const (
	causeToMToU      = "ToMToU"
	causeOpenWriters = "open_writers"
)

// fsInfo is what the policy may ask of a file system.
type fsInfo struct {
	magic uint64
	uuid  [16]byte
}

// check is one policy question an access raises: the kernel asks
// FILE_CHECK at every open, and BPRM_CHECK too when the open is an
// execution.
type check struct {
	fn   policy.Func
	mask uint32
}

// measureEvent measures the file of one open or exec event of thread tid,
// when the thread is the container's and the policy says so.
func (c *fanotifyCollector) measureEvent(fd int, mask uint64, tid int) {
	if !c.inContainer(tid) {
		return
	}

	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH,
		unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, &stx)
	if err != nil {
		c.addIncomplete(fmt.Sprintf("fanotify: statx of an opened file: %v", err))
		return
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFREG {
		c.ignoreInode(fd)
		return
	}
	key := fileKey{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino}
	ver := fileVersion{mtime: stamp(stx.Mtime), ctime: stamp(stx.Ctime), size: stx.Size}

	// The kernel sends an execution's open twice: FAN_OPEN_EXEC_PERM,
	// then FAN_OPEN_PERM for the same open of the same thread. The second
	// is no read of the file and asks the policy nothing.
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		c.lastExec = execOpen{tid: tid, key: key}
		c.executed = true
	} else if c.lastExec.tid == tid && c.lastExec.key == key {
		c.lastExec = execOpen{}
		return
	}

	a := policy.Access{
		FOwner: mapID(c.cont.uidMap, stx.Uid),
		FGroup: mapID(c.cont.gidMap, stx.Gid),
	}
	fsi := c.fsInfo(fd, key.dev)
	a.FSMagic, a.FSUUID = fsi.magic, fsi.uuid
	if c.needCreds {
		cr, err := readCreds(tid)
		if err != nil {
			// The thread is blocked on this event, so its status is
			// there unless it was killed meanwhile.
			c.addIncomplete(fmt.Sprintf("fanotify: ids of thread %d: %v", tid, err))
			return
		}
		a.UID, a.EUID = mapID(c.cont.uidMap, cr.uid), mapID(c.cont.uidMap, cr.euid)
		a.GID, a.EGID = mapID(c.cont.gidMap, cr.gid), mapID(c.cont.gidMap, cr.egid)
	}

	checks := []check{{policy.FileCheck, mayExec}, {policy.BprmCheck, mayExec}}
	writers := false
	if mask&unix.FAN_OPEN_EXEC_PERM == 0 {
		var m uint32
		m, writers = openMask(fd, tid)
		checks = []check{{policy.FileCheck, m}}
	}

	ev := &fileEvent{fd: fd, key: key, ver: ver, stx: &stx}
	done := true // every entry the policy asks for is in the list
	var fileCheck policy.Decision
	for _, ch := range checks {
		a.Func, a.Mask = ch.fn, ch.mask
		d := c.policy.Evaluate(a)
		if ch.fn == policy.FileCheck {
			fileCheck = d
			c.violations(ev, ch.mask, d, writers)
		}
		if d.Measure && !c.measure(ev, d) {
			done = false
		}
	}
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 && done && c.execsFixed {
		// Without its execution event, an execution's open is taken
		// for a read: only where the policy answers a read as it
		// answers that open may the event go.
		a.Func, a.Mask = policy.FileCheck, mayRead
		if d := c.policy.Evaluate(a); d.Measure == fileCheck.Measure &&
			(!d.Measure || d.PCR == fileCheck.PCR && d.Template == fileCheck.Template) {
			c.ignoreExecs(fd)
		}
	}
}

// ignoreExecs stops the execution events of a file whose execution has
// every entry the policy asks for: until the file's content changes, a
// later execution could add none (the policy's answer stays the same:
// execsFixed), and the kernel checks no violation at an execution (it
// does at the open that comes with it, which is still sent, and then
// handled as a read, which the caller made sure the policy answers as it
// answers that open). A write to the file
// clears the ignore mask, and its next execution is sent again. A
// failure only costs events.
func (c *fanotifyCollector) ignoreExecs(fd int) {
	unix.FanotifyMark(c.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK,
		unix.FAN_OPEN_EXEC_PERM, fd, "")
}

// ignoreInode stops the events of a file that is not a regular file
// (/dev/null, a FIFO): the kernel measures regular files only, so none of
// its accesses can give an entry or a violation, whatever changes. The
// ignore mask survives modification. A failure only costs events.
func (c *fanotifyCollector) ignoreInode(fd int) {
	unix.FanotifyMark(c.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK|
		unix.FAN_MARK_IGNORED_SURV_MODIFY, fanotifyMask, fd, "")
}

// execOpen is the last execution seen: its thread and file.
type execOpen struct {
	tid int
	key fileKey
}

// fileEvent is the file of the event being handled.
type fileEvent struct {
	fd   int
	key  fileKey
	ver  fileVersion
	stx  *unix.Statx_t
	name string // filled in once needed
}

// stamp returns a statx time in nanoseconds.
func stamp(t unix.StatxTimestamp) int64 {
	return t.Sec*1e9 + int64(t.Nsec)
}

// openMask returns the access mask of an open and whether the file is
// open for write (by anyone, this open included). A read lease, which the
// kernel grants only when nobody has the file open for write, answers
// the common case with two fcntl calls; otherwise the flags come from the
// open call the thread is blocked in.
func openMask(fd, tid int) (mask uint32, writers bool) {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	if err == nil {
		unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		return mayRead, false
	}
	writers = errors.Is(err, unix.EAGAIN)

	// Flags that cannot be read count as a read; the writer may be this
	// very open, so no open_writers violation is claimed for it.
	flags, ok := openFlags(tid)
	if !ok {
		return mayRead, false
	}
	return accessMask(flags), writers
}

// violations records the violations the kernel records at this open: an
// open for write of a file measured and still open for read (ToMToU),
// and a measured read of a file open for write (open_writers), each once
// per version of the file.
func (c *fanotifyCollector) violations(ev *fileEvent, mask uint32, d policy.Decision,
	writers bool) {
	if mask&mayWrite != 0 {
		st := c.cache.peek(ev.key)
		if st == nil || !st.mayToMToU || !openForRead(ev.key, c.self) {
			return
		}
		st.mayToMToU = false
		c.violation(ev, causeToMToU)
		return
	}

	if !d.Measure {
		return
	}
	st := c.cache.get(ev.key, ev.ver)
	st.mayToMToU = true
	if writers && !st.openWriters {
		st.openWriters = true
		c.violation(ev, causeOpenWriters)
	}
}

// violation appends a violation entry for the file.
func (c *fanotifyCollector) violation(ev *fileEvent, cause string) {
	name := c.eventName(ev)
	e := ima.NewViolationHash(MeasurementPCR, c.algo, name)
	if err := c.log.Append(e); err != nil {
		c.addIncomplete(fmt.Sprintf("%s violation of %q not recorded: %v", cause, name, err))
	}
}

// measure appends the file's entry, unless its current version already
// has one for that PCR. It reports whether the version has its entry.
func (c *fanotifyCollector) measure(ev *fileEvent, d policy.Decision) bool {
	pcr := d.PCR
	if pcr <= 0 || pcr >= 64 {
		pcr = MeasurementPCR
	}
	st := c.cache.get(ev.key, ev.ver)
	if st.measured&(1<<pcr) != 0 {
		return true
	}

	name := c.eventName(ev)
	digest, err := c.hashFile(ev.fd, ev.stx.Size)
	if err != nil {
		c.addIncomplete(fmt.Sprintf("%q not measured: %v", name, err))
		return false
	}
	e, err := ima.NewNG(uint32(pcr), c.algo, digest, name)
	if err == nil {
		err = c.setTemplate(e, d.Template)
	}
	if err == nil {
		err = c.log.Append(e)
	}
	if err != nil {
		c.addIncomplete(fmt.Sprintf("%q not recorded: %v", name, err))
		return false
	}
	st.measured |= 1 << pcr
	return true
}

// setTemplate turns an ima-ng entry into one of the template a rule
// asks for. ima-sig is ima-ng with a signature field, empty here: the
// collector does not read security.ima. Other templates are recorded as
// ima-ng, noted once as incomplete.
func (c *fanotifyCollector) setTemplate(e *ima.Entry, template string) error {
	switch template {
	case "", ima.TemplateIMANG:
		return nil
	case ima.TemplateIMASig:
		e.Template = ima.TemplateIMASig
		e.Data = append(e.Data, 0, 0, 0, 0)
		sum := sha1.Sum(e.Data)
		e.Digest = sum[:]
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	reason := fmt.Sprintf("template %q is recorded as ima-ng", template)
	for _, r := range c.incomplete {
		if r == reason {
			return nil
		}
	}
	c.incomplete = append(c.incomplete, reason)
	return nil
}

// hashFile hashes the event's file through its descriptor: its first
// size bytes, the size at the open, as the kernel hashes i_size bytes.
func (c *fanotifyCollector) hashFile(fd int, size uint64) ([]byte, error) {
	h, err := c.algo.New()
	if err != nil {
		return nil, err
	}
	var off int64
	for uint64(off) < size {
		buf := c.hashBuf
		if left := size - uint64(off); left < uint64(len(buf)) {
			buf = buf[:left]
		}
		n, err := unix.Pread(fd, buf, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading at %d: %w", off, err)
		}
		if n == 0 {
			break // truncated meanwhile: the kernel hashes what it reads
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	return h.Sum(nil), nil
}

// eventName returns the file's name as the container sees it: the
// kernel's path of the event's descriptor, less the path of its mount's
// place in the container, plus that place's name in the container.
func (c *fanotifyCollector) eventName(ev *fileEvent) string {
	if ev.name != "" {
		return ev.name
	}

	link := c.readlinkFD(ev.fd)
	if ev.stx.Nlink == 0 {
		link = strings.TrimSuffix(link, " (deleted)")
	}
	ev.name = link

	m := c.marks[ev.stx.Mnt_id]
	if m == nil {
		return ev.name
	}
	rel, ok := cutPath(link, m.prefix)
	if !ok || m.prefix == "" {
		m.prefix = c.readlinkFD(m.anchor)
		if rel, ok = cutPath(link, m.prefix); !ok {
			return ev.name
		}
	}
	switch {
	case m.dest == "/" && rel == "":
		ev.name = "/"
	case m.dest == "/":
		ev.name = rel
	default:
		ev.name = m.dest + rel
	}
	return ev.name
}

// cutPath returns p less the folder prefix, keeping the leading '/'.
func cutPath(p, prefix string) (string, bool) {
	if prefix == "" {
		return "", false
	}
	if prefix == "/" {
		return p, strings.HasPrefix(p, "/")
	}
	if p == prefix {
		return "", true
	}
	if strings.HasPrefix(p, prefix) && p[len(prefix)] == '/' {
		return p[len(prefix):], true
	}
	return "", false
}

// readlinkFD returns the kernel's path of one of the collector's
// descriptors.
func (c *fanotifyCollector) readlinkFD(fd int) string {
	path := "/proc/self/fd/" + strconv.Itoa(fd)
	buf := make([]byte, 4096)
	for {
		n, err := unix.Readlink(path, buf)
		if err != nil {
			return ""
		}
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// fsInfo returns the magic number and UUID of the file system of a file,
// kept per device.
func (c *fanotifyCollector) fsInfo(fd int, dev uint64) fsInfo {
	if fi, ok := c.fs[dev]; ok {
		return fi
	}
	var fi fsInfo
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) == nil {
		fi.magic = uint64(uint32(sfs.Type))
	}
	fi.uuid = fsUUID(fd)
	c.fs[dev] = fi
	return fi
}

// fsUUIDIoctl is FS_IOC_GETFSUUID, _IOR(0x15, 0, struct fsuuid2).
const fsUUIDIoctl = 0x80111500

// fsUUID returns the file system's UUID as the kernel keeps it (the one
// the policy's fsuuid= compares), zero where the kernel cannot tell it
// (before 6.5, or a file system without one).
func fsUUID(fd int) [16]byte {
	var v struct {
		len  uint8
		uuid [16]byte
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsUUIDIoctl,
		uintptr(unsafe.Pointer(&v)))
	if errno != 0 || v.len != 16 {
		return [16]byte{}
	}
	return v.uuid
}

// openForRead reports whether any process other than the collector has
// the file open read-only, which is what the kernel's i_readcount
// counts. It walks /proc, so it runs only for an open for write of a
// file measured earlier.
func openForRead(k fileKey, self int) bool {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, f := range fds {
			var st, lst unix.Stat_t
			if unix.Stat(dir+f.Name(), &st) != nil || st.Dev != k.dev || st.Ino != k.ino {
				continue
			}
			// The link's mode shows how the file is open.
			if unix.Lstat(dir+f.Name(), &lst) == nil && lst.Mode&0o222 == 0 {
				return true
			}
		}
	}
	return false
}
