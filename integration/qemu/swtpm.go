package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Banks are the PCR banks the harness's TPM allocates.
var Banks = []string{"sha1", "sha256", "sha384", "sha512"}

// guestTPM is a fresh swtpm for one boot, listening on a control socket
// that qemu's tpm-emulator backend connects to.
type guestTPM struct {
	cmd  *exec.Cmd
	ctrl string
	done chan error
}

// startTPM manufactures a TPM state with all four banks in dir and starts
// swtpm on it. The caller stops it with stop.
func startTPM(ctx context.Context, dir string) (*guestTPM, error) {
	state := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}

	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	setup := exec.CommandContext(setupCtx, "swtpm_setup", "--tpm2", "--tpmstate", state,
		"--pcr-banks", "sha1,sha256,sha384,sha512", "--overwrite")
	if out, err := setup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("swtpm_setup: %w: %s", err, lastLines(out, 5))
	}

	ctrl := filepath.Join(dir, "swtpm.ctrl")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,path="+ctrl,
		"--log", "file="+filepath.Join(dir, "swtpm.log")+",level=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	t := &guestTPM{cmd: cmd, ctrl: ctrl, done: make(chan error, 1)}
	go func() { t.done <- cmd.Wait() }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("unix", ctrl)
		if err == nil {
			conn.Close()
			return t, nil
		}
		select {
		case err := <-t.done:
			t.done <- err
			if err == nil {
				return nil, errors.New("swtpm exited (status 0) before it answered")
			}
			return nil, fmt.Errorf("swtpm exited before it answered: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("swtpm control socket %s: no answer within 10s", ctrl)
		}
	}
}

// stop kills swtpm and waits for it, at most five seconds.
func (t *guestTPM) stop() {
	t.cmd.Process.Kill()
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
	}
}
