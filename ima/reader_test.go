package ima

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// field builds a template field with its little-endian length.
func field(b []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// mk builds an entry of any template from its fields, with its sha1
// template hash.
func mk(t testing.TB, template string, fields ...[]byte) *Entry {
	t.Helper()
	var data []byte
	for _, f := range fields {
		data = append(data, field(f)...)
	}
	d := sha1.Sum(data)
	return &Entry{PCR: 10, Digest: d[:], Template: template, Data: data}
}

// dng builds a d-ng field.
func dng(algo string, digest []byte) []byte {
	return append([]byte(algo+":\x00"), digest...)
}

// sampleEntries covers every built-in template and awkward names.
func sampleEntries(t testing.TB) []*Entry {
	t.Helper()
	d32 := unhex(t, helloSHA256)
	var out []*Entry
	for _, name := range []string{"boot_aggregate", "/usr/bin/a b", "/tmp/new\nline",
		"/bad\xff\xfeutf8", "/tab\there", "/two\n\nnewlines\n"} {
		e, err := NewNG(10, SHA256, d32, name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	out = append(out, NewViolation(10, "/var/log/x"))

	sig := unhex(t, "030204aabbccdd0004"+"01020304")
	out = append(out,
		mk(t, TemplateIMASig, dng("sha256", d32), []byte("/bin/sig\x00"), sig),
		mk(t, TemplateIMASig, dng("sha256", d32), []byte("/bin/nosig\x00"), nil),
		mk(t, TemplateIMASigv2, []byte("ima:sha256:\x00"+string(d32)), []byte("/v2\x00"), sig),
		mk(t, TemplateIMANGv2, []byte("verity:sha256:\x00"+string(d32)), []byte("/v\x00")),
		mk(t, TemplateIMABuf, dng("sha256", d32), []byte("kexec-cmdline\x00"),
			[]byte("root=/dev/ram0 ima_policy=tcb")),
		mk(t, TemplateIMAModsig, dng("sha512", make([]byte, 64)), []byte("/m.ko\x00"), sig,
			dng("sha256", d32), []byte{1, 2, 3}),
		mk(t, TemplateEVMSig, dng("sha1", make([]byte, 20)), []byte("/e\x00"), sig,
			[]byte("security.ima|security.evm"), []byte{0, 4}, []byte{9, 9, 9, 9},
			[]byte{0xe8, 3, 0, 0}, []byte{0xe9, 3, 0, 0}, []byte{0xed, 0x81}),
		mk(t, "my-tmpl", []byte("raw"), []byte{0, 1, 2}),
	)
	return out
}

func sameEntry(t testing.TB, i int, got, want *Entry) {
	t.Helper()
	if got.PCR != want.PCR || got.Template != want.Template ||
		!bytes.Equal(got.Digest, want.Digest) || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("entry %d:\n got %d %x %s %x\nwant %d %x %s %x", i, got.PCR, got.Digest,
			got.Template, got.Data, want.PCR, want.Digest, want.Template, want.Data)
	}
}

func readAll(t testing.TB, rd *Reader) []*Entry {
	t.Helper()
	var out []*Entry
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("entry %d: %v", len(out), err)
		}
		out = append(out, e)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	want := sampleEntries(t)
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.NativeEndian} {
		var list []byte
		for _, e := range want {
			list = e.AppendBinary(list, order)
		}
		got := readAll(t, NewBinaryReader(bytes.NewReader(list)))
		if len(got) != len(want) {
			t.Fatalf("%d entries, want %d", len(got), len(want))
		}
		for i := range want {
			sameEntry(t, i, got[i], want[i])
		}
		if n, _ := got[2].FileName(); n != "/tmp/new\nline" {
			t.Errorf("name with a newline read as %q", n)
		}
		if n, _ := got[3].FileName(); n != "/bad\xff\xfeutf8" {
			t.Errorf("invalid UTF-8 name read as %q", n)
		}
	}
}

func TestASCIIRoundTrip(t *testing.T) {
	want := sampleEntries(t)
	want = want[:len(want)-1] // an unknown template cannot be read back from ASCII
	var list []byte
	for _, e := range want {
		var err error
		list, err = e.AppendASCII(list)
		if err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, NewASCIIReader(bytes.NewReader(list)))
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		sameEntry(t, i, got[i], want[i])
	}
	if n, _ := got[5].FileName(); n != "/two\n\nnewlines\n" {
		t.Errorf("name with newlines read as %q", n)
	}

	// Auto-detected, and the trailing space of an empty signature.
	rd, err := NewReader(bytes.NewReader(list))
	if err != nil || !rd.ASCII() {
		t.Fatalf("NewReader: ascii=%v %v", rd != nil && rd.ASCII(), err)
	}
	if !strings.Contains(string(list), "/bin/nosig \n") {
		t.Error("an empty signature is not printed as a trailing space")
	}
}

func TestASCIIKnownLine(t *testing.T) {
	// A line as the kernel prints it (values from the writer test).
	line := "10 " + helloTemplateSHA1 + " ima-ng sha256:" + helloSHA256 + " /usr/bin/my_file\n"
	e, err := NewASCIIReader(strings.NewReader(line)).Next()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(e.Data) != helloData {
		t.Errorf("data %x", e.Data)
	}

	// One changed hex digit of the file digest: template hash mismatch.
	bad := strings.Replace(line, "sha256:58", "sha256:59", 1)
	_, err = NewASCIIReader(strings.NewReader(bad)).Next()
	var ie *Error
	if !errors.As(err, &ie) || !errors.Is(err, ErrTemplateHash) || ie.Line != 1 {
		t.Errorf("changed digest: %v", err)
	}
}

func TestBigEndianDetected(t *testing.T) {
	// A list from a big-endian kernel without ima_canonical_fmt: the
	// field lengths inside the data are big-endian too.
	data := appendNGFields(nil, binary.BigEndian, SHA256, unhex(t, helloSHA256), "/be")
	d := sha1.Sum(data)
	e := &Entry{PCR: 10, Digest: d[:], Template: TemplateIMANG, Data: data,
		order: binary.BigEndian}
	list := e.AppendBinary(nil, binary.BigEndian)

	rd := NewBinaryReader(bytes.NewReader(list))
	got := readAll(t, rd)
	if len(got) != 1 || rd.Order() != binary.BigEndian {
		t.Fatalf("%d entries, order %v", len(got), rd.Order())
	}
	if n, err := got[0].FileName(); n != "/be" || err != nil {
		t.Errorf("name %q %v", n, err)
	}

	// Forcing little-endian reads PCR 10 as 0x0a000000: no such layout.
	_, err := NewBinaryReader(bytes.NewReader(list), Canonical()).Next()
	if err == nil {
		t.Error("big-endian list read as canonical without error")
	}
}

func TestPerBankList(t *testing.T) {
	// A sha256 per-bank list: the header holds sha256(data); a second
	// entry from a kernel that pads (sha1 then zeros).
	a, b := helloEntry(t), NewViolation(10, "/v")
	c, _ := NewNG(10, SHA256, make([]byte, 32), "/padded")
	s := sha256.Sum256(a.Data)
	a.Digest = s[:]
	b.Digest = make([]byte, 32)
	c.Digest = append(c.Digest, make([]byte, 12)...)
	var list []byte
	for _, e := range []*Entry{a, b, c} {
		list = e.AppendBinary(list, binary.LittleEndian)
	}

	for _, opts := range [][]Option{{Bank(SHA256)}, nil} {
		rd := NewBinaryReader(bytes.NewReader(list), opts...)
		got := readAll(t, rd)
		if len(got) != 3 || rd.DigestSize() != 32 {
			t.Fatalf("%d entries, digest size %d", len(got), rd.DigestSize())
		}
		if hex.EncodeToString(got[0].Digest) != helloTemplateSHA256 || !got[1].IsViolation() {
			t.Errorf("digests %x %x", got[0].Digest, got[1].Digest)
		}
	}
}

func TestFollow(t *testing.T) {
	var list []byte
	for _, e := range sampleEntries(t)[:3] {
		list = e.AppendBinary(list, binary.LittleEndian)
	}
	path := filepath.Join(t.TempDir(), "binary_runtime_measurements")
	first := len(sampleEntries(t)[0].AppendBinary(nil, binary.LittleEndian))
	if err := os.WriteFile(path, list[:first+10], 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := NewBinaryReader(f, Follow())

	if _, err := rd.Next(); err != nil {
		t.Fatalf("first entry: %v", err)
	}
	if _, err := rd.Next(); !errors.Is(err, ErrPartial) {
		t.Fatalf("partial entry: %v, want ErrPartial", err)
	}

	// The list grows: the same Reader goes on.
	w, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	w.Write(list[first+10:])
	w.Close()
	for i := 1; i < 3; i++ {
		e, err := rd.Next()
		if err != nil {
			t.Fatalf("entry %d after growth: %v", i, err)
		}
		sameEntry(t, i, e, sampleEntries(t)[i])
	}
	if _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v", err)
	}

	// Without Follow, the same cut is a truncation error.
	cut := NewBinaryReader(bytes.NewReader(list[:first+10]))
	cut.Next()
	_, err = cut.Next()
	var ie *Error
	if !errors.Is(err, ErrTruncated) || !errors.As(err, &ie) || ie.Index != 1 ||
		ie.Offset != int64(first) {
		t.Errorf("cut without follow: %v", err)
	}
}

func TestASCIIFollow(t *testing.T) {
	var list []byte
	for _, e := range sampleEntries(t)[:3] {
		list, _ = e.AppendASCII(list)
	}
	src := &growing{data: list, avail: 30}
	rd := NewASCIIReader(src, Follow())
	if _, err := rd.Next(); !errors.Is(err, ErrPartial) {
		t.Fatalf("partial line: %v", err)
	}

	// The list grows up to the newline inside the third name.
	src.avail = bytes.Index(list, []byte("/tmp/new\n")) + len("/tmp/new\n")
	for range 2 {
		if _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rd.Next(); !errors.Is(err, ErrPartial) {
		t.Fatalf("name cut at its newline: %v", err)
	}
	src.avail = len(list)
	got := readAll(t, rd)
	if len(got) != 1 {
		t.Fatalf("%d entries after the rest arrived", len(got))
	}
	if n, _ := got[0].FileName(); n != "/tmp/new\nline" {
		t.Errorf("third name %q", n)
	}
}

func TestFollowDetectsLate(t *testing.T) {
	// A per-bank list of which only 5 bytes exist at first: the digest
	// size is told once the first entry is there, not guessed before.
	e := helloEntry(t)
	s := sha256.Sum256(e.Data)
	e.Digest = s[:]
	list := e.AppendBinary(nil, binary.LittleEndian)

	src := &growing{data: list, avail: 5}
	rd := NewBinaryReader(src, Follow())
	if _, err := rd.Next(); !errors.Is(err, ErrPartial) {
		t.Fatalf("5 bytes: %v", err)
	}
	src.avail = len(list)
	got, err := rd.Next()
	if err != nil || rd.DigestSize() != 32 || hex.EncodeToString(got.Digest) != helloTemplateSHA256 {
		t.Fatalf("whole entry: %v, digest size %d", err, rd.DigestSize())
	}
}

// growing is a reader whose end moves as a test says.
type growing struct {
	data       []byte
	off, avail int
}

func (g *growing) Read(p []byte) (int, error) {
	if g.off >= g.avail {
		return 0, io.EOF
	}
	n := copy(p, g.data[g.off:g.avail])
	g.off += n
	return n, nil
}

func TestReuse(t *testing.T) {
	// With Reuse, each entry is right until the next call, read across
	// the reader's buffer refills.
	want := sampleEntries(t)
	var list []byte
	for range 2000 {
		for _, e := range want {
			list = e.AppendBinary(list, binary.LittleEndian)
		}
	}
	rd := NewBinaryReader(bytes.NewReader(list), Reuse())
	for i := 0; ; i++ {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			if i != 2000*len(want) {
				t.Errorf("%d entries", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sameEntry(t, i, e, want[i%len(want)])
	}
}

func TestASCIINamesOfManyLines(t *testing.T) {
	// A file name may hold as many newlines as PATH_MAX allows, and any
	// user who can have a file measured chooses its name: the ASCII list
	// stays readable, for measured files and violations alike. Lines that
	// look like entries inside a name do not cut it.
	fake := "10 " + strings.Repeat("0", 40) + " ima-ng sha256:" + strings.Repeat("0", 64) +
		" /fake"
	names := []string{
		"/tmp/" + strings.Repeat("\n", 200),
		"/tmp/" + strings.Repeat("x\n", 2000) + "end",
		"/tmp/a\n" + fake + "\n" + fake + "\nb",
		"/tmp/\n\n\n" + strings.Repeat("\n"+fake, 30),
	}
	var want []*Entry
	var list []byte
	for i, name := range names {
		d := make([]byte, 32)
		d[0] = byte(i)
		e, err := NewNG(10, SHA256, d, name)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e, NewViolation(10, name))
	}
	last, _ := NewNG(10, SHA256, make([]byte, 32), "/last")
	want = append(want, last)
	for _, e := range want {
		var err error
		if list, err = e.AppendASCII(list); err != nil {
			t.Fatal(err)
		}
	}

	got := readAll(t, NewASCIIReader(bytes.NewReader(list)))
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		sameEntry(t, i, got[i], want[i])
	}
}
