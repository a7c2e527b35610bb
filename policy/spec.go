package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// The annotation keys imans reads. Every key under AnnotationPrefix must be
// one of these.
const (
	AnnotationPrefix        = "io.imans."
	AnnotationEnable        = "io.imans.enable"
	AnnotationMode          = "io.imans.mode"
	AnnotationBackend       = "io.imans.backend"
	AnnotationPolicy        = "io.imans.policy"
	AnnotationExpectDigests = "io.imans.expect.digests"
	AnnotationExpectPCR10   = "io.imans.expect.pcr10." // + bank
	AnnotationPCR10SHA1     = "io.imans.expect.pcr10.sha1"
	AnnotationPCR10SHA256   = "io.imans.expect.pcr10.sha256"
)

// Size limits of annotation values and of the files they name.
const (
	MaxPolicySize      = 64 << 10 // io.imans.policy, inline or file
	MaxDigestsSize     = 1 << 20  // io.imans.expect.digests inline
	MaxExpectFileSize  = 16 << 20 // a Keylime runtime policy file
	MaxShortValueSize  = 256      // every other key
	DefaultConfigDir   = "/etc/imans"
	policiesSubdir     = "policies"
	expectationsSubdir = "expectations"
)

// Mode is what imans does when measurement cannot start.
type Mode string

// The modes.
const (
	// ModeAudit records and reports; the container starts regardless.
	ModeAudit Mode = "audit"
	// ModeEnforce refuses to create the container when measurement
	// cannot start.
	ModeEnforce Mode = "enforce"
)

// The backends a spec may ask for.
const (
	BackendAuto     = "auto"
	BackendKernel   = "kernel"
	BackendFanotify = "fanotify"
)

// Spec is a container's measurement settings, from its annotations.
type Spec struct {
	// Enable is io.imans.enable=true.
	Enable bool
	// Mode defaults to ModeAudit.
	Mode Mode
	// Backend is "auto" (default), "kernel" or "fanotify".
	Backend string
	// PolicyText is the policy as given (the built-in one by default).
	PolicyText string
	// Policy is PolicyText parsed and checked with DefaultProfile.
	Policy *Policy
	// PolicySource is "builtin", "annotation" or "@name".
	PolicySource string
	// Expect holds what the report checks at stop.
	Expect Expectations
}

// Expectations are what the container's measurements must show.
type Expectations struct {
	// Digests maps a path to its allowed digests, each "algo:hex" in
	// lowercase. Nil when none were given.
	Digests map[string][]string
	// Excludes are regular expressions (Keylime's "excludes"): a path
	// matching one is not checked.
	Excludes []string
	// PCR10 maps a bank ("sha1", "sha256") to the lowercase hex value
	// PCR 10 must have at stop.
	PCR10 map[string]string
	// Source is "annotation" or "@name" (the Keylime file's name); empty
	// when no digests were given.
	Source string
}

// Excluded reports whether a path matches one of the excludes. As in
// Keylime (Python's re.match), an expression matches from the start of the
// path: "/tmp/" excludes /tmp/x but not /var/tmp/x. Expressions that do
// not compile (checked when loaded) match nothing. It compiles the
// expressions on each call; ExcludeMatcher compiles them once.
func (e *Expectations) Excluded(path string) bool {
	m, _ := e.ExcludeMatcher()
	return m(path)
}

// ExcludeMatcher compiles the excludes once into one matcher with the
// semantics of Excluded. The error names the first expression that does
// not compile; the matcher then skips it.
func (e *Expectations) ExcludeMatcher() (func(path string) bool, error) {
	var res []*regexp.Regexp
	var first error
	for i, x := range e.Excludes {
		re, err := compileExclude(x)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("excludes[%d]: %w", i, err)
			}
			continue
		}
		res = append(res, re)
	}
	return func(path string) bool {
		for _, re := range res {
			if re.MatchString(path) {
				return true
			}
		}
		return false
	}, first
}

// Allowed reports whether the path has expected digests (listed) and,
// if so, whether the digest ("algo:hex", any case) is one of them.
func (e *Expectations) Allowed(path, digest string) (listed, ok bool) {
	want, listed := e.Digests[path]
	if !listed {
		return false, false
	}
	return true, slices.Contains(want, strings.ToLower(digest))
}

// SpecFromAnnotations reads a container's io.imans.* annotations. Keys
// outside io.imans. are ignored; an unknown key under it is an error.
// configDir holds policies/ and expectations/ for @name values ("" means
// DefaultConfigDir). Every error names its annotation key; all of them
// are returned, joined.
func SpecFromAnnotations(ann map[string]string, configDir string) (*Spec, error) {
	if configDir == "" {
		configDir = DefaultConfigDir
	}
	s := &Spec{Mode: ModeAudit, Backend: BackendAuto}
	var errs []error

	keys := make([]string, 0, len(ann))
	for k := range ann {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)

	for _, k := range keys {
		if err := s.set(k, ann[k], configDir); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", k, err))
		}
	}

	if s.Policy == nil && ann[AnnotationPolicy] == "" {
		s.PolicyText, s.Policy, s.PolicySource = BuiltinText(), Builtin(), "builtin"
	}

	// With the kernel backend asked for by name, the policy goes into an
	// IMA namespace, which takes fewer rules: say so now rather than at
	// activation.
	if s.Backend == BackendKernel && s.Policy != nil {
		ns := DefaultProfile().InNamespace(NamespaceDev)
		if _, err := ParseProfile(s.PolicyText, ns); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: policy %s refused inside an "+
				"IMA namespace (%s=kernel): %w", AnnotationPolicy, s.PolicySource,
				AnnotationBackend, err))
		}
	}

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// set applies one annotation.
func (s *Spec) set(key, val, configDir string) error {
	limit := MaxShortValueSize
	switch key {
	case AnnotationPolicy:
		limit = MaxPolicySize
	case AnnotationExpectDigests:
		limit = MaxDigestsSize
	}
	if len(val) > limit {
		return fmt.Errorf("value of %d bytes is over the limit of %d", len(val), limit)
	}

	switch key {
	case AnnotationEnable:
		switch val {
		case "true":
			s.Enable = true
		case "false":
			s.Enable = false
		default:
			return fmt.Errorf("want true or false, have %q", val)
		}
	case AnnotationMode:
		switch Mode(val) {
		case ModeAudit, ModeEnforce:
			s.Mode = Mode(val)
		default:
			return fmt.Errorf("want audit or enforce, have %q", val)
		}
	case AnnotationBackend:
		switch val {
		case BackendAuto, BackendKernel, BackendFanotify:
			s.Backend = val
		default:
			return fmt.Errorf("want auto, kernel or fanotify, have %q", val)
		}
	case AnnotationPolicy:
		return s.setPolicy(val, configDir)
	case AnnotationExpectDigests:
		return s.setDigests(val, configDir)
	default:
		bank, ok := strings.CutPrefix(key, AnnotationExpectPCR10)
		if !ok || pcrSizes[bank] == 0 {
			return errors.New("unknown imans annotation")
		}
		v, err := normalizePCR(bank, val)
		if err != nil {
			return err
		}
		if s.Expect.PCR10 == nil {
			s.Expect.PCR10 = map[string]string{}
		}
		s.Expect.PCR10[bank] = v
	}
	return nil
}

func (s *Spec) setPolicy(val, configDir string) error {
	text, source := val, "annotation"
	if name, ok := strings.CutPrefix(val, "@"); ok {
		data, err := readConfigFile(configDir, policiesSubdir, name, MaxPolicySize)
		if err != nil {
			return err
		}
		text, source = string(data), val
	}
	p, err := Parse(text)
	if err != nil {
		return fmt.Errorf("policy %s: %w", source, err)
	}
	if len(p.Rules) == 0 {
		// The kernel refuses an empty policy when the file is closed.
		return fmt.Errorf("policy %s: empty policy (no rules)", source)
	}
	s.PolicyText, s.Policy, s.PolicySource = text, p, source
	return nil
}

func (s *Spec) setDigests(val, configDir string) error {
	if name, ok := strings.CutPrefix(val, "@"); ok {
		data, err := readConfigFile(configDir, expectationsSubdir, name, MaxExpectFileSize)
		if err != nil {
			return err
		}
		e, err := ParseKeylime(data)
		if err != nil {
			return fmt.Errorf("%s: %w", val, err)
		}
		s.Expect.Digests, s.Expect.Excludes, s.Expect.Source = e.Digests, e.Excludes, val
		return nil
	}

	dec := json.NewDecoder(strings.NewReader(val))
	raw, err := decodeDigestObject(dec)
	var dup *DuplicateKeyError
	if errors.As(err, &dup) {
		return fmt.Errorf("%w: give each path once, with all its digests in one list", err)
	}
	if err != nil {
		return fmt.Errorf("want a JSON object of path to digest list: %w", err)
	}
	if err := checkEnd(dec); err != nil {
		return err
	}
	d, err := normalizeDigests(raw)
	if err != nil {
		return err
	}
	s.Expect.Digests, s.Expect.Source = d, "annotation"
	return nil
}

// ValidName reports whether name is a plain file name: not empty, not "."
// or "..", no '/' and no NUL, at most 255 bytes.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}

// readConfigFile reads configDir/sub/name, a regular file of at most
// limit bytes. An annotation can thereby name only files an
// administrator put in that folder.
func readConfigFile(configDir, sub, name string, limit int64) ([]byte, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("@%s: not a plain file name", name)
	}
	path := filepath.Join(configDir, sub, name)

	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; the check below refuses it. Regular files ignore the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("@%s: %w", name, err)
	}
	defer f.Close()

	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("@%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("@%s: %s is not a regular file", name, path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("@%s: %s has %d bytes, over the limit of %d",
			name, path, fi.Size(), limit)
	}

	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("@%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("@%s: %s grew over the limit of %d", name, path, limit)
	}
	return data, nil
}
