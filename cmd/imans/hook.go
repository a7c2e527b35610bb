package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/policy"
	"github.com/imans-project/imans/report"
)

// hookCommand is `imans hook create-runtime|poststop`, the OCI hook stages.
func hookCommand() *cli.Command {
	return &cli.Command{
		Name:  "hook",
		Usage: "OCI hook stages (reads the container's state on stdin)",
		Subcommands: []*cli.Command{
			{
				Name:   "create-runtime",
				Usage:  "start the container's measurement and TPM",
				Action: func(c *cli.Context) error { return hookCreateRuntime(os.Stdin) },
			},
			{
				Name:   "poststop",
				Usage:  "stop the measurement and write the container's report",
				Action: func(c *cli.Context) error { return hookPoststop(os.Stdin) },
			},
		},
	}
}

// hookFail is the one line a failing hook prints on stderr (runc shows a
// hook's output only when it fails) and the hook's exit status 1.
func hookFail(format string, args ...any) error {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	return cli.Exit(msg, 1)
}

// hookLogger returns the binary's logger: a text log file under the state
// folder and syslog when /dev/log is there. Each line carries the container
// id. Logging is best effort: a hook never fails because it cannot log.
func hookLogger(p hook.Paths, id string) (*slog.Logger, func()) {
	var handlers []slog.Handler
	var closers []io.Closer
	if err := os.MkdirAll(p.StateDir, 0o700); err == nil {
		f, err := os.OpenFile(p.LogFile(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err == nil {
			handlers = append(handlers, slog.NewTextHandler(f, nil))
			closers = append(closers, f)
		}
	}
	if _, err := os.Stat("/dev/log"); err == nil {
		if w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_DAEMON, "imans"); err == nil {
			handlers = append(handlers, slog.NewTextHandler(w, &slog.HandlerOptions{
				ReplaceAttr: dropTime,
			}))
			closers = append(closers, w)
		}
	}
	log := slog.New(slog.NewMultiHandler(handlers...)).With("container", id,
		"pid", os.Getpid())
	return log, func() {
		for _, c := range closers {
			c.Close()
		}
	}
}

// dropTime leaves the time to syslog.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// hookAnnotations returns the container's annotations: the state's, or the
// bundle config's for a runtime that leaves them out of the state.
func hookAnnotations(st *specs.State) (map[string]string, *hook.BundleSpec, error) {
	if len(st.Annotations) > 0 {
		return st.Annotations, nil, nil
	}
	if st.Bundle == "" {
		return nil, nil, nil
	}
	cfg, err := hook.BundleConfig(st.Bundle)
	if err != nil {
		return nil, nil, err
	}
	return cfg.Annotations, cfg, nil
}

// hookCreateRuntime is the createRuntime stage.
func hookCreateRuntime(stdin io.Reader) error {
	hookTrace("create start")
	defer hookTrace("create end")
	st, err := hook.ReadState(stdin)
	var idErr error
	if errors.Is(err, hook.ErrBadID) && st != nil {
		idErr, err = err, nil
	}
	if err != nil {
		return hookFail("create-runtime: %v", err)
	}
	// runc and crun put the annotations in the state; when neither the
	// state nor a readable bundle config has them, the container did not
	// ask for imans.
	ann, cfg, err := hookAnnotations(st)
	if err != nil || ann[policy.AnnotationEnable] != "true" {
		return nil
	}

	p := hook.DefaultPaths()
	// A missing mode is audit; a mode that is neither audit nor enforce
	// is taken as enforce, so a typo refuses the container.
	enforce, modeErr := hook.Enforced(ann)
	if idErr != nil {
		return hookUnusableID(p, st, cfg, enforce, idErr)
	}
	dir, salvaged, err := hook.PrepareRunDir(p, st.ID)
	if err != nil {
		log, closeLog := hookLogger(p, st.ID)
		defer closeLog()
		logSalvaged(log, salvaged)
		log.Error("no run folder, not measured", "err", err)
		merr := hook.MarkUnmeasured(p, st.ID, modeName(enforce), err)
		if merr != nil {
			log.Error("cannot tell poststop that this run is not measured", "err", merr)
		}
		if enforce {
			if merr == nil {
				// podman and crun run no poststop after a refusal.
				hookReportRefusal(p, st, log)
			}
			return hookFail("create-runtime refused: %s: %v", st.ID, err)
		}
		return nil
	}

	// The container's TPM takes milliseconds to come up: it is launched
	// first, beside the collector's launch, and is up by the time a
	// short-lived container ends. The collector takes it over.
	type launchedTPM struct {
		conn *os.File
		err  error
	}
	tpmLaunched := make(chan launchedTPM, 1)
	go func() {
		conn, err := hook.LaunchTPM(dir)
		tpmLaunched <- launchedTPM{conn, err}
	}()

	// The collector's process start is the slow part of the hook: it
	// goes on while the run folder is written, and the collector reads
	// the folder only when let go.
	var launch *hook.Launch
	exe, err := os.Executable()
	if err == nil {
		launch, err = hook.LaunchCollector(exe, dir)
	}
	if err == nil {
		defer launch.Abort()
	}

	log, closeLog := hookLogger(p, st.ID)
	defer closeLog()
	logSalvaged(log, salvaged)
	removed, salvagedStale := hook.CleanStale(p)
	for _, id := range removed {
		log.Info("removed stale run folder", "stale", id)
	}
	for i := range salvagedStale {
		logSalvaged(log, &salvagedStale[i])
	}
	hookTrace("create launched")
	if cfg == nil && st.Bundle != "" {
		cfg, _ = hook.BundleConfig(st.Bundle)
	}
	rootfs := hook.RootfsPath(st.Bundle, cfg)
	c, cerr := hookConfig(p, ann)
	rec := hook.NewRecord(p, st, rootfs, c)
	if err == nil {
		err = modeErr
	}
	if err == nil {
		err = cerr
	}
	var spec *measure.Spec
	if err == nil {
		spec, err = hook.Setup(dir, st, rec, c)
	}
	// Waited for on every path: a failure below stops the TPM.
	var given hook.Given
	if t := <-tpmLaunched; t.err != nil {
		if err == nil && enforce {
			err = t.err
		}
		log.Warn("container tpm not launched; the report will be incomplete", "err", t.err)
	} else {
		given.TPM = t.conn
		defer t.conn.Close()
	}
	// The fanotify backend's marks are made here and handed to the
	// collector: from then on the container's every open and execution
	// waits for the collector's answer, so in audit mode the container's
	// start does not wait for the collector's own.
	if err == nil && spec.Backend == measure.Fanotify {
		given.Marks, err = measure.MarkContainer(*spec)
		if err == nil && !given.Fits() {
			// Too many mounts for one message: the collector marks
			// them itself, and the hook waits for it.
			given.Marks.Close()
			given.Marks = nil
		}
		defer given.Marks.Close()
	}
	hookTrace("create setup")
	var pid int
	switch {
	case err != nil:
	case given.Marks != nil && !enforce:
		pid, err = launch.Release(given)
	default:
		pid, err = launch.Go(hook.ReadyTimeout, given)
	}
	if err != nil {
		if enforce {
			log.Error("refused container: measurement did not start", "err", err)
			if rerr := hook.Refuse(dir, rec, err); rerr != nil {
				log.Error("cannot record the refusal", "err", rerr)
			} else {
				hookReportRefusal(p, st, log)
			}
			return hookFail("create-runtime refused: %s: %v", st.ID, err)
		}
		log.Warn("measurement did not start; container runs unmeasured (audit)", "err", err)
		if aerr := hook.Abandon(dir, rec, err); aerr != nil {
			log.Error("cannot record why", "err", aerr)
		}
		return nil
	}
	log.Info("measuring", "backend", c.Backend, "mode", c.Mode, "collector", pid,
		"bundle", st.Bundle)
	return nil
}

// hookUnusableID handles a container whose id runc accepts but imans will
// not measure under (see hook.CheckID): enforce mode refuses it; audit mode
// lets it start unmeasured, logs it, and records the reason in a run folder
// named by hook.FileName, so poststop writes an incomplete report.
func hookUnusableID(p hook.Paths, st *specs.State, cfg *hook.BundleSpec, enforce bool,
	idErr error) error {
	log, closeLog := hookLogger(p, st.ID)
	defer closeLog()
	dir, salvaged, err := hook.PrepareRunDir(p, st.ID)
	logSalvaged(log, salvaged)
	if err != nil {
		log.Error("no run folder", "err", err)
		if merr := hook.MarkUnmeasured(p, st.ID, modeName(enforce), err); merr != nil {
			log.Error("cannot tell poststop that this run is not measured", "err", merr)
		}
	}
	if cfg == nil && st.Bundle != "" {
		cfg, _ = hook.BundleConfig(st.Bundle)
	}
	c := hook.CreateConfig{Mode: modeName(enforce)}
	rec := hook.NewRecord(p, st, hook.RootfsPath(st.Bundle, cfg), c)
	if enforce {
		log.Error("refused container", "err", idErr)
		if err == nil {
			if err := hook.Refuse(dir, rec, idErr); err != nil {
				log.Error("cannot record the refusal", "err", err)
			} else {
				hookReportRefusal(p, st, log)
			}
		}
		return hookFail("create-runtime refused: %v", idErr)
	}
	log.Warn("container runs unmeasured (audit)", "err", idErr)
	if err == nil {
		if err := hook.Abandon(dir, rec, idErr); err != nil {
			log.Error("cannot record why", "err", err)
		}
	}
	return nil
}

// hookReportRefusal writes the report of a container refused in enforce
// mode at once, from the refusal's record: runc runs poststop after a
// failed createRuntime, but podman and crun do not. A poststop that does
// come finds the report and leaves it.
func hookReportRefusal(p hook.Paths, st *specs.State, log *slog.Logger) {
	res, err := hook.Finish(p, st)
	if res == nil {
		log.Error("no report of the refusal", "err", err)
		return
	}
	log.Info("report", "verdict", res.Report.Verdict, "report", res.Path,
		"incomplete", strings.Join(res.Report.Incomplete, "; "))
	if err != nil {
		log.Error("report of the refusal", "err", err)
	}
}

// hookConfig turns the annotations into the container's create config.
func hookConfig(p hook.Paths, ann map[string]string) (hook.CreateConfig, error) {
	var c hook.CreateConfig
	spec, err := policy.SpecFromAnnotations(ann, "")
	if err != nil {
		// The mode as the hook takes it: audit when missing, enforce
		// for anything but audit (hook.Enforced).
		enforce, _ := hook.Enforced(ann)
		c.Mode = modeName(enforce)
		return c, err
	}
	c.Mode = string(spec.Mode)
	c.PolicyText = spec.PolicyText
	if c.PolicyText == "" && spec.Policy != nil {
		c.PolicyText = spec.Policy.Render()
	}
	c.Expect = report.Expectations{
		Digests:  spec.Expect.Digests,
		Excludes: spec.Expect.Excludes,
		PCR10:    spec.Expect.PCR10,
		Source:   spec.Expect.Source,
	}
	c.Backend, err = hookBackend(p, spec.Backend)
	if err != nil {
		return c, err
	}
	// The TPM starts in the background, after the container may have
	// started; a missing swtpm is the one failure known here.
	if _, err := exec.LookPath("swtpm"); err != nil {
		return c, fmt.Errorf("container tpm: swtpm not found on the hook's PATH: %w", err)
	}
	return c, nil
}

// hookBackend resolves auto to kernel where the kernel has IMA namespaces,
// else fanotify. An explicit kernel on a kernel without them is an error,
// returned with the backend asked for, which the report names.
func hookBackend(p hook.Paths, name string) (measure.Backend, error) {
	switch measure.Backend(name) {
	case measure.Fanotify:
		return measure.Fanotify, nil
	case measure.Kernel:
		if ok, why := probeKernel(p); !ok {
			return measure.Kernel, fmt.Errorf("backend kernel: %s", why)
		}
		return measure.Kernel, nil
	case measure.Auto, "":
		if ok, _ := probeKernel(p); ok {
			return measure.Kernel, nil
		}
		return measure.Fanotify, nil
	}
	return "", fmt.Errorf("%s: unknown backend %q", policy.AnnotationBackend, name)
}

// probeKernel asks whether the kernel has IMA namespaces, once per boot:
// the answer is kept in the run folder.
func probeKernel(p hook.Paths) (bool, string) {
	return measure.ProbeKernelCached(filepath.Join(p.RunDir, hook.KernelProbePrefix+".json"))
}

// hookPoststop is the poststop stage. It always exits 0: a runtime ignores
// a failing poststop anyway, and the report (or the log) says what
// happened. Errors go to the log and one line to stderr.
func hookPoststop(stdin io.Reader) error {
	hookTrace("poststop start")
	defer hookTrace("poststop end")
	st, err := hook.ReadState(stdin)
	if errors.Is(err, hook.ErrBadID) && st != nil {
		// Its folder and report are named by hook.FileName.
		err = nil
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "imans: poststop: %v\n", err)
		return nil
	}
	ann, _, err := hookAnnotations(st)
	p := hook.DefaultPaths()
	_, statErr := os.Stat(p.Run(st.ID))
	enabled := err == nil && ann[policy.AnnotationEnable] == "true"
	if !enabled && statErr != nil {
		return nil
	}

	log, closeLog := hookLogger(p, st.ID)
	defer closeLog()
	hookTrace("poststop logger")
	res, err := hook.Finish(p, st)
	hookTrace("poststop finished")
	switch {
	case errors.Is(err, hook.ErrAlreadyReported):
		log.Info("poststop: already reported, nothing to do", "detail", err.Error())
		return nil
	case res == nil:
		log.Error("no report written", "err", err)
		fmt.Fprintf(os.Stderr, "imans: poststop %s: %v\n", st.ID, err)
		return nil
	}

	r := res.Report
	attrs := []any{"verdict", r.Verdict, "report", res.Path, "entries", r.TPM.Entries,
		"findings", len(r.Findings)}
	if len(r.Incomplete) > 0 {
		attrs = append(attrs, "incomplete", strings.Join(r.Incomplete, "; "))
	}
	log.Info("report", attrs...)
	if err != nil {
		log.Error("poststop", "err", err)
		fmt.Fprintf(os.Stderr, "imans: poststop %s: %v\n", st.ID, err)
	}
	return nil
}

// traceFile is where IMANS_TRACE asks the stages to note their steps.
var traceFile = os.Getenv("IMANS_TRACE")

// hookTrace appends "microseconds pid step" to the file IMANS_TRACE
// names, for timing the stages (see bench/hook.sh); nothing without it.
func hookTrace(step string) {
	if traceFile == "" {
		return
	}
	f, err := os.OpenFile(traceFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%d %d %s\n", time.Now().UnixMicro(), os.Getpid(), step)
	f.Close()
}

// logSalvaged logs what became of a report an earlier run kept in its run
// folder (poststop could not write the reports folder then), so that no
// report goes without a trace.
func logSalvaged(log *slog.Logger, s *hook.Salvaged) {
	if s == nil {
		return
	}
	if s.Superseded {
		log.Warn("dropped an earlier run's kept report: the reports folder has a newer "+
			"one", "folder", s.Folder, "report_of", s.ID, "verdict", s.Verdict,
			"log_sha256", s.LogSHA256)
		return
	}
	if s.Path != "" && s.Err == nil {
		log.Info("moved an earlier run's kept report to the reports folder",
			"folder", s.Folder, "report_of", s.ID, "verdict", s.Verdict, "path", s.Path)
		return
	}
	if s.Path != "" {
		log.Warn("moved an earlier run's kept report, incompletely", "folder", s.Folder,
			"report_of", s.ID, "verdict", s.Verdict, "path", s.Path, "err", s.Err)
		return
	}
	log.Warn("could not move an earlier run's kept report to the reports folder",
		"folder", s.Folder, "report_of", s.ID, "verdict", s.Verdict, "err", s.Err)
}

// modeName is the name of the mode the hook runs a container in.
func modeName(enforce bool) string {
	if enforce {
		return string(policy.ModeEnforce)
	}
	return string(policy.ModeAudit)
}
