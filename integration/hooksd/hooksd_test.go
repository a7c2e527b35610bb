// Package hooksd_test checks the imans hooks.d files with the code that
// podman and CRI-O use to read them, containers/common's hooks package.
// It is a module of its own so that containers/common's dependencies stay
// out of imans's go.mod.
package hooksd_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containers/common/pkg/hooks"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imans-project/imans/shim"
)

var pathEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// wantHooks are the hooks as the runtime must receive them, spelled out by
// hand.
func wantHooks(imansPath string) (createRuntime, poststop rspec.Hook) {
	thirty, sixty := 30, 60
	createRuntime = rspec.Hook{Path: imansPath, Args: []string{"imans", "hook",
		"create-runtime"}, Env: pathEnv, Timeout: &thirty}
	poststop = rspec.Hook{Path: imansPath, Args: []string{"imans", "hook", "poststop"},
		Env: pathEnv, Timeout: &sixty}
	return createRuntime, poststop
}

// hooksDir writes the imans hooks.d files into a new folder. The hook's
// binary must exist: the loader skips, without a word, a file whose hook
// path is missing. Each file is read on its own first, so that a file the
// loader refuses fails the test instead of just not matching.
func hooksDir(t *testing.T) (dir, imansPath string) {
	t.Helper()
	dir = t.TempDir()
	imansPath = filepath.Join(t.TempDir(), "imans")
	if err := os.WriteFile(imansPath, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	files, err := shim.HooksD(imansPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("%d hooks.d files, want 2", len(files))
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if err := os.WriteFile(path, f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := hooks.Read(path, nil); err != nil {
			t.Fatalf("the hooks loader refuses %s: %v", f.Name, err)
		}
	}
	return dir, imansPath
}

func TestHooksDMatches(t *testing.T) {
	dir, imansPath := hooksDir(t)
	createRuntimeWant, poststopWant := wantHooks(imansPath)
	for _, c := range []struct {
		engine    string
		extension []string // the stages the engine runs itself
	}{
		{"podman", []string{"poststop"}},
		{"cri-o", nil},
	} {
		t.Run(c.engine, func(t *testing.T) {
			m, err := hooks.New(context.Background(), []string{dir}, c.extension)
			if err != nil {
				t.Fatalf("hooks.New: %v", err)
			}

			ann := map[string]string{"io.imans.enable": "true", "io.imans.mode": "audit"}
			config := &rspec.Spec{Annotations: ann}
			ext, err := m.Hooks(config, ann, false)
			if err != nil {
				t.Fatalf("Hooks: %v", err)
			}

			if config.Hooks == nil ||
				!reflect.DeepEqual(config.Hooks.CreateRuntime, []rspec.Hook{createRuntimeWant}) {
				t.Fatalf("createRuntime hooks %+v, want %+v", config.Hooks, createRuntimeWant)
			}
			poststop := config.Hooks.Poststop
			if len(c.extension) > 0 {
				poststop = ext["poststop"]
				if len(config.Hooks.Poststop) != 0 {
					t.Errorf("poststop in config.json too: %+v", config.Hooks.Poststop)
				}
			}
			if !reflect.DeepEqual(poststop, []rspec.Hook{poststopWant}) {
				t.Fatalf("poststop hooks %+v, want %+v", poststop, poststopWant)
			}
		})
	}
}

func TestHooksDDoesNotMatch(t *testing.T) {
	dir, _ := hooksDir(t)
	m, err := hooks.New(context.Background(), []string{dir}, []string{"poststop"})
	if err != nil {
		t.Fatal(err)
	}
	for name, ann := range map[string]map[string]string{
		"no annotations":   nil,
		"other annotation": {"io.imans.mode": "enforce"},
		"false":            {"io.imans.enable": "false"},
		"True":             {"io.imans.enable": "True"},
		"true with suffix": {"io.imans.enable": "trueish"},
		"true with prefix": {"io.imans.enable": "not-true"},
		"key with prefix":  {"x.io.imans.enable": "true"},
		"key with suffix":  {"io.imans.enabled": "true"},
		"dot not escaped":  {"io-imans-enable": "true"},
	} {
		t.Run(name, func(t *testing.T) {
			config := &rspec.Spec{Annotations: ann}
			ext, err := m.Hooks(config, ann, false)
			if err != nil {
				t.Fatal(err)
			}
			if config.Hooks != nil && (len(config.Hooks.CreateRuntime) != 0 ||
				len(config.Hooks.Poststop) != 0) {
				t.Errorf("hooks added: %+v", config.Hooks)
			}
			if len(ext["poststop"]) != 0 {
				t.Errorf("poststop selected: %+v", ext)
			}
		})
	}
}
