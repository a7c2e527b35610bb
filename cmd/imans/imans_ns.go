package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/measure/imans"
	"github.com/imans-project/imans/policy"
)

// imaNamespaceCommand is `imans ima-namespace`: the kernel backend's tools
// for an operator checking a kernel. `probe` says whether the kernel has
// IMA namespaces; `activate` runs the backend's activation against a
// process in its own user namespace and prints every kernel-facing step
// with its result, then the namespace's list as it grows. The collector
// itself re-executes imans as its helper through the environment, not
// through this command; either way the helper is started by nsenter(1)
// (util-linux), so this command works from a static, CGO_ENABLED=0 build.
func imaNamespaceCommand() *cli.Command {
	return &cli.Command{
		Name:   "ima-namespace",
		Usage:  "probe and drive the kernel's IMA namespaces (kernel backend)",
		Hidden: true,
		Subcommands: []*cli.Command{
			{
				Name:  "probe",
				Usage: "say whether this kernel has IMA namespaces, and why not",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "cache",
						Usage: "keep the answer in this file for the rest of the boot"},
				},
				Action: func(c *cli.Context) error { return imaNamespaceProbe(c.String("cache")) },
			},
			{
				Name: "activate",
				Usage: "activate IMA in the user namespace of --pid with a policy, print " +
					"each step, then the list's entries until interrupted",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "pid", Required: true,
						Usage: "host pid of a process in the target user namespace"},
					&cli.StringFlag{Name: "policy",
						Usage: "policy file (default: the built-in container policy)"},
					&cli.DurationFlag{Name: "hold", Value: 0,
						Usage: "stop after this long (default: until interrupted)"},
				},
				Action: func(c *cli.Context) error {
					return imaNamespaceActivate(c.Int("pid"), c.String("policy"),
						c.Duration("hold"))
				},
			},
		},
	}
}

func imaNamespaceProbe(cache string) error {
	var ok bool
	var reason string
	if cache != "" {
		ok, reason = measure.ProbeKernelCached(cache)
	} else {
		ok, reason = measure.ProbeKernel()
	}
	if !ok {
		return fmt.Errorf("no IMA namespaces: %s", reason)
	}
	fmt.Println("yes:", reason)
	return nil
}

func imaNamespaceActivate(pid int, policyFile string, hold time.Duration) error {
	text := policy.BuiltinText()
	if policyFile != "" {
		b, err := os.ReadFile(policyFile)
		if err != nil {
			return err
		}
		text = string(b)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if hold > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, hold)
		defer cancel()
	}

	step := func(step, result string) { fmt.Printf("step: %s => %s\n", step, result) }
	ns, err := imans.Enter(ctx, pid, imans.EnterOptions{Policy: text, StepLog: step})
	if err != nil {
		return err
	}
	defer ns.Close()
	fmt.Printf("active: %d rules committed; entries follow (ASCII form)\n", ns.Rules)

	rd := ima.NewBinaryReader(ns.List, ima.Follow(), ima.HostOrder(), ima.Bank(ima.SHA1))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		e, err := rd.Next()
		switch {
		case err == nil || errors.Is(err, ima.ErrTemplateHash):
			line, aerr := e.AppendASCII(nil)
			if aerr != nil {
				return aerr
			}
			if err != nil {
				fmt.Printf("# entry %d: %v\n", rd.Index()-1, err)
			}
			os.Stdout.Write(line)
			continue
		case errors.Is(err, ima.ErrPartial) || errors.Is(err, io.EOF):
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
