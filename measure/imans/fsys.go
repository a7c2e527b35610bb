package imans

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// FS is securityfs as the activation sees it: files named relative to the
// mount's root ("ima/active"), descriptors as small integers, and errors as
// the kernel's errnos (unix.Errno). DirFS is the real one; the contract
// tests run the same activation against a stand-in (package imanstest).
type FS interface {
	// Open opens name with the open(2) flags given (O_RDONLY, O_WRONLY).
	Open(name string, flag int) (fd int, err error)
	// Read reads once, as read(2): 0 and no error at the end of the data.
	Read(fd int, p []byte) (int, error)
	// Write writes once, as write(2): the count may be short.
	Write(fd int, p []byte) (int, error)
	// Close closes, as close(2).
	Close(fd int) error
}

// DirFS is a mounted securityfs reached through a descriptor of its root
// folder. Its descriptors are real ones.
type DirFS struct {
	// Dir is an open descriptor of the mount's root (O_PATH is enough).
	Dir int
}

// Open opens name below Dir, never following a symbolic link out of it.
func (d DirFS) Open(name string, flag int) (int, error) {
	for {
		fd, err := unix.Openat(d.Dir, name, flag|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// Read reads from fd, retrying on EINTR.
func (DirFS) Read(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if !errors.Is(err, unix.EINTR) {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}

// Write writes to fd, retrying on EINTR.
func (DirFS) Write(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Write(fd, p)
		if !errors.Is(err, unix.EINTR) {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}

// Close closes fd.
func (DirFS) Close(fd int) error { return unix.Close(fd) }

// readAll reads fd of fsys to its end, refusing more than limit bytes.
func readAll(fsys FS, fd int, limit int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := fsys.Read(fd, buf)
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
		if len(out) > limit {
			return out, fmt.Errorf("more than %d bytes", limit)
		}
	}
}
