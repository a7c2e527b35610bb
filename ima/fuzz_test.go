package ima

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzBinaryReader feeds arbitrary bytes to the binary reader: it must
// not panic, must not buffer more than the input, and every entry it
// accepts must write back to the very bytes it was read from.
func FuzzBinaryReader(f *testing.F) {
	var list []byte
	for _, e := range sampleEntries(f) {
		list = e.AppendBinary(list, binary.LittleEndian)
	}
	f.Add(list)
	f.Add(h(f, goodEntry))
	f.Add(h(f, goodEntry, "0a000000"))
	f.Add(h(f, "0a000000", helloTemplateSHA1, "ffffffff"))

	f.Fuzz(func(t *testing.T, in []byte) {
		rd := NewBinaryReader(bytes.NewReader(in))
		for range 1000 {
			start := rd.Offset()
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil && !errors.Is(err, ErrTemplateHash) {
				var ie *Error
				if !errors.As(err, &ie) || ie.Offset != start {
					t.Fatalf("error %v without its offset %d", err, start)
				}
				break
			}
			out := e.AppendBinary(nil, rd.Order())
			if !bytes.Equal(out, in[start:rd.Offset()]) {
				t.Fatalf("entry at %d writes back as %x, read from %x", start, out,
					in[start:rd.Offset()])
			}
		}
		if len(rd.buf) > max(2*len(in), readChunk) {
			t.Fatalf("buffer of %d bytes for %d bytes of input", len(rd.buf), len(in))
		}
	})
}

// FuzzASCIIReader feeds arbitrary text to the ASCII reader: it must not
// panic, and every entry it accepts must print and read back the same.
func FuzzASCIIReader(f *testing.F) {
	var list []byte
	for _, e := range sampleEntries(f)[:len(sampleEntries(f))-1] {
		list, _ = e.AppendASCII(list)
	}
	f.Add(list)
	f.Add([]byte("10 " + helloTemplateSHA1 + " ima-ng sha256:" + helloSHA256 + " /x\n"))
	f.Add([]byte(" 9 0000000000000000000000000000000000000000 ima " +
		"0000000000000000000000000000000000000000 /bin/sh\n"))

	f.Fuzz(func(t *testing.T, in []byte) {
		rd := NewASCIIReader(bytes.NewReader(in))
		for range 1000 {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var ie *Error
				if !errors.As(err, &ie) || ie.Line < 1 {
					t.Fatalf("error %v without its line", err)
				}
				if errors.Is(err, ErrTemplateHash) {
					continue
				}
				break
			}
			line, err := e.AppendASCII(nil)
			if err != nil {
				t.Fatalf("entry read but not printable: %v", err)
			}
			back, err := NewASCIIReader(bytes.NewReader(line)).Next()
			if err != nil {
				t.Fatalf("%q printed from an accepted entry does not read back: %v", line, err)
			}
			if !bytes.Equal(back.Data, e.Data) || !bytes.Equal(back.Digest, e.Digest) {
				t.Fatalf("%q reads back as %x, was %x", line, back.Data, e.Data)
			}
		}
	})
}

// FuzzWriteRead checks that lists written by NewNG and NewViolation, with
// any names, read back the same from both formats: names with many
// newlines, or lines inside them that look like entries, included.
func FuzzWriteRead(f *testing.F) {
	f.Add(uint8(10), []byte("/a\nb"), []byte("/x y"), true)
	f.Add(uint8(10), []byte("/a\n10 "+strings.Repeat("0", 40)+" ima-ng sha256:00 /x"),
		[]byte(strings.Repeat("\n", 100)), true)

	f.Fuzz(func(t *testing.T, pcr uint8, n1, n2 []byte, violation bool) {
		var bin, ascii []byte
		var want []*Entry
		for i, n := range [][]byte{n1, n2, n1} {
			name := string(bytes.ReplaceAll(n, []byte{0}, nil))
			e := NewViolation(uint32(pcr%24), name)
			if !violation || i != 1 {
				d := make([]byte, 32)
				d[0] = byte(i)
				var err error
				if e, err = NewNG(uint32(pcr%24), SHA256, d, name); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, e)
			bin = e.AppendBinary(bin, binary.NativeEndian)
			var err error
			if ascii, err = e.AppendASCII(ascii); err != nil {
				t.Fatal(err)
			}
		}

		for _, rd := range []*Reader{NewBinaryReader(bytes.NewReader(bin)),
			NewASCIIReader(bytes.NewReader(ascii))} {
			for i := 0; ; i++ {
				e, err := rd.Next()
				if errors.Is(err, io.EOF) {
					if i != len(want) {
						t.Fatalf("ascii %v: %d entries, want %d", rd.ASCII(), i, len(want))
					}
					break
				}
				if err != nil {
					t.Fatalf("ascii %v: %v\n%q", rd.ASCII(), err, ascii)
				}
				if i >= len(want) || !bytes.Equal(e.Data, want[i].Data) ||
					!bytes.Equal(e.Digest, want[i].Digest) {
					t.Fatalf("ascii %v: entry %d differs\n%q", rd.ASCII(), i, ascii)
				}
			}
		}
	})
}
