package wrapper

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRuntimeLoggerJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	log := newLogger(path, "json")
	log.Info("first")
	log.Error("second")

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), data)
	}
	for i, want := range []struct{ level, msg string }{{"info", "first"}, {"error", "second"}} {
		var l map[string]string
		if err := json.Unmarshal([]byte(lines[i]), &l); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if l["level"] != want.level || l["msg"] != want.msg || len(l) != 3 {
			t.Errorf("line %d: %v, want level %s msg %s", i, l, want.level, want.msg)
		}
		if _, err := time.Parse(time.RFC3339, l["time"]); err != nil {
			t.Errorf("line %d: time: %v", i, err)
		}
	}
}

func TestRuntimeLoggerText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	newLogger(path, "").Info("hello there")
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `level=info msg="hello there"`) {
		t.Fatalf("text line %q", data)
	}
}

func TestRuntimeMainRefusesItself(t *testing.T) {
	t.Setenv(WrappedEnv, "1")
	path := filepath.Join(t.TempDir(), "log.json")
	code := Main([]string{"imans-runtime", "--log", path, "--log-format", "json",
		"state", "x"}, Self)
	data, _ := os.ReadFile(path)
	if code != 1 || !strings.Contains(string(data), "imans runtime: the runtime list leads back") {
		t.Fatalf("exit %d, log %s", code, data)
	}
}

func TestRuntimeMainBadConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"),
		[]byte(`{"annotations":{"io.imans.enable":"true"},"hooks":7}`), 0o644)
	path := filepath.Join(dir, "log.json")

	code := Main([]string{"imans-runtime", "--log", path, "--log-format", "json",
		"create", "--bundle", dir, "x"}, Self)

	data, _ := os.ReadFile(path)
	if code != 1 || !strings.Contains(string(data), "bundle "+dir+": config.json: hooks") {
		t.Fatalf("exit %d, log %s", code, data)
	}

	// A bundle given relative to the runtime's folder (or not at all) is
	// named in full.
	t.Chdir(dir)
	os.Remove(path)
	code = Main([]string{"imans-runtime", "--log", path, "--log-format", "json",
		"create", "x"}, Self)
	data, _ = os.ReadFile(path)
	if code != 1 || !strings.Contains(string(data), "bundle "+dir+": config.json: hooks") {
		t.Fatalf("bundle in the current folder: exit %d, log %s", code, data)
	}
}

func TestRuntimeHookEnv(t *testing.T) {
	t.Setenv("IMANS_STATE_DIR", "/srv/imans")
	t.Setenv("IMANS_RUN_DIR", "relative/is/ignored")
	got := hookEnv()
	if len(got) != 1 || got[0] != "IMANS_STATE_DIR=/srv/imans" {
		t.Errorf("hookEnv %q, want the absolute IMANS_STATE_DIR only", got)
	}
}

// `run --help`, `create -h` and `create` without a bundle in the current
// folder are the runtime's to answer: a missing config.json is not the
// wrapper's error (the runtime cannot create a container without it).
func TestPrepareBundleMissingConfig(t *testing.T) {
	log := newLogger("", "")
	if err := prepareBundle(filepath.Join(t.TempDir(), "config.json"), Self, log); err != nil {
		t.Errorf("missing config.json: %v, want it left to the runtime", err)
	}
	dir := t.TempDir()
	if err := prepareBundle(dir, Self, log); err == nil {
		t.Errorf("config.json a folder: no error")
	}
}

// The hook binary is looked for only for a container that asks for imans:
// a bundle without the annotation is passed through untouched even when
// no imans binary can be found.
func TestPrepareBundleAsksForImansOnlyWhenEnabled(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	plain := []byte(`{"ociVersion":"1.0.2","annotations":{"io.imans.enable":"false"}}`)
	os.WriteFile(config, plain, 0o644)
	missing := func() (string, error) { return "", errors.New("no imans binary here") }

	if err := prepareBundle(config, missing, newLogger("", "")); err != nil {
		t.Fatalf("bundle without imans: %v", err)
	}
	if got, _ := os.ReadFile(config); string(got) != string(plain) {
		t.Fatalf("config.json changed to %s", got)
	}

	os.WriteFile(config, []byte(`{"annotations":{"io.imans.enable":"true"}}`), 0o644)
	err := prepareBundle(config, missing, newLogger("", ""))
	if err == nil || !strings.Contains(err.Error(), "no imans binary here") {
		t.Fatalf("bundle with imans and no hook binary: %v, want its error", err)
	}
}

// The imans-runtime binary's hooks run the imans binary in the folder of
// the wrapper's own file; a missing or non-executable one is an error that
// names the path.
func TestBesideOf(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "imans-runtime")
	want := filepath.Join(dir, ImansName)

	_, err := besideOf(exe)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("no imans beside the wrapper: %v, want an error naming %s", err, want)
	}
	os.WriteFile(want, []byte("#!/bin/sh\n"), 0o644)
	_, err = besideOf(exe)
	if err == nil || !strings.Contains(err.Error(), want+" is not an executable file") {
		t.Fatalf("imans not executable: %v", err)
	}
	os.Chmod(want, 0o755)
	got, err := besideOf(exe)
	if err != nil || got != want {
		t.Fatalf("besideOf = %q, %v; want %q", got, err, want)
	}
	os.Remove(want)
	os.Mkdir(want, 0o755)
	if _, err := besideOf(exe); err == nil {
		t.Fatalf("a folder named imans: no error")
	}
}
