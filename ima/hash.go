// Package ima reads, writes and replays IMA measurement lists: the
// binary and ASCII lists the kernel shows in securityfs, and the ones the
// imans collector writes in the same formats.
//
// Everything here uses the standard library only. Readers work an entry
// at a time, so memory stays flat whatever the length of a list.
package ima

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"
	"slices"
)

// Hash names a hash algorithm the way the kernel does in measurement
// lists ("sha1", "sha256", ...).
type Hash string

// The hash algorithms of the TPM banks a replay knows.
const (
	SHA1   Hash = "sha1"
	SHA256 Hash = "sha256"
	SHA384 Hash = "sha384"
	SHA512 Hash = "sha512"
)

// digestSizes holds the digest size of every algorithm name the kernel
// can write in a d-ng field (its hash_algo_name table), so a field can be
// checked even when this package cannot compute that hash.
var digestSizes = map[Hash]int{
	"md4": 16, "md5": 16, "sha1": 20, "rmd160": 20, "rmd256": 32, "rmd320": 40,
	"sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64,
	"wp256": 32, "wp384": 48, "wp512": 64, "tgr128": 16, "tgr160": 20, "tgr192": 24,
	"sm3": 32, "streebog256": 32, "streebog512": 64,
	"sha3-256": 32, "sha3-384": 48, "sha3-512": 64,
}

// Size returns the digest size of h in bytes, or 0 for a name the kernel
// does not know.
func (h Hash) Size() int {
	switch h {
	case SHA1:
		return 20
	case SHA256:
		return 32
	case SHA384:
		return 48
	case SHA512:
		return 64
	}
	return digestSizes[h]
}

// Known reports whether the kernel knows h as a hash algorithm name.
func (h Hash) Known() bool {
	return h.Size() != 0
}

// New returns a new hash.Hash computing h, or an error when the standard
// library has no implementation of it.
func (h Hash) New() (hash.Hash, error) {
	switch h {
	case "md5":
		return md5.New(), nil
	case SHA1:
		return sha1.New(), nil
	case "sha224":
		return sha256.New224(), nil
	case SHA256:
		return sha256.New(), nil
	case SHA384:
		return sha512.New384(), nil
	case SHA512:
		return sha512.New(), nil
	case "sha3-256":
		return sha3.New256(), nil
	case "sha3-384":
		return sha3.New384(), nil
	case "sha3-512":
		return sha3.New512(), nil
	}
	return nil, fmt.Errorf("hash algorithm %q: %w", string(h), ErrUnknownHash)
}

// appendSum appends h's hash of the concatenated data to dst, without an
// allocation for the common bank algorithms.
func (h Hash) appendSum(dst []byte, data ...[]byte) ([]byte, error) {
	if len(data) == 1 {
		switch h {
		case SHA1:
			s := sha1.Sum(data[0])
			return append(dst, s[:]...), nil
		case SHA256:
			s := sha256.Sum256(data[0])
			return append(dst, s[:]...), nil
		case SHA384:
			s := sha512.Sum384(data[0])
			return append(dst, s[:]...), nil
		case SHA512:
			s := sha512.Sum512(data[0])
			return append(dst, s[:]...), nil
		}
	}
	hh, err := h.New()
	if err != nil {
		return nil, err
	}
	for _, d := range data {
		hh.Write(d)
	}
	return append(dst, hh.Sum(nil)...), nil
}

// hashName returns the algorithm named by b and its digest size, without
// an allocation for the bank algorithms; size 0 for an unknown name.
func hashName(b []byte) (Hash, int) {
	switch string(b) {
	case "sha1":
		return SHA1, 20
	case "sha256":
		return SHA256, 32
	case "sha384":
		return SHA384, 48
	case "sha512":
		return SHA512, 64
	}
	h := Hash(b)
	return h, h.Size()
}

// extend computes bank(pcr || digest) into pcr, which has the bank's
// size, without an allocation.
func extend(bank Hash, pcr, digest []byte) error {
	var in [128]byte
	n := copy(in[:], pcr)
	n += copy(in[n:], digest)
	switch bank {
	case SHA1:
		s := sha1.Sum(in[:n])
		copy(pcr, s[:])
	case SHA256:
		s := sha256.Sum256(in[:n])
		copy(pcr, s[:])
	case SHA384:
		s := sha512.Sum384(in[:n])
		copy(pcr, s[:])
	case SHA512:
		s := sha512.Sum512(in[:n])
		copy(pcr, s[:])
	default:
		s, err := bank.appendSum(nil, slices.Clone(in[:n]))
		if err != nil {
			return err
		}
		copy(pcr, s)
	}
	return nil
}

// bankForSize returns the bank algorithm whose digest has n bytes, as
// used to tell the bank of a template hash from its length.
func bankForSize(n int) (Hash, bool) {
	switch n {
	case 20:
		return SHA1, true
	case 32:
		return SHA256, true
	case 48:
		return SHA384, true
	case 64:
		return SHA512, true
	}
	return "", false
}
