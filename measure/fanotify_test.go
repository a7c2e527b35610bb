package measure

import (
	"bytes"
	"encoding/hex"
	"errors"
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
