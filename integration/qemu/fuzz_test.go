package qemu

import (
	"crypto/sha256"
	"testing"
)

// FuzzParseWire feeds arbitrary data-port text to the parser: it must
// return files or an error, never panic, and every file it returns must
// carry the size and digest its header announced (checked by the parser;
// here only that a result without error ended with DONE).
func FuzzParseWire(f *testing.F) {
	f.Add([]byte(wireFile("/run/a", []byte("abc"), sha256.Sum256([]byte("abc"))) + "IMANS-DONE\n"))
	f.Add([]byte("IMANS-FILE x 1 00\nIMANS-END\nIMANS-DONE\n"))
	f.Add([]byte("IMANS-MISSING L3g= eA==\nIMANS-DONE\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := parseWire(data)
		if err == nil && files == nil {
			t.Fatal("no error and no file map")
		}
	})
}
