//go:build integration

package imans_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imans-project/imans/internal/testenv"
)

// No package of the imans command but the standard library's uses cgo:
// CGO_ENABLED=0 loses nothing (net's resolver and runtime/cgo are the
// only cgo a default build links).
func TestImansCommandHasNoCgoOfItsOwn(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps",
		"-f", "{{if .CgoFiles}}{{if not .Standard}}{{.ImportPath}}{{end}}{{end}}",
		"github.com/imans-project/imans/cmd/imans").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("packages with cgo in the imans command:\n%s", s)
	}
}

// The imans command built with CGO_ENABLED=0 is a static executable and
// drives the whole way into a user namespace mapped like a remapped
// container's (root to host uid 100000), up to the mount this kernel
// refuses. The binary sits in a 0700 directory: the helper, run as host
// uid 100000, is executed from the descriptor, not by path.
func TestStaticImansEntersUserNamespace(t *testing.T) {
	testenv.Root(t)
	requireHelper(t)
	requireNoIMANamespaces(t)

	bin := filepath.Join(t.TempDir(), "imans")
	build := exec.Command("go", "build", "-o", bin, "github.com/imans-project/imans/cmd/imans")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building imans: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("imans built with CGO_ENABLED=0 has a program interpreter")
		}
	}
	f.Close()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			t.Errorf("build setting CGO_ENABLED=%s", s.Value)
		}
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "ima-namespace", "activate",
		"--pid", strconv.Itoa(userNamespaceChild(t)), "--hold", "5s")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()

	want := "step: enter the container's user namespace and a new mount namespace => " +
		"ok: uid_map 0 100000 65536\n" +
		"step: make the helper's mounts private => ok\n" +
		"step: mount securityfs => error: operation not permitted\n"
	if err == nil || stdout.String() != want {
		t.Errorf("imans ima-namespace activate: %v\nstdout:\n%swant:\n%s", err,
			stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "imans: IMA namespace: mount securityfs: EPERM") {
		t.Errorf("stderr: %q", stderr.String())
	}
}
