package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// PCR 10 after the hello entry and a violation, computed with Python's
// hashlib: sha1, sha256 with the bank's own hash, sha256 padded.
const (
	pcrSHA1         = "e1387220e52de431e53633352917b1cf915c8bca"
	pcrSHA256       = "1398e512a574e7e7e8c385c5c038059729dd1bbfb71d3d39ecf1e0683464e3fd"
	pcrSHA256Padded = "278e54d050aab77ab9bf57b78f395187961e67fa44d6cb495cdd36b0459a3d7b"
)

func TestReplayKnownValues(t *testing.T) {
	r := NewReplay(SHA1, SHA256)
	for _, e := range []*Entry{helloEntry(t), NewViolation(10, "/tmp/x")} {
		if err := r.Extend(e); err != nil {
			t.Fatal(err)
		}
	}
	if got := hex.EncodeToString(r.PCR(SHA1, 10)); got != pcrSHA1 {
		t.Errorf("sha1 PCR 10 %s, want %s", got, pcrSHA1)
	}
	if got := hex.EncodeToString(r.PCR(SHA256, 10)); got != pcrSHA256 {
		t.Errorf("sha256 PCR 10 %s, want %s", got, pcrSHA256)
	}
	got := hex.EncodeToString(r.PCRMode(SHA256, 10, ExtendPadded))
	if got != pcrSHA256Padded {
		t.Errorf("padded sha256 PCR 10 %s, want %s", got, pcrSHA256Padded)
	}
	if r.Entries() != 2 || r.Violations() != 1 {
		t.Errorf("%d entries, %d violations", r.Entries(), r.Violations())
	}
	if !bytes.Equal(r.PCR(SHA256, 11), make([]byte, 32)) {
		t.Error("an untouched PCR is not zero")
	}
}

// replayList replays a list against expected values of PCR 10.
func replayList(t testing.TB, entries []*Entry, want map[Hash]string) *Result {
	t.Helper()
	var banks []Hash
	for b := range want {
		banks = append(banks, b)
	}
	r := NewReplay(banks...)
	for b, v := range want {
		if err := r.Expect(b, map[uint32][]byte{10: unhex(t, v)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		if err := r.Extend(e); err != nil {
			t.Fatal(err)
		}
	}
	return r.Result()
}

func TestReplayResult(t *testing.T) {
	two := []*Entry{helloEntry(t), NewViolation(10, "/tmp/x")}
	three := append(two, helloEntry(t))

	res := replayList(t, two, map[Hash]string{SHA1: pcrSHA1, SHA256: pcrSHA256})
	if !res.Whole() || res.Violations != 1 {
		t.Errorf("whole list: %v", res)
	}
	if res.Banks[0].Mode != ExtendHash && res.Banks[1].Mode != ExtendHash {
		t.Errorf("modes %v %v", res.Banks[0].Mode, res.Banks[1].Mode)
	}

	// A kernel that pads sha256.
	res = replayList(t, two, map[Hash]string{SHA256: pcrSHA256Padded})
	if !res.Whole() || res.Banks[0].Mode != ExtendPadded {
		t.Errorf("padded: %v, mode %v", res, res.Banks[0].Mode)
	}

	// PCRs read before the third entry: the first two match.
	res = replayList(t, three, map[Hash]string{SHA1: pcrSHA1, SHA256: pcrSHA256})
	if !res.Matched() || res.Whole() || res.Prefix != 2 {
		t.Errorf("prefix: %v", res)
	}

	// Banks that agree on different prefixes do not match.
	res = replayList(t, three, map[Hash]string{SHA1: pcrSHA1,
		SHA256: strings.Repeat("00", 32)})
	if res.Matched() {
		t.Errorf("sha256 zero (no entry) with sha1 after two entries: %v", res)
	}

	// A value no prefix reaches.
	res = replayList(t, three, map[Hash]string{SHA1: strings.Repeat("ab", 20)})
	if res.Matched() || res.Prefix != -1 {
		t.Errorf("wrong value: %v", res)
	}
}

func TestReplayReadList(t *testing.T) {
	// The same two entries through the binary reader.
	var list []byte
	list = helloEntry(t).AppendBinary(list, binary.LittleEndian)
	list = NewViolation(10, "/tmp/x").AppendBinary(list, binary.LittleEndian)
	rd := NewBinaryReader(bytes.NewReader(list))
	r := NewReplay(SHA1, SHA256)
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		r.Extend(e)
	}
	if hex.EncodeToString(r.PCR(SHA1, 10)) != pcrSHA1 ||
		hex.EncodeToString(r.PCR(SHA256, 10)) != pcrSHA256 {
		t.Errorf("read list replays to %x %x", r.PCR(SHA1, 10), r.PCR(SHA256, 10))
	}
}

func TestParsePCRFile(t *testing.T) {
	s1 := strings.Repeat("ab", 20)
	s256 := strings.Repeat("cd", 32)
	cases := []struct{ name, text string }{
		{"evmctl", "PCR-10: " + s1 + "\n"},
		{"tpm2-tools 5", "  sha1:\n    0 : 0x" + strings.Repeat("00", 20) + "\n    10: 0x" +
			strings.ToUpper(s1) + "\n  sha256:\n    10: 0x" + s256 + "\n"},
		{"tpm2-tools 3", "sha1 :\n  10 : " + s1 + "\nsha256 :\n  10 : " + s256 + "\n"},
		{"sysfs pairs", "PCR-10: " + strings.TrimSpace(strings.Repeat("AB ", 20)) + "\n"},
	}
	for _, c := range cases {
		v, err := ParsePCRFile(strings.NewReader(c.text))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		m, err := v.ForBank(SHA1)
		if err != nil || hex.EncodeToString(m[10]) != s1 {
			t.Errorf("%s: sha1 PCR 10 %x %v", c.name, m[10], err)
		}
		if _, ok := v[SHA256]; ok {
			if hex.EncodeToString(v[SHA256][10]) != s256 {
				t.Errorf("%s: sha256 PCR 10 %x", c.name, v[SHA256][10])
			}
		}
	}

	for _, bad := range []string{"", "PCR-10 abc\n", "PCR-1x: ab\n", "PCR-10: zz\n",
		"PCR-99: ab\n", "sha1:\n 4294967295: 0x" + s1 + "\n",
		"md6:\n 10: 0xab\n", "sha1:\n 10: 0xabcd\n", "PCR-10: ab\nPCR-10: ab\n"} {
		if _, err := ParsePCRFile(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	v, _ := ParsePCRFile(strings.NewReader("PCR-10: " + s1 + "\n"))
	if _, err := v.ForBank(SHA256); err == nil {
		t.Error("a 20-byte value accepted for sha256")
	}

	var out bytes.Buffer
	FormatPCRFile(&out, map[uint32][]byte{11: {1}, 2: {0xab}})
	if out.String() != "PCR-02: ab\nPCR-11: 01\n" {
		t.Errorf("FormatPCRFile: %q", out.String())
	}
}

func TestReadAllSameAsLoop(t *testing.T) {
	// A list long enough for several batches, with violations, a bad
	// template hash and per-entry PCR changes.
	var list []byte
	for i := range 3000 {
		e, _ := NewNG(uint32(10+i%2), SHA256, unhex(t, helloSHA256), "/f"+strings.Repeat("x", i%50))
		if i%97 == 0 {
			e = NewViolation(10, "/v")
		}
		if i == 1234 {
			e.Digest = make([]byte, 20)
			e.Digest[0] = 1
		}
		list = e.AppendBinary(list, binary.LittleEndian)
	}

	loop := NewReplay(SHA1, SHA256, SHA384)
	rd := NewBinaryReader(bytes.NewReader(list))
	bad := 0
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrTemplateHash) {
			bad++
		} else if err != nil {
			t.Fatal(err)
		}
		loop.Extend(e)
	}

	all := NewReplay(SHA1, SHA256, SHA384)
	st, err := all.ReadAll(NewBinaryReader(bytes.NewReader(list)))
	if err != nil || st.BadHashes != 1 || bad != 1 {
		t.Fatalf("ReadAll: %v, %d bad (loop %d)", err, st.BadHashes, bad)
	}
	var ie *Error
	if !errors.As(st.FirstBad, &ie) || ie.Index != 1234 {
		t.Errorf("first bad: %v", st.FirstBad)
	}
	if all.Entries() != 3000 || all.Violations() != loop.Violations() {
		t.Errorf("%d entries, %d violations", all.Entries(), all.Violations())
	}
	for _, b := range []Hash{SHA1, SHA256, SHA384} {
		for _, pcr := range []uint32{10, 11} {
			for _, m := range []ExtendMode{ExtendHash, ExtendPadded} {
				if !bytes.Equal(all.PCRMode(b, pcr, m), loop.PCRMode(b, pcr, m)) {
					t.Errorf("%s PCR %d %s: %x, loop %x", b, pcr, m,
						all.PCRMode(b, pcr, m), loop.PCRMode(b, pcr, m))
				}
			}
		}
	}

	// A list cut inside an entry: the entries before are replayed.
	cut := NewReplay(SHA1)
	_, err = cut.ReadAll(NewBinaryReader(bytes.NewReader(list[:len(list)-5])))
	if !errors.Is(err, ErrTruncated) || cut.Entries() != 2999 {
		t.Errorf("cut list: %v after %d entries", err, cut.Entries())
	}
}

func TestParsePCRFileTooLong(t *testing.T) {
	// Values past the size limit are not dropped without a word: a file
	// over it is refused. A long line is read whole.
	s1 := strings.Repeat("ab", 20)
	s256 := strings.Repeat("cd", 32)
	long := "  sha1:\n    10: 0x" + s1 + "\n" + strings.Repeat("# padding\n", 110000) +
		"  sha256:\n    10: 0x" + s256 + "\n"
	if v, err := ParsePCRFile(strings.NewReader(long)); err == nil {
		t.Errorf("file of %d bytes read as %d banks, no error", len(long), len(v))
	}

	line := "PCR-10: " + s1 + "\nPCR-11: " + strings.Repeat("0", 70000) + "\n"
	v, err := ParsePCRFile(strings.NewReader(line))
	if err != nil {
		t.Fatalf("line of 70000 bytes: %v", err)
	}
	if _, err := v.ForBank(SHA1); err == nil || !strings.Contains(err.Error(), "PCR 11 has") {
		t.Errorf("35000-byte value for sha1: %v, want an error naming PCR 11", err)
	}
}

func TestReadAllBatchesOfBigEntries(t *testing.T) {
	// Entries larger than a batch's arena are not gathered 512 to a
	// batch: ReadAll's memory stays a few entries whatever the list
	// holds, even when every entry is as large as the reader allows.
	var list []byte
	big := "/" + strings.Repeat("b", 2*batchArena)
	for i := range 6 {
		d := make([]byte, 32)
		d[0] = byte(i)
		e, err := NewNG(10, SHA256, d, big)
		if err != nil {
			t.Fatal(err)
		}
		list = e.AppendBinary(list, binary.NativeEndian)
	}

	r := NewReplay(SHA1, SHA256)
	full := make(chan *batch, 16)
	go r.produce(NewBinaryReader(bytes.NewReader(list)), full, make(chan *batch),
		make(chan struct{}))
	n := 0
	for b := range full {
		if len(b.entries) > 1 {
			t.Errorf("a batch holds %d entries of %d bytes", len(b.entries),
				len(b.entries[0].Data))
		}
		n += len(b.entries)
	}
	if n != 6 {
		t.Errorf("%d entries read, want 6", n)
	}
}

func TestParsePCRFileTPM2Names(t *testing.T) {
	// tpm2_pcrread names the SM3 and SHA-3 banks its own way (sm3_256,
	// sha3_256); they are the kernel's sm3 and sha3-256.
	sm3 := strings.Repeat("5a", 32)
	sha3 := strings.Repeat("3c", 32)
	text := "  sha1:\n    10: 0x" + strings.Repeat("AB", 20) + "\n  sm3_256:\n    10: 0x" +
		sm3 + "\n  sha3_256:\n    10: 0x" + sha3 + "\n"
	v, err := ParsePCRFile(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(v["sm3"][10]) != sm3 || hex.EncodeToString(v["sha3-256"][10]) != sha3 {
		t.Errorf("banks read: %x", v)
	}
}
