package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxNameJoin bounds the bytes a name continued on later lines may add in
// all: twice PATH_MAX, as the ASCII list prints a newline in a file name
// raw, so a name with newlines continues on the next lines. The template
// hash tells where such an entry ends.
const maxNameJoin = 8192

// maxJoinLine is the longest first line of an entry whose name may go on
// over the next lines: past it, the line is no name problem, and each try
// would hash it again.
const maxJoinLine = 16 << 10

// nextASCII parses the ASCII entry at the reader's position and returns
// it with its size in bytes.
func (rd *Reader) nextASCII() (*Entry, int, error) {
	end, err := rd.lineEnd(0)
	if err != nil {
		return nil, 0, err
	}
	if end == 0 && rd.w-rd.r == 0 {
		return nil, 0, io.EOF
	}

	var first error
	var firstEntry *Entry
	lines, firstEnd := 1, end
	for {
		// The first line is always tried; with the lines after it joined,
		// only a text followed by a line that starts an entry (or by the
		// end of the list), as the end of every entry is. A name made of
		// newlines thereby costs no hashing for each of its lines.
		if lines == 1 || rd.nextLooksLikeEntry(end) {
			text := rd.buf[rd.r : rd.r+end]
			e, perr := parseASCIILine(text)
			if perr == nil {
				perr = checkEntry(e, rd.cfg.bank)
			}
			if perr == nil && e.IsViolation() && !rd.nextLooksLikeEntry(end) {
				perr = errors.New("violation followed by a line that starts no entry")
			}
			if perr == nil {
				rd.line += lines
				return e, rd.consumed(end), nil
			}
			if first == nil {
				first, firstEntry = perr, e
			}
		}

		// The name may go on after a newline: join the next line. In
		// follow mode, that line may not be there yet.
		if firstEnd > maxJoinLine {
			break
		}
		if rd.fill(end+2) != nil && rd.w-rd.r <= end+1 {
			if rd.cfg.follow {
				return nil, 0, ErrPartial
			}
			break
		}
		next, err := rd.lineEnd(end + 1)
		if errors.Is(err, ErrPartial) {
			return nil, 0, ErrPartial
		}
		if err != nil || next-firstEnd > maxNameJoin {
			break
		}
		end = next
		lines++
	}

	e := &Error{Index: rd.index, Offset: rd.offset, Line: rd.line + 1, Err: first}
	if rd.eof && !rd.cfg.follow && rd.r+end >= rd.w {
		// The input ends inside the entry's last line: a list cut short,
		// not an entry that reads wrong (the kernel ends every line).
		e.Reason = fmt.Sprintf("list ends inside the entry, its last line has no newline "+
			"(%v)", first)
		e.Err = ErrTruncated
		return nil, 0, e
	}
	if errors.Is(first, ErrTemplateHash) {
		// Skip the first line only: reading goes on after a bad entry.
		rd.line++
		one, _ := rd.lineEnd(0)
		return firstEntry, rd.consumed(one), e
	}
	if !errors.Is(first, ErrMalformed) && !errors.Is(first, ErrUnknownHash) {
		e.Err = fmt.Errorf("%w: %w", first, ErrMalformed)
	}
	return nil, 0, e
}

// consumed returns the size of a text ending at end, with its newline.
func (rd *Reader) consumed(end int) int {
	if rd.r+end < rd.w {
		return end + 1
	}
	return end
}

// lineEnd returns the offset, from the reader's position, of the newline
// ending the line that starts at from. At the end of the input, the end
// of the input ends the last line, except in follow mode where a line
// without its newline is a partial entry.
func (rd *Reader) lineEnd(from int) (int, error) {
	limit := 2*rd.cfg.maxData + 4096
	for {
		if i := bytes.IndexByte(rd.buf[rd.r+from:rd.w], '\n'); i >= 0 {
			return from + i, nil
		}
		have := rd.w - rd.r
		if have > limit {
			return 0, &Error{Index: rd.index, Offset: rd.offset, Line: rd.line + 1,
				Reason: fmt.Sprintf("line longer than %d bytes", limit), Err: ErrMalformed}
		}
		err := rd.fill(have + 1)
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			return 0, &Error{Index: rd.index, Offset: rd.offset, Line: rd.line + 1,
				Reason: "reading", Err: err}
		}
		if rd.cfg.follow && have > from {
			return 0, ErrPartial
		}
		if have == 0 && from == 0 {
			return 0, io.EOF
		}
		return have, nil
	}
}

// nextLooksLikeEntry reports whether the text after end starts an entry
// (or there is none): "PCR hash template".
func (rd *Reader) nextLooksLikeEntry(end int) bool {
	if rd.fill(end+2) != nil && rd.w-rd.r <= end+1 {
		return true
	}
	next, err := rd.lineEnd(end + 1)
	if err != nil {
		return true
	}
	line := rd.buf[rd.r+end+1 : rd.r+next]
	line = bytes.TrimPrefix(line, []byte(" "))
	parts := bytes.SplitN(line, []byte(" "), 4)
	if len(parts) < 3 {
		return false
	}
	if _, err := strconv.ParseUint(string(parts[0]), 10, 32); err != nil {
		return false
	}
	if _, ok := bankForSize(len(parts[1]) / 2); !ok || !isHex(parts[1]) {
		return false
	}
	return checkTemplateName(parts[2]) == nil
}

// isHex reports whether b is lowercase or uppercase hex digits.
func isHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// trailingFields is how many fields a built-in template prints after the
// name in the ASCII list.
var trailingFields = map[string]int{
	TemplateIMANG: 0, TemplateIMANGv2: 0, TemplateIMASig: 1, TemplateIMASigv2: 1,
	TemplateIMABuf: 1, TemplateIMAModsig: 3, TemplateEVMSig: 7,
}

// parseASCIILine turns one entry of the ASCII list (newlines of its name
// included) back into the entry, rebuilding the template data from what
// the kernel printed.
func parseASCIILine(text []byte) (*Entry, error) {
	text = bytes.TrimPrefix(text, []byte(" "))
	head := bytes.SplitN(text, []byte(" "), 4)
	if len(head) < 4 {
		return nil, fmt.Errorf("%d of the 4 parts \"PCR hash template fields\": %w",
			len(head), ErrMalformed)
	}
	pcr, err := strconv.ParseUint(string(head[0]), 10, 32)
	if err != nil || pcr > MaxPCR {
		return nil, fmt.Errorf("PCR %q: not a number up to %d: %w", head[0], MaxPCR,
			ErrMalformed)
	}
	digest, err := hex.DecodeString(string(head[1]))
	if err != nil || len(digest) == 0 {
		return nil, fmt.Errorf("template hash %q not hex: %w", truncate(head[1]), ErrMalformed)
	}
	if err := checkTemplateName(head[2]); err != nil {
		return nil, err
	}
	template := internTemplate(head[2])
	rest := head[3]

	e := &Entry{PCR: uint32(pcr), Digest: digest, Template: template}
	if template == TemplateIMA {
		e.Data, err = legacyFromASCII(rest)
		return e, err
	}
	trailing, ok := trailingFields[template]
	if !ok {
		return nil, fmt.Errorf("template %q: its ASCII fields cannot be read back, "+
			"read the binary list: %w", template, ErrMalformed)
	}

	// The digest, the name (which may hold spaces only if a writer left
	// them), then the trailing fields, split from the right.
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return nil, fmt.Errorf("no name after the file digest: %w", ErrMalformed)
	}
	d, err := digestFromASCII(rest[:sp])
	if err != nil {
		return nil, err
	}
	nameAndMore := rest[sp+1:]
	tail := make([][]byte, trailing)
	for i := trailing - 1; i >= 0; i-- {
		j := bytes.LastIndexByte(nameAndMore, ' ')
		if j < 0 {
			return nil, fmt.Errorf("%s: %d fields after the name, want %d: %w",
				template, trailing-1-i, trailing, ErrMalformed)
		}
		tail[i] = nameAndMore[j+1:]
		nameAndMore = nameAndMore[:j]
	}

	order := binary.NativeEndian
	data := appendField(nil, order, d)
	data = appendU32(data, order, uint32(len(nameAndMore)+1))
	data = append(append(data, nameAndMore...), 0)
	ids := fieldsOf(template)[2:]
	for i, t := range tail {
		f, err := fieldFromASCII(ids[i], t, order)
		if err != nil {
			return nil, err
		}
		data = appendField(data, order, f)
	}
	e.Data = data
	return e, nil
}

// legacyFromASCII rebuilds the data of the legacy template from "hex
// name".
func legacyFromASCII(rest []byte) ([]byte, error) {
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return nil, fmt.Errorf("ima template: no name after the digest: %w", ErrMalformed)
	}
	d, err := hex.DecodeString(string(rest[:sp]))
	if err != nil || len(d) != 20 {
		return nil, fmt.Errorf("ima template: digest %q is not 20 bytes of hex: %w",
			truncate(rest[:sp]), ErrMalformed)
	}
	name := rest[sp+1:]
	if len(name) >= legacyNameSize {
		return nil, fmt.Errorf("ima template: name of %d bytes: %w", len(name), ErrMalformed)
	}
	data := append(d, 0, 0, 0, 0)
	binary.NativeEndian.PutUint32(data[20:], uint32(len(name)))
	return append(data, name...), nil
}

// digestFromASCII turns "algo:hex" (or "type:algo:hex") into the d-ng or
// d-ngv2 field.
func digestFromASCII(tok []byte) ([]byte, error) {
	i := bytes.LastIndexByte(tok, ':')
	if i < 0 {
		return nil, fmt.Errorf("file digest %q has no algorithm: %w", truncate(tok), ErrMalformed)
	}
	prefix := tok[:i]
	if j := bytes.IndexByte(prefix, ':'); j >= 0 {
		prefix = prefix[j+1:]
	}
	algo := Hash(prefix)
	if !algo.Known() {
		return nil, fmt.Errorf("file digest: hash algorithm %q: %w", string(algo), ErrUnknownHash)
	}
	d, err := hex.DecodeString(string(tok[i+1:]))
	if err != nil {
		return nil, fmt.Errorf("file digest %q not hex: %w", truncate(tok), ErrMalformed)
	}
	f := append([]byte(nil), tok[:i+1]...)
	f = append(f, 0)
	return append(f, d...), nil
}

// fieldFromASCII turns a field printed after the name back into bytes.
func fieldFromASCII(id string, tok []byte, order binary.ByteOrder) ([]byte, error) {
	if len(tok) == 0 {
		return nil, nil
	}
	switch id {
	case "d-modsig":
		return digestFromASCII(tok)
	case "xattrnames":
		return append([]byte(nil), tok...), nil
	case "iuid", "igid", "imode":
		size := 4
		if id == "imode" {
			size = 2
		}
		v, err := strconv.ParseUint(string(tok), 10, 8*size)
		if err != nil {
			return nil, fmt.Errorf("field %s %q: %w", id, truncate(tok), ErrMalformed)
		}
		b := make([]byte, size)
		if size == 2 {
			order.PutUint16(b, uint16(v))
		} else {
			order.PutUint32(b, uint32(v))
		}
		return b, nil
	}
	b, err := hex.DecodeString(string(tok))
	if err != nil {
		return nil, fmt.Errorf("field %s %q not hex: %w", id, truncate(tok), ErrMalformed)
	}
	return b, nil
}

// appendField appends a field with its length.
func appendField(dst []byte, order binary.ByteOrder, f []byte) []byte {
	dst = appendU32(dst, order, uint32(len(f)))
	return append(dst, f...)
}
