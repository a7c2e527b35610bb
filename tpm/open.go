// Package tpm talks to TPM 2.0 devices and swtpm instances through go-tpm's
// tpm2 API: it reads and extends PCR banks, starts and stops per-container
// swtpm instances, creates attestation keys, makes quotes and verifies them
// offline.
//
// A TPM is named by a short address (see Open). Every command has a
// deadline, so a TPM that stops answering gives ErrTimeout, and one whose
// connection breaks gives ErrGone; neither hangs the caller.
package tpm

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout is the deadline of one TPM command unless SetTimeout
// changes it. Key creation gets at least keyTimeout, since a hardware TPM
// may need tens of seconds to generate an RSA key.
const DefaultTimeout = 10 * time.Second

// keyTimeout is the least deadline of a CreatePrimary command.
const keyTimeout = 2 * time.Minute

// dialTimeout bounds connecting to a socket address.
const dialTimeout = 5 * time.Second

// TPM is an open connection to one TPM. Its methods may be called from
// several goroutines: commands are sent one at a time.
type TPM struct {
	addr string
	ch   *channel

	mu    sync.Mutex // guards banks
	banks []string   // allocated banks, read once
}

// Open connects to the TPM at addr, which is one of:
//
//	/dev/tpmrm0, /dev/tpm0   a TPM character device (any absolute path;
//	                         a path to a socket is treated as unix:path)
//	unix:/path/to/socket     swtpm's server socket (--server type=unixio)
//	tcp:host:port            swtpm's server socket (--server type=tcp)
//
// Both socket forms speak swtpm's raw protocol: the TPM command bytes and
// nothing else, not the Microsoft simulator's framing. Open sends no
// command; the first command finds out whether the TPM answers.
func Open(addr string) (*TPM, error) {
	var (
		ch  *channel
		err error
	)
	switch {
	case strings.HasPrefix(addr, "unix:"):
		ch, err = dialChannel(addr, "unix", strings.TrimPrefix(addr, "unix:"))
	case strings.HasPrefix(addr, "tcp:"):
		ch, err = dialChannel(addr, "tcp", strings.TrimPrefix(addr, "tcp:"))
	case strings.HasPrefix(addr, "/"):
		ch, err = openDevice(addr)
	default:
		return nil, fmt.Errorf("%w %q: want /dev/..., unix:/path or tcp:host:port",
			ErrBadAddress, addr)
	}
	if err != nil {
		return nil, err
	}
	return &TPM{addr: addr, ch: ch}, nil
}

// OpenConn is Open of a TPM whose connection is already made (a socket a
// parent process dialled and passed on); addr names it in errors.
func OpenConn(addr string, c net.Conn) *TPM {
	return &TPM{addr: addr, ch: newChannel(addr, c, false)}
}

// Addr returns the address the TPM was opened with.
func (t *TPM) Addr() string { return t.addr }

// SetTimeout sets the deadline of each later command; d <= 0 restores
// DefaultTimeout.
func (t *TPM) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultTimeout
	}
	t.ch.setTimeout(d)
}

// Close closes the connection. Closing twice returns nil.
func (t *TPM) Close() error {
	return t.ch.close()
}

// openDevice opens a character device, or a socket found at an absolute
// path.
func openDevice(path string) (*channel, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, openError(path, err)
	}
	if fi.Mode()&fs.ModeSocket != 0 {
		return dialChannel(path, "unix", path)
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return nil, fmt.Errorf("%w %q: neither a character device nor a socket (%s)",
			ErrBadAddress, path, fi.Mode().Type())
	}

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, openError(path, err)
	}
	c := newChannel(path, f, true)
	c.pollable = f.SetDeadline(time.Time{}) == nil
	return c, nil
}

// dialChannel connects to a swtpm server socket.
func dialChannel(addr, network, where string) (*channel, error) {
	if where == "" {
		return nil, fmt.Errorf("%w %q: empty path or host", ErrBadAddress, addr)
	}
	c, err := net.DialTimeout(network, where, dialTimeout)
	if err != nil {
		return nil, openError(addr, err)
	}
	return newChannel(addr, c, false), nil
}

// openError classifies a failure to open or dial addr.
func openError(addr string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENODEV),
		errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("open tpm %s: %w: %w", addr, ErrNoDevice, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("open tpm %s: %w (nothing listening): %w", addr, ErrNoDevice, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("open tpm %s: %w: %w", addr, ErrPermission, err)
	}
	return fmt.Errorf("open tpm %s: %w", addr, err)
}
