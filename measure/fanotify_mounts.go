package measure

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fanotifyMask is what the collector asks for on each mount: opens and
// executions, as permission events, so that a file's entry is in the list
// before the process can use the file.
const fanotifyMask = unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM

// mountMark is one marked mount of the container.
type mountMark struct {
	// dest is the path in the container that anchor stands for: the
	// mount's destination ("/" for the root filesystem).
	dest string
	// anchor is an O_PATH descriptor of that place, in the container's
	// mount namespace; the kernel's path of it is the prefix to strip
	// from the path of an event's file.
	anchor int
	// prefix is the last path seen for anchor.
	prefix string
}

// mountInfo is one line of /proc/<pid>/mountinfo.
type mountInfo struct {
	id     uint64
	point  string // mount point, relative to the process's root
	fstype string
}

// pseudoFS are file system types with nothing a policy measures; their
// mounts are not marked.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "devpts": true,
	"mqueue": true, "securityfs": true, "debugfs": true, "tracefs": true, "bpf": true,
	"fusectl": true, "configfs": true, "pstore": true, "binfmt_misc": true,
	"autofs": true, "hugetlbfs": true, "nsfs": true, "efivarfs": true, "selinuxfs": true,
	// Device nodes only: a runtime masks paths under /proc with binds of
	// /dev/null.
	"devtmpfs": true,
}

// readMountInfo parses /proc/<pid>/mountinfo.
func readMountInfo(pid int) ([]mountInfo, error) {
	name := fmt.Sprintf("/proc/%d/mountinfo", pid)
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("container mounts: %w", err)
	}
	return parseMountInfo(name, data)
}

// parseMountInfo parses the lines of a mountinfo file: "id parent
// major:minor root point options [optional...] - fstype source super".
func parseMountInfo(name string, data []byte) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, w := range f {
			if w == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+1 >= len(f) {
			return nil, fmt.Errorf("%s line %d: malformed", name, n)
		}
		id, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: mount id %q", name, n, f[0])
		}
		out = append(out, mountInfo{id: id, point: unescapeOctal(f[4]), fstype: f[sep+1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// plannedMark is a mount to mark: where it is in the container's
// namespace (a path under /proc/<pid>/root) and what it is in the
// container.
type plannedMark struct {
	path string // as seen through /proc/<pid>/root
	dest string
}

// planMarks chooses the mounts of the container. Before pivot_root (a
// createRuntime hook) the mount points are host paths, and the root
// filesystem is rootfs: the mount there, or the mount holding that folder
// (then names are taken relative to rootfs). After pivot_root the mount
// points are the container's paths. Pseudo file systems and mounts under
// /proc and /sys are left out.
func planMarks(mounts []mountInfo, rootfs string, pivoted bool) []plannedMark {
	if pivoted || rootfs == "" {
		rootfs = "/"
	}

	var out []plannedMark
	atRoot := false
	for _, m := range mounts {
		atRoot = atRoot || m.point == rootfs
	}
	if !atRoot {
		out = append(out, plannedMark{path: rootfs, dest: "/"})
	}

	for _, m := range mounts {
		if pseudoFS[m.fstype] || !under(m.point, rootfs) {
			continue
		}
		dest := "/" + strings.TrimPrefix(strings.TrimPrefix(m.point, rootfs), "/")
		out = append(out, plannedMark{path: m.point, dest: dest})
	}
	return out
}

// under reports whether p is dir or a path below it.
func under(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// markMounts marks the container's mounts for open and exec permission
// events. Each mount is reached through /proc/<pid>/root, so the path
// walk happens in the container's mount namespace.
func (m *Marks) markMounts(spec Spec) error {
	mounts, err := readMountInfo(spec.Pid)
	if err != nil {
		return err
	}
	rootfs := spec.Rootfs
	if rootfs != "" && !filepath.IsAbs(rootfs) && spec.Bundle != "" {
		rootfs = filepath.Join(spec.Bundle, rootfs) // config.json's root.path
	}
	if rootfs != "" {
		rootfs = filepath.Clean(rootfs)
		if real, err := filepath.EvalSymlinks(rootfs); err == nil {
			rootfs = real
		}
	}

	pivoted, err := hasOwnRoot(spec.Pid)
	if err != nil {
		return err
	}
	plan := planMarks(mounts, rootfs, pivoted)
	if len(plan) == 0 {
		return fmt.Errorf("container mounts: none to mark (root filesystem %q)", rootfs)
	}

	procRoot := fmt.Sprintf("/proc/%d/root", spec.Pid)
	for _, p := range plan {
		at := procRoot + p.path
		err := unix.FanotifyMark(m.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT,
			fanotifyMask, unix.AT_FDCWD, at)
		if err != nil {
			return fmt.Errorf("fanotify_mark %s (container %s): %w", p.path, p.dest, err)
		}

		anchor, err := unix.Open(at, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("container mount %s: %w", p.path, err)
		}
		var stx unix.Statx_t
		err = unix.Statx(anchor, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx)
		if err != nil {
			unix.Close(anchor)
			return fmt.Errorf("container mount %s: no mount id: %w", p.path, err)
		}
		if stx.Mask&unix.STATX_MNT_ID == 0 {
			unix.Close(anchor)
			return fmt.Errorf("container mount %s: no mount id: statx gave none",
				p.path)
		}
		if old, ok := m.mounts[stx.Mnt_id]; ok {
			// A mount stacked over another shows as the top one.
			unix.Close(old.anchor)
		}
		m.mounts[stx.Mnt_id] = &mountMark{dest: p.dest, anchor: anchor}
	}
	return nil
}

// hasOwnRoot reports whether the process's root folder differs from the
// collector's, that is whether it has already pivoted into its root
// filesystem.
func hasOwnRoot(pid int) (bool, error) {
	var theirs, ours unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/root/", pid), &theirs); err != nil {
		return false, fmt.Errorf("container root: %w", err)
	}
	if err := unix.Stat("/", &ours); err != nil {
		return false, fmt.Errorf("collector root: %w", err)
	}
	return theirs.Dev != ours.Dev || theirs.Ino != ours.Ino, nil
}
