package ima

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Entry is one entry of a measurement list. An Entry from a Reader
// remembers that its template hash matched its data, which spares a
// replay one hash: change Digest or Data only on a copy made with Clone.
type Entry struct {
	// PCR is the index of the PCR the entry extends.
	PCR uint32

	// Digest is the template hash as found in the entry's header: sha1
	// in the classic list, the bank's size in a per-bank list, all zero
	// for a violation.
	Digest []byte

	// Template is the template's name ("ima-ng", "ima-sig", ...).
	Template string

	// Data is the template data: the fields, each preceded by its u32
	// length, in the byte order of the list the entry came from. For the
	// legacy "ima" template, Data is what the binary list shows: the
	// 20-byte file digest with no length, then the u32 length of the
	// name and the name without its NUL.
	Data []byte

	// order is the byte order of the lengths in Data; nil means the
	// host's order.
	order binary.ByteOrder

	// checked is the bank whose hash of Data a Reader found equal to
	// Digest, so a replay need not compute it again.
	checked Hash
}

// The names of the kernel's built-in templates.
const (
	TemplateIMA       = "ima"
	TemplateIMANG     = "ima-ng"
	TemplateIMANGv2   = "ima-ngv2"
	TemplateIMASig    = "ima-sig"
	TemplateIMASigv2  = "ima-sigv2"
	TemplateIMABuf    = "ima-buf"
	TemplateIMAModsig = "ima-modsig"
	TemplateEVMSig    = "evm-sig"
)

// templateFields gives the fields of each built-in template, as the
// kernel defines them.
var templateFields = map[string][]string{
	TemplateIMA:       {"d", "n"},
	TemplateIMANG:     {"d-ng", "n-ng"},
	TemplateIMANGv2:   {"d-ngv2", "n-ng"},
	TemplateIMASig:    {"d-ng", "n-ng", "sig"},
	TemplateIMASigv2:  {"d-ngv2", "n-ng", "sig"},
	TemplateIMABuf:    {"d-ng", "n-ng", "buf"},
	TemplateIMAModsig: {"d-ng", "n-ng", "sig", "d-modsig", "modsig"},
	TemplateEVMSig: {"d-ng", "n-ng", "evmsig", "xattrnames", "xattrlengths",
		"xattrvalues", "iuid", "igid", "imode"},
}

// fieldsOf returns the fields of a built-in template, or nil, sparing the
// map for the common ones.
func fieldsOf(template string) []string {
	switch template {
	case TemplateIMANG:
		return fieldsNG
	case TemplateIMASig:
		return fieldsSig
	}
	return templateFields[template]
}

// The fields of the commonest templates, for fieldsOf.
var (
	fieldsNG  = templateFields[TemplateIMANG]
	fieldsSig = templateFields[TemplateIMASig]
)

// TemplateFields returns the field identifiers of a built-in template
// ("d-ng", "n-ng", ...), or nil for a template this package does not
// know.
func TemplateFields(template string) []string {
	f := templateFields[template]
	if f == nil {
		return nil
	}
	return append([]string(nil), f...)
}

// legacyNameSize is the size the legacy "ima" template pads a name to
// before hashing it (the kernel's IMA_EVENT_NAME_LEN_MAX + 1).
const legacyNameSize = 256

// ByteOrder returns the byte order of the lengths in e.Data: the order of
// the list the entry was read from, the host's order otherwise.
func (e *Entry) ByteOrder() binary.ByteOrder {
	if e.order == nil {
		return binary.NativeEndian
	}
	return e.order
}

// NewNG returns an ima-ng entry exactly as the kernel makes it for a file
// with the given digest: each space in name becomes '_', and Digest is
// the sha1 of the template data.
func NewNG(pcr uint32, algo Hash, fileDigest []byte, name string) (*Entry, error) {
	if !algo.Known() {
		return nil, fmt.Errorf("ima-ng entry for %q: hash algorithm %q: %w",
			name, string(algo), ErrUnknownHash)
	}
	if len(fileDigest) != algo.Size() {
		return nil, fmt.Errorf("ima-ng entry for %q: %s digest has %d bytes, want %d",
			name, algo, len(fileDigest), algo.Size())
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("ima-ng entry for %q: name contains a NUL byte", name)
	}

	e := &Entry{PCR: pcr, Template: TemplateIMANG}
	e.Data = appendNGFields(nil, binary.NativeEndian, algo, fileDigest, name)

	e.Digest, _ = SHA1.appendSum(nil, e.Data)
	return e, nil
}

// NewViolation returns the ima-ng entry the kernel records for a
// violation (a file opened for write while measured, or the reverse),
// with a sha256 file digest: sha256 is the default hash of the kernels
// imans runs on.
func NewViolation(pcr uint32, name string) *Entry {
	return NewViolationHash(pcr, SHA256, name)
}

// NewViolationHash is NewViolation for a kernel whose IMA hash is algo:
// its d-ng field names algo and holds zeros of algo's size. An unknown
// algo gives sha256.
func NewViolationHash(pcr uint32, algo Hash, name string) *Entry {
	if !algo.Known() {
		algo = SHA256
	}
	name = strings.ReplaceAll(name, "\x00", "")
	return &Entry{
		PCR:      pcr,
		Digest:   make([]byte, SHA1.Size()),
		Template: TemplateIMANG,
		Data:     appendNGFields(nil, binary.NativeEndian, algo, make([]byte, algo.Size()), name),
	}
}

// appendNGFields appends the d-ng and n-ng fields, each with its length.
func appendNGFields(dst []byte, order binary.ByteOrder, algo Hash, digest []byte,
	name string) []byte {
	dlen := len(algo) + 2 + len(digest)
	dst = appendU32(dst, order, uint32(dlen))
	dst = append(dst, algo...)
	dst = append(dst, ':', 0)
	dst = append(dst, digest...)

	dst = appendU32(dst, order, uint32(len(name)+1))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == ' ' {
			c = '_'
		}
		dst = append(dst, c)
	}
	return append(dst, 0)
}

// Clone returns a deep copy of e, which forgets any check of its
// template hash.
func (e *Entry) Clone() *Entry {
	c := *e
	c.Digest = bytes.Clone(e.Digest)
	c.Data = bytes.Clone(e.Data)
	c.checked = ""
	return &c
}

// IsViolation reports whether e records a violation: its template hash
// is all zero.
func (e *Entry) IsViolation() bool {
	if len(e.Digest) == 0 {
		return false
	}
	for _, b := range e.Digest {
		if b != 0 {
			return false
		}
	}
	return true
}

// Fields splits e.Data into its fields, without their lengths. The
// fields share e.Data's memory.
func (e *Entry) Fields() ([][]byte, error) {
	return splitFields(nil, e.Template, e.Data, e.ByteOrder())
}

// splitFields splits template data into its fields, appended to dst.
func splitFields(dst [][]byte, template string, data []byte,
	order binary.ByteOrder) ([][]byte, error) {
	if template == TemplateIMA {
		if len(data) < 24 {
			return nil, fmt.Errorf("ima template data has %d bytes, want at least 24", len(data))
		}
		n := order.Uint32(data[20:24])
		if uint64(n) != uint64(len(data)-24) {
			return nil, fmt.Errorf("ima template name length %d, %d bytes left", n, len(data)-24)
		}
		return append(dst, data[:20], data[24:]), nil
	}

	fields := dst
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, fmt.Errorf("field %d: %d bytes left for its length",
				len(fields)-len(dst), len(data))
		}
		n := order.Uint32(data)
		if uint64(n) > uint64(len(data)-4) {
			return nil, fmt.Errorf("field %d: length %d, %d bytes left",
				len(fields)-len(dst), n, len(data)-4)
		}
		fields = append(fields, data[4:4+n])
		data = data[4+n:]
	}
	return fields, nil
}

// FileDigest returns the file digest of an entry whose template records
// one (d, d-ng, d-ngv2 as its first field) and its algorithm.
func (e *Entry) FileDigest() (algo Hash, digest []byte, err error) {
	fields, err := e.knownFields()
	if err != nil {
		return "", nil, err
	}

	switch fieldsOf(e.Template)[0] {
	case "d":
		return SHA1, fields[0], nil
	case "d-ng":
		algo, digest, err = parseDigestNG(fields[0])
	case "d-ngv2":
		_, algo, digest, err = parseDigestNGv2(fields[0])
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s entry: %w", e.Template, err)
	}
	return algo, digest, nil
}

// FileName returns the name an entry records (a file's path, or the
// event's name for ima-buf), without its NUL.
func (e *Entry) FileName() (string, error) {
	fields, err := e.knownFields()
	if err != nil {
		return "", err
	}

	n := fields[1]
	if e.Template == TemplateIMA {
		return string(n), nil
	}
	name, err := parseNameNG(n)
	if err != nil {
		return "", fmt.Errorf("%s entry: %w", e.Template, err)
	}
	return name, nil
}

// knownFields splits the data of an entry of a built-in template and
// checks the number of its fields.
func (e *Entry) knownFields() ([][]byte, error) {
	want := fieldsOf(e.Template)
	if want == nil {
		return nil, fmt.Errorf("template %q: fields unknown", e.Template)
	}
	fields, err := e.Fields()
	if err != nil {
		return nil, fmt.Errorf("%s entry: %w", e.Template, err)
	}
	if len(fields) != len(want) {
		return nil, fmt.Errorf("%s entry has %d fields, want %d", e.Template, len(fields), len(want))
	}
	return fields, nil
}

// parseDigestNG parses a d-ng field: "algo:", a NUL, the digest.
func parseDigestNG(f []byte) (Hash, []byte, error) {
	i := bytes.IndexByte(f, 0)
	if i < 1 || f[i-1] != ':' {
		return "", nil, fmt.Errorf("d-ng field %q: no \"algo:\" prefix", truncate(f))
	}
	algo, size := hashName(f[:i-1])
	if size == 0 {
		return "", nil, fmt.Errorf("d-ng field: hash algorithm %q: %w", string(algo), ErrUnknownHash)
	}
	digest := f[i+1:]
	if len(digest) != size {
		return "", nil, fmt.Errorf("d-ng field: %s digest has %d bytes, want %d",
			algo, len(digest), algo.Size())
	}
	return algo, digest, nil
}

// parseDigestNGv2 parses a d-ngv2 field: "type:algo:", a NUL, the digest,
// where type is "ima" or "verity".
func parseDigestNGv2(f []byte) (typ string, algo Hash, digest []byte, err error) {
	i := bytes.IndexByte(f, ':')
	if i < 0 {
		return "", "", nil, fmt.Errorf("d-ngv2 field %q: no digest type", truncate(f))
	}
	typ = string(f[:i])
	if typ != "ima" && typ != "verity" {
		return "", "", nil, fmt.Errorf("d-ngv2 field: digest type %q unknown", typ)
	}
	algo, digest, err = parseDigestNG(f[i+1:])
	if err != nil {
		return "", "", nil, fmt.Errorf("d-ngv2 field: %w", err)
	}
	return typ, algo, digest, nil
}

// parseNameNG parses an n-ng field: the name and its NUL.
func parseNameNG(f []byte) (string, error) {
	if err := checkNameNG(f); err != nil {
		return "", err
	}
	return string(f[:len(f)-1]), nil
}

// checkNameNG checks an n-ng field: a name without NUL, then a NUL.
func checkNameNG(f []byte) error {
	if len(f) == 0 || f[len(f)-1] != 0 {
		return fmt.Errorf("n-ng field %q: no terminating NUL", truncate(f))
	}
	if bytes.IndexByte(f[:len(f)-1], 0) >= 0 {
		return fmt.Errorf("n-ng field %q: NUL inside the name", truncate(f))
	}
	return nil
}

// truncate shortens a byte string for an error message.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
