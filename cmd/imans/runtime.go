package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/shim"
)

// wrappedEnv is set by the wrapper in the environment of the runtime it
// executes. Finding it set on entry means the runtime list led back to a
// copy of the wrapper, which would otherwise exec itself forever.
const wrappedEnv = "IMANS_RUNTIME_WRAPPED"

// runtimeCommand is `imans runtime ARGS...`: the runtime wrapper under the
// imans command; its arguments are runc's or crun's, untouched.
func runtimeCommand() *cli.Command {
	return &cli.Command{
		Name:      "runtime",
		Usage:     "run an OCI runtime (runc, crun) with the imans hooks added on create",
		ArgsUsage: "[runtime options] COMMAND [command options] ...",
		Description: "A drop-in for runc or crun, also installed as imans-runtime. Every " +
			"command goes to the real runtime untouched; on create and run, a bundle " +
			"whose config.json has the annotation io.imans.enable=true first gets the " +
			"imans createRuntime and poststop hooks. The runtime is the first of " +
			shim.RuntimeEnv + " (comma-separated), else of " + shim.RuntimeConf +
			", else runc then crun.",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			args := append([]string{"imans runtime"}, c.Args().Slice()...)
			os.Exit(runtimeMain(args))
			return nil
		},
	}
}

// runtimeMain is the wrapper: args[0] is the program's name, the rest the
// runtime's command line. It only returns on failure, with the exit
// status; on success the real runtime has replaced the process.
func runtimeMain(args []string) int {
	inv := shim.ParseArgs(args[1:])
	log := newRuntimeLogger(inv.Log, inv.LogFormat)

	if os.Getenv(wrappedEnv) != "" {
		log.Error("the runtime list leads back to an imans wrapper (" + wrappedEnv +
			" is set); name runc or crun in " + shim.RuntimeEnv + " or " + shim.RuntimeConf)
		return 1
	}

	if inv.Creates() {
		if err := prepareBundle(inv.ConfigPath(), log); err != nil {
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
	env := append(os.Environ(), wrappedEnv+"=1")
	err = syscall.Exec(runtime, argv, env)
	log.Error(fmt.Sprintf("exec %s: %v", runtime, err))
	return 1
}

// prepareBundle adds the imans hooks to the bundle's spec file (path) when
// the container asks for imans.
func prepareBundle(path string, log *slog.Logger) error {
	config, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing to add hooks to, and nothing the runtime can create a
		// container from: its own message (or its --help) is the answer.
		return nil
	}
	if err != nil {
		return fmt.Errorf("imans runtime: %w", err)
	}

	self, err := selfPath()
	if err != nil {
		return err
	}
	out, changed, err := shim.InjectHooksEnv(config, self, hookEnv())
	if err != nil {
		return fmt.Errorf("imans runtime: bundle %s: %w", filepath.Dir(path), err)
	}
	if !changed {
		return nil
	}

	if err := shim.WriteFileAtomic(path, out, 0o644); err != nil {
		return fmt.Errorf("imans runtime: %w", err)
	}
	log.Info("imans hooks added to " + path + " (hook " + self + ")")
	return nil
}

// hookEnv is the part of the wrapper's environment the hooks need: the
// folders imans uses, when set to absolute paths (the hook ignores others).
func hookEnv() []string {
	var env []string
	for _, name := range []string{hook.StateDirEnv, hook.RunDirEnv} {
		if v := os.Getenv(name); filepath.IsAbs(v) {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// selfPath is the absolute path of the imans binary, links resolved: the
// hooks run it, whatever name the wrapper was called by.
func selfPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("imans runtime: own path: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("imans runtime: own path: %w", err)
	}
	return exe, nil
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

// newRuntimeLogger writes the wrapper's own messages as the runtime it
// stands for would: to the --log file when given (opened only when there
// is something to say), as JSON lines {"level","msg","time"} with runc's
// lowercase levels when --log-format is json, else as text. Errors also go
// to stderr, where engines without a log file look.
func newRuntimeLogger(path, format string) *slog.Logger {
	w := &lazyLog{path: path}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: runcAttr}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(&stderrErrors{Handler: h, logFile: path != ""})
}

// runcAttr spells levels and times the way runc's log lines do.
func runcAttr(groups []string, a slog.Attr) slog.Attr {
	switch {
	case len(groups) > 0:
		return a
	case a.Key == slog.LevelKey:
		return slog.String(slog.LevelKey, strings.ToLower(a.Value.String()))
	case a.Key == slog.TimeKey:
		return slog.String(slog.TimeKey, a.Value.Time().Format(time.RFC3339))
	}
	return a
}

// lazyLog appends each write to a file opened for that write only; without
// a path it discards. Its errors are ignored: the wrapper must not fail a
// container because its log cannot be written.
type lazyLog struct{ path string }

func (l *lazyLog) Write(p []byte) (int, error) {
	if l.path == "" {
		return len(p), nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return len(p), nil
	}
	defer f.Close()
	f.Write(p)
	return len(p), nil
}

// stderrErrors copies error records to stderr, as one plain line, and
// passes records to the log file's handler only when there is a log file.
// The wrapper logs without attributes, so With and WithGroup are not
// wrapped.
type stderrErrors struct {
	slog.Handler
	logFile bool
}

func (h *stderrErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		fmt.Fprintln(io.Writer(os.Stderr), r.Message)
	}
	if !h.logFile {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}
