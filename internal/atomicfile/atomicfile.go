// Package atomicfile replaces files so that a reader, or a crash at any
// moment, sees the old content whole or the new content whole: the data
// goes to a temporary file in the same folder, which is renamed over the
// file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Options says how Write replaces a file. The zero value writes a 0600
// file, fsyncs it before the rename and fsyncs the folder after it.
type Options struct {
	// Perm is the mode of a new file; 0 means 0600.
	Perm os.FileMode
	// KeepOwner keeps the mode, owner and group of the file replaced.
	KeepOwner bool
	// NoSyncDir leaves the folder unsynced: the rename is durable once a
	// later synced write in the same folder returns.
	NoSyncDir bool
	// NoSync syncs neither the data nor the folder (files on /run, which
	// do not outlive a boot).
	NoSync bool
	// BeforeRename, for tests, runs between the write and the rename.
	BeforeRename func(tmp string)
	// Ready, when set, runs after the data is written (and synced) and
	// before the rename: the caller's other work that the new file must
	// not be seen before. An error from it leaves the file as it was
	// and is returned.
	Ready func() error
}

// Write replaces the file at path with data as o says. The folder must
// exist. Errors name path.
func Write(path string, data []byte, o Options) error {
	perm := o.Perm
	if perm == 0 {
		perm = 0o600
	}
	var old os.FileInfo
	if o.KeepOwner {
		if fi, err := os.Stat(path); err == nil {
			old, perm = fi, fi.Mode().Perm()
		}
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// The name says who left it, should a crash leave it behind.
	tmp, err := os.CreateTemp(dir, "."+base+".imans-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}

	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := keepOwner(tmp, old); err != nil {
		return fail(err)
	}
	if !o.NoSync {
		if err := tmp.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}

	if o.Ready != nil {
		if err := o.Ready(); err != nil {
			os.Remove(name)
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if o.BeforeRename != nil {
		o.BeforeRename(name)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.NoSync || o.NoSyncDir {
		return nil
	}
	return syncDir(path, dir)
}

// syncDir makes a rename in dir durable.
func syncDir(path, dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync folder: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync folder: %w", path, err)
	}
	return nil
}

// keepOwner gives the new file the owner and group of the old one when
// they differ (a root wrapper rewriting a rootless engine's bundle).
func keepOwner(f *os.File, old os.FileInfo) error {
	if old == nil {
		return nil
	}
	want, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	got, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (got.Uid == want.Uid && got.Gid == want.Gid) {
		return nil
	}
	return f.Chown(int(want.Uid), int(want.Gid))
}
