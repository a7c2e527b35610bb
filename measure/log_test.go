package measure

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/tpm"
)

func testEntry(t testing.TB, name string) *ima.Entry {
	t.Helper()
	e, err := ima.NewNG(10, ima.SHA256, sha256Of(name), name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestLogWritesBothListsAndExtendsInOrder(t *testing.T) {
	testLogOrder(t)
}

// Without syncs, and closed while the extender waits for the list to be
// quiet: the same lists and PCR.
func TestLogWithoutSyncExtendsInOrder(t *testing.T) {
	testLogOrder(t, WithoutSync())
}

func testLogOrder(t *testing.T, opts ...LogOption) {
	sw := startTestSwtpm(t)
	dir := t.TempDir()
	l, err := OpenLog(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}

	// Entries before the TPM is attached wait in the list.
	var want []*ima.Entry
	for _, n := range []string{"/a", "/b c", "/d"} {
		e := testEntry(t, n)
		want = append(want, e)
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	tp, err := tpm.Open(sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	l.AttachTPM(tp)
	v := ima.NewViolation(10, "/v")
	want = append(want, v, testEntry(t, "/e"))
	l.Append(v)
	l.Append(want[4])
	if err := l.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	tp.Close() // swtpm serves one connection at a time
	if n, nv := l.Counts(); n != 5 || nv != 1 {
		t.Errorf("counts %d %d, want 5 1", n, nv)
	}
	if inc := l.Incomplete(); len(inc) != 0 {
		t.Errorf("incomplete: %q", inc)
	}

	var bin, ascii []byte
	for _, e := range want {
		bin = e.AppendBinary(bin, binary.NativeEndian)
		ascii, _ = e.AppendASCII(ascii)
	}
	gotBin, _ := os.ReadFile(filepath.Join(dir, BinaryListFile))
	gotASCII, _ := os.ReadFile(filepath.Join(dir, ASCIIListFile))
	if !bytes.Equal(gotBin, bin) || !bytes.Equal(gotASCII, ascii) {
		t.Errorf("lists differ from the entries:\n%s\nwant\n%s", gotASCII, ascii)
	}

	s1, s256 := independentPCR10(want)
	pcrs := readPCR10(t, sw.Addr)
	if !bytes.Equal(pcrs["sha1"], s1) || !bytes.Equal(pcrs["sha256"], s256) {
		t.Errorf("PCR 10 %x %x, want %x %x", pcrs["sha1"], pcrs["sha256"], s1, s256)
	}
}

func TestLogTPMFailureIsIncomplete(t *testing.T) {
	sw := startTestSwtpm(t)
	dir := t.TempDir()
	l, err := OpenLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tpm.Open(sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	l.AttachTPM(tp)
	l.Append(testEntry(t, "/before"))
	time.Sleep(300 * time.Millisecond)

	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(t, "/after"))
	if err := l.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	inc := strings.Join(l.Incomplete(), "; ")
	if !strings.Contains(inc, "entry 1") || !strings.Contains(inc, "1 of 2 entries extended") {
		t.Errorf("incomplete %q, want the failed entry 1 and 1 of 2 extended", inc)
	}

	// No TPM at all is incomplete too.
	l, err = OpenLog(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l.Append(testEntry(t, "/x"))
	l.Close(time.Second)
	if inc := strings.Join(l.Incomplete(), "; "); !strings.Contains(inc, "none attached, 1 entries") {
		t.Errorf("incomplete %q, want no TPM for 1 entry", inc)
	}
}
