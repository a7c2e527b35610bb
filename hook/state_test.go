package hook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// States as runc 1.1.5 and crun 1.8.1 write them on a hook's stdin here.
var realStates = []struct {
	name   string
	json   string
	status specs.ContainerState
	pid    int
}{
	{"runc createRuntime",
		`{"ociVersion":"1.0.2-dev","id":"demo1","status":"creating","pid":4242,` +
			`"bundle":"/work/b","annotations":{"io.imans.enable":"true"}}`,
		specs.StateCreating, 4242},
	{"runc poststop",
		`{"ociVersion":"1.0.2-dev","id":"demo1","status":"stopped",` +
			`"bundle":"/work/b","annotations":{"io.imans.enable":"true"}}`,
		specs.StateStopped, 0},
	{"crun createRuntime",
		`{"ociVersion":"1.0","id":"demo1","pid":4243,"root":"/run/crun/demo1",` +
			`"bundle":"/work/b","status":"created","annotations":{"io.imans.enable":"true"}}` + "\n",
		specs.StateCreated, 4243},
	{"crun poststop",
		`{"ociVersion":"1.0","id":"demo1","pid":0,"root":"/run/crun/demo1",` +
			`"bundle":"/work/b","status":"stopped","annotations":{"io.imans.enable":"true"}}`,
		specs.StateStopped, 0},
}

func TestReadStateReal(t *testing.T) {
	for _, c := range realStates {
		st, err := ReadState(strings.NewReader(c.json))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if st.ID != "demo1" || st.Status != c.status || st.Pid != c.pid ||
			st.Bundle != "/work/b" || st.Annotations["io.imans.enable"] != "true" {
			t.Errorf("%s: %+v", c.name, st)
		}
	}
}

func TestReadStateBad(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "stdin is empty"},
		{"not json", "runc", "oci state"},
		{"two objects", `{"id":"a","bundle":"/b"} {"id":"b"}`, "trailing data"},
		{"slash id", `{"id":"../etc","bundle":"/b"}`, "bad container id"},
		{"no id", `{"bundle":"/b"}`, "bad container id: empty"},
		{"relative bundle", `{"id":"a","bundle":"b"}`, "not an absolute path"},
		{"negative pid", `{"id":"a","pid":-1}`, "negative pid"},
		{"wrong type", `{"id":7}`, "oci state"},
	}
	for _, c := range cases {
		_, err := ReadState(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}

	big := bytes.Repeat([]byte(" "), MaxStateSize+1)
	if _, err := ReadState(bytes.NewReader(big)); !errors.Is(err, ErrStateTooLarge) {
		t.Errorf("oversized: %v, want ErrStateTooLarge", err)
	}
}

func TestCheckID(t *testing.T) {
	good := []string{"a", "demo-1", "0123456789abcdef" + strings.Repeat("f", 48), "x.y_z"}
	for _, id := range good {
		if err := CheckID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	bad := []string{"", ".", "..", "../x", "a/b", `a\b`, "-rf", "a b", "a\nb", "é",
		strings.Repeat("a", MaxIDLength+1), ".hidden", "a\x00"}
	for _, id := range bad {
		if err := CheckID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("%q: %v, want ErrBadID", id, err)
		}
	}
}

func TestBundleConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"ociVersion":"1.0.2","root":{"path":"rootfs"},` +
		`"annotations":{"io.imans.enable":"true","io.imans.mode":"enforce"}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600)
	spec, err := BundleConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Annotations["io.imans.mode"] != "enforce" {
		t.Errorf("annotations %v", spec.Annotations)
	}
	if got := RootfsPath(dir, spec); got != filepath.Join(dir, "rootfs") {
		t.Errorf("rootfs %s", got)
	}
	spec.Root.Path = "/srv/root"
	if got := RootfsPath(dir, spec); got != "/srv/root" {
		t.Errorf("absolute rootfs %s", got)
	}
	if _, err := BundleConfig(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: %v", err)
	}
}

func FuzzReadState(f *testing.F) {
	for _, c := range realStates {
		f.Add([]byte(c.json))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ReadState(bytes.NewReader(data))
		if err == nil && CheckID(st.ID) != nil {
			t.Fatalf("accepted id %q", st.ID)
		}
	})
}

func TestReadStateUnusableID(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, id := range []string{".hidden", "--", long, "..", "a/b"} {
		in := `{"ociVersion":"1.0.2","id":` + strconv.Quote(id) + `,"bundle":"/b",` +
			`"annotations":{"io.imans.enable":"true"}}`
		st, err := ReadState(strings.NewReader(in))
		if !errors.Is(err, ErrBadID) || st == nil || st.ID != id {
			t.Errorf("%q: state %v err %v, want the state and ErrBadID", id, st, err)
			continue
		}
		name := FileName(id)
		sum := sha256.Sum256([]byte(id))
		if want := "-sha256-" + hex.EncodeToString(sum[:16]); name != want {
			t.Errorf("%q: file name %q, want %q", id, name, want)
		}
		if !isFileName(name) || strings.ContainsAny(name, `/\`) || len(name) != 40 {
			t.Errorf("%q: file name %q unsafe", id, name)
		}
		p := Paths{RunDir: "/run/imans", StateDir: "/var/lib/imans"}
		if got := p.Run(id); got != "/run/imans/"+name {
			t.Errorf("%q: run folder %q", id, got)
		}
		if got := p.Report(id); got != "/var/lib/imans/reports/"+name+".json" {
			t.Errorf("%q: report %q", id, got)
		}
	}
	if got := FileName("demo-1"); got != "demo-1" {
		t.Errorf("usable id renamed: %q", got)
	}
	if isFileName("-sha256-xyz") || isFileName("..") {
		t.Error("isFileName accepts a name FileName never makes")
	}
}

func TestTPMFolderShort(t *testing.T) {
	p := Paths{RunDir: "/run/imans", StateDir: "/var/lib/imans"}
	id := strings.Repeat("t", MaxIDLength)
	run := p.Run(id)
	sum := sha256.Sum256([]byte(id))
	want := "/run/imans/.tpm/" + hex.EncodeToString(sum[:8])
	if got := TPMFolder(run); got != want {
		t.Errorf("tpm folder %q, want %q", got, want)
	}
	if got := TPMLink(run); got != want+".sock" {
		t.Errorf("tpm link %q", got)
	}
	if TPMFolder(p.Run("a")) == TPMFolder(p.Run("b")) {
		t.Error("two containers share a tpm folder")
	}

	// Setup accepts the longest id: its socket fits.
	dir := filepath.Join(t.TempDir(), id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := &specs.State{ID: id, Pid: 1}
	rec := NewRecord(p, st, "/r", CreateConfig{})
	spec, err := Setup(dir, st, rec, CreateConfig{})
	if err != nil {
		t.Fatalf("setup of a %d byte id: %v", len(id), err)
	}
	if spec.TPM != "unix:"+TPMLink(dir) || len(TPMLink(dir)) > 107 {
		t.Errorf("tpm address %q", spec.TPM)
	}
}
