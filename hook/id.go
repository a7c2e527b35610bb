package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxIDLength bounds a container id. runc and crun accept any length; ids
// longer than this are refused before they become file names.
const MaxIDLength = 128

// ErrBadID is wrapped by every error of CheckID.
var ErrBadID = errors.New("bad container id")

// CheckID refuses a container id that would not be a safe single path
// element: empty, longer than MaxIDLength, ".", "..", a leading dot or dash,
// or any byte outside printable ASCII without '/' and '\\'.
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrBadID)
	case len(id) > MaxIDLength:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadID, len(id), MaxIDLength)
	case strings.HasPrefix(id, "."):
		return fmt.Errorf("%w %q: starts with '.'", ErrBadID, id)
	case strings.HasPrefix(id, "-"):
		return fmt.Errorf("%w %q: starts with '-'", ErrBadID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '\\' {
			return fmt.Errorf("%w %q: byte %#x at offset %d", ErrBadID, id, c, i)
		}
	}
	return nil
}

// hashedPrefix starts the file name of an id CheckID refuses. CheckID
// refuses a leading '-', so no usable id names the same file.
const hashedPrefix = "-sha256-"

// FileName returns the file name imans uses for a container id: the id
// itself when CheckID accepts it, else "-sha256-" and the first 32 hex
// digits of the id's sha256. Either is a single path element that is
// never "." or "..", so any id a runtime accepts has a run folder and a
// report.
func FileName(id string) string {
	if CheckID(id) == nil {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hashedPrefix + hex.EncodeToString(sum[:16])
}

// isFileName says whether name is what FileName returns for some id.
func isFileName(name string) bool {
	if CheckID(name) == nil {
		return true
	}
	rest, ok := strings.CutPrefix(name, hashedPrefix)
	if !ok || len(rest) != 32 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}
