package measure

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imans-project/imans/ima"
)

// listEntry is an entry as a test checks it: name and file digest.
type listEntry struct {
	name   string
	digest string // hex, "" for a violation
}

// readList reads the binary list of dir.
func readList(t testing.TB, dir string) []*ima.Entry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, BinaryListFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*ima.Entry
	rd := ima.NewBinaryReader(f)
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("binary list entry %d: %v", len(out), err)
		}
		out = append(out, e)
	}
}

// summarize turns entries into names and digests.
func summarize(t testing.TB, entries []*ima.Entry) []listEntry {
	t.Helper()
	var out []listEntry
	for i, e := range entries {
		name, err := e.FileName()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		le := listEntry{name: name}
		if !e.IsViolation() {
			algo, d, err := e.FileDigest()
			if err != nil || algo != ima.SHA256 {
				t.Fatalf("entry %d: digest %s, %v", i, algo, err)
			}
			le.digest = hex.EncodeToString(d)
		}
		out = append(out, le)
	}
	return out
}

func checkEntries(t testing.TB, got, want []listEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d", len(got), len(want))
	}
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w listEntry
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("entry %d: got %q %s, want %q %s", i, g.name, g.digest, w.name, w.digest)
		}
	}
}

func hexSHA256(s string) string { return hex.EncodeToString(sha256Of(s)) }

func TestFanotifyExactEntries(t *testing.T) {
	demo := "#!/bin/sh\necho demo\n"
	data := "hello from a data file\n"
	rootfs := newRootfs(t, map[string]string{
		"app/demo.sh": demo,
		"data/a.txt":  data,
	})
	bb, err := os.ReadFile(filepath.Join(rootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}

	c := startContainer(t, rootfs, "/app/demo.sh; cat /data/a.txt; "+
		"cat /data/a.txt")
	dir := t.TempDir()
	st := collect(t, Spec{ID: "t1", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		func() { c.run(t) })
	t.Logf("status %+v", st)

	got := summarize(t, readList(t, dir))
	want := []listEntry{
		{"/bin/busybox", hexSHA256(string(bb))},
		{"/app/demo.sh", hexSHA256(demo)},
		{"/data/a.txt", hexSHA256(data)},
	}
	checkEntries(t, got, want)
	if st.Entries != len(want) {
		t.Errorf("status counts %d entries, want %d", st.Entries, len(want))
	}
	_ = bytes.Equal
}

func TestFanotifyChangedFileMeasuredAgain(t *testing.T) {
	rootfs := newRootfs(t, map[string]string{"data/a.txt": "version one\n"})
	c := startContainer(t, rootfs, "cat /data/a.txt; cat /data/a.txt; "+
		"echo 'version two' >/data/a.txt; cat /data/a.txt; cat /data/a.txt")
	dir := t.TempDir()
	collect(t, Spec{ID: "t4", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		func() { c.run(t) })

	got := summarize(t, readList(t, dir))
	if len(got) > 0 {
		got = got[1:] // /bin/busybox
	}
	checkEntries(t, got, []listEntry{
		{"/data/a.txt", hexSHA256("version one\n")},
		{"/data/a.txt", hexSHA256("version two\n")},
	})
}

func TestFanotifyNotCoveredByPolicy(t *testing.T) {
	rootfs := newRootfs(t, map[string]string{"data/a.txt": "data\n", "tmp/.keep": ""})
	setup := `mount -t tmpfs tmpfs "$ROOTFS/tmp"`

	// The built-in policy does not measure tmpfs.
	c := startContainer(t, rootfs, "echo scratch >/tmp/s.txt; cat /tmp/s.txt; cat /data/a.txt",
		"SETUP="+setup)
	dir := t.TempDir()
	collect(t, Spec{ID: "t5", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		func() { c.run(t) })
	got := summarize(t, readList(t, dir))
	if len(got) > 0 {
		got = got[1:]
	}
	checkEntries(t, got, []listEntry{{"/data/a.txt", hexSHA256("data\n")}})

	// A policy that measures executions only gives no entry for a read.
	c = startContainer(t, rootfs, "cat /data/a.txt")
	dir = t.TempDir()
	collect(t, Spec{ID: "t6", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs,
		Policy: "measure func=BPRM_CHECK\n"}, func() { c.run(t) })
	bb, _ := os.ReadFile(filepath.Join(rootfs, "bin/busybox"))
	checkEntries(t, summarize(t, readList(t, dir)),
		[]listEntry{{"/bin/busybox", hexSHA256(string(bb))}})

	// A policy that measures reads only gives no entry for an
	// execution (the kernel's second event of an exec open is no read).
	c = startContainer(t, rootfs, "cat /data/a.txt")
	dir = t.TempDir()
	collect(t, Spec{ID: "t6b", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs,
		Policy: "measure func=FILE_CHECK mask=MAY_READ\n"}, func() { c.run(t) })
	checkEntries(t, summarize(t, readList(t, dir)),
		[]listEntry{{"/data/a.txt", hexSHA256("data\n")}})
}

// A volume bind-mounted into the container is named where the container
// sees it: at /mnt/vol, and under /sys too, where a real file system is
// marked like any other (only pseudo file systems are left out).
func TestFanotifyBindMountNames(t *testing.T) {
	for _, c := range []struct{ dest, file, body, workload string }{
		{"/mnt/vol", "x.txt", "on a volume\n", "cat /mnt/vol/x.txt"},
		{"/sys/vol", "x.sh", "#!/bin/sh\necho under sys\n", "/sys/vol/x.sh"},
	} {
		rootfs := newRootfs(t, map[string]string{c.dest[1:] + "/.keep": ""})
		vol := t.TempDir()
		writeFile(t, filepath.Join(vol, c.file), c.body, 0o755)

		ct := startContainer(t, rootfs, c.workload,
			"SETUP=mount --bind "+vol+` "$ROOTFS`+c.dest+`"`)
		dir := t.TempDir()
		collect(t, Spec{ID: "t7", Dir: dir, Pid: ct.cmd.Process.Pid, Rootfs: rootfs},
			func() { ct.run(t) })
		var got []listEntry
		for _, e := range summarize(t, readList(t, dir)) {
			if e.name != "/bin/busybox" {
				got = append(got, e)
			}
		}
		checkEntries(t, got, []listEntry{{c.dest + "/" + c.file, hexSHA256(c.body)}})
	}
}

func TestFanotifyOddNamesRoundTrip(t *testing.T) {
	names := []string{"/data/with space.txt", "/data/new\nline.txt", "/data/bad\xff\xfe.txt"}
	files := map[string]string{}
	for i, n := range names {
		files[n[1:]] = fmt.Sprintf("file %d\n", i)
	}
	rootfs := newRootfs(t, files)
	c := startContainer(t, rootfs, `cat "/data/with space.txt"; `+
		`cat "$(printf '/data/new\nline.txt')"; cat "$(printf '/data/bad\377\376.txt')"`)
	dir := t.TempDir()
	collect(t, Spec{ID: "t8", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		func() { c.run(t) })

	want := []listEntry{
		{"/data/with_space.txt", hexSHA256("file 0\n")},
		{"/data/new\nline.txt", hexSHA256("file 1\n")},
		{"/data/bad\xff\xfe.txt", hexSHA256("file 2\n")},
	}
	got := summarize(t, readList(t, dir))
	if len(got) > 0 {
		got = got[1:]
	}
	checkEntries(t, got, want)

	// The ASCII list has the same entries, names raw.
	f, err := os.Open(filepath.Join(dir, ASCIIListFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ascii []*ima.Entry
	rd := ima.NewASCIIReader(f)
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ASCII list entry %d: %v", len(ascii), err)
		}
		ascii = append(ascii, e)
	}
	got = summarize(t, ascii)
	if len(got) > 0 {
		got = got[1:]
	}
	checkEntries(t, got, want)
}

func TestFanotifyViolations(t *testing.T) {
	rootfs := newRootfs(t, map[string]string{"data/v.txt": "read me\n",
		"data/w.txt": "written\n"})
	c := startContainer(t, rootfs,
		// ToMToU: opened for write while open for read.
		"exec 3</data/v.txt; echo changed >/data/v.txt; exec 3<&-; "+
			// open_writers: read while open for write.
			"exec 4>>/data/w.txt; cat /data/w.txt; exec 4>&-")
	dir := t.TempDir()
	st := collect(t, Spec{ID: "t9", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		func() { c.run(t) })

	got := summarize(t, readList(t, dir))
	if len(got) > 0 {
		got = got[1:]
	}
	checkEntries(t, got, []listEntry{
		{"/data/v.txt", hexSHA256("read me\n")},
		{"/data/v.txt", ""},
		{"/data/w.txt", hexSHA256("written\n")},
		{"/data/w.txt", ""},
	})
	if st.Violations != 2 {
		t.Errorf("status counts %d violations, want 2", st.Violations)
	}
}

func TestFanotifyQuickExit(t *testing.T) {
	rootfs := newRootfs(t, map[string]string{"app/q.sh": "#!/bin/sh\nexit 0\n"})
	c := startContainer(t, rootfs, "exec /app/q.sh")
	dir := t.TempDir()
	collect(t, Spec{ID: "t10", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		func() { c.run(t) })
	got := summarize(t, readList(t, dir))
	if len(got) > 0 {
		got = got[1:]
	}
	checkEntries(t, got, []listEntry{{"/app/q.sh", hexSHA256("#!/bin/sh\nexit 0\n")}})
}

// A script executed again and again gives one entry; changed, its next
// execution gives a second, then no more. The policy measures executions
// only, so the second entry comes from an execution event: the ignore
// mask that spares the kernel's repeated execution events must have been
// cleared by the write.
func TestFanotifyExecutedAgainAndChanged(t *testing.T) {
	v1, v2 := "#!/bin/sh\n: one\n", "#!/bin/sh\n: two\n"
	rootfs := newRootfs(t, map[string]string{"app/run.sh": v1, "data/v2": v2})
	c := startContainer(t, rootfs, "/app/run.sh; /app/run.sh; /app/run.sh; "+
		"cat /data/v2 >/app/run.sh; /app/run.sh; /app/run.sh")
	dir := t.TempDir()
	collect(t, Spec{ID: "again", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs,
		Policy: "measure func=BPRM_CHECK\n"}, func() { c.run(t) })
	got := summarize(t, readList(t, dir))
	var scripts []listEntry
	for _, e := range got {
		if e.name == "/app/run.sh" {
			scripts = append(scripts, e)
		}
	}
	checkEntries(t, scripts, []listEntry{
		{"/app/run.sh", hexSHA256(v1)},
		{"/app/run.sh", hexSHA256(v2)},
	})
}
