package shim

import (
	"os"

	"github.com/imans-project/imans/internal/atomicfile"
)

// beforeRename, when set (by tests only), runs after the new content is
// written and synced and before it replaces the old file.
var beforeRename func(tmp string)

// WriteFileAtomic replaces the file at path with data so that a reader, or
// a crash at any moment, sees either the old content whole or the new
// content whole (package atomicfile). The file keeps the mode and owner of
// the file it replaces, or gets perm when there was none.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, atomicfile.Options{Perm: perm, KeepOwner: true,
		BeforeRename: beforeRename})
}
