// Package shim is the runtime side of imans: it adds the imans hooks to a
// bundle's config.json when the container asks for imans, and finds the
// real OCI runtime (runc, crun) that the wrapper hands each command to.
//
// The config.json is edited as generic JSON, not through a typed spec, so
// that fields this build does not know (a newer runtime-spec, a runtime's
// own extensions) survive; a config.json that does not ask for imans is
// never rewritten at all.
package shim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
)

// AnnotationEnable is the annotation that turns imans on for a container;
// only the exact value "true" does.
const AnnotationEnable = "io.imans.enable"

// HookPATH is the environment every imans hook entry carries: runc and
// crun run hooks with the entry's environment only, and podman runs
// poststop with an empty one.
const HookPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// The environment variables that move the hook's folders (package hook
// reads them). The wrapper copies each that is set to an absolute path into
// the hook entries it adds, since runtimes run a hook with its entry's
// environment only.
const (
	RunDirEnv   = "IMANS_RUN_DIR"
	StateDirEnv = "IMANS_STATE_DIR"
)

// Hook timeouts in seconds. The createRuntime hook waits for the
// container's TPM and collector with its own shorter deadline; poststop
// replays the whole measurement list and writes the report.
const (
	CreateRuntimeTimeout = 30
	PoststopTimeout      = 60
)

// Stage names as runtime-spec spells them in config.json.
const (
	StageCreateRuntime = "createRuntime"
	StagePoststop      = "poststop"
)

// ErrNotAbsolute is returned when the imans path given for the hook
// entries is not absolute: runtimes do not search PATH for hooks.
var ErrNotAbsolute = errors.New("imans path is not absolute")

// Hook is one imans hook entry as it appears in config.json and, with the
// stage, in a hooks.d file.
type Hook struct {
	Stage   string   `json:"-"`
	Path    string   `json:"path"`
	Args    []string `json:"args"`
	Env     []string `json:"env"`
	Timeout int      `json:"timeout"`
}

// Hooks returns the two imans hook entries, createRuntime then poststop,
// running the imans binary at imansPath.
func Hooks(imansPath string) []Hook {
	return []Hook{
		{
			Stage:   StageCreateRuntime,
			Path:    imansPath,
			Args:    []string{"imans", "hook", "create-runtime"},
			Env:     []string{HookPATH},
			Timeout: CreateRuntimeTimeout,
		},
		{
			Stage:   StagePoststop,
			Path:    imansPath,
			Args:    []string{"imans", "hook", "poststop"},
			Env:     []string{HookPATH},
			Timeout: PoststopTimeout,
		},
	}
}

// Enabled reports whether a config.json asks for imans: its annotations
// hold io.imans.enable=true. A document without the key's name (and
// without any \u escape that could spell it) is not decoded at all. A
// document that is not a JSON object, or whose annotations are not a map
// of strings, gives an error.
func Enabled(configJSON []byte) (bool, error) {
	if !bytes.Contains(configJSON, []byte(AnnotationEnable)) &&
		!bytes.Contains(configJSON, []byte(`\u`)) {
		return false, nil
	}

	var doc struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(configJSON, &doc); err != nil {
		return false, fmt.Errorf("config.json: annotations: %w", err)
	}
	return doc.Annotations[AnnotationEnable] == "true", nil
}

// InjectHooks adds the imans createRuntime and poststop hook entries to a
// config.json when its annotations hold io.imans.enable=true and the
// entries are not there yet. Any entry whose args are the imans ones
// counts as there, whatever its path: podman and CRI-O may already have
// added it from hooks.d.
//
// When nothing is to be added, out is configJSON itself, byte for byte,
// and changed is false. Otherwise out is the document re-encoded with the
// new entries appended to their stages; every other field, known to
// runtime-spec or not, keeps its value (object keys come out sorted and
// the text compact).
func InjectHooks(configJSON []byte, imansPath string) (out []byte, changed bool, err error) {
	return InjectHooksEnv(configJSON, imansPath, nil)
}

// InjectHooksEnv is InjectHooks with env ("NAME=value" entries) added to
// the environment of the entries it adds, after PATH: runtimes run a hook
// with its entry's environment only.
func InjectHooksEnv(configJSON []byte, imansPath string, env []string) (out []byte,
	changed bool, err error) {
	if !filepath.IsAbs(imansPath) {
		return nil, false, fmt.Errorf("%w: %q", ErrNotAbsolute, imansPath)
	}

	enabled, err := Enabled(configJSON)
	if err != nil || !enabled {
		return configJSON, false, err
	}

	var doc map[string]json.RawMessage
	if err := json.Unmarshal(configJSON, &doc); err != nil {
		return nil, false, fmt.Errorf("config.json: %w", err)
	}
	stages := map[string][]json.RawMessage{}
	if raw, ok := doc["hooks"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &stages); err != nil {
			return nil, false, fmt.Errorf("config.json: hooks: %w", err)
		}
	}

	for _, h := range Hooks(imansPath) {
		h.Env = append(h.Env, env...)
		present, err := hasHook(stages[h.Stage], h.Args)
		if err != nil {
			return nil, false, fmt.Errorf("config.json: hooks.%s: %w", h.Stage, err)
		}
		if present {
			continue
		}
		entry, err := marshal(h)
		if err != nil {
			return nil, false, err
		}
		stages[h.Stage] = append(stages[h.Stage], entry)
		changed = true
	}
	if !changed {
		return configJSON, false, nil
	}

	if doc["hooks"], err = marshal(stages); err != nil {
		return nil, false, err
	}
	if out, err = marshal(doc); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// hasHook reports whether one of a stage's entries runs a hook with args.
func hasHook(entries []json.RawMessage, args []string) (bool, error) {
	for i, raw := range entries {
		var e struct {
			Args []string `json:"args"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return false, fmt.Errorf("entry %d: %w", i, err)
		}
		if slices.Equal(e.Args, args) {
			return true, nil
		}
	}
	return false, nil
}

// marshal encodes v compactly without HTML escaping, so that strings
// holding <, > or & keep their spelling.
func marshal(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode config.json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}
