package tpm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
)

// shortDir returns a fresh folder with a path short enough for unix
// sockets (t.TempDir's can exceed 107 bytes with long test names).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "imans-tpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startSwtpm starts a swtpm for the test in a fresh folder (or dir, if
// given) and stops it at the end.
func startSwtpm(t testing.TB, dir ...string) *Swtpm {
	t.Helper()
	testenv.Command(t, "swtpm")
	d := ""
	if len(dir) > 0 {
		d = dir[0]
	} else {
		d = filepath.Join(shortDir(t), "tpm")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := StartSwtpm(ctx, d)
	if err != nil {
		t.Fatalf("StartSwtpm: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

// openSwtpm starts a swtpm and opens it.
func openSwtpm(t testing.TB) (*Swtpm, *TPM) {
	t.Helper()
	s := startSwtpm(t)
	tp, err := Open(s.Addr)
	if err != nil {
		t.Fatalf("Open(%s): %v", s.Addr, err)
	}
	t.Cleanup(func() { tp.Close() })
	return s, tp
}
