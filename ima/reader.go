package ima

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Limits on the lengths found in a list, checked before anything is
// allocated for them. They are far above what a kernel writes: a template
// name has at most 15 bytes, and the largest template data are ima-buf
// and ima-modsig entries of a few kilobytes.
const (
	// MaxTemplateName is the longest template name accepted.
	MaxTemplateName = 32

	// DefaultMaxData is the default limit on an entry's template data,
	// changed with MaxData.
	DefaultMaxData = 16 << 20

	// MaxPCR is the highest PCR index accepted: a TPM has 24 PCRs, and a
	// bound keeps the memory of a replay flat whatever the list holds. It
	// also keeps the first byte of a little-endian binary list apart from
	// the digit or space that starts an ASCII one.
	MaxPCR = 31
)

// readChunk is the size of a read from the underlying reader.
const readChunk = 64 << 10

// Option changes how a Reader reads a list.
type Option func(*config)

type config struct {
	reuse   bool
	order   binary.ByteOrder
	bank    Hash
	follow  bool
	maxData int
}

// ByteOrder makes a binary Reader read integers in the given order
// instead of detecting it from the first entry.
func ByteOrder(order binary.ByteOrder) Option {
	return func(c *config) { c.order = order }
}

// Canonical makes a binary Reader read a list written by a kernel booted
// with ima_canonical_fmt: integers little-endian.
func Canonical() Option {
	return ByteOrder(binary.LittleEndian)
}

// HostOrder makes a binary Reader read integers in the host's order.
func HostOrder() Option {
	return ByteOrder(binary.NativeEndian)
}

// Bank tells a Reader that the template hashes of the list are those of
// the given bank, as in the kernel's per-bank files
// (binary_runtime_measurements_sha256, ...). Without it, a binary Reader
// detects the size of the header digest from the first entry, and an
// ASCII Reader from the length of the template hash.
func Bank(h Hash) Option {
	return func(c *config) { c.bank = h }
}

// Follow makes a Reader tail a list that is still growing: when the input
// ends inside an entry, Next returns ErrPartial and keeps what it has
// read, and a later call goes on from there. At the end of a whole entry
// Next returns io.EOF as usual; calling it again later reads what has been
// appended since. In an ASCII list, a last line whose template hash does
// not match is taken for a name whose next line is still to come, and
// also gives ErrPartial.
func Follow() Option {
	return func(c *config) { c.follow = true }
}

// Reuse makes a Reader return the same *Entry from every call to Next,
// overwritten each time, with its memory reused: for a caller that is
// done with an entry before it reads the next, such as a replay.
func Reuse() Option {
	return func(c *config) { c.reuse = true }
}

// MaxData sets the largest template data an entry may have (default
// DefaultMaxData); a longer length is an error before any allocation.
func MaxData(n int) Option {
	return func(c *config) { c.maxData = n }
}

// Reader reads the entries of a measurement list, one at a time. It
// buffers at most one entry (and one read ahead), whatever the length of
// the list.
type Reader struct {
	src   io.Reader
	cfg   config
	ascii bool

	buf    []byte
	r, w   int
	eof    bool
	srcErr error

	index  int
	offset int64
	line   int

	order binary.ByteOrder
	dsize int
	err   error

	// scratch is the Entry returned while alloc is set.
	scratch Entry

	// alloc, when set, gives the memory of each entry read (ReadAll
	// carves it from its batches).
	alloc func(n int) []byte
}

// NewBinaryReader returns a Reader of a binary measurement list.
func NewBinaryReader(r io.Reader, opts ...Option) *Reader {
	return newReader(r, false, opts)
}

// NewASCIIReader returns a Reader of an ASCII measurement list.
func NewASCIIReader(r io.Reader, opts ...Option) *Reader {
	return newReader(r, true, opts)
}

// NewReader returns a Reader of a list in either format, told apart by
// its first byte: an ASCII list starts with a digit or a space, a binary
// one with the PCR index as an integer. An empty input reads as an empty
// list.
func NewReader(r io.Reader, opts ...Option) (*Reader, error) {
	rd := newReader(r, false, opts)
	if err := rd.fill(1); err != nil {
		if errors.Is(err, io.EOF) {
			return rd, nil
		}
		return nil, fmt.Errorf("reading measurement list: %w", err)
	}
	c := rd.buf[rd.r]
	rd.ascii = c == ' ' || (c >= '0' && c <= '9')
	return rd, nil
}

func newReader(r io.Reader, ascii bool, opts []Option) *Reader {
	rd := &Reader{src: r, ascii: ascii, cfg: config{maxData: DefaultMaxData}}
	for _, o := range opts {
		o(&rd.cfg)
	}
	if rd.cfg.maxData <= 0 {
		rd.cfg.maxData = DefaultMaxData
	}
	rd.order = rd.cfg.order
	if rd.cfg.bank != "" {
		rd.dsize = rd.cfg.bank.Size()
	}
	return rd
}

// ASCII reports whether the Reader reads an ASCII list.
func (rd *Reader) ASCII() bool {
	return rd.ascii
}

// Index returns the index of the next entry, which is also the number of
// entries read so far.
func (rd *Reader) Index() int {
	return rd.index
}

// Offset returns the byte offset of the next entry in the input.
func (rd *Reader) Offset() int64 {
	return rd.offset
}

// Order returns the byte order of a binary list: as forced by an option,
// or as detected from its first entry (nil before that).
func (rd *Reader) Order() binary.ByteOrder {
	return rd.order
}

// DigestSize returns the size of the template hashes of the list, given
// by Bank or detected from its first entry (0 before that).
func (rd *Reader) DigestSize() int {
	return rd.dsize
}

// Next returns the next entry, or io.EOF at the end of the list. A
// failure is an *Error naming the entry and its offset. After a template
// hash mismatch (ErrTemplateHash) the entry's layout was sound: Next
// returns the entry with the error and has moved past it, so reading can
// go on. Any other error is final and returned again by later calls. In
// follow mode, ErrPartial means the input ends inside an entry: call Next
// again once it has grown.
func (rd *Reader) Next() (*Entry, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	var e *Entry
	var n int
	var err error
	if rd.ascii {
		e, n, err = rd.nextASCII()
	} else {
		e, n, err = rd.nextBinary()
	}

	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, ErrPartial):
		if rd.cfg.follow {
			rd.eof = false
		}
		return nil, err
	case errors.Is(err, ErrTemplateHash):
		rd.advance(n)
		return e, err
	default:
		rd.err = err
		return nil, err
	}

	rd.advance(n)
	return e, nil
}

// advance moves past an entry of n bytes.
func (rd *Reader) advance(n int) {
	rd.r += n
	rd.offset += int64(n)
	rd.index++
}

// fill reads until n bytes are buffered, growing the buffer only as data
// arrives, so a bogus length costs no more memory than the input holds.
// It returns io.EOF when the input ends first.
func (rd *Reader) fill(n int) error {
	for rd.w-rd.r < n {
		if rd.eof {
			if rd.srcErr != nil {
				return rd.srcErr
			}
			return io.EOF
		}
		if rd.r > 0 && rd.w == len(rd.buf) {
			copy(rd.buf, rd.buf[rd.r:rd.w])
			rd.w -= rd.r
			rd.r = 0
		}
		if rd.w == len(rd.buf) {
			size := max(2*len(rd.buf), readChunk)
			nb := make([]byte, size)
			copy(nb, rd.buf[rd.r:rd.w])
			rd.w -= rd.r
			rd.r = 0
			rd.buf = nb
		}

		m, err := rd.src.Read(rd.buf[rd.w:])
		rd.w += m
		if err != nil {
			rd.eof = true
			if !errors.Is(err, io.EOF) {
				rd.srcErr = err
			}
		}
	}
	return nil
}

// entryErr returns an *Error for the entry at the reader's position.
func (rd *Reader) entryErr(reason string, err error) *Error {
	return &Error{Index: rd.index, Offset: rd.offset, Reason: reason, Err: err}
}

// short turns the end of the input inside an entry into ErrPartial in
// follow mode, or a truncation error naming what was missing.
func (rd *Reader) short(err error, what string, need int) error {
	if rd.srcErr != nil && errors.Is(err, rd.srcErr) {
		return rd.entryErr("reading "+what, err)
	}
	if rd.cfg.follow {
		return ErrPartial
	}
	return rd.entryErr(fmt.Sprintf("list ends inside the entry: %s needs %d bytes, %d left",
		what, need, rd.w-rd.r), ErrTruncated)
}

// nextBinary parses the binary entry at the reader's position and returns
// it with its size in bytes.
func (rd *Reader) nextBinary() (*Entry, int, error) {
	if err := rd.fill(1); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		return nil, 0, rd.entryErr("reading", err)
	}

	if rd.order == nil || rd.dsize == 0 {
		if err := rd.detect(); err != nil {
			return nil, 0, err
		}
	}
	order, ds := rd.order, rd.dsize

	// Header: PCR, template hash, template name length.
	hdr := 4 + ds + 4
	if err := rd.fill(hdr); err != nil {
		return nil, 0, rd.short(err, "the entry header", hdr)
	}
	b := rd.buf[rd.r:rd.w]
	pcr := order.Uint32(b)
	if pcr > MaxPCR {
		return nil, 0, rd.entryErr(fmt.Sprintf("PCR index %d, at most %d", pcr, MaxPCR),
			ErrMalformed)
	}
	nameLen := order.Uint32(b[4+ds:])
	if nameLen == 0 {
		return nil, 0, rd.entryErr("empty template name", ErrMalformed)
	}
	if nameLen > MaxTemplateName {
		return nil, 0, rd.entryErr(fmt.Sprintf("template name length %d, at most %d",
			nameLen, MaxTemplateName), ErrMalformed)
	}

	// Template name, then the data length (absent for "ima").
	n := hdr + int(nameLen)
	if err := rd.fill(n); err != nil {
		return nil, 0, rd.short(err, "the template name", n)
	}
	b = rd.buf[rd.r:rd.w]
	tname := b[hdr:n]
	if err := checkTemplateName(tname); err != nil {
		return nil, 0, rd.entryErr("", err)
	}
	template := internTemplate(tname)

	var dataLen int
	if template == TemplateIMA {
		n2 := n + 20 + 4
		if err := rd.fill(n2); err != nil {
			return nil, 0, rd.short(err, "the ima template's digest and name length", n2)
		}
		l := order.Uint32(rd.buf[rd.r+n+20:])
		if l >= legacyNameSize {
			return nil, 0, rd.entryErr(fmt.Sprintf("ima template name length %d, at most %d",
				l, legacyNameSize-1), ErrMalformed)
		}
		dataLen = 24 + int(l)
	} else {
		if err := rd.fill(n + 4); err != nil {
			return nil, 0, rd.short(err, "the template data length", n+4)
		}
		l := order.Uint32(rd.buf[rd.r+n:])
		if uint64(l) > uint64(rd.cfg.maxData) {
			return nil, 0, rd.entryErr(fmt.Sprintf("template data length %d, at most %d",
				l, rd.cfg.maxData), ErrMalformed)
		}
		n += 4
		dataLen = int(l)
	}

	// Template data.
	total := n + dataLen
	if err := rd.fill(total); err != nil {
		return nil, 0, rd.short(err, fmt.Sprintf("template data of %d bytes", dataLen), total)
	}
	b = rd.buf[rd.r:rd.w]

	// The entry's memory: its own, a batch's (ReadAll), or with Reuse
	// the reader's buffer itself, valid until the next call.
	var digest, data []byte
	var e *Entry
	switch {
	case rd.alloc != nil:
		mem := rd.alloc(ds + dataLen)
		copy(mem, b[4:4+ds])
		copy(mem[ds:], b[n:total])
		digest, data, e = mem[:ds:ds], mem[ds:], &rd.scratch
	case rd.cfg.reuse:
		digest, data, e = b[4:4+ds:4+ds], b[n:total:total], &rd.scratch
	default:
		mem := make([]byte, ds+dataLen)
		copy(mem, b[4:4+ds])
		copy(mem[ds:], b[n:total])
		digest, data, e = mem[:ds:ds], mem[ds:], &Entry{}
	}
	*e = Entry{
		PCR:      pcr,
		Digest:   digest,
		Template: template,
		Data:     data,
		order:    order,
	}
	if order == binary.NativeEndian || order == nativeOrder() {
		e.order = nil
	}

	if err := checkEntry(e, rd.cfg.bank); err != nil {
		return e, total, rd.entryErr("", err)
	}
	return e, total, nil
}

// nativeOrder returns the concrete byte order of the host.
func nativeOrder() binary.ByteOrder {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	if b[0] == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// detect finds the byte order and the size of the template hash from the
// first entry, where options left them open: the PCR index must be small
// and the template name length must point at a plausible name.
func (rd *Reader) detect() error {
	orders := []binary.ByteOrder{rd.order}
	if rd.order == nil {
		orders = []binary.ByteOrder{nativeOrder(), binary.LittleEndian, binary.BigEndian}
	}
	sizes := []int{rd.dsize}
	if rd.dsize == 0 {
		sizes = []int{20, 32, 48, 64}
	}

	want := 4 + 64 + 4 + MaxTemplateName
	_ = rd.fill(want)
	b := rd.buf[rd.r:rd.w]
	for _, o := range orders {
		for _, ds := range sizes {
			if len(b) < 4+ds+4 || o.Uint32(b) > MaxPCR {
				continue
			}
			l := o.Uint32(b[4+ds:])
			if l == 0 || l > MaxTemplateName || len(b) < 8+ds+int(l) {
				continue
			}
			if checkTemplateName(b[8+ds:8+ds+int(l)]) != nil {
				continue
			}
			rd.order, rd.dsize = o, ds
			return nil
		}
	}

	// A list still growing may not hold enough yet to tell.
	if rd.cfg.follow && len(b) < want {
		return ErrPartial
	}

	// Nothing plausible: read with the defaults and let the checks of
	// the entry say what is wrong.
	if rd.order == nil {
		rd.order = nativeOrder()
	}
	if rd.dsize == 0 {
		rd.dsize = SHA1.Size()
	}
	return nil
}

// checkTemplateName accepts the characters of template names: lowercase
// letters, digits, '-' and '_'.
func checkTemplateName(name []byte) error {
	if len(name) == 0 {
		return fmt.Errorf("empty template name: %w", ErrMalformed)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' ||
			c >= 'A' && c <= 'Z'
		if !ok {
			return fmt.Errorf("template name %q: byte 0x%02x not allowed: %w", name, c,
				ErrMalformed)
		}
	}
	return nil
}

// internTemplate returns the name of a built-in template without an
// allocation.
func internTemplate(name []byte) string {
	switch string(name) {
	case TemplateIMANG:
		return TemplateIMANG
	case TemplateIMASig:
		return TemplateIMASig
	case TemplateIMA:
		return TemplateIMA
	case TemplateIMABuf:
		return TemplateIMABuf
	case TemplateIMANGv2:
		return TemplateIMANGv2
	case TemplateIMASigv2:
		return TemplateIMASigv2
	case TemplateIMAModsig:
		return TemplateIMAModsig
	case TemplateEVMSig:
		return TemplateEVMSig
	}
	return string(name)
}

// checkEntry checks the fields of a built-in template and the template
// hash. bank is the bank of the header digest when known.
func checkEntry(e *Entry, bank Hash) error {
	if err := checkFields(e); err != nil {
		return err
	}
	if bank != "" && len(e.Digest) != bank.Size() {
		return fmt.Errorf("template hash of %d bytes, a %s list has %d: %w",
			len(e.Digest), bank, bank.Size(), ErrMalformed)
	}
	if e.IsViolation() {
		return nil
	}

	if bank == "" {
		b, ok := bankForSize(len(e.Digest))
		if !ok {
			return fmt.Errorf("template hash of %d bytes: no bank of that size: %w",
				len(e.Digest), ErrMalformed)
		}
		bank = b
	}
	var buf [64]byte
	got, err := e.templateHash(buf[:0], bank)
	if err != nil {
		return err
	}
	if bytes.Equal(got, e.Digest) {
		e.checked = bank
		return nil
	}

	// A kernel that cannot compute the bank's hash writes the sha1 one,
	// zero-padded.
	if bank != SHA1 {
		var pbuf [64]byte
		p, err := e.paddedTo(pbuf[:0], bank.Size())
		if err == nil && bytes.Equal(p, e.Digest) {
			return nil
		}
	}
	return fmt.Errorf("%s of the template data is %x, the entry says %x: %w",
		bank, slices.Clone(got), e.Digest, ErrTemplateHash)
}

// checkFields checks the layout of the data of a built-in template: the
// number of fields, and the fields whose form is fixed (file digests and
// names). The data of an unknown template must still split into fields.
func checkFields(e *Entry) error {
	var buf [12][]byte
	fields, err := splitFields(buf[:0], e.Template, e.Data, e.ByteOrder())
	if err != nil {
		return fmt.Errorf("%s template data: %w: %w", e.Template, err, ErrMalformed)
	}
	ids := fieldsOf(e.Template)
	if ids == nil {
		return nil
	}
	if len(fields) != len(ids) {
		return fmt.Errorf("%s template data has %d fields, want %d: %w",
			e.Template, len(fields), len(ids), ErrMalformed)
	}

	for i, id := range ids {
		f := fields[i]
		switch id {
		case "d-ng":
			_, _, err = parseDigestNG(f)
		case "d-ngv2":
			_, _, _, err = parseDigestNGv2(f)
		case "d-modsig":
			if len(f) > 0 {
				_, _, err = parseDigestNG(f)
			}
		case "n-ng":
			err = checkNameNG(f)
		case "n":
			// The legacy name is hashed padded with NULs, so a NUL in it
			// would go unseen; no kernel writes one.
			if bytes.IndexByte(f, 0) >= 0 {
				err = fmt.Errorf("name %q: NUL inside the name", truncate(f))
			}
		}
		if err != nil {
			return fmt.Errorf("%s template data: %w: %w", e.Template, err, ErrMalformed)
		}
	}
	return nil
}
