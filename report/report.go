// Package report holds the report imans writes when a container stops: its
// versioned schema, the comparison of a measurement list and PCR 10 with a
// container's expectations, the verdict, and the atomic write and read of
// report files.
package report

import (
	"sort"
	"strings"
	"time"
)

// Schema is the version string of the report format this package writes.
// Readers check it first and refuse a version they do not know.
const Schema = "imans.report/v1"

// Verdict is the outcome of a container's run.
type Verdict string

// The verdicts. Incomplete wins over Fail and Fail over Pass: a report is
// Pass only when the record is whole and nothing differs from the
// expectations.
const (
	Pass       Verdict = "pass"
	Fail       Verdict = "fail"
	Incomplete Verdict = "incomplete"
)

// Kinds of findings.
const (
	ChangedFile    = "changed file"
	UnexpectedFile = "unexpected file"
	Violation      = "violation"
	PCRMismatch    = "pcr mismatch"
)

// Report is one container run's report. Fields under TPM are vouched for by
// the container's TPM (and by the list only when the replay matched it);
// everything else is informational, written by the host.
type Report struct {
	// Schema is always the package's Schema constant.
	Schema string `json:"schema"`
	// Verdict is pass, fail or incomplete.
	Verdict Verdict `json:"verdict"`
	// Findings are the differences from the expectations, in list order,
	// then the PCR mismatches.
	Findings []Finding `json:"findings"`
	// Incomplete gives every reason the record is not whole.
	Incomplete []string `json:"incomplete,omitempty"`

	// TPM holds what the container's TPM vouches for.
	TPM Evidence `json:"tpm"`

	// Info is what the host says about the run; no TPM vouches for it.
	Info Info `json:"info"`
}

// Evidence is the TPM-vouched part of a report: PCR 10 as read from the
// container's TPM and as replayed from the list. When every bank matches,
// the list (LogSHA256, Entries) is vouched for too.
type Evidence struct {
	// PCR10 is PCR 10 read from the container's TPM, bank -> lowercase hex.
	PCR10 map[string]string `json:"pcr10"`
	// ReplayPCR10 is PCR 10 computed by replaying the list, bank -> hex.
	ReplayPCR10 map[string]string `json:"replay_pcr10"`
	// ListMatches is true when every bank of ReplayPCR10 equals PCR10.
	ListMatches bool `json:"list_matches"`
	// Entries is the number of entries of the binary list.
	Entries int `json:"entries"`
	// LogSHA256 is the sha256 of the binary list, lowercase hex.
	LogSHA256 string `json:"log_sha256"`
}

// Vouched reports whether the TPM vouches for the list: ListMatches, and
// PCR 10 as read equal to the replay in every bank both have, at least
// one. (ListMatches alone is a flag in a file; the values it stands for
// are beside it.)
func (e Evidence) Vouched() bool {
	shared, differ := e.CompareBanks()
	return e.ListMatches && len(shared) > 0 && len(differ) == 0
}

// CompareBanks returns the banks both PCR10 and ReplayPCR10 have, sorted,
// and those of them whose values differ (hex, case aside): the rule that
// makes ListMatches, and that Vouched checks again.
func (e Evidence) CompareBanks() (shared, differ []string) {
	for bank, pcr := range e.PCR10 {
		replay, ok := e.ReplayPCR10[bank]
		if !ok {
			continue
		}
		shared = append(shared, bank)
		if !strings.EqualFold(pcr, replay) {
			differ = append(differ, bank)
		}
	}
	sort.Strings(shared)
	sort.Strings(differ)
	return shared, differ
}

// Info is the informational part of a report.
type Info struct {
	ContainerID string    `json:"container_id"`
	Bundle      string    `json:"bundle"`
	Rootfs      string    `json:"rootfs,omitempty"`
	Runtime     string    `json:"runtime,omitempty"`
	Mode        string    `json:"mode"`
	Backend     string    `json:"backend"`
	Kernel      string    `json:"kernel"`
	Started     time.Time `json:"started"`
	Stopped     time.Time `json:"stopped"`
	// PolicySHA256 is the sha256 of the IMA policy text the container ran
	// with, lowercase hex.
	PolicySHA256 string `json:"policy_sha256"`
	// Expectations are the expectations the run was checked against.
	Expectations Expectations `json:"expectations"`
	// BinaryLog and ASCIILog are where copies of the lists are kept.
	BinaryLog string `json:"binary_log,omitempty"`
	ASCIILog  string `json:"ascii_log,omitempty"`
	// Violations is the number of violation entries of the list.
	Violations int `json:"violations"`
}

// Expectations are a container's expected values, as given in its
// annotations.
type Expectations struct {
	// Digests maps a path to its allowed file digests ("sha256:hex").
	Digests map[string][]string `json:"digests,omitempty"`
	// Excludes are regular expressions of paths that may hold anything.
	Excludes []string `json:"excludes,omitempty"`
	// PCR10 maps a bank to its expected PCR 10 value, lowercase hex.
	PCR10 map[string]string `json:"pcr10,omitempty"`
	// Source says where the expectations came from ("annotation", "@name").
	Source string `json:"source,omitempty"`
}

// Empty reports whether no expectation at all is set.
func (e Expectations) Empty() bool {
	return len(e.Digests) == 0 && len(e.PCR10) == 0 && len(e.Excludes) == 0
}

// Finding is one difference from the expectations.
type Finding struct {
	// Kind is ChangedFile, UnexpectedFile, Violation or PCRMismatch.
	Kind string `json:"kind"`
	// Index is the entry's position in the list (0-based), for files.
	Index int `json:"index,omitempty"`
	// Path and Digest ("algo:hex") are the file's, for file findings.
	Path   string `json:"path,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Expected lists the allowed digests of Path (ChangedFile), the first
	// MaxExpectedListed of them; ExpectedMore counts the others, which
	// are in Info.Expectations. (A path may be allowed thousands of
	// digests: repeated in every finding, they would make a report too
	// large to read back.)
	Expected     []string `json:"expected,omitempty"`
	ExpectedMore int      `json:"expected_more,omitempty"`
	// Bank, ExpectedPCR and ActualPCR are set for PCRMismatch.
	Bank        string `json:"bank,omitempty"`
	ExpectedPCR string `json:"expected_pcr,omitempty"`
	ActualPCR   string `json:"actual_pcr,omitempty"`
}

// Decide sets the verdict from the findings and the incomplete reasons. A
// report whose list is not vouched for by the TPM (no PCR read, or a replay
// that differs) is incomplete even when the caller gave no reason, and so
// is an empty list: a policy that measures executed programs (the built-in
// one does) records at least the container's own program, so an empty list
// means that nothing of the run was measured, and there is nothing to pass.
func (r *Report) Decide() {
	r.Incomplete = append(r.Incomplete, r.impliedReasons()...)
	r.Verdict = verdictOf(r.Incomplete, r.Findings)
}

// The reasons Decide adds when the evidence itself is short and no reason
// was given.
const (
	reasonNotVouched      = "the list is not vouched for by the TPM"
	reasonNothingMeasured = "nothing was measured: the list is empty " +
		"(the container's process never started, every file it used is on a " +
		"filesystem the policy does not measure, such as tmpfs, or the policy " +
		"measures none of them)"
)

// impliedReasons returns the reason the report's evidence alone makes it
// incomplete, when it lists no reason already: at most one, the first of
// a list not vouched for by the TPM and an empty list.
func (r *Report) impliedReasons() []string {
	switch {
	case len(r.Incomplete) > 0:
		return nil
	case !r.TPM.Vouched():
		return []string{reasonNotVouched}
	case r.TPM.Entries == 0:
		return []string{reasonNothingMeasured}
	}
	return nil
}

// verdictOf is the rule of the verdict: incomplete when any reason is
// given, else fail when anything differs from the expectations, else pass.
func verdictOf(incomplete []string, findings []Finding) Verdict {
	switch {
	case len(incomplete) > 0:
		return Incomplete
	case len(findings) > 0:
		return Fail
	default:
		return Pass
	}
}
