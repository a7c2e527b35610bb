package tpm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
)

// benchStart measures StartSwtpm to the first answer in a new folder under
// base each time, as a container start does; stopping is not timed.
func benchStart(b *testing.B, base string) {
	testenv.Command(b, "swtpm")
	root, err := os.MkdirTemp(base, "imans-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(root)

	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := StartSwtpm(ctx, filepath.Join(root, strconv.Itoa(i)))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkSwtpmStart is a per-container swtpm from nothing to its first
// answer, with the state folder on the temporary folder's file system.
func BenchmarkSwtpmStart(b *testing.B) {
	benchStart(b, "")
}

// BenchmarkSwtpmStartShm is the same with the state on tmpfs (/dev/shm),
// as under /run.
func BenchmarkSwtpmStartShm(b *testing.B) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		b.Skip("no /dev/shm")
	}
	benchStart(b, "/dev/shm")
}

// BenchmarkExecTrue is the baseline of the start benchmarks: starting
// /bin/true and waiting for it, in the same run.
func BenchmarkExecTrue(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSwtpmRestart restarts a swtpm on an existing state, as a
// collector that crashed would.
func BenchmarkSwtpmRestart(b *testing.B) {
	testenv.Command(b, "swtpm")
	dir := filepath.Join(shortDir(b), "tpm")
	s := startSwtpm(b, dir)
	if err := s.Stop(); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := StartSwtpm(ctx, dir)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkExtend is one PCR_Extend of PCR 10 in all four banks of a
// swtpm, over its unix socket.
func BenchmarkExtend(b *testing.B) {
	_, tp := openSwtpm(b)
	digests := map[string][]byte{}
	for _, bank := range BankNames() {
		h, _ := BankHash(bank)
		digests[bank] = make([]byte, h.Size())
	}
	if _, err := tp.Banks(); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(digests["sha256"], uint64(i))
		if err := tp.Extend(10, digests); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadPCR reads PCR 10 in all four banks.
func BenchmarkReadPCR(b *testing.B) {
	_, tp := openSwtpm(b)
	if _, err := tp.Banks(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tp.ReadPCR(10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuote quotes PCR 10 in sha1 and sha256 with an ECC key that is
// already loaded.
func BenchmarkQuote(b *testing.B) {
	_, tp := openSwtpm(b)
	ak, err := tp.CreateAK(AKOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ak.Close()
	nonce := sha256.Sum256([]byte("report"))
	sel := map[string][]int{"sha1": {10}, "sha256": {10}}

	b.ResetTimer()
	for b.Loop() {
		if _, err := ak.Quote(sel, nonce[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateAK re-creates the ECC attestation key from its template.
func BenchmarkCreateAK(b *testing.B) {
	_, tp := openSwtpm(b)
	b.ResetTimer()
	for b.Loop() {
		ak, err := tp.CreateAK(AKOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ak.Close()
		b.StartTimer()
	}
}
