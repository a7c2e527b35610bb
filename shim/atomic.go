package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// beforeRename, when set (by tests only), runs after the new content is
// written and synced and before it replaces the old file.
var beforeRename func(tmp string)

// WriteFileAtomic replaces the file at path with data so that a reader, or
// a crash at any moment, sees either the old content whole or the new
// content whole: the data goes to a temporary file in the same folder,
// which is synced, renamed over path, and the folder synced. The file
// keeps the mode and owner of the file it replaces, or gets perm when
// there was none.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	old, err := os.Stat(path)
	if err == nil {
		perm = old.Mode().Perm()
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".imans-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(name)
		}
	}()

	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := keepOwner(tmp, old); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}

	if beforeRename != nil {
		beforeRename(name)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	done = true

	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
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
