package hook

import (
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
