package ima

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// h joins hex pieces, each one a field of a hand-built entry.
func h(t testing.TB, parts ...string) []byte {
	t.Helper()
	return unhex(t, strings.Join(parts, ""))
}

// goodEntry is a whole ima-ng entry: the one of the writer test.
const goodEntry = "0a000000" + // PCR 10
	helloTemplateSHA1 + // template hash
	"06000000" + "696d612d6e67" + // template name length 6, "ima-ng"
	"41000000" + // template data length 65
	helloData // d-ng and n-ng fields

func TestMalformedBinary(t *testing.T) {
	sha1Hex := helloTemplateSHA1
	cases := []struct {
		name   string
		list   []byte
		index  int
		offset int64
		is     error
		reason string
	}{{
		name: "truncated entry",
		list: h(t, goodEntry,
			"0a000000",     // PCR 10
			sha1Hex,        // template hash
			"06000000",     // template name length 6
			"696d612d6e67", // "ima-ng"
			"41000000",     // data length 65
			"28000000",     // d-ng field length 40, then nothing
		),
		index: 1, offset: int64(len(goodEntry) / 2), is: ErrTruncated,
		reason: "template data of 65 bytes",
	}, {
		name: "data length larger than the file",
		list: h(t,
			"0a000000", sha1Hex, // PCR 10, template hash
			"06000000", "696d612d6e67", // "ima-ng"
			"00100000", // data length 4096, 65 bytes follow
			helloData),
		index: 0, offset: 0, is: ErrTruncated, reason: "4096",
	}, {
		name: "4 GiB data length",
		list: h(t,
			"0a000000", sha1Hex, // PCR 10, template hash
			"06000000", "696d612d6e67", // "ima-ng"
			"ffffffff", // data length 4294967295
			helloData),
		index: 0, offset: 0, is: ErrMalformed, reason: "4294967295",
	}, {
		name: "4 GiB template name length",
		list: h(t, goodEntry,
			"0a000000", sha1Hex, // PCR 10, template hash
			"ffffffff", // template name length 4294967295
			"696d612d6e67"),
		index: 1, offset: int64(len(goodEntry) / 2), is: ErrMalformed,
		reason: "template name length 4294967295",
	}, {
		name: "unknown hash name",
		list: h(t,
			"0a000000", "ba66f726b6ebdcd2c686d34511b99f61e537f548", // PCR 10, template hash
			"06000000", "696d612d6e67", // "ima-ng"
			"41000000",                     // data length 65
			"28000000", "7368613939393a00", // d-ng length 40, "sha999:" NUL
			"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", // digest
			"11000000", "2f7573722f62696e2f6d795f66696c6500"), // n-ng
		index: 0, offset: 0, is: ErrUnknownHash, reason: "sha999",
	}, {
		name: "empty template name",
		list: h(t, goodEntry, goodEntry,
			"0a000000", sha1Hex, // PCR 10, template hash
			"00000000", // template name length 0
			"41000000", helloData),
		index: 2, offset: int64(len(goodEntry)), is: ErrMalformed,
		reason: "empty template name",
	}, {
		name: "template name with a newline",
		list: h(t,
			"0a000000", sha1Hex, // PCR 10, template hash
			"06000000", "696d610a6e67", // "ima\nng"
			"41000000", helloData),
		index: 0, offset: 0, is: ErrMalformed, reason: "0x0a",
	}, {
		name: "n-ng without its NUL",
		list: h(t,
			"0a000000", "e87f730289d6fc639fa712583084812239dd5139", // PCR 10, template hash
			"06000000", "696d612d6e67", // "ima-ng"
			"40000000",                                               // data length 64
			"28000000", "7368613235363a00", strings.Repeat("00", 32), // d-ng
			"10000000", "2f7573722f62696e2f6d795f66696c65"), // n-ng, no NUL
		index: 0, offset: 0, is: ErrMalformed, reason: "NUL",
	}, {
		name: "field length past the data",
		list: h(t,
			"0a000000", sha1Hex, // PCR 10, template hash
			"06000000", "696d612d6e67", // "ima-ng"
			"08000000",         // data length 8
			"ff000000", "0000", // field length 255, 4 bytes left
			"0000"),
		index: 0, offset: 0, is: ErrMalformed, reason: "length 255",
	}, {
		name:  "changed digest byte",
		list:  h(t, strings.Replace(goodEntry, "5891b5", "5991b5", 1)),
		index: 0, offset: 0, is: ErrTemplateHash, reason: helloTemplateSHA1,
	}, {
		name:  "header cut short",
		list:  h(t, goodEntry, "0a000000", "9b71f9"), // PCR 10, 3 bytes of template hash
		index: 1, offset: int64(len(goodEntry) / 2), is: ErrTruncated,
		reason: "entry header",
	}}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rd := NewBinaryReader(bytes.NewReader(c.list))
			var err error
			for i := 0; i <= c.index; i++ {
				_, err = rd.Next()
				if i < c.index && err != nil {
					t.Fatalf("entry %d before the bad one: %v", i, err)
				}
			}
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if ie.Index != c.index || ie.Offset != c.offset {
				t.Errorf("error at entry %d offset %d, want %d %d: %v",
					ie.Index, ie.Offset, c.index, c.offset, err)
			}
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("error %q, want %v and %q", err, c.is, c.reason)
			}
			if len(rd.buf) > 2*readChunk {
				t.Errorf("buffer grew to %d bytes for a %d-byte list", len(rd.buf), len(c.list))
			}
		})
	}
}

func TestTemplateHashMismatchGoesOn(t *testing.T) {
	bad := h(t, strings.Replace(goodEntry, "5891b5", "5991b5", 1))
	list := append(append(bad, h(t, goodEntry)...), h(t, goodEntry)...)
	rd := NewBinaryReader(bytes.NewReader(list))
	e, err := rd.Next()
	if !errors.Is(err, ErrTemplateHash) || e == nil {
		t.Fatalf("first entry: %v", err)
	}
	n := 0
	for {
		_, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d entries after the bad one, want 2", n)
	}
}

func TestMalformedASCII(t *testing.T) {
	good := "10 " + helloTemplateSHA1 + " ima-ng sha256:" + helloSHA256 + " /usr/bin/my_file\n"
	cases := []struct {
		name string
		list string
		line int
		is   error
		want string
	}{
		{"unknown hash name", good + strings.Replace(good, "sha256:", "sha999:", 1), 2,
			ErrUnknownHash, "sha999"},
		{"no fields", good + good + "10 " + helloTemplateSHA1 + " ima-ng\n", 3,
			ErrMalformed, "4 parts"},
		{"PCR not a number", "x " + good[3:], 1, ErrMalformed, "PCR"},
		{"template hash not hex", "10 zz" + good[5:], 1, ErrMalformed, "not hex"},
		{"unknown template", "10 " + helloTemplateSHA1 + " my-tmpl 00 01\n", 1,
			ErrMalformed, "binary list"},
		// The legacy template hashes the name padded with NULs: "/a" and
		// "/a\x00" would have one template hash and print alike.
		{"NUL in a legacy name", "10 " + strings.Repeat("0", 40) + " ima " +
			strings.Repeat("0", 40) + " /a\x00\n", 1, ErrMalformed, "NUL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rd := NewASCIIReader(strings.NewReader(c.list))
			var err error
			for err == nil {
				_, err = rd.Next()
			}
			var ie *Error
			if !errors.As(err, &ie) || ie.Line != c.line {
				t.Fatalf("error %v, want one at line %d", err, c.line)
			}
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %v and %q", err, c.is, c.want)
			}
			if ie.Offset != int64((c.line-1)*len(good)) {
				t.Errorf("offset %d", ie.Offset)
			}
		})
	}
}

func TestHandBuiltKnownEntry(t *testing.T) {
	e, err := NewBinaryReader(bytes.NewReader(h(t, goodEntry))).Next()
	if err != nil {
		t.Fatal(err)
	}
	if e.PCR != 10 || e.Template != "ima-ng" || hex.EncodeToString(e.Data) != helloData {
		t.Errorf("entry %d %s %x", e.PCR, e.Template, e.Data)
	}
}

func TestLegacyNameWithNUL(t *testing.T) {
	// No kernel writes a NUL in a legacy name, and the template hash
	// cannot tell "/a" from "/a\x00" (the name is hashed padded with
	// NULs): the binary reader refuses it, with the entry's offset.
	list := h(t, goodEntry,
		"0a000000", strings.Repeat("00", 20), // PCR 10, template hash
		"03000000", "696d61", // "ima"
		strings.Repeat("11", 20), // file digest
		"03000000", "2f6100",     // name length 3, "/a\x00"
	)
	rd := NewBinaryReader(bytes.NewReader(list))
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := rd.Next()
	var ie *Error
	if !errors.As(err, &ie) || ie.Index != 1 || ie.Offset != int64(len(goodEntry)/2) ||
		!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("error %v, want a malformed entry 1 at offset %d naming the NUL", err,
			len(goodEntry)/2)
	}
}

func TestASCIICutInLastLine(t *testing.T) {
	// An ASCII list cut inside its last line (copied while the kernel
	// wrote it) is a truncated list, as a binary one cut inside an entry
	// is, not an entry whose template hash is wrong. A last line whole
	// but for its newline is read.
	good := "10 " + helloTemplateSHA1 + " ima-ng sha256:" + helloSHA256 + " /usr/bin/my_file\n"
	for _, cut := range []int{1, 3, 10} {
		list := good + good[:len(good)-cut]
		rd := NewASCIIReader(strings.NewReader(list))
		var err error
		n := 0
		for ; err == nil; n++ {
			_, err = rd.Next()
		}
		var ie *Error
		if cut == 1 {
			if !errors.Is(err, io.EOF) || n != 3 {
				t.Errorf("last newline cut: %v after %d entries", err, n-1)
			}
			continue
		}
		if !errors.Is(err, ErrTruncated) || !errors.As(err, &ie) || ie.Index != 1 || ie.Line != 2 {
			t.Errorf("cut by %d: %v, want a truncated entry 1 at line 2", cut, err)
		}
	}
}

func TestASCIIBankOfOtherSize(t *testing.T) {
	// An ASCII list read as another bank's (Bank, or imans log --bank)
	// says the sizes differ, instead of a template hash mismatch per line.
	list, err := os.ReadFile("testdata/kernel/6.12-ima-ng/ascii_runtime_measurements_sha256")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewASCIIReader(bytes.NewReader(list), Bank(SHA1)).Next()
	var ie *Error
	if !errors.As(err, &ie) || ie.Line != 1 || !errors.Is(err, ErrMalformed) ||
		!strings.Contains(err.Error(), "template hash of 32 bytes, a sha1 list has 20") {
		t.Errorf("error %v, want a malformed entry at line 1 naming both sizes", err)
	}
}
