package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// maxResponse bounds a response's size; TPMs answer in at most 4 KiB.
const maxResponse = 64 << 10

// headerSize is the size of a response header: tag, size, response code.
const headerSize = 10

// deadliner is a connection whose reads and writes take a deadline:
// net.Conn, and an *os.File on a pollable device.
type deadliner interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// channel sends one command at a time and waits for its response, each
// within a deadline. After a timeout or a broken connection the channel
// is closed and unusable: a late response would otherwise be taken for
// the answer to the next command.
type channel struct {
	addr   string
	device bool // a character device: one read returns a whole response
	// pollable: the device's file takes deadlines, and so was opened
	// non-blocking (see readDevice).
	pollable bool

	mu      sync.Mutex
	conn    deadliner
	timeout time.Duration
	broken  error
}

// newChannel wraps an open connection.
func newChannel(addr string, conn deadliner, device bool) *channel {
	return &channel{addr: addr, conn: conn, device: device, timeout: DefaultTimeout}
}

// setTimeout sets the deadline of later commands.
func (c *channel) setTimeout(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timeout = d
}

// close closes the connection once.
func (c *channel) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	if err != nil {
		return fmt.Errorf("close tpm %s: %w", c.addr, err)
	}
	return nil
}

// with returns a go-tpm transport whose commands have at least the
// deadline d (0: the channel's timeout).
func (c *channel) with(d time.Duration) transport.TPM {
	return timed{c: c, least: d}
}

// timed is a go-tpm transport over a channel with one deadline.
type timed struct {
	c     *channel
	least time.Duration
}

// Send implements transport.TPM.
func (t timed) Send(cmd []byte) ([]byte, error) {
	return t.c.send(cmd, t.least)
}

// send writes one command and reads its response.
func (c *channel) send(cmd []byte, least time.Duration) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.broken != nil {
		return nil, fmt.Errorf("tpm %s unusable after an earlier failure: %w", c.addr, c.broken)
	}
	if c.conn == nil {
		return nil, fmt.Errorf("tpm %s: %w", c.addr, ErrClosed)
	}

	d := max(c.timeout, least)
	end := time.Now().Add(d)
	pause := 100 * time.Microsecond
	for {
		rsp, err := c.exchange(c.conn, cmd, time.Until(end))
		if err != nil {
			// Close at once: swtpm serves one connection at a time, and
			// would serve the next one only after this one is gone.
			c.broken = c.classify(err, d)
			_ = c.conn.Close()
			c.conn = nil
			return nil, c.broken
		}
		if !busy(rsp) || time.Now().Add(pause).After(end) {
			return rsp, nil
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// Response codes after which the same command is sent again: the TPM was
// busy (RETRY), is testing the algorithm it needs (TESTING), or stopped
// to let others run (YIELDED). libtpms gives RETRY to the first signing
// command after a key's creation, while it tests the algorithm.
const (
	rcRetry   = 0x922
	rcTesting = 0x90a
	rcYielded = 0x908
)

// busy reports whether a response says to send the command again.
func busy(rsp []byte) bool {
	if len(rsp) < headerSize {
		return false
	}
	switch binary.BigEndian.Uint32(rsp[6:10]) {
	case rcRetry, rcTesting, rcYielded:
		return true
	}
	return false
}

// exchange does the write and the read under a deadline. A device whose
// file cannot take a deadline is served by a goroutine instead; if it
// never answers, that goroutine stays blocked until the process exits.
func (c *channel) exchange(conn deadliner, cmd []byte, d time.Duration) ([]byte, error) {
	err := conn.SetDeadline(time.Now().Add(d))
	if err == nil {
		return c.roundTrip(conn, cmd)
	}
	if !errors.Is(err, os.ErrNoDeadline) {
		return nil, err
	}

	type result struct {
		rsp []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		rsp, err := c.roundTrip(conn, cmd)
		done <- result{rsp, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.rsp, r.err
	case <-timer.C:
		return nil, os.ErrDeadlineExceeded
	}
}

// roundTrip writes cmd and reads one whole response.
func (c *channel) roundTrip(conn deadliner, cmd []byte) ([]byte, error) {
	if _, err := conn.Write(cmd); err != nil {
		return nil, err
	}

	if c.device {
		buf := make([]byte, maxResponse)
		n, err := readDevice(conn, buf, c.pollable)
		if err != nil {
			return nil, err
		}
		if n < headerSize {
			return nil, fmt.Errorf("short response of %d bytes", n)
		}
		return buf[:n], nil
	}

	head := make([]byte, headerSize)
	if _, err := io.ReadFull(conn, head); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(head[2:6])
	if size < headerSize || size > maxResponse {
		return nil, fmt.Errorf("response header gives size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, head)
	if _, err := io.ReadFull(conn, rsp[headerSize:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

// classify turns a transport error into one wrapping this package's
// sentinels, with the address.
func (c *channel) classify(err error, d time.Duration) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("tpm %s: %w: no response within %v", c.addr, ErrTimeout, d)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("tpm %s: %w (did swtpm die?): %w", c.addr, ErrGone, err)
	}
	return fmt.Errorf("tpm %s: %w", c.addr, err)
}

// readDevice reads one response from a TPM character device. Go opens a
// device that can be polled in non-blocking mode, and there the kernel
// runs each command asynchronously: a read before the response is ready
// returns 0 bytes, not EAGAIN. So an empty read waits for the device to
// become readable (the kernel wakes pollers when the response is there),
// under the deadline already set on the file.
func readDevice(conn io.Reader, buf []byte, pollable bool) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok || !pollable {
		return conn.Read(buf)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}

	var n int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), buf)
		if errors.Is(rerr, syscall.EAGAIN) || (rerr == nil && n == 0) {
			return false
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}
