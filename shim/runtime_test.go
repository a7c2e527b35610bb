package shim

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestCandidates(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "runtime.conf")
	os.WriteFile(conf, []byte("# the wrapper's runtimes\n/usr/bin/crun  # first\n\nrunc\n"), 0o644)
	empty := filepath.Join(dir, "empty.conf")
	os.WriteFile(empty, []byte("# nothing\n"), 0o644)

	for _, c := range []struct {
		name, env, conf string
		want            []string
	}{
		{"env wins", "crun, /opt/runc", conf, []string{"crun", "/opt/runc"}},
		{"conf file", "", conf, []string{"/usr/bin/crun", "runc"}},
		{"missing conf", " ", filepath.Join(dir, "none"), []string{"runc", "crun"}},
		{"empty conf", "", empty, []string{"runc", "crun"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Candidates(c.env, c.conf)
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %q, err %v; want %q", got, err, c.want)
			}
		})
	}

	if _, err := Candidates("", dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("a folder as the conf file: err %v", err)
	}
}

func TestFindRuntimeSkipsItself(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "imans")
	other := filepath.Join(dir, "runc")
	for _, p := range []string{self, other} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "imans-runtime")
	hard := filepath.Join(dir, "runc-hardlink")
	os.Symlink("imans", link)
	os.Link(self, hard)

	got, err := FindRuntime([]string{link, hard, self, filepath.Join(dir, "no"), other}, self)
	if err != nil || got != other {
		t.Fatalf("got %q, err %v; want %q", got, err, other)
	}

	_, err = FindRuntime([]string{link, hard, "no-such-runtime-here"}, self)
	if !errors.Is(err, ErrNoRuntime) {
		t.Fatalf("err %v, want ErrNoRuntime", err)
	}
	for _, s := range []string{"imans-runtime (the wrapper itself)",
		"runc-hardlink (the wrapper itself)", "no-such-runtime-here (not found)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestFindRuntimeInPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "myruntime")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", dir)

	got, err := FindRuntime([]string{"myruntime"}, "/proc/self/exe")
	if err != nil || got != bin {
		t.Fatalf("got %q, err %v; want %q", got, err, bin)
	}
}

func TestFindRuntimeFallbackPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "myruntime")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", "")
	old := fallbackPath
	fallbackPath = []string{filepath.Join(dir, "none"), dir}
	defer func() { fallbackPath = old }()

	got, err := FindRuntime([]string{"myruntime"}, "/proc/self/exe")
	if err != nil || got != bin {
		t.Fatalf("got %q, err %v; want %q", got, err, bin)
	}
}

// The imans binary, or another copy of the wrapper, is no runtime.
func TestFindRuntimeNotImans(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "self", "imans-runtime")
	other := filepath.Join(dir, "bin", "imans")
	for _, p := range []string{self, other} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := FindRuntime([]string{other}, self)
	if err == nil || !strings.Contains(err.Error(), other+" (an imans binary, not an OCI runtime)") {
		t.Fatalf("FindRuntime of the imans binary: %v", err)
	}
}

// A candidate that exists but cannot be executed is named as such, not
// as missing.
func TestFindRuntimeNotExecutable(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "imans-runtime")
	plain := filepath.Join(dir, "runc.txt")
	for _, p := range []string{self, plain} {
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := FindRuntime([]string{plain, filepath.Join(dir, "gone")}, self)
	if err == nil || !strings.Contains(err.Error(), plain+" (not an executable file: -rw-r--r--)") ||
		!strings.Contains(err.Error(), "gone (not found)") {
		t.Fatalf("FindRuntime: %v", err)
	}
}
