package policy

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// digestSizes are the file digest algorithms expectations may name, with
// their sizes in bytes.
var digestSizes = map[string]int{
	"sha1":   20,
	"sha224": 28,
	"sha256": 32,
	"sha384": 48,
	"sha512": 64,
	"sm3":    32,
}

// algoForHexLen guesses the algorithm of a bare hex digest by its length,
// as Keylime does: sha1, sha256, sha384 or sha512.
func algoForHexLen(n int) string {
	switch n {
	case 40:
		return "sha1"
	case 56:
		return "sha224"
	case 64:
		return "sha256"
	case 96:
		return "sha384"
	case 128:
		return "sha512"
	}
	return ""
}

// KeylimeDigest returns a normalised "algo:hex" digest as Keylime's
// runtime policies write it, bare hex, when its length names its algorithm;
// otherwise (sm3, whose length is sha256's) unchanged.
func KeylimeDigest(d string) string {
	algo, hx, ok := strings.Cut(d, ":")
	if ok && algoForHexLen(len(hx)) == algo {
		return hx
	}
	return d
}

// NormalizeDigest returns a digest as lowercase "algo:hex". It takes
// "algo:hex" (the algorithm's size is checked) or bare hex, whose
// algorithm follows from its length (64 digits is sha256).
func NormalizeDigest(s string) (string, error) {
	algo, hx, ok := strings.Cut(s, ":")
	if !ok {
		algo, hx = "", s
	}
	algo, hx = strings.ToLower(algo), strings.ToLower(hx)

	if _, err := hex.DecodeString(hx); err != nil || hx == "" {
		return "", fmt.Errorf("digest %q: not hexadecimal", ShortWord(s))
	}
	if algo == "" {
		algo = algoForHexLen(len(hx))
		if algo == "" {
			return "", fmt.Errorf("digest %q: %d hex digits fit no known algorithm",
				ShortWord(s), len(hx))
		}
	}
	size, known := digestSizes[algo]
	if !known {
		return "", fmt.Errorf("digest %q: unknown algorithm %q", ShortWord(s), ShortWord(algo))
	}
	if len(hx) != 2*size {
		return "", fmt.Errorf("digest %q: %s needs %d hex digits, have %d",
			ShortWord(s), algo, 2*size, len(hx))
	}
	return algo + ":" + hx, nil
}

// pcrSizes are the PCR banks an expectation may name, with digest sizes.
var pcrSizes = map[string]int{"sha1": 20, "sha256": 32}

// normalizePCR checks a PCR value of a bank and returns it in lowercase.
func normalizePCR(bank, v string) (string, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if _, err := hex.DecodeString(v); err != nil {
		return "", fmt.Errorf("not hexadecimal")
	}
	if len(v) != 2*pcrSizes[bank] {
		return "", fmt.Errorf("%s PCR needs %d hex digits, have %d",
			bank, 2*pcrSizes[bank], len(v))
	}
	return v, nil
}
