// Package wrapper is the runtime wrapper's command: a drop-in for runc or
// crun that adds the imans hooks to a bundle's config.json on create and
// run, then executes the real runtime with the command line untouched. It
// is the body of `imans runtime` and of the imans-runtime binary, and it
// logs as the runtime it stands for would (package shim does the work).
//
// The imans-runtime binary holds this package and package shim only: an
// engine starts the wrapper for every runtime command (create, start,
// state, kill, delete), and the start of the whole imans binary, most of
// it the initialisation of packages the wrapper never uses, cost about
// 0.7 ms more per command than this one's (docs/engines.md).
package wrapper

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/imans-project/imans/shim"
)

// WrappedEnv is set by the wrapper in the environment of the runtime it
// executes. Finding it set on entry means the runtime list led back to a
// copy of the wrapper, which would otherwise exec itself forever.
const WrappedEnv = "IMANS_RUNTIME_WRAPPED"

// ImansName is the name of the imans binary the imans-runtime binary
// expects beside itself.
const ImansName = "imans"

// HookBinary returns the absolute path of the imans binary that the hook
// entries the wrapper adds will run.
type HookBinary func() (string, error)

// Main runs the wrapper: args[0] is the program's name, the rest the
// runtime's command line; imans names the binary the hooks run, asked only
// for a container that wants imans. Main only returns on failure, with the
// exit status; on success the real runtime has replaced the process.
func Main(args []string, imans HookBinary) int {
	inv := shim.ParseArgs(args[1:])
	log := newLogger(inv.Log, inv.LogFormat)

	if os.Getenv(WrappedEnv) != "" {
		log.Error("imans runtime: the runtime list leads back to an imans wrapper (" + WrappedEnv +
			" is set); name runc or crun in " + shim.RuntimeEnv + " or " + shim.RuntimeConf)
		return 1
	}

	if inv.Creates() {
		config := inv.ConfigPath()
		if abs, err := filepath.Abs(config); err == nil {
			// Messages name the bundle wherever the runtime was started.
			config = abs
		}
		if err := prepareBundle(config, imans, log); err != nil {
			log.Error(err.Error())
			return 1
		}
	}

	runtime, err := findRuntime()
	if err != nil {
		log.Error(err.Error())
		return 1
	}

	argv := append([]string{filepath.Base(runtime)}, args[1:]...)
	env := append(os.Environ(), WrappedEnv+"=1")
	err = syscall.Exec(runtime, argv, env)
	log.Error(fmt.Sprintf("exec %s: %v", runtime, err))
	return 1
}

// prepareBundle adds the imans hooks to the bundle's spec file (path) when
// the container asks for imans.
func prepareBundle(path string, imans HookBinary, log *slog.Logger) error {
	config, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing to add hooks to, and nothing the runtime can create a
		// container from: its own message (or its --help) is the answer.
		return nil
	}
	if err != nil {
		return fmt.Errorf("imans runtime: %w", err)
	}

	enabled, err := shim.Enabled(config)
	if err != nil {
		return fmt.Errorf("imans runtime: bundle %s: %w", filepath.Dir(path), err)
	}
	if !enabled {
		return nil
	}
	bin, err := imans()
	if err != nil {
		return err
	}
	out, changed, err := shim.InjectHooksEnv(config, bin, hookEnv())
	if err != nil {
		return fmt.Errorf("imans runtime: bundle %s: %w", filepath.Dir(path), err)
	}
	if !changed {
		return nil
	}

	if err := shim.WriteFileAtomic(path, out, 0o644); err != nil {
		return fmt.Errorf("imans runtime: %w", err)
	}
	log.Info("imans hooks added to " + path + " (hook " + bin + ")")
	return nil
}

// hookEnv is the part of the wrapper's environment the hooks need: the
// folders imans uses, when set to absolute paths (the hook ignores others).
func hookEnv() []string {
	var env []string
	for _, name := range []string{shim.StateDirEnv, shim.RunDirEnv} {
		if v := os.Getenv(name); filepath.IsAbs(v) {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// Self is the HookBinary of the imans binary itself (`imans runtime`, or
// imans started by the name imans-runtime): its own path, links resolved.
func Self() (string, error) {
	exe, err := ownPath()
	if err != nil {
		return "", fmt.Errorf("imans runtime: own path: %w", err)
	}
	return exe, nil
}

// Beside is the HookBinary of the imans-runtime binary: the imans binary in
// the folder the wrapper's own file is in, links resolved, so a link to the
// wrapper elsewhere still finds it. It must be an executable regular file.
func Beside() (string, error) {
	exe, err := ownPath()
	if err != nil {
		return "", fmt.Errorf("imans runtime: own path: %w", err)
	}
	return besideOf(exe)
}

// besideOf returns the imans binary in the folder of exe.
func besideOf(exe string) (string, error) {
	bin := filepath.Join(filepath.Dir(exe), ImansName)
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("imans runtime: the hooks run the imans binary beside the "+
			"wrapper: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("imans runtime: the hooks run the imans binary beside the "+
			"wrapper: %s is not an executable file (%s)", bin, fi.Mode())
	}
	return bin, nil
}

// ownPath is the absolute path of the running executable, links resolved.
func ownPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

func findRuntime() (string, error) {
	candidates, err := shim.Candidates(os.Getenv(shim.RuntimeEnv), shim.RuntimeConf)
	if err != nil {
		return "", fmt.Errorf("imans runtime: %w", err)
	}
	runtime, err := shim.FindRuntime(candidates, "/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("imans runtime: %w", err)
	}
	return runtime, nil
}
