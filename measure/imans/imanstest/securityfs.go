// Package imanstest is a stand-in for the securityfs of an IMA namespace,
// in process, for the contract tests of package imans and of the kernel
// backend. It implements the interface facts seen on a kernel with the
// IMA namespace series (see docs/kernel-backend.md), not the kernel's
// code: every file but ima/active gives EACCES until "1" is written to
// it; ima/active accepts only "1", "1\n" and "1\0" and gives EBUSY once
// active; each write() to ima/policy parses one line; one bad rule drops
// the whole batch at close(), which still returns 0; a batch over the rule
// limit is dropped silently; a second writer gets EBUSY; the policy reads
// back with numbers in the kernel's own form.
package imanstest

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Variant selects the rule set a namespace accepts.
type Variant int

// Variants of the series.
const (
	// Measure is the development tree with measure support: measure,
	// audit and dont_* rules are accepted; appraise and hash are not.
	Measure Variant = iota
	// V15 is the last posted series: only audit and dont_* rules.
	V15
)

// SecurityFS is one IMA namespace's securityfs. The zero value is not
// usable: call New.
type SecurityFS struct {
	mu sync.Mutex

	variant  Variant
	maxRules int
	active   bool
	rules    []string // committed, in the kernel's printed form
	list     []byte   // the binary measurement list
	bounds   []int    // end offsets of the entries in list
	writer   bool     // ima/policy is open for writing
	files    map[int]*file
	next     int
	// Writes counts write() calls per file name, for tests.
	writes map[string]int
}

type file struct {
	name   string
	flag   int
	off    int
	batch  []string
	bad    bool
	policy []byte // the policy as printed when first read (seq_file)
}

// New returns an inactive namespace of the variant given.
func New(v Variant) *SecurityFS {
	return &SecurityFS{variant: v, maxRules: 1024, files: map[int]*file{}, next: 100,
		writes: map[string]int{}}
}

// SetMaxRules changes the rule limit (the kernel's is 1024).
func (s *SecurityFS) SetMaxRules(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxRules = n
}

// Rules returns the committed policy as the kernel prints it.
func (s *SecurityFS) Rules() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rules)
}

// Writes returns the number of write() calls made to the named file.
func (s *SecurityFS) Writes(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[name]
}

// OpenFiles returns the number of descriptors still open.
func (s *SecurityFS) OpenFiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// Measure appends one binary list entry (as the kernel would, whole).
func (s *SecurityFS) Measure(entry []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, entry...)
	s.bounds = append(s.bounds, len(s.list))
}

var known = map[string]bool{
	"ima/active": true, "ima/policy": true, "ima/binary_runtime_measurements": true,
	"ima/ascii_runtime_measurements": true, "ima/runtime_measurements_count": true,
	"ima/violations": true,
}

// Open opens a file of the namespace.
func (s *SecurityFS) Open(name string, flag int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if !known[name] {
		return -1, unix.ENOENT
	}
	if name != "ima/active" && !s.active {
		return -1, unix.EACCES
	}
	acc := flag & unix.O_ACCMODE
	if name == "ima/policy" && acc != unix.O_RDONLY {
		if s.writer {
			return -1, unix.EBUSY
		}
		s.writer = true
	} else if name != "ima/active" && name != "ima/policy" && acc != unix.O_RDONLY {
		return -1, unix.EACCES
	}

	fd := s.next
	s.next++
	s.files[fd] = &file{name: name, flag: acc}
	return fd, nil
}

// Read reads from fd.
func (s *SecurityFS) Read(fd int, p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	f, ok := s.files[fd]
	if !ok {
		return 0, unix.EBADF
	}
	if f.flag == unix.O_WRONLY {
		return 0, unix.EBADF
	}

	switch f.name {
	case "ima/active":
		v := "0\n"
		if s.active {
			v = "1\n"
		}
		return f.copyOut(p, []byte(v)), nil
	case "ima/policy":
		if f.policy == nil {
			f.policy = []byte(strings.Join(s.rules, "\n"))
			if len(s.rules) > 0 {
				f.policy = append(f.policy, '\n')
			}
		}
		return f.copyOut(p, f.policy), nil
	case "ima/binary_runtime_measurements":
		return s.readList(f, p), nil
	}
	return 0, nil
}

// readList returns whole entries only, as seq_file does.
func (s *SecurityFS) readList(f *file, p []byte) int {
	end := f.off
	for _, b := range s.bounds {
		if b <= f.off {
			continue
		}
		if b-f.off > len(p) {
			break
		}
		end = b
	}
	if end == f.off && f.off < len(s.list) {
		// An entry larger than p: seq_file hands it out in pieces.
		end = f.off + min(len(p), len(s.list)-f.off)
	}
	n := copy(p, s.list[f.off:end])
	f.off += n
	return n
}

func (f *file) copyOut(p, data []byte) int {
	if f.off >= len(data) {
		return 0
	}
	n := copy(p, data[f.off:])
	f.off += n
	return n
}

// Write writes to fd.
func (s *SecurityFS) Write(fd int, p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	f, ok := s.files[fd]
	if !ok || f.flag == unix.O_RDONLY {
		return 0, unix.EBADF
	}
	s.writes[f.name]++

	switch f.name {
	case "ima/active":
		if s.active {
			return 0, unix.EBUSY
		}
		switch string(p) {
		case "1", "1\n", "1\x00":
			s.active = true
			return len(p), nil
		}
		return 0, unix.EINVAL
	case "ima/policy":
		return s.writeRule(f, p)
	}
	return 0, unix.EACCES
}

// writeRule parses the first line of p, as the kernel does per write(),
// and returns the bytes consumed.
func (s *SecurityFS) writeRule(f *file, p []byte) (int, error) {
	line, _, found := bytes.Cut(p, []byte("\n"))
	consumed := len(line)
	if found {
		consumed++
	}

	text := strings.TrimSpace(string(line))
	if text == "" || strings.HasPrefix(text, "#") {
		return consumed, nil
	}
	printed, err := s.parse(text)
	if err != nil {
		f.bad = true
		return 0, err
	}
	f.batch = append(f.batch, printed)
	return consumed, nil
}

// Close closes fd; closing the policy writer commits its batch unless a
// rule was bad or the batch is over the limit, and returns 0 either way.
func (s *SecurityFS) Close(fd int) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	f, ok := s.files[fd]
	if !ok {
		return unix.EBADF
	}
	delete(s.files, fd)

	if f.name == "ima/policy" && f.flag != unix.O_RDONLY {
		s.writer = false
		if !f.bad && len(s.rules)+len(f.batch) <= s.maxRules {
			s.rules = append(s.rules, f.batch...)
		}
	}
	return nil
}

// option keys the kernel knows, in the order it prints them.
var optionOrder = []string{
	"func", "mask", "fsmagic", "fsname", "fsuuid", "uid", "euid", "gid", "egid",
	"fowner", "fgroup", "obj_user", "obj_role", "obj_type", "subj_user", "subj_role",
	"subj_type", "keyrings", "label", "appraise_type", "appraise_flag",
	"appraise_algos", "permit_directio", "pcr", "template", "digest_type",
}

var numeric = map[string]bool{
	"uid": true, "euid": true, "gid": true, "egid": true, "fowner": true,
	"fgroup": true, "pcr": true,
}

// parse checks a rule as a namespace would and returns it as the kernel
// prints it: options in the kernel's order, fsmagic in %#lx form,
// ids in decimal.
func (s *SecurityFS) parse(text string) (string, error) {
	words := strings.Fields(text)
	switch words[0] {
	case "audit", "dont_measure", "dont_appraise", "dont_audit", "dont_hash":
	case "measure":
		if s.variant == V15 {
			return "", unix.EINVAL
		}
	default:
		return "", unix.EINVAL
	}

	opts := map[string]string{}
	for _, w := range words[1:] {
		i := strings.IndexAny(w, "=<>")
		key, op, value := w, "", ""
		if i > 0 {
			key, op, value = w[:i], w[i:i+1], w[i+1:]
		}
		if !slices.Contains(optionOrder, key) || opts[key] != "" {
			return "", unix.EINVAL
		}
		switch {
		case key == "fsmagic":
			// kstrtoul base 16: an optional 0x, then hex digits only
			// (no 0o, 0b or underscores, which base 0 would take).
			hex := value
			if len(hex) > 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X') {
				hex = hex[2:]
			}
			n, err := strconv.ParseUint(hex, 16, 64)
			if err != nil {
				return "", unix.EINVAL
			}
			value = fmt.Sprintf("%#x", n)
		case numeric[key]:
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				return "", unix.EINVAL
			}
			value = strconv.FormatUint(n, 10)
		}
		opts[key] = key + op + value
	}

	out := []string{words[0]}
	for _, key := range optionOrder {
		if opts[key] != "" {
			out = append(out, opts[key])
		}
	}
	return strings.Join(out, " "), nil
}
