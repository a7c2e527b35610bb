package qemu

import (
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Mode bits of the cpio "newc" format (the kernel's initramfs format).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// cpioEntry is one member of an initramfs archive.
type cpioEntry struct {
	name         string // without leading slash
	mode         uint32 // type and permission bits
	data         []byte // content, or the target of a symlink
	major, minor uint32 // device numbers of a device node
}

// initramfs collects members and writes them as a newc archive, parent
// folders first, members in name order, so the same input gives the same
// bytes.
type initramfs struct {
	entries map[string]cpioEntry
}

func newInitramfs() *initramfs {
	return &initramfs{entries: map[string]cpioEntry{}}
}

// add records a member and every missing parent folder.
func (r *initramfs) add(e cpioEntry) error {
	name := strings.TrimPrefix(path.Clean("/"+e.name), "/")
	if name == "" || name == "." {
		return fmt.Errorf("initramfs member %q: empty path", e.name)
	}
	e.name = name

	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if old, ok := r.entries[dir]; ok {
			if old.mode&0o170000 != modeDir {
				return fmt.Errorf("initramfs member %q: parent %q is not a folder", name, dir)
			}
			continue
		}
		r.entries[dir] = cpioEntry{name: dir, mode: modeDir | 0o755}
	}
	r.entries[name] = e
	return nil
}

// bytes writes the archive. Folders sort before their content because a
// parent's name is a prefix of its members' names.
func (r *initramfs) bytes() []byte {
	names := make([]string, 0, len(r.entries))
	for name := range r.entries {
		names = append(names, name)
	}
	sort.Strings(names)

	var b bytes.Buffer
	ino := uint32(1)
	for _, name := range names {
		e := r.entries[name]
		writeMember(&b, ino, e)
		ino++
	}
	writeMember(&b, 0, cpioEntry{name: "TRAILER!!!"})
	return b.Bytes()
}

// writeMember writes one newc header (magic 070701 and thirteen 8-digit
// hex fields), the NUL-terminated name padded to 4 bytes, then the data
// padded to 4 bytes.
func writeMember(b *bytes.Buffer, ino uint32, e cpioEntry) {
	nlink := uint32(1)
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	fmt.Fprintf(b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
	b.WriteString(e.name)
	b.WriteByte(0)
	pad4(b)
	b.Write(e.data)
	pad4(b)
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}
