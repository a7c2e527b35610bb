package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Summary writes a short human summary of r: the verdict first, then each
// incomplete reason and each finding, one a line, then the PCR values.
func (r *Report) Summary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  container %s\n", strings.ToUpper(string(r.Verdict)), r.Info.ContainerID)
	for _, why := range r.Incomplete {
		fmt.Fprintf(&b, "  incomplete: %s\n", why)
	}
	for _, f := range r.Findings {
		b.WriteString("  " + f.String() + "\n")
	}

	fmt.Fprintf(&b, "  entries %d, backend %s, mode %s, %s to %s\n",
		r.TPM.Entries, r.Info.Backend, r.Info.Mode,
		r.Info.Started.UTC().Format("2006-01-02T15:04:05.000Z"),
		r.Info.Stopped.UTC().Format("2006-01-02T15:04:05.000Z"))
	for _, bank := range sortedKeys(r.TPM.PCR10, r.TPM.ReplayPCR10) {
		fmt.Fprintf(&b, "  pcr10 %-6s tpm %s replay %s\n", bank,
			orNone(r.TPM.PCR10[bank]), orNone(r.TPM.ReplayPCR10[bank]))
	}
	if r.Info.BinaryLog != "" {
		fmt.Fprintf(&b, "  list %s\n", r.Info.BinaryLog)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String renders a finding on one line.
func (f Finding) String() string {
	switch f.Kind {
	case ChangedFile:
		return fmt.Sprintf("%s: %s %s (expected %s)", f.Kind, f.Path, f.Digest,
			strings.Join(f.Expected, " or "))
	case UnexpectedFile:
		return fmt.Sprintf("%s: %s %s", f.Kind, f.Path, f.Digest)
	case Violation:
		return fmt.Sprintf("%s: %s (entry %d)", f.Kind, f.Path, f.Index)
	case PCRMismatch:
		return fmt.Sprintf("%s: pcr10 %s expected %s actual %s", f.Kind, f.Bank,
			f.ExpectedPCR, orNone(f.ActualPCR))
	}
	return fmt.Sprintf("%s: %s %s", f.Kind, f.Path, f.Digest)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func sortedKeys(maps ...map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}
