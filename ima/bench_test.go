package ima

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"testing"
)

// benchList builds an ima-ng list of n entries in memory.
func benchList(b *testing.B, n int) []byte {
	b.Helper()
	var list []byte
	for i := range n {
		d := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		e, err := NewNG(10, SHA256, d[:], "/usr/lib/bench/file-"+strconv.Itoa(i)+".so")
		if err != nil {
			b.Fatal(err)
		}
		list = e.AppendBinary(list, binary.LittleEndian)
	}
	return list
}

// BenchmarkReadReplay reads a 100,000-entry binary list, checks every
// template hash and replays it into the sha1 and sha256 banks with the
// prefix search on (sha256 in both extend modes), as imans log verify
// does. Reported per list; entries/s in the custom metric.
func BenchmarkReadReplay(b *testing.B) {
	const n = 100000
	list := benchList(b, n)
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	b.ResetTimer()

	for range b.N {
		r := NewReplay(SHA1, SHA256)
		r.Expect(SHA1, map[uint32][]byte{10: make([]byte, 20)})
		r.Expect(SHA256, map[uint32][]byte{10: make([]byte, 32)})
		rd := NewBinaryReader(bytes.NewReader(list), Reuse())
		for {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := r.Extend(e); err != nil {
				b.Fatal(err)
			}
		}
		if r.Entries() != n {
			b.Fatalf("%d entries", r.Entries())
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkReadAll is BenchmarkReadReplay through ReadAll, which reads
// and hashes on a second goroutine.
func BenchmarkReadAll(b *testing.B) {
	const n = 100000
	list := benchList(b, n)
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	b.ResetTimer()

	for range b.N {
		r := NewReplay(SHA1, SHA256)
		r.Expect(SHA1, map[uint32][]byte{10: make([]byte, 20)})
		r.Expect(SHA256, map[uint32][]byte{10: make([]byte, 32)})
		if _, err := r.ReadAll(NewBinaryReader(bytes.NewReader(list), Reuse())); err != nil {
			b.Fatal(err)
		}
		if r.Entries() != n {
			b.Fatalf("%d entries", r.Entries())
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkReadASCII reads the same list in ASCII form.
func BenchmarkReadASCII(b *testing.B) {
	const n = 100000
	bin := benchList(b, n)
	var list []byte
	rd := NewBinaryReader(bytes.NewReader(bin))
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		list, _ = e.AppendASCII(list)
	}
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	b.ResetTimer()

	for range b.N {
		rd := NewASCIIReader(bytes.NewReader(list))
		count := 0
		for {
			_, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			count++
		}
		if count != n {
			b.Fatalf("%d entries", count)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}
