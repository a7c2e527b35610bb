package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
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

// collectorTPMTimeout bounds the container TPM's start in the collector.
const collectorTPMTimeout = 10 * time.Second

// collectorAttachGrace bounds the wait, at the end, for the backend to
// connect to a TPM that came up after the container had already exited.
const collectorAttachGrace = 500 * time.Millisecond

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

// collectorMain runs the collector: it starts the container's TPM in the
// background (the backend's log queues extends until the TPM answers, so
// the container's start does not wait for it), runs the backend, says
// ready on the ready pipe, measures until SIGTERM, drains, and writes its
// outcome into the run folder. poststop reads the lists and the TPM.
func collectorMain(dir string) error {
	hookTrace("collector start")
	ready := collectorReadyPipe()
	if !hook.AwaitGo() {
		// The hook gave up before the run folder was written.
		return nil
	}
	hookTrace("collector go")
	hook.CloseInherited(hook.ReadyFD)
	if !filepath.IsAbs(dir) {
		err := fmt.Errorf("collector: --dir %q is not absolute", dir)
		hook.SignalReady(ready, err)
		return err
	}

	var spec measure.Spec
	if err := hook.ReadJSON(dir, hook.SpecFile, &spec); err != nil {
		hook.SignalReady(ready, err)
		return err
	}
	// tpmUp is closed once the TPM answers, attached once the backend
	// holds it (or gave up on it).
	tpmUp, attached := make(chan struct{}), make(chan struct{})
	var attachOnce sync.Once
	onAttach := func(bool) { attachOnce.Do(func() { close(attached) }) }
	coll, err := collectorBackend(spec, tpmUp, onAttach)
	if err != nil {
		hook.SignalReady(ready, err)
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	var out hook.Outcome
	ctx, cancel, exited := collectorWatchContainer(ctx, spec.Pid)
	defer cancel()

	var swtpm *tpm.Swtpm
	tpmDone := make(chan struct{})
	go func() {
		defer close(tpmDone)
		tctx, cancel := context.WithTimeout(context.Background(), collectorTPMTimeout)
		defer cancel()
		s, err := tpm.StartSwtpm(tctx, hook.TPMFolder(dir))
		if err != nil {
			out.TPMError = err.Error()
			return
		}
		sock := strings.TrimPrefix(s.Addr, "unix:")
		if err := os.Symlink(sock, hook.TPMLink(dir)); err != nil {
			out.TPMError = err.Error()
			s.Stop()
			return
		}
		swtpm = s
		close(tpmUp)
		hookTrace("collector tpm up")
	}()

	// The backend's context ends after the stop request and after the
	// TPM is up (or failed) and the backend connected to it, so a
	// container that exits within the TPM's start still has its entries
	// extended.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go func() {
		<-ctx.Done()
		hookTrace("collector stop asked")
		<-tpmDone
		switch {
		case swtpm == nil:
		case spec.Backend == measure.Fanotify:
			select {
			case <-attached:
			case <-time.After(collectorAttachGrace):
			}
		default:
			collectorAwaitAttach(strings.TrimPrefix(swtpm.Addr, "unix:"),
				collectorAttachGrace)
		}
		hookTrace("collector attached")
		stopRun()
	}()

	var once sync.Once
	signalled := false
	status, err := coll.Run(runCtx, func() {
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
	<-tpmDone
	out.ContainerExited = exited()

	// The list is closed and every entry extended: read PCR 10 now.
	if swtpm != nil {
		pcrs, perr := hook.ReadPCR10(spec.TPM)
		out.PCR10 = pcrs
		if perr != nil {
			out.PCRError = perr.Error()
		}
		hookTrace("collector pcr read")
	}

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
	werr := hook.WriteJSON(dir, hook.OutcomeFile, out)
	hookTrace("collector outcome")

	// With the outcome written, poststop goes on; the TPM is stopped
	// meanwhile, so nothing of this container outlives the collector
	// (crun run, a subreaper, waits for every process it inherits).
	// poststop's own stop of the TPM waits for the same exit before it
	// removes the run folder.
	if swtpm != nil {
		swtpm.Stop()
		hookTrace("collector tpm stopped")
	}
	if werr != nil {
		return werr
	}
	return err
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

// collectorAwaitAttach waits until this process holds a connection to the
// swtpm socket at sock, at most timeout. The backend connects to the TPM in
// the background and gives up when its context ends; once its connection
// exists, it attaches the TPM whatever happens to the context. swtpm
// serves one client at a time, and the start's probe has closed its own.
func collectorAwaitAttach(sock string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if collectorConnectedTo(sock) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// collectorConnectedTo reports whether a descriptor of this process is a
// unix socket connected to the socket bound at path.
func collectorConnectedTo(path string) bool {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getpeername(fd)
		if err != nil {
			continue
		}
		if un, ok := sa.(*unix.SockaddrUnix); ok && un.Name == path {
			return true
		}
	}
	return false
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

// collectorBackend makes the backend the spec names. The fanotify backend
// dials the TPM once tpmUp is closed and calls attached when it holds it;
// the kernel backend dials on its own, and the collector watches its
// descriptors for the connection (collectorAwaitAttach).
func collectorBackend(spec measure.Spec, tpmUp <-chan struct{}, attached func(bool)) (
	measure.Collector, error) {
	switch spec.Backend {
	case measure.Fanotify:
		return measure.NewFanotify(spec, measure.WithCloseTimeout(collectorCloseTimeout),
			measure.WithTPMUp(tpmUp), measure.WithTPMAttached(attached),
			measure.WithoutListSync())
	case measure.Kernel:
		return measure.NewKernel(spec)
	}
	return nil, fmt.Errorf("collector: unknown backend %q", spec.Backend)
}
