package measure

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pendingEvent is the permission event being handled, shared with the
// watchdog that answers it when its deadline passes.
type pendingEvent struct {
	fd       int32
	start    time.Time
	answered atomic.Bool
}

// loop reads and handles events until ctx is done, then handles what is
// still queued. It keeps to one OS thread that sleeps in poll(2), so an
// event wakes it directly, without a trip through the runtime's poller:
// the process behind a permission event waits for exactly that long.
func (c *fanotifyCollector) loop(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// Every open in the container waits for this thread: let it run
	// ahead of ordinary work. Failing that (no CAP_SYS_NICE), it runs
	// at the default priority.
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), eventThreadNice)
	defer unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 0)

	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("fanotify: eventfd: %w", err)
	}
	defer unix.Close(wake)
	stopWake := make(chan struct{})
	defer close(stopWake)
	go func() {
		select {
		case <-ctx.Done():
			unix.Write(wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		case <-stopWake:
		}
	}()

	var cur atomic.Pointer[pendingEvent]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watchdog(&cur, stop)
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN},
		{Fd: int32(wake), Events: unix.POLLIN}}
	timeout := -1
	for {
		n, err := unix.Poll(fds, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fanotify: poll: %w", err)
		}
		if n == 0 {
			// Draining, and nothing came for a while.
			return nil
		}
		if len(fds) > 1 && fds[1].Revents != 0 {
			if c.containerGone() {
				// No process can queue an event any more: what is
				// queued is all there will be.
				return c.drainQueued(buf, &cur)
			}
			// Stopped while the container may still run: handle
			// what is queued, until the queue stays empty for
			// drainQuiet.
			fds, timeout = fds[:1], int(drainQuiet/time.Millisecond)
		}
		if fds[0].Revents == 0 {
			continue
		}

		if err := c.readEvents(buf, &cur); err != nil {
			return err
		}
	}
}

// containerGone reports whether every process of the container has
// exited: its init has, and the container has a pid namespace of its
// own. The kernel kills and reaps every process of a pid namespace
// (those of namespaces nested in it too) before its init's exit shows on
// a pidfd, and a process that has exited queues no more events; so the
// queue then holds every event the container will ever make.
func (c *fanotifyCollector) containerGone() bool {
	if c.initFD < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(c.initFD), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
	}
}

// drainQueued handles every event still queued, reading until the queue
// is empty (the group is non-blocking).
func (c *fanotifyCollector) drainQueued(buf []byte, cur *atomic.Pointer[pendingEvent]) error {
	for {
		n, err := unix.Read(c.fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN) || (err == nil && n == 0):
			return nil
		case err != nil:
			return fmt.Errorf("fanotify: reading events: %w", err)
		}
		if err := c.handleBatch(buf[:n], cur); err != nil {
			return err
		}
	}
}

// drainQuiet is how long the queue must stay empty after a stop request
// for the drain to end.
const drainQuiet = 50 * time.Millisecond

// eventThreadNice is the nice value of the thread that answers the
// permission events.
const eventThreadNice = -10

// readEvents reads the queued events once and handles them. It does not
// spin for more: on two cores, a thread spinning for the next event
// takes the core the answered process needs (measured: 3 to 4 times
// slower round trips than sleeping in poll).
func (c *fanotifyCollector) readEvents(buf []byte, cur *atomic.Pointer[pendingEvent]) error {
	n, err := unix.Read(c.fd, buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fanotify: reading events: %w", err)
	}
	return c.handleBatch(buf[:n], cur)
}

// handleBatch handles the events of one read, in order.
func (c *fanotifyCollector) handleBatch(b []byte, cur *atomic.Pointer[pendingEvent]) error {
	const metaSize = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for len(b) >= metaSize {
		ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
		if ev.Vers != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("fanotify: event metadata version %d, want %d",
				ev.Vers, unix.FANOTIFY_METADATA_VERSION)
		}
		if int(ev.Event_len) < metaSize || int(ev.Event_len) > len(b) {
			return fmt.Errorf("fanotify: event length %d", ev.Event_len)
		}
		c.handleEvent(*ev, cur)
		b = b[ev.Event_len:]
	}
	return nil
}

// handleEvent handles one event and always answers a permission event
// (allowing the access: the collector measures, it does not enforce).
func (c *fanotifyCollector) handleEvent(ev unix.FanotifyEventMetadata,
	cur *atomic.Pointer[pendingEvent]) {
	if ev.Mask&unix.FAN_Q_OVERFLOW != 0 {
		c.addIncomplete("fanotify: event queue overflowed, events were lost")
	}
	if ev.Fd < 0 {
		return
	}

	p := &pendingEvent{fd: ev.Fd, start: time.Now()}
	perm := ev.Mask&fanotifyMask != 0
	if perm {
		cur.Store(p)
	}

	c.measureEvent(int(ev.Fd), ev.Mask, int(ev.Pid))

	// The descriptor is closed before the answer: the kernel matches the
	// answer by number only, and a descriptor still open for read when
	// the process resumes would count as a reader in the kernel's own
	// ToMToU check (where IMA runs beside the collector).
	unix.Close(int(ev.Fd))
	if perm {
		cur.Store(nil)
		if p.answered.CompareAndSwap(false, true) {
			c.answer(ev.Fd)
		}
	}
}

// answer allows a permission event.
func (c *fanotifyCollector) answer(fd int32) {
	resp := unix.FanotifyResponse{Fd: fd, Response: unix.FAN_ALLOW}
	b := (*[unsafe.Sizeof(resp)]byte)(unsafe.Pointer(&resp))[:]
	if _, err := unix.Write(c.fd, b); err != nil {
		c.addIncomplete(fmt.Sprintf("fanotify: answering an event: %v", err))
	}
}

// watchdog answers the event being handled once its deadline passes, so
// that no process waits on the collector for longer than that.
func (c *fanotifyCollector) watchdog(cur *atomic.Pointer[pendingEvent], stop <-chan struct{}) {
	tick := c.cfg.answerDeadline / 4
	if tick < time.Millisecond {
		tick = time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p := cur.Load()
			if p == nil || now.Sub(p.start) < c.cfg.answerDeadline {
				continue
			}
			if p.answered.CompareAndSwap(false, true) {
				c.answer(p.fd)
				c.addIncomplete(fmt.Sprintf("fanotify: an access was allowed after %s, "+
					"before its file's entry was in the list", c.cfg.answerDeadline))
			}
		}
	}
}
