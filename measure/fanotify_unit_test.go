package measure

import (
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/policy"
)

// mountinfoPrePivot is the mountinfo of a runc container's init at
// createRuntime (trimmed): the host's mounts, then the root filesystem
// bind-mounted on itself and the container's mounts below it.
const mountinfoPrePivot = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
24 22 0:22 / /run rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
410 22 254:0 /var/lib/b1/rootfs /var/lib/b1/rootfs rw,relatime - ext4 /dev/vda rw
411 410 0:60 / /var/lib/b1/rootfs/proc rw,relatime - proc proc rw
412 410 0:61 / /var/lib/b1/rootfs/dev rw,nosuid - tmpfs tmpfs rw,mode=755
413 412 0:62 / /var/lib/b1/rootfs/dev/pts rw - devpts devpts rw
414 410 254:0 /srv/vol /var/lib/b1/rootfs/mnt/my\040vol rw - ext4 /dev/vda rw
415 410 0:63 / /var/lib/b1/rootfs/sys rw - sysfs sysfs ro
416 411 0:5 /null /var/lib/b1/rootfs/proc/kcore rw - devtmpfs udev rw
417 415 254:0 /srv/x /var/lib/b1/rootfs/sys/x rw - ext4 /dev/vda rw
`

func TestParseMountInfo(t *testing.T) {
	m, err := parseMountInfo("mountinfo", []byte(mountinfoPrePivot))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 11 {
		t.Fatalf("%d mounts, want 11", len(m))
	}
	want := mountInfo{id: 414, point: "/var/lib/b1/rootfs/mnt/my vol", fstype: "ext4"}
	if m[7] != want {
		t.Errorf("mount 7: %+v, want %+v", m[7], want)
	}

	for _, bad := range []string{
		"22 1 254:0 / / rw\n",                            // no separator
		"x 1 254:0 / / rw shared:1 - ext4 /dev/vda rw\n", // id
		"22 1 254:0 / / rw shared:1 -\n",                 // no fstype
	} {
		if _, err := parseMountInfo("mountinfo", []byte(bad)); err == nil ||
			!strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: error %v, want one naming line 1", bad, err)
		}
	}
}

func TestPlanMarks(t *testing.T) {
	m, err := parseMountInfo("mountinfo", []byte(mountinfoPrePivot))
	if err != nil {
		t.Fatal(err)
	}

	// Before pivot_root: the root filesystem and what is below it,
	// named in the container; no proc, sys, devpts or /dev/null mask,
	// but a real file system under /sys.
	got := planMarks(m, "/var/lib/b1/rootfs", false)
	want := []plannedMark{
		{"/var/lib/b1/rootfs", "/"},
		{"/var/lib/b1/rootfs/dev", "/dev"},
		{"/var/lib/b1/rootfs/mnt/my vol", "/mnt/my vol"},
		{"/var/lib/b1/rootfs/sys/x", "/sys/x"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pre-pivot plan %v, want %v", got, want)
	}

	// After pivot_root the mount points are the container's.
	post := []mountInfo{
		{1, "/", "overlay"}, {2, "/proc", "proc"}, {3, "/data", "xfs"}, {4, "/dev", "tmpfs"},
	}
	got = planMarks(post, "/var/lib/b1/rootfs", true)
	want = []plannedMark{{"/", "/"}, {"/data", "/data"}, {"/dev", "/dev"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("post-pivot plan %v, want %v", got, want)
	}

	// A root filesystem that is a plain folder: its holder is marked
	// through the folder.
	got = planMarks(m[:3], "/srv/ct/rootfs", false)
	want = []plannedMark{{"/srv/ct/rootfs", "/"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("folder plan %v, want %v", got, want)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:    "/a b",
		`/a\011\012`: "/a\t\n",
		`/a\134b`:    `/a\b`,
		`/a\04`:      `/a\04`,
		`/plain`:     "/plain",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAccessMask(t *testing.T) {
	for _, c := range []struct {
		flags uint64
		want  uint32
	}{
		{unix.O_RDONLY, mayRead},
		{unix.O_WRONLY | unix.O_CREAT, mayWrite},
		{unix.O_RDWR, mayRead | mayWrite},
		{unix.O_WRONLY | unix.O_APPEND, mayWrite | mayAppend},
		{unix.O_RDONLY | unix.O_TRUNC, mayRead | mayWrite},
		{unix.O_RDONLY | unix.O_CLOEXEC | unix.O_LARGEFILE, mayRead},
	} {
		if got := accessMask(c.flags); got != c.want {
			t.Errorf("accessMask(%#o) = %d, want %d", c.flags, got, c.want)
		}
	}
}

func TestMapID(t *testing.T) {
	m := []idRange{{0, 100000, 65536}, {70000, 5000, 10}}
	for host, want := range map[uint32]uint32{
		100000: 0, 101000: 1000, 165535: 65535, 165536: overflowID,
		5000: 70000, 5009: 70009, 5010: overflowID, 0: overflowID,
	} {
		if got := mapID(m, host); got != want {
			t.Errorf("mapID(%d) = %d, want %d", host, got, want)
		}
	}
	if got := mapID([]idRange{{0, 0, 4294967295}}, 4294967294); got != 4294967294 {
		t.Errorf("identity map: %d", got)
	}
}

func TestPolicyNeedsCreds(t *testing.T) {
	for text, want := range map[string]bool{
		"measure func=FILE_CHECK\n":                         false,
		"measure func=FILE_CHECK fowner=0\n":                false,
		"measure func=FILE_CHECK uid=0\n":                   true,
		"dont_measure euid>1000\nmeasure func=BPRM_CHECK\n": true,
		"measure func=FILE_CHECK egid<5\n":                  true,
		"appraise func=BPRM_CHECK uid=0\nmeasure\n":         false,
	} {
		if got := policyNeedsCreds(text); got != want {
			t.Errorf("policyNeedsCreds(%q) = %v, want %v", text, got, want)
		}
	}
}

// An execution's answer is fixed until the file changes unless a measure
// or dont_measure rule looks at ids or owners; the built-in policy's
// dont_appraise fowner=0 does not count.
func TestExecsFixed(t *testing.T) {
	for text, want := range map[string]bool{
		policy.BuiltinText():                                true,
		"measure func=BPRM_CHECK\n":                         true,
		"measure func=BPRM_CHECK fowner=0\n":                false,
		"dont_measure fgroup=5\nmeasure\n":                  false,
		"measure func=FILE_CHECK euid=0\n":                  false,
		"dont_appraise fowner=0\nmeasure func=FILE_CHECK\n": true,
	} {
		pol, err := policy.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		col, err := NewFanotify(Spec{Pid: 1, Dir: t.TempDir(), Policy: pol.Render()})
		if err != nil {
			t.Fatal(err)
		}
		if got := col.(*fanotifyCollector).execsFixed; got != want {
			t.Errorf("execsFixed of %q = %v, want %v", text, got, want)
		}
	}
}

func TestCutPath(t *testing.T) {
	for _, c := range []struct {
		p, prefix, rel string
		ok             bool
	}{
		{"/srv/ct/app/x", "/srv/ct", "/app/x", true},
		{"/srv/ct", "/srv/ct", "", true},
		{"/srv/ctx/app", "/srv/ct", "", false},
		{"/app/x", "/", "/app/x", true},
		{"/app/x", "", "", false},
	} {
		rel, ok := cutPath(c.p, c.prefix)
		if rel != c.rel || ok != c.ok {
			t.Errorf("cutPath(%q, %q) = %q %v, want %q %v", c.p, c.prefix, rel, ok, c.rel, c.ok)
		}
	}
}

func TestOnceCacheBound(t *testing.T) {
	c := newOnceCache(1000)
	for i := 0; i < 100000; i++ {
		s := c.get(fileKey{1, uint64(i)}, fileVersion{size: 1})
		s.measured = 1
		if c.len() > 1000 {
			t.Fatalf("cache holds %d files after %d, bound 1000", c.len(), i+1)
		}
	}

	// A new version forgets the old one's state.
	s := c.get(fileKey{2, 1}, fileVersion{mtime: 1})
	s.measured, s.mayToMToU = 1<<10, true
	if s2 := c.get(fileKey{2, 1}, fileVersion{mtime: 1}); s2.measured != 1<<10 {
		t.Errorf("same version lost its state")
	}
	if s3 := c.get(fileKey{2, 1}, fileVersion{mtime: 2}); s3.measured != 0 || s3.mayToMToU {
		t.Errorf("new version kept the old state: %+v", s3)
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte(mountinfoPrePivot))
	f.Add([]byte("1 1 0:1 / / rw - ext4 x rw\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMountInfo("mountinfo", data)
		if err != nil {
			return
		}
		for _, root := range []string{"", "/", "/var/lib/b1/rootfs"} {
			for _, p := range planMarks(m, root, false) {
				if !strings.HasPrefix(p.dest, "/") {
					t.Fatalf("dest %q not absolute", p.dest)
				}
			}
		}
	})
}
