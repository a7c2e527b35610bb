package measure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/policy"
)

// Defaults of the fanotify collector's options.
const (
	// DefaultAnswerDeadline is how long a process waits at most for its
	// open or exec to be answered while the collector measures the file.
	DefaultAnswerDeadline = 5 * time.Second
	// DefaultCacheSize is the number of files the collector remembers as
	// measured.
	DefaultCacheSize = 1 << 16
	// DefaultCloseTimeout bounds the wait for the TPM at the end.
	DefaultCloseTimeout = 10 * time.Second
)

// FanotifyOption changes a setting of the fanotify collector.
type FanotifyOption func(*fanotifyConfig)

type fanotifyConfig struct {
	answerDeadline time.Duration
	cacheSize      int
	closeTimeout   time.Duration
	logOpts        []LogOption
	marks          *Marks
	tpmConn        net.Conn
}

// WithoutListSync has the measurement list never fsynced (WithoutSync):
// for a run folder that does not outlive a boot.
func WithoutListSync() FanotifyOption {
	return func(c *fanotifyConfig) { c.logOpts = append(c.logOpts, WithoutSync()) }
}

// WithAnswerDeadline sets how long a permission event may stay
// unanswered while its file is being measured (DefaultAnswerDeadline).
// Past it, the access is allowed and the record is marked incomplete,
// since the file was used before its entry was in the list.
func WithAnswerDeadline(d time.Duration) FanotifyOption {
	return func(c *fanotifyConfig) { c.answerDeadline = d }
}

// WithCacheSize bounds the number of files remembered as measured
// (DefaultCacheSize). A file forgotten is measured again at its next use:
// a duplicate entry, never a missing one.
func WithCacheSize(n int) FanotifyOption {
	return func(c *fanotifyConfig) { c.cacheSize = n }
}

// WithCloseTimeout bounds the wait at the end for the TPM to be extended
// with every entry (DefaultCloseTimeout).
func WithCloseTimeout(d time.Duration) FanotifyOption {
	return func(c *fanotifyConfig) { c.closeTimeout = d }
}

// WithTPMConn has the collector extend the TPM through c, a connection to
// spec.TPM made beforehand, instead of dialling it. The collector closes c
// at its end.
func WithTPMConn(c net.Conn) FanotifyOption {
	return func(cfg *fanotifyConfig) { cfg.tpmConn = c }
}

// fanotifyCollector measures one container with fanotify permission
// events. See docs/fanotify.md for how each kernel behaviour is followed.
type fanotifyCollector struct {
	spec   Spec
	cfg    fanotifyConfig
	policy *policy.Policy
	algo   ima.Hash
	// needCreds is whether a rule of the policy looks at the process's
	// uid or gid, which are costly to read for every event.
	needCreds bool
	// execsFixed is whether the policy's answer for an execution of a
	// file is the same until the file's content changes: no rule looks
	// at the process's ids or at the file's owner (a chown is no write).
	execsFixed bool

	log *Log
	// owned holds the group, the pidfd and the anchors below, for their
	// close at the end.
	owned *Marks
	fd    int // the fanotify group
	self  int // the collector's own pid
	// initFD is a pidfd of the container's init, -1 without one or when
	// the container shares the collector's pid namespace.
	initFD int
	cont   containerID
	marks  map[uint64]*mountMark // by mount id
	cache  *onceCache
	fs     map[uint64]fsInfo // by device number
	tids   map[int]time.Time // container threads, until when they count
	// lastExec is the last execution's open, whose FAN_OPEN_PERM twin
	// follows it.
	lastExec execOpen
	// executed is set at the first execution of a file by the container:
	// a container that executed nothing never started its program (runc
	// reads /etc/passwd in the container before its exec, so the list of
	// a failed start is not empty), and its record is not the run's.
	executed bool

	mu         sync.Mutex
	incomplete []string

	// Reused buffers of the event loop.
	hashBuf []byte
	pathBuf []byte
}

// NewFanotify returns the fanotify collector of the container spec
// describes. It checks the spec and the policy; the measurement starts
// with Run.
func NewFanotify(spec Spec, opts ...FanotifyOption) (Collector, error) {
	cfg := fanotifyConfig{
		answerDeadline: DefaultAnswerDeadline,
		cacheSize:      DefaultCacheSize,
		closeTimeout:   DefaultCloseTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}

	if spec.Pid <= 0 {
		return nil, fmt.Errorf("fanotify collector: container pid %d", spec.Pid)
	}
	if spec.Dir == "" {
		return nil, errors.New("fanotify collector: no run folder")
	}
	algo := ima.Hash(spec.HashAlgo)
	if algo == "" {
		algo = ima.SHA256
	}
	if !algo.Known() {
		return nil, fmt.Errorf("fanotify collector: hash algorithm %q: %w",
			spec.HashAlgo, ima.ErrUnknownHash)
	}

	pol := policy.Builtin()
	if strings.TrimSpace(spec.Policy) != "" {
		var err error
		if pol, err = policy.Parse(spec.Policy); err != nil {
			return nil, fmt.Errorf("fanotify collector: policy: %w", err)
		}
	}

	return &fanotifyCollector{
		spec:      spec,
		cfg:       cfg,
		policy:    pol,
		algo:      algo,
		needCreds: policyNeedsCreds(pol.Render()),
		execsFixed: !policyNames(pol.Render(), "uid", "euid", "gid", "egid", "fowner",
			"fgroup"),
		fd:      -1,
		initFD:  -1,
		self:    os.Getpid(),
		marks:   make(map[uint64]*mountMark),
		cache:   newOnceCache(cfg.cacheSize),
		fs:      make(map[uint64]fsInfo),
		tids:    make(map[int]time.Time),
		hashBuf: make([]byte, 128<<10),
	}, nil
}

// policyNeedsCreds reports whether a measure or dont_measure rule has a
// uid=, euid=, gid= or egid= condition (with any operator).
func policyNeedsCreds(text string) bool {
	return policyNames(text, "uid", "euid", "gid", "egid")
}

// policyNames reports whether a measure or dont_measure rule of the
// rendered policy text (a rule a line) has a condition on one of names,
// with any operator. Rules of the other actions do not decide what is
// measured.
func policyNames(text string, names ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || words[0] != "measure" && words[0] != "dont_measure" {
			continue
		}
		for _, w := range words[1:] {
			if i := strings.IndexAny(w, "=<>"); i > 0 && slices.Contains(names, w[:i]) {
				return true
			}
		}
	}
	return false
}

// Run implements Collector.
func (c *fanotifyCollector) Run(ctx context.Context, ready func()) (Status, error) {
	st := Status{Backend: Fanotify}

	log, err := OpenLog(c.spec.Dir, c.cfg.logOpts...)
	if err != nil {
		c.cfg.marks.Close()
		return st, fmt.Errorf("fanotify collector: %w", err)
	}
	c.log = log

	if err := c.setup(); err != nil {
		c.closeFanotify()
		log.Close(time.Second)
		return st, fmt.Errorf("fanotify collector: %w", err)
	}

	tpmCtx, stopTPM := context.WithCancel(ctx)
	defer stopTPM()
	tpmDone := attachTPM(tpmCtx, c.spec.TPM, c.cfg.tpmConn, c.log,
		c.addIncomplete)
	ready()

	loopErr := c.loop(ctx)
	if !c.executed && loopErr == nil {
		c.addIncomplete("fanotify: the container executed no program: its process " +
			"never started")
	}

	// Every event queued has been answered: nothing waits on the group
	// any more, and releasing it waits in the kernel for its marks to be
	// destroyed (an RCU grace period, 10 to 20 ms measured), so it is
	// released in the background while the lists close.
	go c.closeFanotify()
	stopTPM()
	if err := finish(&st, log, tpmDone, c.cfg.closeTimeout, c.incompleteReasons,
		loopErr); err != nil {
		return st, fmt.Errorf("fanotify collector: %w", err)
	}
	return st, nil
}

// setup takes the marks the collector was given, or makes its own: the
// container identified, its fanotify group created and its mounts marked.
func (c *fanotifyCollector) setup() error {
	m := c.cfg.marks
	if m == nil {
		var err error
		if m, err = MarkContainer(c.spec); err != nil {
			return err
		}
	}
	c.owned = m
	c.fd, c.initFD, c.cont, c.marks = m.fd, m.initFD, m.cont, m.mounts
	return nil
}

// closeFanotify closes the group, the pidfd and the anchors; the kernel
// allows every permission event still unanswered. Nothing may use the
// group or its marks after.
func (c *fanotifyCollector) closeFanotify() {
	c.owned.Close()
}

// incompleteReasons returns a copy of the collector's own reasons.
func (c *fanotifyCollector) incompleteReasons() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.incomplete...)
}

// addIncomplete records why the record is not whole.
func (c *fanotifyCollector) addIncomplete(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.incomplete = append(c.incomplete, reason)
}
