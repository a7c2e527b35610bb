package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRuntimeLoggerJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	log := newRuntimeLogger(path, "json")
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
	newRuntimeLogger(path, "").Info("hello there")
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `level=info msg="hello there"`) {
		t.Fatalf("text line %q", data)
	}
}

func TestRuntimeMainRefusesItself(t *testing.T) {
	t.Setenv(wrappedEnv, "1")
	path := filepath.Join(t.TempDir(), "log.json")
	code := runtimeMain([]string{"imans-runtime", "--log", path, "--log-format", "json",
		"state", "x"})
	data, _ := os.ReadFile(path)
	if code != 1 || !strings.Contains(string(data), "leads back to an imans wrapper") {
		t.Fatalf("exit %d, log %s", code, data)
	}
}

func TestRuntimeMainBadConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"),
		[]byte(`{"annotations":{"io.imans.enable":"true"},"hooks":7}`), 0o644)
	path := filepath.Join(dir, "log.json")

	code := runtimeMain([]string{"imans-runtime", "--log", path, "--log-format", "json",
		"create", "--bundle", dir, "x"})

	data, _ := os.ReadFile(path)
	if code != 1 || !strings.Contains(string(data), "bundle "+dir+": config.json: hooks") {
		t.Fatalf("exit %d, log %s", code, data)
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
	log := newRuntimeLogger("", "")
	if err := prepareBundle(filepath.Join(t.TempDir(), "config.json"), log); err != nil {
		t.Errorf("missing config.json: %v, want it left to the runtime", err)
	}
	dir := t.TempDir()
	if err := prepareBundle(dir, log); err == nil {
		t.Errorf("config.json a folder: no error")
	}
}
