// Package hook holds the OCI hook stages of imans: decoding the state a
// runtime passes on stdin, checking container ids before they become paths,
// the per-container run folder, and the lifecycle of the detached collector
// process that measures a container between createRuntime and poststop.
package hook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxConfigSize bounds a bundle's config.json read for its annotations.
const maxConfigSize = 16 << 20

// MaxStateSize bounds the OCI state read from stdin. A state is a few
// hundred bytes plus the container's annotations, which the runtime copies
// from config.json (JSON-escaped once more): it is allowed as much as the
// config itself, so that annotations within their own limits (policy.Max*)
// always reach the checks that name the key at fault.
const MaxStateSize = maxConfigSize

// ErrStateTooLarge is returned when stdin holds more than MaxStateSize bytes.
var ErrStateTooLarge = fmt.Errorf("oci state larger than %d MiB", MaxStateSize>>20)

// ReadState decodes the OCI state a runtime writes on a hook's stdin. It
// accepts what runc and crun send: status "creating" or "created" at
// createRuntime, any ociVersion 1.x (crun says "1.0"), a pid that is 0 or
// absent at poststop, and unknown extra keys such as crun's "root". An
// empty id is an error. An id CheckID refuses (runc accepts ".hidden" or
// 250 bytes) returns the state together with an error wrapping ErrBadID,
// so the caller can still name the container: Paths uses FileName for it.
func ReadState(r io.Reader) (*specs.State, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read oci state: %w", err)
	}
	if len(data) > MaxStateSize {
		return nil, ErrStateTooLarge
	}

	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("oci state: stdin is empty")
	}
	var st specs.State
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("oci state: %w", err)
	}
	if dec.More() {
		return nil, errors.New("oci state: trailing data after the json object")
	}

	if st.ID == "" {
		return nil, fmt.Errorf("oci state: %w: empty", ErrBadID)
	}
	if st.Pid < 0 {
		return nil, fmt.Errorf("oci state: negative pid %d", st.Pid)
	}
	if st.Bundle != "" && !filepath.IsAbs(st.Bundle) {
		return nil, fmt.Errorf("oci state: bundle %q is not an absolute path", st.Bundle)
	}
	if err := CheckID(st.ID); err != nil {
		return &st, fmt.Errorf("oci state: %w", err)
	}
	return &st, nil
}

// BundleSpec is the part of a bundle's config.json the hooks read: its
// root filesystem and annotations. Decoding only these (not the whole
// specs.Spec) keeps encoding/json from preparing codecs for every type of
// the runtime spec, which cost about 2 ms of every hook's start here.
type BundleSpec struct {
	Root        *specs.Root       `json:"root,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// BundleConfig reads the annotations and root path of a bundle's
// config.json. Runtimes put the annotations in the state too; this is the
// fallback for a runtime that does not, and the source of the rootfs path.
func BundleConfig(bundle string) (*BundleSpec, error) {
	path := filepath.Join(bundle, "config.json")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle config: %w", err)
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("bundle config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("bundle config %s: larger than 16 MiB", path)
	}
	var spec BundleSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("bundle config %s: %w", path, err)
	}
	return &spec, nil
}

// RootfsPath returns the host path of a bundle's root filesystem: the
// config's root.path, relative to the bundle unless absolute.
func RootfsPath(bundle string, spec *BundleSpec) string {
	if spec == nil || spec.Root == nil || spec.Root.Path == "" {
		return filepath.Join(bundle, "rootfs")
	}
	if filepath.IsAbs(spec.Root.Path) {
		return filepath.Clean(spec.Root.Path)
	}
	return filepath.Join(bundle, spec.Root.Path)
}
