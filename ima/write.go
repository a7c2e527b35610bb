package ima

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
)

// AppendBinary appends e as the kernel shows it in a binary list, with
// the integers of the header in the given byte order (binary.NativeEndian
// for the host's order, binary.LittleEndian for ima_canonical_fmt). The
// header digest is written as it is, so an entry read from a per-bank
// list keeps that bank's size. Data is written unchanged: the lengths
// inside it keep the byte order they were made or read with, because the
// template hash covers them.
func (e *Entry) AppendBinary(dst []byte, order binary.ByteOrder) []byte {
	dst = appendU32(dst, order, e.PCR)
	dst = append(dst, e.Digest...)
	dst = appendU32(dst, order, uint32(len(e.Template)))
	dst = append(dst, e.Template...)
	if e.Template != TemplateIMA {
		dst = appendU32(dst, order, uint32(len(e.Data)))
	}
	return append(dst, e.Data...)
}

// AppendASCII appends e as one line of the kernel's ASCII list,
// newline included: the PCR in two columns, the template hash in hex, the
// template's name, then each field as the kernel prints it. Names are
// written raw, as the kernel does (a newline in a name stays a newline).
func (e *Entry) AppendASCII(dst []byte) ([]byte, error) {
	fields, err := e.Fields()
	if err != nil {
		return dst, fmt.Errorf("%s entry: %w", e.Template, err)
	}
	ids := fieldsOf(e.Template)
	if ids != nil && len(ids) != len(fields) {
		return dst, fmt.Errorf("%s entry has %d fields, want %d", e.Template, len(fields), len(ids))
	}

	if e.PCR < 10 {
		dst = append(dst, ' ')
	}
	dst = strconv.AppendUint(dst, uint64(e.PCR), 10)
	dst = append(dst, ' ')
	dst = hex.AppendEncode(dst, e.Digest)
	dst = append(dst, ' ')
	dst = append(dst, e.Template...)

	for i, f := range fields {
		dst = append(dst, ' ')
		if len(f) == 0 {
			continue
		}
		id := ""
		if ids != nil {
			id = ids[i]
		}
		dst = appendFieldASCII(dst, id, f, e.ByteOrder())
	}
	return append(dst, '\n'), nil
}

// appendFieldASCII appends one field the way the kernel's ASCII list
// shows a field of that kind; a field of an unknown template is shown in
// hex.
func appendFieldASCII(dst []byte, id string, f []byte, order binary.ByteOrder) []byte {
	switch id {
	case "d-ng", "d-ngv2", "d-modsig":
		i := lastColonBeforeNUL(f)
		if i < 0 {
			return hex.AppendEncode(dst, f)
		}
		dst = append(dst, f[:i+1]...)
		return hex.AppendEncode(dst, f[i+2:])
	case "n", "n-ng", "xattrnames":
		return append(dst, cString(f)...)
	case "iuid", "igid", "imode":
		switch len(f) {
		case 1:
			return strconv.AppendUint(dst, uint64(f[0]), 10)
		case 2:
			return strconv.AppendUint(dst, uint64(order.Uint16(f)), 10)
		case 4:
			return strconv.AppendUint(dst, uint64(order.Uint32(f)), 10)
		case 8:
			return strconv.AppendUint(dst, order.Uint64(f), 10)
		}
	}
	return hex.AppendEncode(dst, f)
}

// lastColonBeforeNUL finds the ':' that ends the prefix of a digest
// field ("sha256:" or "ima:sha256:"), followed by the NUL; -1 when the
// field has no such prefix.
func lastColonBeforeNUL(f []byte) int {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == 0 {
			return -1
		}
		if f[i] == ':' && f[i+1] == 0 {
			return i
		}
	}
	return -1
}

// cString returns b up to its first NUL.
func cString(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// ExtendDigest returns what the kernel extends into the given bank for
// e: the bank's own hash of the template data (for the legacy "ima"
// template, of the file digest and the name NUL-padded to 256 bytes), or
// all 0xff for a violation.
func (e *Entry) ExtendDigest(bank Hash) ([]byte, error) {
	size := bank.Size()
	if size == 0 {
		return nil, fmt.Errorf("bank %q: %w", string(bank), ErrUnknownHash)
	}
	if e.IsViolation() {
		return ones(size), nil
	}
	return e.templateHash(nil, bank)
}

// PaddedDigest returns what a kernel that cannot compute the bank's hash
// extends into it for e: the sha1 template hash, zero-padded to the
// bank's size (all 0xff for a violation).
func (e *Entry) PaddedDigest(bank Hash) ([]byte, error) {
	size := bank.Size()
	if size < SHA1.Size() {
		return nil, fmt.Errorf("bank %q: %w", string(bank), ErrUnknownHash)
	}
	if e.IsViolation() {
		return ones(size), nil
	}
	return e.paddedTo(nil, size)
}

// paddedTo appends the sha1 template hash zero-padded to size bytes.
func (e *Entry) paddedTo(dst []byte, size int) ([]byte, error) {
	start := len(dst)
	dst, err := e.templateHash(dst, SHA1)
	if err != nil {
		return nil, err
	}
	for len(dst)-start < size {
		dst = append(dst, 0)
	}
	return dst, nil
}

// templateHash appends algo's hash of the template data to dst, as the
// kernel computes the template hash.
func (e *Entry) templateHash(dst []byte, algo Hash) ([]byte, error) {
	if e.Template != TemplateIMA {
		return algo.appendSum(dst, e.Data)
	}

	var buf [2][]byte
	fields, err := splitFields(buf[:0], e.Template, e.Data, e.ByteOrder())
	if err != nil {
		return nil, fmt.Errorf("ima entry: %w", err)
	}
	if len(fields[1]) >= legacyNameSize {
		return nil, fmt.Errorf("ima entry: name of %d bytes, at most %d",
			len(fields[1]), legacyNameSize-1)
	}
	var name [legacyNameSize]byte
	copy(name[:], fields[1])
	return algo.appendSum(dst, fields[0], name[:])
}

// ones returns n bytes of 0xff.
func ones(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xff
	}
	return b
}

// appendU32 appends v in the given byte order.
func appendU32(dst []byte, order binary.ByteOrder, v uint32) []byte {
	if ao, ok := order.(binary.AppendByteOrder); ok {
		return ao.AppendUint32(dst, v)
	}
	var b [4]byte
	order.PutUint32(b[:], v)
	return append(dst, b[:]...)
}
