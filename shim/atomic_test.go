package shim

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// crashEnv makes the test binary, started by TestWriteFileAtomicCrash,
// kill itself between writing the new file and renaming it.
const crashEnv = "IMANS_SHIM_TEST_CRASH_FILE"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		beforeRename = func(string) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		WriteFileAtomic(path, bytes.Repeat([]byte("new content\n"), 1<<16), 0o600)
		os.Exit(3) // not reached: the kill comes first
	}
	os.Exit(m.Run())
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}

	if err := WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}

	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("content %q, err %v", got, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %o, want the old file's 640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("folder holds %d files, want only config.json", len(entries))
	}
}

func TestWriteFileAtomicNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fresh")
	if err := WriteFileAtomic(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 1 {
		t.Fatalf("stat %v, err %v", fi, err)
	}
}

func TestWriteFileAtomicMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "config.json")
	err := WriteFileAtomic(path, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(path)) {
		t.Fatalf("err %v, want one naming the path", err)
	}
}

// TestWriteFileAtomicCrash kills a real process between the write of the
// new content and the rename: the old file must still be there, whole.
func TestWriteFileAtomicCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	old := readTestdata(t, "imans-enabled.json")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	err := cmd.Run()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatalf("config.json changed by a crashed write (%d bytes, was %d)",
			len(got), len(old))
	}

	// The new content was complete in the temporary file when it died.
	tmps, _ := filepath.Glob(filepath.Join(dir, ".config.json.imans-*"))
	if len(tmps) != 1 {
		t.Fatalf("%d temporary files left, want 1", len(tmps))
	}
	if fi, _ := os.Stat(tmps[0]); fi.Size() != 12<<16 {
		t.Errorf("temporary file has %d bytes, want %d", fi.Size(), 12<<16)
	}
}
