package measure

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Marks is a container's fanotify group with the container's mounts
// marked: the part of the fanotify backend's start that must be done
// before the container runs. From the moment the marks exist, every open
// and execution in the container waits in the group's queue until it is
// answered, so the collector that will answer may still be starting.
//
// A createRuntime hook makes the marks (MarkContainer) and hands them to
// the collector process it launched (Handoff, then AdoptMarks there, then
// WithMarks): the container's start then waits for the marks only, not for
// the collector's own start. A collector given no marks makes its own.
type Marks struct {
	fd int // the fanotify group
	// initFD is a pidfd of the container's init, -1 when the container
	// shares the marking process's pid namespace (it then serves
	// nothing: see containerGone).
	initFD int
	cont   containerID
	mounts map[uint64]*mountMark // by mount id
}

// MarkContainer identifies the container whose init is spec.Pid, creates
// its fanotify group and marks its mounts (spec.Rootfs and spec.Bundle
// name its root filesystem). The caller closes the marks, or hands them
// on and then closes its copies.
func MarkContainer(spec Spec) (*Marks, error) {
	if spec.Pid <= 0 {
		return nil, fmt.Errorf("fanotify marks: container pid %d", spec.Pid)
	}
	m := &Marks{fd: -1, initFD: -1, mounts: make(map[uint64]*mountMark)}
	cont, err := readContainerID(spec.Pid)
	if err != nil {
		return nil, err
	}
	m.cont = cont
	// The pidfd is opened after the namespaces were read: a reused pid
	// would make the namespaces another process's, never the reverse.
	// It serves the drain only when the container has a pid namespace
	// of its own, whose processes are all gone once its init is.
	own, err := readNS(os.Getpid(), "pid")
	if err == nil && own != cont.pidNS {
		if fd, err := unix.PidfdOpen(spec.Pid, 0); err == nil {
			m.initFD = fd
			unix.CloseOnExec(fd)
		}
	}

	flags := uint(unix.FAN_CLASS_CONTENT | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK |
		unix.FAN_UNLIMITED_QUEUE | unix.FAN_UNLIMITED_MARKS | unix.FAN_REPORT_TID)
	fd, err := unix.FanotifyInit(flags, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	m.fd = fd
	if err := m.markMounts(spec); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close closes the group and the descriptors that go with it; the kernel
// allows every permission event still unanswered. Closing nil marks does
// nothing.
func (m *Marks) Close() {
	if m == nil {
		return
	}
	for _, mm := range m.mounts {
		unix.Close(mm.anchor)
	}
	m.mounts = nil
	if m.initFD >= 0 {
		unix.Close(m.initFD)
		m.initFD = -1
	}
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}

// maxHandoffFDs is the most descriptors one message carries (the kernel's
// SCM_MAX_FD is 253): the group, the pidfd and a descriptor per mount.
const maxHandoffFDs = 253

// marksWire is the description that goes with the descriptors of a
// handoff, in their order: the group, the init's pidfd when Init, then one
// anchor per mount.
type marksWire struct {
	PidNS  [2]uint64   `json:"pidns"`
	MntNS  [2]uint64   `json:"mntns"`
	UIDMap [][3]uint32 `json:"uidmap"`
	GIDMap [][3]uint32 `json:"gidmap"`
	Init   bool        `json:"init"`
	Mounts []wireMount `json:"mounts"`
}

type wireMount struct {
	ID   uint64 `json:"id"`
	Dest string `json:"dest"`
}

// Handoff returns the marks as a description and the descriptors it
// describes, for another process (AdoptMarks). The descriptors stay the
// caller's to close (Close), once they are sent.
func (m *Marks) Handoff() (desc []byte, fds []int, err error) {
	if m == nil || m.fd < 0 {
		return nil, nil, errors.New("fanotify marks: closed")
	}
	w := marksWire{
		PidNS:  [2]uint64{m.cont.pidNS.dev, m.cont.pidNS.ino},
		MntNS:  [2]uint64{m.cont.mntNS.dev, m.cont.mntNS.ino},
		UIDMap: wireIDMap(m.cont.uidMap),
		GIDMap: wireIDMap(m.cont.gidMap),
		Init:   m.initFD >= 0,
	}
	fds = append(fds, m.fd)
	if w.Init {
		fds = append(fds, m.initFD)
	}
	for id, mm := range m.mounts {
		w.Mounts = append(w.Mounts, wireMount{ID: id, Dest: mm.dest})
		fds = append(fds, mm.anchor)
	}
	if len(fds) > maxHandoffFDs {
		return nil, nil, fmt.Errorf("fanotify marks: %d mounts, at most %d can be handed on",
			len(m.mounts), maxHandoffFDs-2)
	}
	desc, err = json.Marshal(w)
	return desc, fds, err
}

// AdoptMarks takes over marks another process handed on (Handoff): desc
// and the descriptors as received, in order. The descriptors belong to
// the marks from then on; on error they are all closed.
func AdoptMarks(desc []byte, fds []int) (*Marks, error) {
	fail := func(err error) (*Marks, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("fanotify marks handed on: %w", err)
	}
	var w marksWire
	if err := json.Unmarshal(desc, &w); err != nil {
		return fail(err)
	}
	want := 1 + len(w.Mounts)
	if w.Init {
		want++
	}
	if len(fds) != want {
		return fail(fmt.Errorf("%d descriptors, the description names %d", len(fds), want))
	}
	m := &Marks{fd: fds[0], initFD: -1, mounts: make(map[uint64]*mountMark, len(w.Mounts))}
	m.cont = containerID{
		pidNS:  nsID{dev: w.PidNS[0], ino: w.PidNS[1]},
		mntNS:  nsID{dev: w.MntNS[0], ino: w.MntNS[1]},
		uidMap: idMapOfWire(w.UIDMap),
		gidMap: idMapOfWire(w.GIDMap),
	}
	rest := fds[1:]
	if w.Init {
		m.initFD, rest = rest[0], rest[1:]
	}
	for i, wm := range w.Mounts {
		if _, dup := m.mounts[wm.ID]; dup {
			return fail(fmt.Errorf("mount id %d named twice", wm.ID))
		}
		m.mounts[wm.ID] = &mountMark{dest: wm.Dest, anchor: rest[i]}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	return m, nil
}

func wireIDMap(r []idRange) [][3]uint32 {
	out := make([][3]uint32, len(r))
	for i, x := range r {
		out[i] = [3]uint32{x.inside, x.outside, x.count}
	}
	return out
}

func idMapOfWire(w [][3]uint32) []idRange {
	out := make([]idRange, len(w))
	for i, x := range w {
		out[i] = idRange{inside: x[0], outside: x[1], count: x[2]}
	}
	return out
}

// WithMarks has the collector measure through marks made beforehand
// (MarkContainer, or AdoptMarks of a handoff) instead of making its own.
// The collector owns them from Run on and closes them when it ends.
func WithMarks(m *Marks) FanotifyOption {
	return func(c *fanotifyConfig) { c.marks = m }
}
