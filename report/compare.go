package report

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Measured is one entry of a measurement list as the comparison needs it.
type Measured struct {
	// Index is the entry's position in the list, 0-based.
	Index int
	// Path is the file name recorded in the entry.
	Path string
	// Digest is the file digest as "algo:lowercase-hex".
	Digest string
	// Violation marks an entry the kernel (or collector) could not measure.
	Violation bool
}

// MaxExpectedListed is how many of a path's allowed digests a changed-file
// finding lists.
const MaxExpectedListed = 8

// Compare checks a measurement list and PCR 10 against expectations and
// returns the findings: a file measured with a digest not allowed for its
// path is a changed file; a file with no expectation is an unexpected file
// unless an exclude matches its path; a violation is a finding unless
// excluded; each bank whose expected PCR 10 differs from pcr10 is a PCR
// mismatch. Digests and PCR values compare case-insensitively.
func Compare(list []Measured, exp Expectations, pcr10 map[string]string) ([]Finding, error) {
	excludes := make([]*regexp.Regexp, 0, len(exp.Excludes))
	for i, ex := range exp.Excludes {
		re, err := regexp.Compile(ex)
		if err != nil {
			return nil, fmt.Errorf("expectations: exclude %d %q: %w", i, ex, err)
		}
		excludes = append(excludes, re)
	}
	excluded := func(path string) bool {
		for _, re := range excludes {
			if re.MatchString(path) {
				return true
			}
		}
		return false
	}

	findings := []Finding{}
	for _, m := range list {
		if excluded(m.Path) {
			continue
		}
		if m.Violation {
			findings = append(findings, Finding{Kind: Violation, Index: m.Index, Path: m.Path})
			continue
		}
		allowed, known := lookup(exp.Digests, m.Path)
		switch {
		case !known:
			findings = append(findings, Finding{
				Kind: UnexpectedFile, Index: m.Index, Path: m.Path, Digest: m.Digest,
			})
		case !containsFold(allowed, m.Digest):
			listed := allowed[:min(len(allowed), MaxExpectedListed)]
			findings = append(findings, Finding{
				Kind: ChangedFile, Index: m.Index, Path: m.Path, Digest: m.Digest,
				Expected: listed, ExpectedMore: len(allowed) - len(listed),
			})
		}
	}

	banks := make([]string, 0, len(exp.PCR10))
	for bank := range exp.PCR10 {
		banks = append(banks, bank)
	}
	sort.Strings(banks)
	for _, bank := range banks {
		want := strings.ToLower(exp.PCR10[bank])
		got := strings.ToLower(pcr10[bank])
		if want != got {
			findings = append(findings, Finding{
				Kind: PCRMismatch, Bank: bank, ExpectedPCR: want, ActualPCR: got,
			})
		}
	}
	return findings, nil
}

// lookup finds the digests expected for a measured path. A name that is
// not UTF-8 (the kernel records the bytes as they are) cannot be written
// in JSON, where the expectations come from: encoding/json turns each
// invalid byte into U+FFFD, so such a name is also looked up in that form.
func lookup(digests map[string][]string, path string) ([]string, bool) {
	if allowed, ok := digests[path]; ok || utf8.ValidString(path) {
		return allowed, ok
	}
	allowed, ok := digests[JSONSpelling(path)]
	return allowed, ok
}

// JSONSpelling is path as encoding/json writes it: every byte that does
// not start a valid UTF-8 sequence becomes U+FFFD. Names that differ only
// in such bytes are one key in JSON, and share their expected digests.
func JSONSpelling(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); {
		r, size := utf8.DecodeRuneInString(path[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(path[i : i+size])
		}
		i += size
	}
	return b.String()
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
