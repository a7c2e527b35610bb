package report

import (
	"errors"
	"fmt"
)

// ErrVerdict is wrapped when a report's verdict is not the one its own
// contents give.
var ErrVerdict = errors.New("verdict contradicts the report")

// CheckVerdict returns an error wrapping ErrVerdict when the verdict is
// not the one Decide gives the report's contents: its incomplete reasons,
// its findings and whether the TPM vouches for a list that is not empty.
// A report file is the host's, and anyone who can write it can write
// "pass" over an incomplete or failed run: a reader that trusts only a
// verdict its contents agree with shows and learns from no such file.
func (r *Report) CheckVerdict() error {
	implied := r.impliedReasons()
	reasons := append(r.Incomplete[:len(r.Incomplete):len(r.Incomplete)], implied...)
	want := verdictOf(reasons, r.Findings)
	if r.Verdict == want {
		return nil
	}

	var why string
	switch {
	case len(r.Incomplete) > 0:
		why = fmt.Sprintf("it lists %s (the first: %q)",
			count(len(r.Incomplete), "incomplete reason"), r.Incomplete[0])
	case len(implied) > 0:
		why = implied[0]
	case len(r.Findings) > 0:
		why = fmt.Sprintf("it lists %s (the first: %s)", count(len(r.Findings), "finding"),
			r.Findings[0])
	default:
		why = "it lists no incomplete reason and no finding"
	}
	return fmt.Errorf("%w: it says %q, but %s, which makes it %q", ErrVerdict,
		r.Verdict, why, want)
}

// count writes n and a noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
