package tpm

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
)

func TestBanksFreshSwtpm(t *testing.T) {
	_, tp := openSwtpm(t)

	banks, err := tp.Banks()
	if err != nil {
		t.Fatal(err)
	}
	// A swtpm state made without swtpm_setup allocates all four banks.
	want := []string{"sha1", "sha256", "sha384", "sha512"}
	if !slices.Equal(banks, want) {
		t.Fatalf("Banks() = %v, want %v", banks, want)
	}
}

func TestExtendMatchesIndependentComputation(t *testing.T) {
	_, tp := openSwtpm(t)

	// PCR 10 starts at zero in every bank after TPM2_Startup(CLEAR).
	start, err := tp.ReadPCR(10)
	if err != nil {
		t.Fatal(err)
	}
	for bank, v := range start {
		if !bytes.Equal(v, make([]byte, len(v))) {
			t.Fatalf("fresh pcr 10 %s = %x, want zeros", bank, v)
		}
	}

	// Extend two entries, computing the expected value independently:
	// new = H(old || digest) in each bank.
	want := map[string][]byte{
		"sha1":   make([]byte, sha1.Size),
		"sha256": make([]byte, sha256.Size),
		"sha384": make([]byte, sha512.Size384),
		"sha512": make([]byte, sha512.Size),
	}
	for _, data := range []string{"first entry", "second entry"} {
		d1 := sha1.Sum([]byte(data))
		d256 := sha256.Sum256([]byte(data))
		d384 := sha512.Sum384([]byte(data))
		d512 := sha512.Sum512([]byte(data))
		digests := map[string][]byte{
			"sha1": d1[:], "sha256": d256[:], "sha384": d384[:], "sha512": d512[:],
		}
		if err := tp.Extend(10, digests); err != nil {
			t.Fatal(err)
		}
		s1 := sha1.Sum(append(want["sha1"], d1[:]...))
		s256 := sha256.Sum256(append(want["sha256"], d256[:]...))
		s384 := sha512.Sum384(append(want["sha384"], d384[:]...))
		s512 := sha512.Sum512(append(want["sha512"], d512[:]...))
		want["sha1"], want["sha256"] = s1[:], s256[:]
		want["sha384"], want["sha512"] = s384[:], s512[:]
	}

	got, err := tp.ReadPCR(10, "sha1", "sha256", "sha384", "sha512")
	if err != nil {
		t.Fatal(err)
	}
	for bank, w := range want {
		if !bytes.Equal(got[bank], w) {
			t.Errorf("pcr 10 %s = %x, want %x", bank, got[bank], w)
		}
	}

	// The same values computed outside Go (Python's hashlib), so that a
	// mistake shared by the test's arithmetic and the code cannot hide.
	known := map[string]string{
		"sha1":   "86a11c319553d94bbe030aee1812f340b60c13e4",
		"sha256": "f6c04aadc053e3599fe191648b75bfb3bf9cd7b6630749dae09e84df996d4ac1",
	}
	for bank, k := range known {
		if hex.EncodeToString(got[bank]) != k {
			t.Errorf("pcr 10 %s = %x, want %s", bank, got[bank], k)
		}
	}

	// Other PCRs stay untouched.
	other, err := tp.ReadPCR(11, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(other["sha256"], make([]byte, 32)) {
		t.Errorf("pcr 11 sha256 = %x, want zeros", other["sha256"])
	}
}

func TestExtendRejectsBadDigests(t *testing.T) {
	_, tp := openSwtpm(t)

	full := func() map[string][]byte {
		return map[string][]byte{
			"sha1": make([]byte, 20), "sha256": make([]byte, 32),
			"sha384": make([]byte, 48), "sha512": make([]byte, 64),
		}
	}
	cases := []struct {
		name   string
		modify func(map[string][]byte)
		pcr    int
		is     error
	}{
		{"missing bank", func(m map[string][]byte) { delete(m, "sha384") }, 10, nil},
		{"short digest", func(m map[string][]byte) { m["sha256"] = m["sha256"][:31] }, 10, nil},
		{"unknown bank", func(m map[string][]byte) { m["md5"] = make([]byte, 16) }, 10,
			ErrUnknownBank},
		{"pcr out of range", func(map[string][]byte) {}, 24, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := full()
			c.modify(m)
			err := tp.Extend(c.pcr, m)
			if err == nil {
				t.Fatal("Extend succeeded")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %v is not %v", err, c.is)
			}
		})
	}

	// None of the refused extends reached the TPM.
	v, err := tp.ReadPCR(10, "sha1")
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(v["sha1"]) != "0000000000000000000000000000000000000000" {
		t.Errorf("pcr 10 sha1 changed to %x", v["sha1"])
	}
}

// TestReadAllPCRs reads 24 PCRs in four banks, more than one PCR_Read
// returns (eight values), and checks each against the PC Client profile's
// initial values: zero, except the locality-4 PCRs 17 to 22, which start
// at all ones; PCR 23, extended here, holds the computed value.
func TestReadAllPCRs(t *testing.T) {
	_, tp := openSwtpm(t)
	digests := map[string][]byte{}
	want23 := map[string][]byte{}
	for _, b := range BankNames() {
		h, _ := BankHash(b)
		hh := h.New()
		hh.Write([]byte("pcr 23"))
		digests[b] = hh.Sum(nil)
		hh = h.New()
		hh.Write(make([]byte, h.Size()))
		hh.Write(digests[b])
		want23[b] = hh.Sum(nil)
	}
	if err := tp.Extend(23, digests); err != nil {
		t.Fatal(err)
	}

	all := make([]int, NumPCRs)
	for i := range all {
		all[i] = i
	}
	sel := map[string][]int{}
	for _, b := range BankNames() {
		sel[b] = all
	}
	values, err := tp.ReadPCRs(sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range BankNames() {
		h, _ := BankHash(b)
		if len(values[b]) != NumPCRs {
			t.Fatalf("%s: %d values, want %d", b, len(values[b]), NumPCRs)
		}
		for pcr := range NumPCRs {
			want := make([]byte, h.Size())
			switch {
			case pcr >= 17 && pcr <= 22:
				want = bytes.Repeat([]byte{0xff}, h.Size())
			case pcr == 23:
				want = want23[b]
			}
			if !bytes.Equal(values[b][pcr], want) {
				t.Errorf("%s:%d = %x, want %x", b, pcr, values[b][pcr], want)
			}
		}
	}
}
