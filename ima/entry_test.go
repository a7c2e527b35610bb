package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

// The values below were computed apart from this package (Python's
// hashlib over bytes laid out by hand), for sha256("hello\n") recorded as
// "/usr/bin/my file".
const (
	helloSHA256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	helloSHA1   = "f572d396fae9206628714fb2ce00f72e94f2258f"

	// u32 40, "sha256:" NUL, digest; u32 17, "/usr/bin/my_file" NUL.
	helloData = "28000000" + "7368613235363a00" + helloSHA256 +
		"11000000" + "2f7573722f62696e2f6d795f66696c6500"
	helloTemplateSHA1   = "9b71f9d6cb474a3acad7c89a96b4e80aee41978c"
	helloTemplateSHA256 = "51278a72522700bcd825ac9ab1073f9518d084311816b41846306077ad391fe5"
	helloTemplateSHA384 = "88a48aa8db3264a6fe54d104eaf0278fcaff78ceee8db6cc18b356a7e76700619b" +
		"2a5ad9c3d7376b26eccf402c382bbe"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func helloEntry(t testing.TB) *Entry {
	t.Helper()
	e, err := NewNG(10, SHA256, unhex(t, helloSHA256), "/usr/bin/my file")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestNewNG(t *testing.T) {
	e := helloEntry(t)

	if got := hex.EncodeToString(e.Data); got != helloData {
		t.Errorf("data\n got %s\nwant %s", got, helloData)
	}
	if got := hex.EncodeToString(e.Digest); got != helloTemplateSHA1 {
		t.Errorf("template hash %s, want %s", got, helloTemplateSHA1)
	}
	if e.IsViolation() {
		t.Error("IsViolation true for a file entry")
	}

	algo, d, err := e.FileDigest()
	if err != nil || algo != SHA256 || hex.EncodeToString(d) != helloSHA256 {
		t.Errorf("FileDigest = %s %x %v", algo, d, err)
	}
	name, err := e.FileName()
	if err != nil || name != "/usr/bin/my_file" {
		t.Errorf("FileName = %q %v, want /usr/bin/my_file", name, err)
	}
}

func TestNewNGErrors(t *testing.T) {
	if _, err := NewNG(10, "sha999", make([]byte, 32), "/x"); err == nil {
		t.Error("unknown algorithm accepted")
	}
	if _, err := NewNG(10, SHA256, make([]byte, 20), "/x"); err == nil {
		t.Error("a 20-byte sha256 digest accepted")
	}
	if _, err := NewNG(10, SHA256, make([]byte, 32), "/a\x00b"); err == nil {
		t.Error("a name with NUL accepted")
	}
}

func TestExtendDigest(t *testing.T) {
	e := helloEntry(t)
	for bank, want := range map[Hash]string{
		SHA1:   helloTemplateSHA1,
		SHA256: helloTemplateSHA256,
		SHA384: helloTemplateSHA384,
	} {
		got, err := e.ExtendDigest(bank)
		if err != nil || hex.EncodeToString(got) != want {
			t.Errorf("ExtendDigest(%s) = %x %v, want %s", bank, got, err, want)
		}
	}

	p, err := e.PaddedDigest(SHA256)
	if err != nil || hex.EncodeToString(p) != helloTemplateSHA1+strings.Repeat("00", 12) {
		t.Errorf("PaddedDigest(sha256) = %x %v", p, err)
	}
	if _, err := e.ExtendDigest("sha999"); err == nil {
		t.Error("unknown bank accepted")
	}
}

func TestViolation(t *testing.T) {
	v := NewViolation(10, "/tmp/x")

	// u32 40, "sha256:" NUL, 32 zero bytes; u32 7, "/tmp/x" NUL.
	want := "28000000" + "7368613235363a00" + strings.Repeat("00", 32) + "07000000" + "2f746d702f7800"
	if got := hex.EncodeToString(v.Data); got != want {
		t.Errorf("violation data\n got %s\nwant %s", got, want)
	}
	if !v.IsViolation() || !bytes.Equal(v.Digest, make([]byte, 20)) {
		t.Errorf("violation digest %x", v.Digest)
	}
	for _, bank := range []Hash{SHA1, SHA256, SHA384, SHA512} {
		d, err := v.ExtendDigest(bank)
		if err != nil || !bytes.Equal(d, bytes.Repeat([]byte{0xff}, bank.Size())) {
			t.Errorf("violation ExtendDigest(%s) = %x %v", bank, d, err)
		}
	}
}

func TestAppendBinary(t *testing.T) {
	e := helloEntry(t)

	// u32 10; template hash; u32 6, "ima-ng"; u32 65 (the data's
	// length); the data.
	want := "0a000000" + helloTemplateSHA1 + "06000000" + "696d612d6e67" + "41000000" + helloData
	got := hex.EncodeToString(e.AppendBinary(nil, binary.LittleEndian))
	if got != want {
		t.Errorf("binary\n got %s\nwant %s", got, want)
	}

	// Big-endian header integers, data unchanged.
	wantBE := "0000000a" + helloTemplateSHA1 + "00000006" + "696d612d6e67" + "00000041" + helloData
	got = hex.EncodeToString(e.AppendBinary(nil, binary.BigEndian))
	if got != wantBE {
		t.Errorf("big-endian binary\n got %s\nwant %s", got, wantBE)
	}
}

func TestAppendASCII(t *testing.T) {
	e := helloEntry(t)
	line, err := e.AppendASCII(nil)
	want := "10 " + helloTemplateSHA1 + " ima-ng sha256:" + helloSHA256 + " /usr/bin/my_file\n"
	if err != nil || string(line) != want {
		t.Errorf("ascii\n got %q %v\nwant %q", line, err, want)
	}

	// The kernel prints the PCR in two columns.
	e.PCR = 7
	line, _ = e.AppendASCII(nil)
	if !strings.HasPrefix(string(line), " 7 ") {
		t.Errorf("PCR 7 printed as %q", line[:4])
	}

	// A name with a newline and invalid UTF-8 is printed raw.
	e, _ = NewNG(10, SHA256, unhex(t, helloSHA256), "/a\nb\xff")
	line, _ = e.AppendASCII(nil)
	if !strings.HasSuffix(string(line), " /a\nb\xff\n") {
		t.Errorf("raw name printed as %q", line)
	}
}

func TestLegacyIMA(t *testing.T) {
	// The legacy template: sha1 file digest, no length; u32 7, "/bin/sh"
	// with no NUL. Template hash over digest and the name NUL-padded to
	// 256 bytes (computed with Python).
	data := unhex(t, helloSHA1+"07000000"+hex.EncodeToString([]byte("/bin/sh")))
	e := &Entry{PCR: 10, Template: TemplateIMA, Data: data,
		Digest: unhex(t, "bc9903d0c542e82e823463fc44f6c34bbc7f8e43")}

	d, err := e.ExtendDigest(SHA1)
	if err != nil || !bytes.Equal(d, e.Digest) {
		t.Errorf("ima sha1 = %x %v", d, err)
	}
	d, err = e.ExtendDigest(SHA256)
	want := "0ba1c7930cf4157fc3fa027f09e322b2b70dd3abee588e655408fbe7338db582"
	if err != nil || hex.EncodeToString(d) != want {
		t.Errorf("ima sha256 = %x %v", d, err)
	}
	name, err := e.FileName()
	if err != nil || name != "/bin/sh" {
		t.Errorf("ima name %q %v", name, err)
	}
	line, _ := e.AppendASCII(nil)
	wantLine := "10 bc9903d0c542e82e823463fc44f6c34bbc7f8e43 ima " + helloSHA1 + " /bin/sh\n"
	if string(line) != wantLine {
		t.Errorf("ima ascii %q, want %q", line, wantLine)
	}

	// The binary form has no data length for this template.
	bin := e.AppendBinary(nil, binary.LittleEndian)
	wantBin := "0a000000" + hex.EncodeToString(e.Digest) + "03000000" + "696d61" +
		hex.EncodeToString(data)
	if hex.EncodeToString(bin) != wantBin {
		t.Errorf("ima binary %x", bin)
	}
}
