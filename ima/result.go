package ima

import (
	"fmt"
	"slices"
)

// BankResult is the outcome of comparing one bank's replay with the
// expected PCR values.
type BankResult struct {
	// Bank is the bank's hash algorithm.
	Bank Hash

	// Mode is the extend mode that matched (ExtendHash or ExtendPadded),
	// or the mode that was replayed when none matched (ExtendHash for
	// ExtendAuto).
	Mode ExtendMode

	// PCRs are the PCRs compared: those with an expected value that the
	// list extends. PCRs the list never extends are not compared, as a
	// measurement list says nothing about them.
	PCRs []uint32

	// Prefix is the longest number of entries from the start of the list
	// after which every compared PCR has its expected value, or -1.
	Prefix int

	// Replayed and Expected hold, per compared PCR, the value after the
	// whole list and the expected one.
	Replayed, Expected map[uint32][]byte
}

// Matched reports whether some prefix of the list matched this bank.
func (b *BankResult) Matched() bool {
	return b.Prefix >= 0
}

// Result is the outcome of comparing a replay with the expected PCR
// values in every bank that has them.
type Result struct {
	// Entries and Violations count the entries replayed.
	Entries, Violations int

	// Prefix is the longest number of entries from the start of the list
	// after which every bank matches (each in its own mode), or -1. PCR
	// values read before the list can account for fewer entries than it
	// holds, never more: the kernel appends an entry before it extends
	// the PCR.
	Prefix int

	// Banks holds the result of each bank with expected values, in the
	// order the banks were given to NewReplay.
	Banks []BankResult
}

// Matched reports whether the list, or a prefix of it, leads to the
// expected values in every bank.
func (r *Result) Matched() bool {
	return r.Prefix >= 0 && len(r.Banks) > 0
}

// Whole reports whether the whole list leads to the expected values.
func (r *Result) Whole() bool {
	return r.Matched() && r.Prefix == r.Entries
}

// Result compares the replay so far with the values given to Expect.
// Banks without expected values are left out.
func (r *Replay) Result() *Result {
	res := &Result{Entries: r.entries, Violations: r.violations, Prefix: -1}

	// The spans of prefix lengths each bank matches over, per mode.
	type modeSpans struct {
		mode  ExtendMode
		spans []span
	}
	var all [][]modeSpans
	for _, br := range r.banks {
		if br.want == nil {
			continue
		}
		br := br
		b := BankResult{Bank: br.algo, Prefix: -1, Mode: ExtendHash,
			Replayed: map[uint32][]byte{}, Expected: map[uint32][]byte{}}
		if br.mode == ExtendPadded {
			b.Mode = ExtendPadded
		}
		for _, pcr := range br.order {
			if _, ok := br.want[pcr]; ok {
				b.PCRs = append(b.PCRs, pcr)
			}
		}
		slices.Sort(b.PCRs)

		var ms []modeSpans
		for m := range 2 {
			mode := ExtendHash + ExtendMode(m)
			if br.mode != ExtendAuto && br.mode != mode && br.algo != SHA1 {
				continue
			}
			if br.algo == SHA1 && m == 1 {
				continue
			}
			var s []span
			for i, pcr := range b.PCRs {
				ps := br.pcrs[pcr].spans(m, r.entries)
				if i == 0 {
					s = ps
				} else {
					s = intersect(s, ps)
				}
			}
			if len(b.PCRs) == 0 {
				s = nil
			}
			ms = append(ms, modeSpans{mode, s})
			if len(s) > 0 && s[len(s)-1].hi > b.Prefix {
				b.Prefix = s[len(s)-1].hi
				b.Mode = mode
			}
		}
		for _, pcr := range b.PCRs {
			b.Replayed[pcr] = r.PCRMode(br.algo, pcr, b.Mode)
			b.Expected[pcr] = br.want[pcr]
		}
		res.Banks = append(res.Banks, b)
		all = append(all, ms)
	}
	if len(all) == 0 {
		return res
	}

	// The longest prefix every bank matches, in whichever mode.
	var common []span
	for i, ms := range all {
		var union []span
		for _, m := range ms {
			union = append(union, m.spans...)
		}
		if i == 0 {
			common = union
		} else {
			common = intersect(common, union)
		}
	}
	for _, s := range common {
		res.Prefix = max(res.Prefix, s.hi)
	}

	// Report, per bank, the mode that matched at that prefix.
	if res.Prefix >= 0 {
		for i, ms := range all {
			for _, m := range ms {
				if contains(m.spans, res.Prefix) {
					res.Banks[i].Mode = m.mode
					break
				}
			}
		}
	}
	return res
}

// intersect returns the prefix lengths in both a and b.
func intersect(a, b []span) []span {
	var out []span
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.lo, y.lo), min(x.hi, y.hi)
			if lo <= hi {
				out = append(out, span{lo, hi})
			}
		}
	}
	return out
}

// contains reports whether a span holds k.
func contains(s []span, k int) bool {
	for _, x := range s {
		if x.lo <= k && k <= x.hi {
			return true
		}
	}
	return false
}

// String sums the result up in one line.
func (r *Result) String() string {
	switch {
	case r.Whole():
		return fmt.Sprintf("match: all %d entries (%d violations)", r.Entries, r.Violations)
	case r.Matched():
		return fmt.Sprintf("match: the first %d of %d entries (%d violations); "+
			"the %d later entries are not covered by the PCR values",
			r.Prefix, r.Entries, r.Violations, r.Entries-r.Prefix)
	}
	return fmt.Sprintf("mismatch: no prefix of the %d entries leads to the PCR values",
		r.Entries)
}
