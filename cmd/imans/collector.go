package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/tpm"
)

// collectorCloseTimeout bounds the wait at the end for the TPM to take the
// last extends; it stays under poststop's StopTimeout so a collector whose
// TPM died still ends on its own and says why.
const collectorCloseTimeout = 3 * time.Second

// collectorCommand is `imans collector --dir D`: the detached process that
// measures one container from createRuntime to poststop. createRuntime
// starts it; it is not meant to be run by hand.
func collectorCommand() *cli.Command {
	return &cli.Command{
		Name:   "collector",
		Usage:  "measure one container (started by the createRuntime hook)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, Usage: "the container's run folder"},
		},
		Action: func(c *cli.Context) error { return collectorMain(c.String("dir")) },
	}
}

// collectorMain runs the collector: once the hook lets it go, it takes
// over the container's TPM, which the hook launched (its socket takes
// connections at once, so the backend attaches it from the start and its
// first command waits for the TPM to be up), runs the backend, says ready
// on the ready pipe, measures until SIGTERM or the container's end,
// drains, reads PCR 10, ends the TPM while it writes the report (when the
// container's init has exited), and writes its outcome into the run
// folder last: after the outcome it touches nothing there.
func collectorMain(dir string) error {
	hookTrace("collector start")
	ready := collectorReadyPipe()
	if !filepath.IsAbs(dir) {
		err := fmt.Errorf("collector: --dir %q is not absolute", dir)
		hook.SignalReady(ready, err)
		return err
	}
	goOn, given, err := hook.AwaitGo()
	if err != nil {
		hook.SignalReady(ready, err)
		return err
	}
	if !goOn {
		// The hook gave up before the run folder was written; it stops
		// the TPM it launched.
		return nil
	}
	hookTrace("collector go")
	hook.CloseInherited(hook.ReadyFD)

	// The hook launched the TPM before it let the collector go, and
	// handed on its connection, through which the backend extends.
	// Taking the swtpm over, to stop it at the end, runs beside the
	// backend's setup; adopted is closed once that is over, either way.
	var out hook.Outcome
	var swtpm *tpm.Swtpm
	adopted := make(chan struct{})
	go func() {
		defer close(adopted)
		s, err := collectorAdoptTPM(dir)
		if err != nil {
			out.TPMError = err.Error()
			return
		}
		swtpm = s
		hookTrace("collector tpm adopted")
	}()
	// stopTPM waits for the adoption and stops the TPM.
	stopTPM := func() {
		<-adopted
		collectorStopTPM(swtpm, dir)
	}

	var spec measure.Spec
	if err := hook.ReadJSON(dir, hook.SpecFile, &spec); err != nil {
		hook.SignalReady(ready, err)
		given.Marks.Close()
		stopTPM()
		return err
	}
	coll, err := collectorBackend(spec, given)
	if err != nil {
		hook.SignalReady(ready, err)
		given.Marks.Close()
		stopTPM()
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	ctx, cancel, exited := collectorWatchContainer(ctx, spec.Pid)
	defer cancel()

	// The backend holds the TPM from its start (the hook's connection),
	// so it may stop as soon as it is asked to: every entry is extended.
	go func() {
		<-ctx.Done()
		hookTrace("collector stop asked")
	}()

	var once sync.Once
	signalled := false
	status, err := coll.Run(ctx, func() {
		once.Do(func() {
			signalled = true
			hookTrace("collector ready")
			hook.SignalReady(ready, nil)
		})
	})
	if !signalled {
		if err == nil {
			err = fmt.Errorf("collector: backend returned before it was ready")
		}
		hook.SignalReady(ready, err)
	}
	hookTrace("collector run done")
	out.ContainerExited = exited()
	<-adopted

	// The backend read PCR 10 after its last extend, over its own
	// connection (the swtpm ends with that connection), or says why it
	// could not; a backend that never held the TPM leaves that to the
	// swtpm's exit, if it is gone.
	if len(status.PCR10) == 0 && status.PCRError == "" && swtpm != nil {
		if gone := swtpm.Exited(); gone != nil {
			out.TPMError = gone.Error()
		}
	}
	// PCR 10 is in the outcome: the TPM has done its part and is
	// stopped, its folder removed, while the report is written. Nothing
	// of this container outlives the collector (crun run, a subreaper,
	// waits for every process it inherits).
	tpmStopped := make(chan struct{})
	go func() {
		defer close(tpmStopped)
		stopTPM()
		hookTrace("collector tpm stopped")
	}()

	out.Status = status
	// The backend's status beside its lists, for tools that read a run
	// folder as they read the kernel's securityfs; poststop uses the
	// outcome.
	if werr := hook.WriteJSON(dir, measure.StatusFile, status); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		out.Error = err.Error()
	}
	out.Stopped = time.Now().UTC()
	// A container whose init exited gets its report now, while the
	// runtime tears it down, instead of after poststop's start; poststop
	// does it all when this fails or the collector was stopped instead.
	if out.ContainerExited && err == nil {
		if path, rerr := hook.WriteEarlyReport(hook.DefaultPaths(), dir, out); rerr == nil {
			out.Report = path
		}
		hookTrace("collector report")
	}
	<-tpmStopped
	werr := hook.WriteJSON(dir, hook.OutcomeFile, out)
	hookTrace("collector outcome")
	if werr != nil {
		return werr
	}
	return err
}

// collectorAdoptTPM takes over the container's swtpm, which the hook
// launched, to stop it at the end; when there is none, the error is the
// hook's reason (hook.TPMErrorFile) if it left one.
func collectorAdoptTPM(dir string) (*tpm.Swtpm, error) {
	s, err := tpm.AdoptSwtpm(hook.TPMFolder(dir))
	if err != nil {
		if why, rerr := os.ReadFile(filepath.Join(dir, hook.TPMErrorFile)); rerr == nil {
			return nil, errors.New(strings.TrimSpace(string(why)))
		}
		return nil, err
	}
	return s, nil
}

// collectorStopTPM stops the swtpm this collector adopted, when there is
// one, and removes the TPM folder and link; a failure is left for
// poststop's own RemoveTPM and goes to the collector's log.
func collectorStopTPM(s *tpm.Swtpm, dir string) {
	if s != nil {
		// Its PCR 10 is read and the state is thrown away with the
		// run folder: nothing is saved on the way out.
		if err := s.Discard(); err != nil {
			fmt.Fprintln(os.Stderr, "imans collector:", err)
		}
	}
	if err := hook.RemoveTPM(dir); err != nil {
		fmt.Fprintln(os.Stderr, "imans collector: remove tpm:", err)
	}
}

// collectorWatchContainer returns a context also cancelled when the
// container's init exits, and a function telling whether that happened.
// Runtimes run poststop only after the container's processes are gone; a
// subreaper such as `crun run` waits for the collector first, so the
// collector must end on its own. Without a pid (or a pidfd), only the stop
// request ends the collector.
func collectorWatchContainer(ctx context.Context, pid int) (
	context.Context, context.CancelFunc, func() bool) {
	ctx, cancel := context.WithCancel(ctx)
	var exited atomic.Bool
	if pid <= 0 {
		return ctx, cancel, exited.Load
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		// Already gone: a container whose hook handed on its marks may
		// end before the collector got here, if nothing it ran was on
		// a marked mount.
		exited.Store(true)
		cancel()
		return ctx, cancel, exited.Load
	}
	if err != nil {
		return ctx, cancel, exited.Load
	}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err == nil && n > 0 {
				exited.Store(true)
			}
			cancel()
			return
		}
	}()
	return ctx, cancel, exited.Load
}

// collectorReadyPipe returns the ready pipe the hook passed as descriptor
// 3, or nil when descriptor 3 is not a pipe (the collector run by hand).
func collectorReadyPipe() *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(hook.ReadyFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	unix.CloseOnExec(hook.ReadyFD)
	return os.NewFile(hook.ReadyFD, "ready")
}

// collectorBackend makes the backend the spec names, extending the TPM
// through the connection the hook handed on (without one, the backend
// dials spec.TPM itself). The fanotify backend measures through the marks
// the hook made, when it made them, else it makes its own.
func collectorBackend(spec measure.Spec, given hook.Given) (measure.Collector, error) {
	var conn net.Conn
	if given.TPM != nil {
		c, err := net.FileConn(given.TPM)
		given.TPM.Close()
		if err != nil {
			return nil, fmt.Errorf("collector: tpm connection: %w", err)
		}
		conn = c
	}
	switch spec.Backend {
	case measure.Fanotify:
		opts := []measure.FanotifyOption{measure.WithCloseTimeout(collectorCloseTimeout),
			measure.WithoutListSync()}
		if given.Marks != nil {
			opts = append(opts, measure.WithMarks(given.Marks))
		}
		if conn != nil {
			opts = append(opts, measure.WithTPMConn(conn))
		}
		return measure.NewFanotify(spec, opts...)
	case measure.Kernel:
		if given.Marks != nil {
			return nil, fmt.Errorf("collector: fanotify marks handed to backend %q",
				spec.Backend)
		}
		var opts []measure.KernelOption
		if conn != nil {
			opts = append(opts, measure.WithKernelTPMConn(conn))
		}
		return measure.NewKernel(spec, opts...)
	}
	return nil, fmt.Errorf("collector: unknown backend %q", spec.Backend)
}
