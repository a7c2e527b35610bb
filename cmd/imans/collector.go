package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
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
	ready := collectorReadyPipe()
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
	coll, err := collectorBackend(spec)
	if err != nil {
		hook.SignalReady(ready, err)
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	var out hook.Outcome
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tctx, cancel := context.WithTimeout(context.Background(), collectorTPMTimeout)
		defer cancel()
		if _, err := tpm.StartSwtpm(tctx, filepath.Join(dir, hook.TPMDir)); err != nil {
			out.TPMError = err.Error()
		}
	}()

	var once sync.Once
	signalled := false
	status, err := coll.Run(ctx, func() {
		once.Do(func() {
			signalled = true
			hook.SignalReady(ready, nil)
		})
	})
	if !signalled {
		if err == nil {
			err = fmt.Errorf("collector: backend returned before it was ready")
		}
		hook.SignalReady(ready, err)
	}
	wg.Wait()

	out.Status = status
	if err != nil {
		out.Error = err.Error()
	}
	out.Stopped = time.Now().UTC()
	if werr := hook.WriteJSON(dir, hook.OutcomeFile, out); werr != nil {
		return werr
	}
	return err
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

// collectorBackend makes the backend the spec names.
func collectorBackend(spec measure.Spec) (measure.Collector, error) {
	switch spec.Backend {
	case measure.Fanotify:
		return measure.NewFanotify(spec)
	case measure.Kernel:
		return nil, fmt.Errorf("kernel backend not built yet")
	}
	return nil, fmt.Errorf("collector: unknown backend %q", spec.Backend)
}
