package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
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
	// Version is meta.version; nil when meta or its version is absent.
	Version *int
	// Digests is nil when the member is absent or null.
	Digests  *digestObject
	Excludes []string
}

// ParseKeylime reads a Keylime runtime policy (JSON, meta.version 1): its
// "digests" map of path to hex digests and its "excludes" list of regular
// expressions. Digests are normalised to "algo:hex" (bare hex: the
// algorithm follows from its length). Source is left empty.
//
// Member names match exactly, as in Keylime (encoding/json would also
// take "Digests"). A member of the policy, of "meta" or a path of
// "digests" given twice is refused; inside the members imans ignores,
// repeats are left alone.
//
// The excludes are compiled with Go's regexp package (RE2): Python-only
// syntax such as look-ahead is refused with the entry's index.
func ParseKeylime(data []byte) (*Expectations, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	kp, err := decodeKeylime(dec)
	if err != nil {
		return nil, fmt.Errorf("keylime runtime policy: %w", err)
	}
	if err := checkEnd(dec); err != nil {
		return nil, fmt.Errorf("keylime runtime policy: %w", err)
	}

	if kp.Version == nil {
		return nil, fmt.Errorf("keylime runtime policy: no meta.version")
	}
	if *kp.Version != KeylimeVersion {
		return nil, fmt.Errorf("keylime runtime policy: meta.version %d, want %d",
			*kp.Version, KeylimeVersion)
	}
	if kp.Digests == nil {
		return nil, fmt.Errorf("keylime runtime policy: no \"digests\" member")
	}

	digests, err := normalizeDigests(kp.Digests)
	if err != nil {
		return nil, fmt.Errorf("keylime runtime policy: %w", err)
	}
	e := &Expectations{Digests: digests}
	if kp.Excludes != nil {
		if err := checkExcludes(kp.Excludes); err != nil {
			return nil, fmt.Errorf("keylime runtime policy: %w", err)
		}
		e.Excludes = kp.Excludes
	}
	return e, nil
}

// decodeKeylime walks the policy's top-level object. A null meta or
// digests counts as absent, as it did with encoding/json.
func decodeKeylime(dec *json.Decoder) (*keylimePolicy, error) {
	var kp keylimePolicy
	err := decodeObject(dec, "member", nil, func(key string) error {
		var err error
		switch key {
		case "meta":
			err = decodeObject(dec, "member", nil, func(key string) error {
				if key != "version" {
					return skipValue(dec)
				}
				return dec.Decode(&kp.Version)
			})
		case "digests":
			kp.Digests, err = decodeDigestObject(dec)
		case "excludes":
			err = dec.Decode(&kp.Excludes)
		default:
			err = skipValue(dec)
		}
		if errors.Is(err, errNull) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if errors.Is(err, errNull) {
		return nil, errors.New("want a JSON object, have null")
	}
	if err != nil {
		return nil, err
	}
	return &kp, nil
}

// skipValue reads past one JSON value of a member imans does not use.
func skipValue(dec *json.Decoder) error {
	var skip json.RawMessage
	return dec.Decode(&skip)
}

// normalizeDigests checks every path and digest of a digests object, in
// the order of the text, and returns its map with each digest normalised
// (in place: the lists are the object's own).
func normalizeDigests(in *digestObject) (map[string][]string, error) {
	for _, p := range in.paths {
		if (p == "" || p[0] != '/') && p != BootAggregate {
			return nil, fmt.Errorf("digests: path %q is not absolute", ShortWord(p))
		}
		list := in.lists[p]
		if len(list) == 0 {
			return nil, fmt.Errorf("digests: path %q has no digest", ShortWord(p))
		}
		for i, d := range list {
			n, err := NormalizeDigest(d)
			if err != nil {
				return nil, fmt.Errorf("digests: %q[%d]: %w", ShortWord(p), i, err)
			}
			list[i] = n
		}
	}
	return in.lists, nil
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
