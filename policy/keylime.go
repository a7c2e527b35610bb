package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
)

// KeylimeVersion is the runtime policy format version this package reads
// (meta.version of Keylime's runtime policy).
const KeylimeVersion = 1

// BootAggregate is the name of the first entry of a measurement list (the
// hash of the boot PCRs); digests may list it besides absolute paths.
const BootAggregate = "boot_aggregate"

// keylimePolicy is the part of a Keylime runtime policy imans uses. The
// other members (keyrings, ima, ima-buf, verification-keys, release,
// rules) are allowed and ignored.
type keylimePolicy struct {
	Meta *struct {
		Version *int `json:"version"`
	} `json:"meta"`
	Digests  *map[string][]string `json:"digests"`
	Excludes *[]string            `json:"excludes"`
}

// ParseKeylime reads a Keylime runtime policy (JSON, meta.version 1): its
// "digests" map of path to hex digests and its "excludes" list of regular
// expressions. Digests are normalised to "algo:hex" (bare hex: the
// algorithm follows from its length). Source is left empty.
//
// The excludes are compiled with Go's regexp package (RE2): Python-only
// syntax such as look-ahead is refused with the entry's index.
func ParseKeylime(data []byte) (*Expectations, error) {
	var kp keylimePolicy
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&kp); err != nil {
		return nil, fmt.Errorf("keylime runtime policy: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("keylime runtime policy: data after the JSON object")
	}

	if kp.Meta == nil || kp.Meta.Version == nil {
		return nil, fmt.Errorf("keylime runtime policy: no meta.version")
	}
	if *kp.Meta.Version != KeylimeVersion {
		return nil, fmt.Errorf("keylime runtime policy: meta.version %d, want %d",
			*kp.Meta.Version, KeylimeVersion)
	}
	if kp.Digests == nil {
		return nil, fmt.Errorf("keylime runtime policy: no \"digests\" member")
	}

	digests, err := normalizeDigests(*kp.Digests)
	if err != nil {
		return nil, fmt.Errorf("keylime runtime policy: %w", err)
	}
	e := &Expectations{Digests: digests}
	if kp.Excludes != nil {
		if err := checkExcludes(*kp.Excludes); err != nil {
			return nil, fmt.Errorf("keylime runtime policy: %w", err)
		}
		e.Excludes = *kp.Excludes
	}
	return e, nil
}

// normalizeDigests checks every path and digest of a digests map.
func normalizeDigests(in map[string][]string) (map[string][]string, error) {
	paths := make([]string, 0, len(in))
	for p := range in {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	out := make(map[string][]string, len(in))
	for _, p := range paths {
		if (p == "" || p[0] != '/') && p != BootAggregate {
			return nil, fmt.Errorf("digests: path %q is not absolute", ShortWord(p))
		}
		if len(in[p]) == 0 {
			return nil, fmt.Errorf("digests: path %q has no digest", ShortWord(p))
		}
		list := make([]string, 0, len(in[p]))
		for i, d := range in[p] {
			n, err := NormalizeDigest(d)
			if err != nil {
				return nil, fmt.Errorf("digests: %q[%d]: %w", ShortWord(p), i, err)
			}
			list = append(list, n)
		}
		out[p] = list
	}
	return out, nil
}

// checkExcludes compiles every exclude expression.
func checkExcludes(ex []string) error {
	for i, x := range ex {
		if _, err := compileExclude(x); err != nil {
			return fmt.Errorf("excludes[%d]: %w", i, err)
		}
	}
	return nil
}

// compileExclude compiles an exclude anchored at the start of the path.
// The expression is compiled alone first: one with an unbalanced ')'
// would otherwise close the anchored group early ("x)|/var/tmp/(?:"
// matching anywhere in the path).
func compileExclude(x string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(x); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + x + `)`)
}
