//go:build integration

package ima

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imans-project/imans/internal/testenv"
)

// evmctl 1.4 is an independent reader of binary lists. Three facts of
// that version shape this test: it reads PCR files from PCR-00 on, one a
// line (the captures have all 24); it fails on sha384 and sha512 PCR files
// even where the kernel hashed those banks, so it is given sha1 and sha256
// only; and it extends a violation as its zero digest unless given
// --ignore-violations, with which it extends all 0xff as a TPM does. It
// cannot read the per-bank lists: those are checked against the PCRs
// alone, by TestKernelListsVerify and here on tampered copies.

// evmctlVerdict runs evmctl ima_measurement: true on a match, false on a
// mismatch (exit status 1).
func evmctlVerdict(t *testing.T, evmctl, dir, list string) bool {
	t.Helper()
	cmd := exec.Command(evmctl, "ima_measurement", "--ignore-violations",
		"--pcrs", "sha1,"+filepath.Join(dir, "pcr-sha1.txt"),
		"--pcrs", "sha256,"+filepath.Join(dir, "pcr-sha256.txt"), list)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false
	}
	t.Fatalf("evmctl on %s: %v\n%s", list, err, out)
	return false
}

// ourVerdict reads and replays a list as imans log verify does: a match
// needs every template hash right and the whole list to lead to the PCRs
// of the banks given.
func ourVerdict(t *testing.T, dir, list string, bank Hash, banks ...Hash) bool {
	t.Helper()
	pcrs := kernelPCRs(t, dir)
	r := NewReplay(banks...)
	for _, b := range banks {
		r.Expect(b, pcrs[b])
	}
	f, err := os.Open(list)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := r.ReadAll(NewBinaryReader(f, Bank(bank)))
	if err != nil {
		t.Fatalf("%s: %v", list, err)
	}
	return st.BadHashes == 0 && r.Result().Whole()
}

// entrySpans returns the offset and size of every entry of a binary
// list, and the offset of each entry's data.
func entrySpans(t *testing.T, raw []byte, bank Hash) (starts, ends, data []int) {
	t.Helper()
	rd := NewBinaryReader(bytes.NewReader(raw), Bank(bank))
	for {
		start := int(rd.Offset())
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return starts, ends, data
		}
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, start)
		ends = append(ends, int(rd.Offset()))
		data = append(data, int(rd.Offset())-len(e.Data))
	}
}

// tampered writes the copies of a list: a changed file digest byte in
// entry 1; the same with its template hash made right again (only the
// replay can tell); and entries 1 and 2 swapped.
func tampered(t *testing.T, path string, bank Hash) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	starts, ends, data := entrySpans(t, raw, bank)
	if len(starts) < 3 {
		t.Fatalf("%s: %d entries", path, len(starts))
	}
	dir := t.TempDir()
	out := map[string]string{}
	write := func(name string, b []byte) {
		p := filepath.Join(dir, filepath.Base(path)+"."+name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}

	// The last byte of entry 1's data is the NUL of its name; the byte
	// before its name length is the last byte of its file digest, in
	// every template but the legacy one, where the digest comes first.
	digestByte := data[1] + 19
	if !bytes.Contains(raw[starts[1]:data[1]], []byte("\x03\x00\x00\x00ima")) {
		e, _ := NewBinaryReader(bytes.NewReader(raw[starts[1]:ends[1]]), Bank(bank)).Next()
		fields, _ := e.Fields()
		digestByte = data[1] + 4 + len(fields[0]) - 1
	}
	changed := bytes.Clone(raw)
	changed[digestByte] ^= 0x01
	write("digest", changed)

	if bank == SHA1 {
		fixed := bytes.Clone(changed)
		e, err := NewBinaryReader(bytes.NewReader(fixed[starts[1]:ends[1]])).Next()
		if !errors.Is(err, ErrTemplateHash) {
			t.Fatalf("changed entry reads with %v", err)
		}
		h, err := e.templateHash(nil, SHA1)
		if err != nil {
			t.Fatal(err)
		}
		copy(fixed[starts[1]+4:], h)
		if sha1.Size != len(h) {
			t.Fatal("sha1 size")
		}
		write("digest-rehashed", fixed)
	}

	swapped := bytes.Clone(raw[:starts[1]])
	swapped = append(swapped, raw[starts[2]:ends[2]]...)
	swapped = append(swapped, raw[starts[1]:ends[1]]...)
	swapped = append(swapped, raw[ends[2]:]...)
	write("swapped", swapped)
	return out
}

func TestEvmctlAgrees(t *testing.T) {
	evmctl := testenv.Command(t, "evmctl")
	for _, dir := range kernelDirs(t) {
		list := filepath.Join(dir, "binary_runtime_measurements")
		if !evmctlVerdict(t, evmctl, dir, list) || !ourVerdict(t, dir, list, SHA1, SHA1, SHA256) {
			t.Errorf("%s: evmctl %v, imans %v; both should match", list,
				evmctlVerdict(t, evmctl, dir, list), ourVerdict(t, dir, list, SHA1, SHA1, SHA256))
		}
		for name, p := range tampered(t, list, SHA1) {
			e, o := evmctlVerdict(t, evmctl, dir, p), ourVerdict(t, dir, p, SHA1, SHA1, SHA256)
			if e || o {
				t.Errorf("%s, tampered (%s): evmctl match=%v, imans match=%v; both should say "+
					"mismatch", list, name, e, o)
			}
		}
	}
}

func TestPerBankTampered(t *testing.T) {
	// evmctl cannot read these: the PCRs alone must refuse the tampered
	// copies, in every bank.
	n := 0
	for _, dir := range kernelDirs(t) {
		for path, bank := range kernelLists(dir) {
			base := filepath.Base(path)
			if base == "binary_runtime_measurements" || strings.HasPrefix(base, "ascii") {
				continue
			}
			all := []Hash{SHA1, SHA256, SHA384, SHA512}
			if !ourVerdict(t, dir, path, bank, all...) {
				t.Errorf("%s: no match", path)
			}
			for name, p := range tampered(t, path, bank) {
				if ourVerdict(t, dir, p, bank, all...) {
					t.Errorf("%s, tampered (%s): match", path, name)
				}
			}
			n++
		}
	}
	if n == 0 {
		t.Skip("no per-bank lists among the captures")
	}
}
