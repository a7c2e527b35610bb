package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Summary writes a short human summary of r: the verdict first, then each
// incomplete reason and each finding, one a line, then the PCR values.
func (r *Report) Summary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  container %s\n", escape(strings.ToUpper(string(r.Verdict))),
		quoteName(r.Info.ContainerID))
	for _, why := range r.Incomplete {
		fmt.Fprintf(&b, "  incomplete: %s\n", escape(why))
	}
	for _, f := range r.Findings {
		b.WriteString("  " + f.String() + "\n")
	}

	fmt.Fprintf(&b, "  entries %d, backend %s, mode %s, %s to %s\n",
		r.TPM.Entries, orNone(escape(r.Info.Backend)), orNone(escape(r.Info.Mode)),
		timeOrNone(r.Info.Started), timeOrNone(r.Info.Stopped))
	for _, bank := range sortedKeys(r.TPM.PCR10, r.TPM.ReplayPCR10) {
		fmt.Fprintf(&b, "  pcr10 %-6s tpm %s replay %s\n", escape(bank),
			orNone(escape(r.TPM.PCR10[bank])), orNone(escape(r.TPM.ReplayPCR10[bank])))
	}
	if r.Info.BinaryLog != "" {
		fmt.Fprintf(&b, "  list %s\n", quoteName(r.Info.BinaryLog))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String renders a finding on one line.
func (f Finding) String() string {
	kind, path, digest := escape(f.Kind), quoteName(f.Path), escape(f.Digest)
	switch f.Kind {
	case ChangedFile:
		expected := escape(strings.Join(f.Expected, " or "))
		if f.ExpectedMore > 0 {
			expected += fmt.Sprintf(" or %d more", f.ExpectedMore)
		}
		return fmt.Sprintf("%s: %s %s (expected %s)", kind, path, digest, expected)
	case UnexpectedFile:
		return fmt.Sprintf("%s: %s %s", kind, path, digest)
	case Violation:
		return fmt.Sprintf("%s: %s (entry %d)", kind, path, f.Index)
	case PCRMismatch:
		return fmt.Sprintf("%s: pcr10 %s expected %s actual %s", kind, escape(f.Bank),
			escape(f.ExpectedPCR), orNone(escape(f.ActualPCR)))
	}
	return fmt.Sprintf("%s: %s %s", kind, path, digest)
}

// quoteName returns a file name or id as it is when every character of it
// prints, else Go-quoted: names come from the container (and a report
// file from anywhere), and a newline or an escape sequence in one must
// neither forge a line of the summary nor reach the terminal.
func quoteName(s string) string {
	if printable(s) {
		return s
	}
	return strconv.Quote(s)
}

// escape returns free text with each character that does not print
// written as a Go escape, the rest unchanged.
func escape(s string) string {
	if printable(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsPrint(r) {
			q := strconv.Quote(s[i : i+size])
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func printable(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || !unicode.IsPrint(r) {
			return false
		}
		i += size
	}
	return true
}

func timeOrNone(t time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
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
