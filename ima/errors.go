package ima

import (
	"errors"
	"fmt"
)

// Sentinel errors, testable with errors.Is through the wrapping of Error.
var (
	// ErrUnknownHash is a hash algorithm name the kernel does not use, or
	// one the standard library cannot compute.
	ErrUnknownHash = errors.New("unknown hash algorithm")

	// ErrTemplateHash is an entry whose template hash does not match its
	// template data.
	ErrTemplateHash = errors.New("template hash mismatch")

	// ErrTruncated is a list that ends inside an entry.
	ErrTruncated = errors.New("truncated entry")

	// ErrPartial is returned in follow mode when the input ends inside an
	// entry: the bytes read so far are kept, and the next call to Next
	// continues once more data has arrived.
	ErrPartial = errors.New("partial entry at end of input")

	// ErrMalformed is an entry whose layout breaks the list format.
	ErrMalformed = errors.New("malformed entry")
)

// Error is a failure to read one entry of a measurement list. Index is
// the entry's position in the list (from 0) and Offset its first byte
// (for an ASCII list, Line is its first line, from 1).
type Error struct {
	Index  int
	Offset int64
	Line   int
	Reason string
	Err    error
}

// Error returns the message, naming the entry, its place and why it
// failed.
func (e *Error) Error() string {
	where := fmt.Sprintf("entry %d at byte offset %d", e.Index, e.Offset)
	if e.Line > 0 {
		where = fmt.Sprintf("entry %d at line %d (byte offset %d)", e.Index, e.Line, e.Offset)
	}
	if e.Err == nil {
		return where + ": " + e.Reason
	}
	if e.Reason == "" {
		return where + ": " + e.Err.Error()
	}
	return where + ": " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the underlying sentinel or I/O error.
func (e *Error) Unwrap() error {
	return e.Err
}
