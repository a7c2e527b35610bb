// Command genlist writes a synthetic ima-ng measurement list and the PCR
// values it leads to, for benchmarks and tests: entries with made-up
// sha256 file digests and names, all extending PCR 10, the sha1 and
// sha256 banks replayed with the bank's own hash.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imans-project/imans/ima"
)

func main() {
	n := flag.Int("n", 1000000, "number of entries")
	out := flag.String("o", "binary_runtime_measurements", "binary list to write")
	ascii := flag.String("ascii", "", "also write the ASCII list here")
	pcrs := flag.String("pcrs", "", "write pcr-sha1.txt and pcr-sha256.txt (PCR-10: hex) "+
		"in this folder")
	every := flag.Int("violation-every", 0, "make every Nth entry a violation (0: none)")
	flag.Parse()

	if err := run(*n, *out, *ascii, *pcrs, *every); err != nil {
		fmt.Fprintln(os.Stderr, "genlist:", err)
		os.Exit(1)
	}
}

func run(n int, out, asciiPath, pcrDir string, every int) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)

	var aw *bufio.Writer
	if asciiPath != "" {
		af, err := os.Create(asciiPath)
		if err != nil {
			return err
		}
		defer af.Close()
		aw = bufio.NewWriterSize(af, 1<<20)
	}

	replay := ima.NewReplay(ima.SHA1, ima.SHA256)
	var buf []byte
	for i := range n {
		var e *ima.Entry
		name := fmt.Sprintf("/usr/lib/bench/dir%03d/file-%07d.so", i%1000, i)
		if every > 0 && i > 0 && i%every == 0 {
			e = ima.NewViolation(10, name)
		} else {
			d := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
			e, err = ima.NewNG(10, ima.SHA256, d[:], name)
			if err != nil {
				return err
			}
		}
		buf = e.AppendBinary(buf[:0], binary.NativeEndian)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if aw != nil {
			buf, err = e.AppendASCII(buf[:0])
			if err != nil {
				return err
			}
			aw.Write(buf)
		}
		if err := replay.Extend(e); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if aw != nil {
		if err := aw.Flush(); err != nil {
			return err
		}
	}

	if pcrDir == "" {
		return nil
	}
	// evmctl 1.4 reads PCR files from PCR-00 on, one PCR a line: the
	// PCRs before 10 are written too, zero as in a TPM only IMA extends.
	for _, b := range []ima.Hash{ima.SHA1, ima.SHA256} {
		pf, err := os.Create(filepath.Join(pcrDir, "pcr-"+string(b)+".txt"))
		if err != nil {
			return err
		}
		values := map[uint32][]byte{}
		for i := range uint32(11) {
			values[i] = replay.PCR(b, i)
		}
		err = ima.FormatPCRFile(pf, values)
		if cerr := pf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
