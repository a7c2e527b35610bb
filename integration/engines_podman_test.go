//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/report"
	"github.com/imans-project/imans/shim"
)

// engPodman is podman with the flags these machines need (ENVIRONMENT.md)
// and the test's own storage, so that it leaves nothing behind.
type engPodman struct {
	t    *testing.T
	base []string
}

func newEngPodman(t *testing.T, dir string) *engPodman {
	return &engPodman{t: t, base: []string{
		"--root", filepath.Join(dir, "storage"),
		"--runroot", filepath.Join(dir, "runroot"),
		"--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
	}}
}

func (p *engPodman) run(args ...string) (string, error) {
	p.t.Helper()
	return engRun(p.t, 2*time.Minute, "podman", append(p.base, args...)...)
}

// importImage imports a busybox rootfs with the given script as an image.
func (p *engPodman) importImage(dir, script, tag string) {
	t := p.t
	t.Helper()
	rootfs := engRootfs(t, filepath.Join(dir, tag), script)
	tarball := filepath.Join(dir, tag+".tar")
	if out, err := engRun(t, time.Minute, "tar", "-C", rootfs, "-cf", tarball, "."); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	if out, err := p.run("import", tarball, "localhost/imans-demo:"+tag); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
}

// engPodmanAnnotation spells an --annotation value for podman 4, which
// reads the option as a comma-separated list in CSV: a value with a comma
// or a quote (the JSON of io.imans.expect.digests) goes in one CSV field,
// quoted, its quotes doubled.
func engPodmanAnnotation(key, value string) string {
	kv := key + "=" + value
	if !strings.ContainsAny(kv, ",\"") {
		return kv
	}
	return `"` + strings.ReplaceAll(kv, `"`, `""`) + `"`
}

// TestEnginesPodman installs the hooks.d files with `imans install podman`
// and runs the demo container with podman and the annotations: learn,
// pass, then fail after the script changed. A last run goes through
// imans-runtime as podman's runtime instead of hooks.d.
func TestEnginesPodman(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "podman", "runc", "swtpm", "busybox", "tar")
	imans, wrapper := engWrapper(t)
	dir := engWorkDir(t)

	// imans install podman, staged under dest.
	dest := filepath.Join(dir, "dest")
	out, err := engRun(t, time.Minute, imans, "install", "podman", "--destdir", dest)
	if err != nil {
		t.Fatalf("imans install podman: %v\n%s", err, out)
	}
	hooksDir := filepath.Join(dest, "usr/share/containers/oci/hooks.d")
	want, err := shim.HooksD(imans)
	must(t, err)
	for _, f := range want {
		got, err := os.ReadFile(filepath.Join(hooksDir, f.Name))
		if err != nil || string(got) != string(f.Content) {
			t.Fatalf("%s: %v\n%s", f.Name, err, got)
		}
		if !strings.Contains(out, "wrote "+filepath.Join(hooksDir, f.Name)) {
			t.Errorf("install did not say it wrote %s:\n%s", f.Name, out)
		}
	}
	for _, sub := range []string{"policies", "expectations"} {
		if fi, err := os.Stat(filepath.Join(dest, "etc/imans", sub)); err != nil || !fi.IsDir() {
			t.Errorf("etc/imans/%s not created: %v", sub, err)
		}
	}

	p := newEngPodman(t, dir)
	t.Cleanup(func() { p.run("rm", "--all", "--force") })
	p.importImage(dir, engScript, "v1")
	p.importImage(dir, engChangedScript, "v2")

	n := 0
	podmanRun := func(global []string) engRunner {
		return func(t *testing.T, name string, changed bool, ann map[string]string) (
			string, string) {
			t.Helper()
			n++
			cidFile := filepath.Join(dir, fmt.Sprintf("cid-%d", n))
			args := append(append([]string{}, global...), "run", "--rm", "--network", "none",
				"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
				"--cidfile", cidFile)
			for k, v := range ann {
				args = append(args, "--annotation", engPodmanAnnotation(k, v))
			}
			image := "localhost/imans-demo:v1"
			if changed {
				image = "localhost/imans-demo:v2"
			}
			args = append(args, image, "/bin/sh", "/app/demo.sh")
			out, err := p.run(args...)
			if err != nil {
				t.Fatalf("podman run (%s): %v\n%s", name, err, out)
			}
			cid, err := os.ReadFile(cidFile)
			must(t, err)
			return strings.TrimSpace(string(cid)), out
		}
	}

	engThreeVerdicts(t, imans, podmanRun([]string{"--runtime", "runc",
		"--hooks-dir", hooksDir}))

	// The wrapper as podman's runtime, without hooks.d: podman gives
	// the wrapper the annotations and it adds the hooks.
	id, out := podmanRun([]string{"--runtime", wrapper, "--hooks-dir",
		filepath.Join(dir, "no-hooks")})(t, "wrapper", false,
		map[string]string{shim.AnnotationEnable: "true"})
	r := engReport(t, id)
	script := findEntry(checkWhole(t, r), "/app/demo.sh")
	if !strings.Contains(out, engHello) || len(script) != 1 ||
		script[0].digest != sha256Hex(engScript) || r.Verdict == report.Incomplete {
		t.Errorf("podman with imans-runtime: output %q, script entries %+v, verdict %s",
			out, script, r.Verdict)
	}

	// Without the annotation no hooks run: no report.
	id, _ = podmanRun([]string{"--runtime", "runc", "--hooks-dir", hooksDir})(t, "off",
		false, map[string]string{"io.imans.mode": "audit"})
	time.Sleep(time.Second)
	if _, err := os.Stat(filepath.Join(engReports, id+".json")); err == nil {
		t.Errorf("a report for a container without %s=true", shim.AnnotationEnable)
	}
}
