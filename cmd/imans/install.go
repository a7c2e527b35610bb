package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/internal/wrapper"
	"github.com/imans-project/imans/shim"
)

// wrapperName is the runtime wrapper binary, installed beside imans.
const wrapperName = "imans-runtime"

// Default places of the engines' configuration.
const (
	podmanHooksDir    = "/usr/share/containers/oci/hooks.d"
	crioHooksDir      = "/etc/containers/oci/hooks.d"
	containerdConfig  = "/etc/containerd/config.toml"
	containerdDropIns = "/etc/containerd/conf.d"
	imansConfigDir    = "/etc/imans"
)

// installCommand is `imans install podman|crio|containerd`; each engine is
// a subcommand so that its options may follow its name.
func installCommand() *cli.Command {
	engines := []struct{ name, usage string }{
		{"podman", "write the hooks.d files to " + podmanHooksDir},
		{"crio", "write the hooks.d files to " + crioHooksDir},
		{"containerd", "print the runtime handler '" + shim.ContainerdRuntime +
			"' and write it as a drop-in in " + containerdDropIns + " where that is safe"},
	}
	cmd := &cli.Command{
		Name:  "install",
		Usage: "configure podman, CRI-O or containerd to run the imans hooks",
		Description: "podman and crio: the hooks.d files (createRuntime and poststop, " +
			"matching io.imans.enable=true). containerd: the runtime handler (runc shim " +
			"with imans-runtime as its binary); it is written as a drop-in only when " +
			"config.toml has no CRI section of its own. All: creates " + imansConfigDir +
			"/policies and " + imansConfigDir + "/expectations.",
		Action: func(c *cli.Context) error {
			return cli.Exit(fmt.Sprintf("install: unknown engine %q: podman, crio or "+
				"containerd", c.Args().First()), 2)
		},
	}
	for _, e := range engines {
		name := e.name
		cmd.Subcommands = append(cmd.Subcommands, &cli.Command{
			Name:  name,
			Usage: e.usage,
			Flags: installFlags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return cli.Exit("install "+name+": unexpected argument "+
						c.Args().First(), 2)
				}
				in, err := newInstaller(c)
				if err != nil {
					return err
				}
				return in.run(name)
			},
		})
	}
	return cmd
}

func installFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "prefix", Usage: "where imans is installed: the hooks run " +
			"PREFIX/bin/imans (default: this binary)"},
		&cli.StringFlag{Name: "destdir", Usage: "write every file under this folder " +
			"(staging for packages; the paths inside the files stay as installed)"},
		&cli.StringFlag{Name: "hooks-dir", Usage: "hooks.d folder (podman default " +
			podmanHooksDir + ", crio " + crioHooksDir + ")"},
		&cli.StringFlag{Name: "containerd-config", Value: containerdConfig,
			Usage: "containerd's main configuration file"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print what would be done, change nothing"},
	}
}

// installer carries out (or, dry, describes) the steps of an install.
type installer struct {
	out       io.Writer
	destdir   string // "" is the live system
	imans     string // the hooks' binary, as installed
	wrapper   string // imans-runtime, as installed
	hooksDir  string // "" is the engine's default
	ctrConfig string
	dry       bool
}

func newInstaller(c *cli.Context) (*installer, error) {
	in := &installer{
		out:       c.App.Writer,
		destdir:   c.String("destdir"),
		hooksDir:  c.String("hooks-dir"),
		ctrConfig: c.String("containerd-config"),
		dry:       c.Bool("dry-run"),
	}

	// Engines resolve a relative folder from their own: name it absolute.
	for _, p := range []*string{&in.hooksDir, &in.ctrConfig} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
		*p = abs
	}

	if prefix := c.String("prefix"); prefix != "" {
		abs, err := filepath.Abs(prefix)
		if err != nil {
			return nil, fmt.Errorf("install: --prefix: %w", err)
		}
		in.imans = filepath.Join(abs, "bin", "imans")
	} else {
		self, err := wrapper.Self()
		if err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
		in.imans = self
	}
	in.wrapper = filepath.Join(filepath.Dir(in.imans), wrapperName)
	return in, nil
}

func (in *installer) run(engine string) error {
	var err error
	switch engine {
	case "podman":
		err = in.hooksD(podmanHooksDir, "podman")
	case "crio":
		err = in.hooksD(crioHooksDir, "CRI-O")
	case "containerd":
		err = in.containerd()
	default:
		return fmt.Errorf("install: unknown engine %q", engine)
	}
	if err != nil {
		return err
	}

	for _, sub := range []string{"policies", "expectations"} {
		if err := in.mkdir(filepath.Join(imansConfigDir, sub)); err != nil {
			return err
		}
	}
	return nil
}

// hooksD writes the two hooks.d files.
func (in *installer) hooksD(defaultDir, engine string) error {
	dir := in.hooksDir
	if dir == "" {
		dir = defaultDir
	}
	files, err := shim.HooksD(in.imans)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}

	if err := in.mkdir(dir); err != nil {
		return err
	}
	for _, f := range files {
		if err := in.write(filepath.Join(dir, f.Name), f.Content); err != nil {
			return err
		}
	}

	if _, err := os.Stat(in.staged(in.imans)); err != nil {
		in.say("note: %s does not exist (yet): %s skips a hooks.d file whose hook is "+
			"missing, without a message", in.imans, engine)
	}
	if dir != podmanHooksDir && dir != crioHooksDir {
		in.say("note: pass --hooks-dir %s to podman, or add it to hooks_dir in "+
			"containers.conf (podman) or crio.conf (CRI-O)", dir)
	}
	if in.dry || in.destdir != "" {
		in.say("once installed, containers annotated %s=true run the imans hooks",
			shim.AnnotationEnable)
	} else {
		in.say("containers annotated %s=true now run the imans hooks", shim.AnnotationEnable)
	}
	return nil
}

// criSection and importsDropIns find a CRI plugin section header and an
// imports line that takes the drop-in folder in a containerd config.
// Compiled when needed: package-level patterns would cost every start of
// the binary, the runtime wrapper's included.
func criSection() *regexp.Regexp {
	return regexp.MustCompile(
		`(?m)^\s*\[\s*plugins\.\s*["']io\.containerd\.grpc\.v1\.cri["']`)
}

func importsDropIns() *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\s*imports\s*=.*` +
		regexp.QuoteMeta(containerdDropIns) + `/`)
}

// containerd prints the runtime handler and writes it as a drop-in where
// that is safe. containerd 1.x replaces a whole plugin section with the
// one of an imported file instead of merging them: a drop-in would drop
// every CRI setting of a config.toml that has some, so then the handler
// is only printed, to be pasted into config.toml.
func (in *installer) containerd() error {
	snippet := shim.ContainerdHandler(in.wrapper)
	in.say("containerd runtime handler %q (CRI: RuntimeClass handler %q; ctr: "+
		"--runc-binary %s):\n\n%s", shim.ContainerdRuntime, shim.ContainerdRuntime,
		in.wrapper, snippet)
	if _, err := os.Stat(in.staged(in.wrapper)); err != nil {
		in.say("note: %s does not exist (yet): containerd fails every container of the "+
			"handler until it does (make install installs it beside imans)", in.wrapper)
	}

	config, err := os.ReadFile(in.staged(in.ctrConfig))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("install: %w", err)
	}
	if criSection().Match(config) {
		in.say("%s has a CRI section of its own, which an imported file would replace "+
			"whole: paste the handler above into it, then restart containerd", in.ctrConfig)
		return nil
	}

	dropIn := filepath.Join(containerdDropIns, "imans.toml")
	if err := in.mkdir(containerdDropIns); err != nil {
		return err
	}
	if err := in.write(dropIn, []byte(snippet)); err != nil {
		return err
	}

	imports := "imports = [\"" + containerdDropIns + "/*.toml\"]\n"
	switch {
	case config == nil:
		if err := in.write(in.ctrConfig, []byte("version = 2\n"+imports)); err != nil {
			return err
		}
	case !importsDropIns().Match(config):
		in.say("add this line near the top of %s so that containerd reads %s:\n\n%s",
			in.ctrConfig, dropIn, imports)
	}
	in.say("restart containerd to load the handler")
	return nil
}

// staged is where path of the installed system is under --destdir.
func (in *installer) staged(path string) string {
	if in.destdir == "" {
		return path
	}
	return filepath.Join(in.destdir, path)
}

func (in *installer) mkdir(dir string) error {
	target := in.staged(dir)
	if fi, err := os.Stat(target); err == nil && fi.IsDir() {
		return nil
	}
	if in.dry {
		in.say("would create %s", target)
		return nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	in.say("created %s", target)
	return nil
}

func (in *installer) write(path string, content []byte) error {
	target := in.staged(path)
	if old, err := os.ReadFile(target); err == nil && string(old) == string(content) {
		in.say("unchanged %s", target)
		return nil
	}
	if err := in.mkdir(filepath.Dir(path)); err != nil {
		return err
	}
	if in.dry {
		in.say("would write %s:\n%s", target, indent(content))
		return nil
	}
	if err := shim.WriteFileAtomic(target, content, 0o644); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	in.say("wrote %s", target)
	return nil
}

func (in *installer) say(format string, args ...any) {
	fmt.Fprintf(in.out, format+"\n", args...)
}

func indent(b []byte) string {
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	return "    " + strings.Join(lines, "    ")
}
