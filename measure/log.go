package measure

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/ima"
)

// MeasurementPCR is the PCR the container's entries extend.
const MeasurementPCR = 10

// While entries keep coming, extends wait until the list has been quiet
// for extendQuiet, or its oldest entry not extended has waited
// extendMaxLag.
const (
	extendQuiet  = 50 * time.Millisecond
	extendMaxLag = 5 * time.Second
)

// extenderNice is the nice value of the thread that syncs the lists and
// extends the TPM.
const extenderNice = 10

// syncEvery is the least time between two syncs of the lists while
// entries keep coming; Close always syncs.
const syncEvery = 100 * time.Millisecond

// Extender is the TPM side of a Log. *tpm.TPM satisfies it.
type Extender interface {
	// Banks returns the PCR banks the TPM has allocated ("sha1", ...).
	Banks() ([]string, error)
	// Extend extends one PCR with one digest per bank.
	Extend(pcr int, digests map[string][]byte) error
}

// Log is a container's measurement list: it appends each entry, whole, to
// the binary and the ASCII list of the run folder, and extends the
// container's TPM with the entry's digest per bank, in list order.
//
// Appending never waits for the disk or the TPM: a background goroutine
// syncs the lists to disk and then extends the TPM with every entry that
// is on disk, so the PCR never runs ahead of the durable list. Entries
// appended before a TPM is attached wait in the binary list itself (no
// queue in memory) and are extended, in order, once AttachTPM is called.
// While entries keep coming, extends wait for a quiet moment (at most
// 5 s), so the PCR may lag the list until then; Close extends the rest.
//
// A Log is safe for use by several goroutines.
type Log struct {
	bin, ascii *os.File
	// back is a second descriptor of the binary list, read by the
	// extender.
	back *os.File

	mu         sync.Mutex
	buf        []byte
	line       []byte
	written    int64 // bytes of whole entries in the binary list
	syncedTo   int64 // bytes of it the extender synced
	noSync     bool  // WithoutSync
	entries    int
	violations int
	incomplete []string
	failed     error // the first write error; later appends fail with it
	tpm        Extender
	closing    bool

	// lastAppend is the time of the last entry, firstPending that of the
	// oldest entry not extended yet (zero when none is).
	lastAppend, firstPending time.Time

	wake chan struct{}
	done chan struct{}
	// closeCh is closed by Close: the extender's waits end at once.
	closeCh chan struct{}
	// extTid is the extender's thread, 0 until it runs.
	extTid atomic.Int32

	// extended and extendedAt are the extender's progress: the number of
	// entries extended and the offset of the next one.
	extended   int
	extendedAt int64
	tpmFailed  bool
}

// LogOption changes a setting of a Log.
type LogOption func(*Log)

// WithoutSync makes the Log never fsync its lists. Only the order of
// list and extends remains: an entry is extended after its whole write,
// so the PCR never runs ahead of the list a crashed collector leaves.
// For lists on a file system that does not outlive a boot (a run folder
// under /run, tmpfs on most hosts, where a sync does nothing anyway):
// after a power loss the TPM's PCRs are reset and the list is never
// read, so syncing it only costs journal commits on the way.
func WithoutSync() LogOption {
	return func(l *Log) { l.noSync = true }
}

// OpenLog creates the two lists in dir (truncating any earlier ones) and
// starts the Log's extender.
func OpenLog(dir string, opts ...LogOption) (*Log, error) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC | os.O_APPEND
	bin, err := os.OpenFile(filepath.Join(dir, BinaryListFile), flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("measurement list: %w", err)
	}
	ascii, err := os.OpenFile(filepath.Join(dir, ASCIIListFile), flags, 0o644)
	if err != nil {
		bin.Close()
		return nil, fmt.Errorf("measurement list: %w", err)
	}
	back, err := os.Open(bin.Name())
	if err != nil {
		bin.Close()
		ascii.Close()
		return nil, fmt.Errorf("measurement list: %w", err)
	}

	l := &Log{
		bin:     bin,
		ascii:   ascii,
		back:    back,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		closeCh: make(chan struct{}),
	}
	for _, o := range opts {
		o(l)
	}
	go l.extender()
	return l, nil
}

// Append writes e to both lists, each with one write, so that a crash
// leaves both readable up to the last whole entry, and schedules its
// extend.
func (l *Log) Append(e *ima.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()

	if l.failed != nil {
		return l.failed
	}
	if l.closing {
		return errors.New("measurement list: append after close")
	}

	line, err := e.AppendASCII(l.line[:0])
	if err != nil {
		return fmt.Errorf("measurement list entry %d: %w", l.entries, err)
	}
	l.line = line
	l.buf = e.AppendBinary(l.buf[:0], binary.NativeEndian)

	if err := writeWhole(l.bin, l.buf); err != nil {
		return l.fail(fmt.Errorf("binary measurement list, entry %d: %w", l.entries, err))
	}
	if err := writeWhole(l.ascii, l.line); err != nil {
		return l.fail(fmt.Errorf("ASCII measurement list, entry %d: %w", l.entries, err))
	}

	l.written += int64(len(l.buf))
	l.entries++
	l.lastAppend = time.Now()
	if l.firstPending.IsZero() {
		l.firstPending = l.lastAppend
	}
	if e.IsViolation() {
		l.violations++
	}
	l.notify()
	return nil
}

// writeWhole writes b with one write; a short write is an error.
func writeWhole(f *os.File, b []byte) error {
	n, err := f.Write(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return io.ErrShortWrite
	}
	return nil
}

// fail records the first write failure, which makes the record
// incomplete. l.mu is held.
func (l *Log) fail(err error) error {
	l.failed = err
	l.incomplete = append(l.incomplete, err.Error())
	return err
}

// AttachTPM gives the Log the container's TPM: every entry appended so
// far, and each one after, extends PCR 10 of t, in list order. Only the
// first call counts.
func (l *Log) AttachTPM(t Extender) {
	l.mu.Lock()
	defer l.mu.Unlock()

	if l.tpm == nil && !l.closing {
		l.tpm = t
		l.notify()
	}
}

// AddIncomplete records a reason why the record is not whole.
func (l *Log) AddIncomplete(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.incomplete = append(l.incomplete, reason)
}

// Counts returns the number of entries and of violations appended.
func (l *Log) Counts() (entries, violations int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries, l.violations
}

// Incomplete returns the reasons recorded so far why the record is not
// whole.
func (l *Log) Incomplete() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.incomplete...)
}

// notify wakes the extender. l.mu is held.
func (l *Log) notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close waits up to timeout for the lists to reach the disk and for the
// TPM to be extended with every entry, then closes the lists. Entries
// not extended by then (no TPM attached, a TPM error, the timeout) are
// recorded as incomplete. Close returns the first write, sync or close
// error.
func (l *Log) Close(timeout time.Duration) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return errors.New("measurement list: closed twice")
	}
	l.closing = true
	close(l.closeCh)
	l.notify()
	l.mu.Unlock()
	// Nothing measures any more: the extender's last pass is what the
	// caller waits for, and at nice 10 a busy machine (a runtime tearing
	// the container down) would starve it for milliseconds.
	if tid := l.extTid.Load(); tid != 0 {
		unix.Setpriority(unix.PRIO_PROCESS, int(tid), 0)
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	timedOut := false
	select {
	case <-l.done:
	case <-timer.C:
		timedOut = true
	}

	l.mu.Lock()
	defer l.mu.Unlock()

	var errs []error
	if timedOut {
		l.incomplete = append(l.incomplete, fmt.Sprintf(
			"TPM: extending PCR %d did not finish within %s", MeasurementPCR, timeout))
	} else {
		l.noteUnextended()
	}
	errs = append(errs, l.failed)
	// The extender's last pass synced the whole list unless it failed
	// or did not finish; only then is it synced again here.
	if !l.noSync && (timedOut || l.syncedTo < l.written) {
		if err := l.bin.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("binary measurement list: %w", err))
		}
		if err := l.ascii.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("ASCII measurement list: %w", err))
		}
	}
	errs = append(errs, l.bin.Close(), l.ascii.Close())
	if !timedOut {
		// The extender is done with it; after a timeout it may still
		// be reading, and the descriptor goes with the process.
		errs = append(errs, l.back.Close())
	}
	return errors.Join(errs...)
}

// noteUnextended records entries the TPM has not received. l.mu is held
// and the extender has stopped.
func (l *Log) noteUnextended() {
	left := l.entries - l.extended
	if left == 0 {
		return
	}
	switch {
	case l.tpm == nil:
		l.incomplete = append(l.incomplete, fmt.Sprintf(
			"TPM: none attached, %d entries not extended into PCR %d", left, MeasurementPCR))
	case !l.tpmFailed:
		l.incomplete = append(l.incomplete, fmt.Sprintf(
			"TPM: %d entries not extended into PCR %d", left, MeasurementPCR))
	}
}

// extender syncs the lists and extends the TPM with each synced entry,
// until the Log closes.
//
// It runs on a thread of its own at a low priority: extends may lag
// while the container is busy (Close waits for them), and the container's
// processes, waiting on the collector's answers, go first.
func (l *Log) extender() {
	defer close(l.done)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), extenderNice)
	defer unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 0)
	l.extTid.Store(int32(unix.Gettid()))

	var banks []ima.Hash
	synced := int64(0)
	lastSync := time.Time{}
	for {
		<-l.wake
		l.waitQuiet()

		l.mu.Lock()
		written, t, closing := l.written, l.tpm, l.closing
		l.mu.Unlock()

		// Sync at most every syncEvery while entries keep coming, so a
		// busy container does not pay for a journal commit per entry.
		if written > synced && !closing && !l.noSync {
			if wait := syncEvery - time.Since(lastSync); wait > 0 {
				l.sleep(wait)
				l.mu.Lock()
				written, t, closing = l.written, l.tpm, l.closing
				l.mu.Unlock()
			}
		}
		if written > synced {
			if err := l.syncLists(); err != nil {
				l.AddIncomplete(err.Error())
			} else {
				l.mu.Lock()
				l.syncedTo = written
				l.mu.Unlock()
			}
			synced, lastSync = written, time.Now()
		}

		if t != nil && banks == nil && !l.tpmFailed {
			var err error
			if banks, err = tpmBanks(t); err != nil {
				l.tpmFail(err)
			}
		}
		if t != nil && !l.tpmFailed {
			l.extendUpTo(t, banks, synced)
		}
		l.mu.Lock()
		if l.extended == l.entries {
			l.firstPending = time.Time{}
		}
		l.mu.Unlock()

		if closing {
			return
		}
	}
}

// waitQuiet holds the extends back while entries keep coming, until
// the list has been quiet for extendQuiet or the oldest entry not
// extended has waited extendMaxLag: extends cost the TPM's process CPU
// time that the container, waiting on the collector's answers, needs
// more. Nothing reads the PCR before Close, which extends everything.
func (l *Log) waitQuiet() {
	for {
		l.mu.Lock()
		idle := time.Since(l.lastAppend)
		lag := time.Since(l.firstPending)
		hold := l.tpm != nil && !l.closing && !l.firstPending.IsZero()
		l.mu.Unlock()

		if !hold || idle >= extendQuiet || lag >= extendMaxLag {
			return
		}
		l.sleep(min(extendQuiet-idle, extendMaxLag-lag))
	}
}

// sleep waits for d or until Close, whichever comes first: at the end,
// the rest of the list is synced once and extended at once.
func (l *Log) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.closeCh:
	}
}

// syncLists flushes both lists to the disk.
func (l *Log) syncLists() error {
	if l.noSync {
		return nil
	}
	if err := l.bin.Sync(); err != nil {
		return fmt.Errorf("binary measurement list: sync: %w", err)
	}
	if err := l.ascii.Sync(); err != nil {
		return fmt.Errorf("ASCII measurement list: sync: %w", err)
	}
	return nil
}

// tpmBanks returns the TPM's banks that have a known hash.
func tpmBanks(t Extender) ([]ima.Hash, error) {
	names, err := t.Banks()
	if err != nil {
		return nil, fmt.Errorf("TPM: reading its banks: %w", err)
	}
	var banks []ima.Hash
	for _, n := range names {
		h := ima.Hash(n)
		if !h.Known() {
			return nil, fmt.Errorf("TPM: bank %q has no hash this collector computes", n)
		}
		banks = append(banks, h)
	}
	if len(banks) == 0 {
		return nil, errors.New("TPM: no PCR bank allocated")
	}
	return banks, nil
}

// tpmFail records a TPM failure; no entry is extended after it, since
// the PCR could no longer follow the list.
func (l *Log) tpmFail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.tpmFailed = true
	l.incomplete = append(l.incomplete, fmt.Sprintf("%v; %d of %d entries extended",
		err, l.extended, l.entries))
}

// extendUpTo reads the entries of the binary list from the extender's
// offset up to end and extends the TPM with each.
func (l *Log) extendUpTo(t Extender, banks []ima.Hash, end int64) {
	for l.extendedAt < end {
		e, n, err := readListEntry(l.back, l.extendedAt)
		if err != nil {
			l.tpmFail(fmt.Errorf("reading back entry %d of the binary list: %w", l.extended, err))
			return
		}

		digests := make(map[string][]byte, len(banks))
		for _, b := range banks {
			d, err := e.ExtendDigest(b)
			if err != nil {
				l.tpmFail(fmt.Errorf("entry %d, bank %s: %w", l.extended, b, err))
				return
			}
			digests[string(b)] = d
		}
		if err := t.Extend(int(e.PCR), digests); err != nil {
			l.tpmFail(fmt.Errorf("TPM: extending PCR %d with entry %d: %w", e.PCR, l.extended, err))
			return
		}

		l.mu.Lock()
		l.extended++
		l.mu.Unlock()
		l.extendedAt += n
	}
}

// readListEntry reads the entry at off of a binary list this package
// wrote (host byte order, sha1 header digest) and returns it with its
// size.
func readListEntry(f *os.File, off int64) (*ima.Entry, int64, error) {
	var head [4 + 20 + 4]byte
	if _, err := f.ReadAt(head[:], off); err != nil {
		return nil, 0, err
	}
	order := binary.NativeEndian
	tlen := order.Uint32(head[24:])
	if tlen == 0 || tlen > 255 {
		return nil, 0, fmt.Errorf("template name length %d at offset %d", tlen, off)
	}

	// Every template but the legacy "ima" has the data's length next;
	// "ima" has a 20-byte digest and the name's length there.
	rest := make([]byte, tlen+4)
	if _, err := f.ReadAt(rest, off+int64(len(head))); err != nil {
		return nil, 0, err
	}
	dlen, prefix := order.Uint32(rest[tlen:]), 0
	if string(rest[:tlen]) == ima.TemplateIMA {
		rest = make([]byte, tlen+24)
		if _, err := f.ReadAt(rest, off+int64(len(head))); err != nil {
			return nil, 0, err
		}
		dlen, prefix = order.Uint32(rest[tlen+20:]), 24
	}
	if dlen > 1<<24 {
		return nil, 0, fmt.Errorf("template data length %d at offset %d", dlen, off)
	}
	data := make([]byte, prefix+int(dlen))
	copy(data, rest[tlen:])
	if _, err := f.ReadAt(data[prefix:], off+int64(len(head))+int64(len(rest))); err != nil {
		return nil, 0, err
	}

	e := &ima.Entry{
		PCR:      order.Uint32(head[:4]),
		Digest:   append([]byte(nil), head[4:24]...),
		Template: string(rest[:tlen]),
		Data:     data,
	}
	return e, int64(len(head)+len(rest)) + int64(dlen), nil
}
