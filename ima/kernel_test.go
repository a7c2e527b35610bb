package ima

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The lists under testdata/kernel were captured from Debian's kernels in
// qemu with a swtpm TPM, each folder with the PCRs of every bank read in
// the same boot and an info.txt saying how (see integration/qemu).

// kernelDirs returns the capture folders, failing when there are none.
func kernelDirs(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob("testdata/kernel/*/info.txt")
	if len(dirs) == 0 {
		t.Fatal("no captured kernel lists in testdata/kernel")
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// kernelInfo reads the "key: value" lines of a capture's info.txt.
func kernelInfo(t *testing.T, dir string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "info.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			info[k] = strings.TrimSpace(v)
		}
	}
	return info
}

// kernelPCRs reads the PCR files of every bank of a capture.
func kernelPCRs(t *testing.T, dir string) map[Hash]map[uint32][]byte {
	t.Helper()
	out := map[Hash]map[uint32][]byte{}
	for _, b := range []Hash{SHA1, SHA256, SHA384, SHA512} {
		f, err := os.Open(filepath.Join(dir, "pcr-"+string(b)+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		v, err := ParsePCRFile(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		m, err := v.ForBank(b)
		if err != nil {
			t.Fatal(err)
		}
		out[b] = m
	}
	return out
}

// kernelLists returns the list files of a capture: the classic binary and
// ASCII lists and the per-bank ones, with the bank of their template
// hashes.
func kernelLists(dir string) map[string]Hash {
	out := map[string]Hash{}
	for _, kind := range []string{"binary", "ascii"} {
		base := filepath.Join(dir, kind+"_runtime_measurements")
		if _, err := os.Stat(base); err == nil {
			out[base] = SHA1
		}
		for _, b := range []Hash{SHA1, SHA256, SHA384, SHA512} {
			if _, err := os.Stat(base + "_" + string(b)); err == nil {
				out[base+"_"+string(b)] = b
			}
		}
	}
	return out
}

// readKernelList reads every entry of a captured list.
func readKernelList(t *testing.T, path string, bank Hash, opts ...Option) []*Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f, append(opts, Bank(bank))...)
	if err != nil {
		t.Fatal(err)
	}
	var out []*Entry
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, e)
	}
	if !rd.ASCII() && rd.DigestSize() != bank.Size() {
		t.Errorf("%s: template hashes of %d bytes, want %d", path, rd.DigestSize(), bank.Size())
	}
	return out
}

func TestKernelListsVerify(t *testing.T) {
	for _, dir := range kernelDirs(t) {
		info := kernelInfo(t, dir)
		pcrs := kernelPCRs(t, dir)
		wantEntries, _ := strconv.Atoi(info["entries"])
		wantViolations, _ := strconv.Atoi(info["violations"])

		// Debian's 6.1 pads sha384 and sha512 and hashes sha256; 6.12
		// hashes every bank.
		padded := map[Hash]bool{}
		if strings.HasPrefix(info["kernel"], "6.1.") {
			padded[SHA384], padded[SHA512] = true, true
		}

		lists := kernelLists(dir)
		if len(lists) < 2 {
			t.Errorf("%s: %d lists", dir, len(lists))
		}
		for path, bank := range lists {
			entries := readKernelList(t, path, bank)
			r := NewReplay(SHA1, SHA256, SHA384, SHA512)
			for b, v := range pcrs {
				if err := r.Expect(b, v); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range entries {
				if err := r.Extend(e); err != nil {
					t.Fatal(err)
				}
			}

			res := r.Result()
			if !res.Whole() || res.Entries != wantEntries || res.Violations != wantViolations {
				t.Errorf("%s: %v; info.txt says %d entries, %d violations", path, res,
					wantEntries, wantViolations)
			}
			for _, b := range res.Banks {
				want := ExtendHash
				if padded[b.Bank] {
					want = ExtendPadded
				}
				if b.Mode != want || len(b.PCRs) != 1 || b.PCRs[0] != 10 {
					t.Errorf("%s: bank %s matched %s on PCRs %v, want %s on [10]", path,
						b.Bank, b.Mode, b.PCRs, want)
				}
			}
		}
	}
}

func TestKernelListsAgree(t *testing.T) {
	// The ASCII list and every per-bank list hold the same entries as the
	// binary list: same template data, names with spaces and all.
	for _, dir := range kernelDirs(t) {
		bin := readKernelList(t, filepath.Join(dir, "binary_runtime_measurements"), SHA1)
		for path, bank := range kernelLists(dir) {
			other := readKernelList(t, path, bank)
			if len(other) != len(bin) {
				t.Errorf("%s: %d entries, binary list %d", path, len(other), len(bin))
				continue
			}
			for i := range bin {
				if !bytes.Equal(other[i].Data, bin[i].Data) || other[i].PCR != bin[i].PCR ||
					other[i].Template != bin[i].Template {
					t.Errorf("%s: entry %d differs from the binary list's", path, i)
				}
				if bank == SHA1 && !bytes.Equal(other[i].Digest, bin[i].Digest) {
					t.Errorf("%s: entry %d template hash differs", path, i)
				}
			}
		}
	}
}

func TestKernelListsWriteBack(t *testing.T) {
	// Every entry of the binary lists writes back byte for byte, in the
	// byte order the list was read with.
	for _, dir := range kernelDirs(t) {
		path := filepath.Join(dir, "binary_runtime_measurements")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rd := NewBinaryReader(bytes.NewReader(raw))
		var out []byte
		for {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out = e.AppendBinary(out, rd.Order())
		}
		if !bytes.Equal(out, raw) {
			t.Errorf("%s does not write back byte for byte", path)
		}

		// The ASCII list too.
		araw, err := os.ReadFile(filepath.Join(dir, "ascii_runtime_measurements"))
		if err != nil {
			t.Fatal(err)
		}
		var aout []byte
		for _, e := range readKernelList(t, filepath.Join(dir, "ascii_runtime_measurements"),
			SHA1) {
			aout, err = e.AppendASCII(aout)
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(aout, araw) {
			t.Errorf("%s: ASCII list does not write back byte for byte", dir)
		}
	}
}

func TestNewNGAsTheKernel(t *testing.T) {
	// Entries the 6.1 kernel wrote for sha256("hello\n"), a name with a
	// space, and an open-writers violation: NewNG and NewViolation make
	// the same bytes.
	entries := readKernelList(t, "testdata/kernel/6.1-violations/binary_runtime_measurements",
		SHA1)
	byName := map[string][]byte{}
	for _, e := range entries {
		n, _ := e.FileName()
		if e.IsViolation() {
			n = "violation " + n
		}
		byName[n] = e.AppendBinary(nil, binary.NativeEndian)
	}

	hello, err := NewNG(10, SHA256, unhex(t, helloSHA256), "/root/data/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := hello.AppendBinary(nil, binary.NativeEndian); !bytes.Equal(got,
		byName["/root/data/hello.txt"]) {
		t.Errorf("hello entry\n got %x\nwant %x", got, byName["/root/data/hello.txt"])
	}

	sp := entries[5]
	_, d, _ := sp.FileDigest()
	spaced, _ := NewNG(10, SHA256, d, "/root/data/with space.txt")
	if !bytes.Equal(spaced.AppendBinary(nil, binary.NativeEndian),
		byName["/root/data/with_space.txt"]) {
		t.Errorf("name with a space differs from the kernel's")
	}

	v := NewViolation(10, "/root/open-writers")
	if !bytes.Equal(v.AppendBinary(nil, binary.NativeEndian),
		byName["violation /root/open-writers"]) {
		t.Errorf("violation differs from the kernel's")
	}
}

func TestKernelCanonicalForced(t *testing.T) {
	// The little-endian list reads the same detected or forced; forcing
	// big-endian fails on its first entry.
	path := "testdata/kernel/6.12-canonical/binary_runtime_measurements"
	a := readKernelList(t, path, SHA1)
	b := readKernelList(t, path, SHA1, Canonical())
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d and %d entries", len(a), len(b))
	}
	f, _ := os.Open(path)
	defer f.Close()
	_, err := NewBinaryReader(f, ByteOrder(binary.BigEndian)).Next()
	var ie *Error
	if !errors.As(err, &ie) || ie.Index != 0 {
		t.Errorf("forced big-endian: %v", err)
	}
}
