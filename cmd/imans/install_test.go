package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/shim"
)

// runInstall runs `imans install ARGS` and returns what it printed.
func runInstall(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{Name: "imans", Writer: &out, ErrWriter: &out,
		Commands:       []*cli.Command{installCommand()},
		ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"imans", "install"}, args...))
	return out.String(), err
}

func TestInstallPodman(t *testing.T) {
	dest := t.TempDir()
	out, err := runInstall(t, "podman", "--destdir", dest, "--prefix", "/opt/imans")
	if err != nil {
		t.Fatal(err)
	}

	files, _ := shim.HooksD("/opt/imans/bin/imans")
	for _, f := range files {
		path := filepath.Join(dest, podmanHooksDir, f.Name)
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, f.Content) {
			t.Errorf("%s: %v\n%s", path, err, got)
		}
		if !strings.Contains(out, "wrote "+path) {
			t.Errorf("output does not name %s:\n%s", path, out)
		}
	}
	for _, d := range []string{"policies", "expectations"} {
		if fi, err := os.Stat(filepath.Join(dest, "etc/imans", d)); err != nil || !fi.IsDir() {
			t.Errorf("etc/imans/%s: %v", d, err)
		}
	}
	if !strings.Contains(out, "note: /opt/imans/bin/imans does not exist") {
		t.Errorf("no note on the missing binary:\n%s", out)
	}

	again, err := runInstall(t, "podman", "--destdir", dest, "--prefix", "/opt/imans")
	if err != nil || strings.Contains(again, "wrote ") || !strings.Contains(again, "unchanged ") {
		t.Errorf("second install: %v\n%s", err, again)
	}
}

func TestInstallCrioHooksDir(t *testing.T) {
	dest := t.TempDir()
	if _, err := runInstall(t, "crio", "--destdir", dest, "--prefix", "/usr"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dest, crioHooksDir, "imans-poststop.json"))
	if err != nil || !bytes.Contains(b, []byte(`"path": "/usr/bin/imans"`)) {
		t.Fatalf("%v\n%s", err, b)
	}
}

func TestInstallDryRun(t *testing.T) {
	dest := t.TempDir()
	for _, engine := range []string{"podman", "crio", "containerd"} {
		out, err := runInstall(t, engine, "--destdir", dest, "--dry-run")
		if err != nil || !strings.Contains(out, "would write ") {
			t.Fatalf("%s: %v\n%s", engine, err, out)
		}
	}
	entries, _ := os.ReadDir(dest)
	if len(entries) != 0 {
		t.Fatalf("dry run created %v", entries)
	}
}

func TestInstallContainerd(t *testing.T) {
	const prefix = "/opt/imans"
	snippet := shim.ContainerdHandler(prefix + "/bin/imans-runtime")
	dropIn := filepath.Join(containerdDropIns, "imans.toml")

	for _, c := range []struct {
		name, config string // config "" is no config.toml
		dropIn       bool
		wantConfig   string // config.toml afterwards
		wantSay      string
	}{
		{"no config", "", true,
			"version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n", "wrote "},
		{"imports there", "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
			true, "", "restart containerd"},
		{"no imports", "version = 2\n[grpc]\n  address = \"/run/c.sock\"\n", true, "",
			"add this line near the top"},
		{"own CRI section", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n" +
			"  sandbox_image = \"pause:3\"\n", false, "", "paste the handler above"},
		{"CRI disabled only", "version = 2\ndisabled_plugins = " +
			"[\"io.containerd.grpc.v1.cri\"]\n", true, "", "add this line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dest := t.TempDir()
			config := filepath.Join(dest, containerdConfig)
			if c.config != "" {
				os.MkdirAll(filepath.Dir(config), 0o755)
				os.WriteFile(config, []byte(c.config), 0o644)
			}

			out, err := runInstall(t, "containerd", "--destdir", dest, "--prefix", prefix)
			if err != nil {
				t.Fatal(err)
			}

			if !strings.Contains(out, snippet) || !strings.Contains(out, c.wantSay) {
				t.Errorf("output lacks the handler or %q:\n%s", c.wantSay, out)
			}
			got, err := os.ReadFile(filepath.Join(dest, dropIn))
			if c.dropIn != (err == nil) || (c.dropIn && string(got) != snippet) {
				t.Errorf("drop-in: want written %v; err %v\n%s", c.dropIn, err, got)
			}
			after, _ := os.ReadFile(config)
			want := c.config
			if c.wantConfig != "" {
				want = c.wantConfig
			}
			if string(after) != want {
				t.Errorf("config.toml:\n%s\nwant:\n%s", after, want)
			}
		})
	}
}

func TestInstallUnknownEngine(t *testing.T) {
	_, err := runInstall(t, "docker")
	ec, ok := err.(cli.ExitCoder)
	if !ok || ec.ExitCode() != 2 || !strings.Contains(err.Error(), `unknown engine "docker"`) {
		t.Fatalf("err %v", err)
	}
}

// containerd runs BinaryName without a word when it is missing, and ctr
// fails the container with "no such file": say so at install time.
func TestInstallContainerdWrapperMissing(t *testing.T) {
	dest := t.TempDir()
	out, err := runInstall(t, "containerd", "--destdir", dest, "--prefix", "/opt/imans")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "note: /opt/imans/bin/imans-runtime does not exist") {
		t.Errorf("no note on the missing wrapper:\n%s", out)
	}

	bin := filepath.Join(dest, "/opt/imans/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("imans", filepath.Join(bin, "imans-runtime")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "imans"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err = runInstall(t, "containerd", "--destdir", dest, "--prefix", "/opt/imans")
	if err != nil || strings.Contains(out, "note:") {
		t.Errorf("wrapper there: %v\n%s", err, out)
	}
}

// A staged or dry-run install turns nothing on: it must not say it did.
func TestInstallStagedSaysSo(t *testing.T) {
	for _, args := range [][]string{
		{"podman", "--destdir", t.TempDir(), "--prefix", "/opt/imans"},
		{"podman", "--dry-run", "--hooks-dir", t.TempDir()},
	} {
		out, err := runInstall(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "now run the imans hooks") ||
			!strings.Contains(out, "once installed") {
			t.Errorf("%v:\n%s", args, out)
		}
	}
}

// podman resolves --hooks-dir from its own folder: the note names the
// folder absolute.
func TestInstallRelativeHooksDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	out, err := runInstall(t, "podman", "--hooks-dir", "hooks", "--prefix", "/opt/imans",
		"--destdir", "stage")
	if err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "hooks")
	if !strings.Contains(out, "pass --hooks-dir "+abs+" to podman") {
		t.Errorf("note does not name %s:\n%s", abs, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "stage", abs, "imans-poststop.json")); err != nil {
		t.Errorf("hooks.d file not staged under the absolute folder: %v", err)
	}
}

// A containerd config named in a folder the staged system does not have
// yet is written all the same, its folder made.
func TestInstallContainerdConfigElsewhere(t *testing.T) {
	dest := t.TempDir()
	const config = "/srv/ctr/config.toml"
	out, err := runInstall(t, "containerd", "--destdir", dest, "--prefix", "/opt/imans",
		"--containerd-config", config)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dest, config))
	if want := "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"; err != nil ||
		string(got) != want {
		t.Errorf("config.toml: %q, %v; want %q", got, err, want)
	}
}
