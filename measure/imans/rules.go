package imans

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxRules is the number of rules an IMA namespace keeps; a batch over it
// is dropped silently by the kernel, so Activate refuses it first.
const MaxRules = 1024

// rule is one policy line to write: its text and its line number in the
// policy text.
type rule struct {
	line int
	text string
}

// splitRules returns the rules of a policy text: one per non-empty line,
// comments dropped, surrounding blanks trimmed.
func splitRules(policy string) []rule {
	var rules []rule
	for i, line := range strings.Split(policy, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rules = append(rules, rule{line: i + 1, text: line})
	}
	return rules
}

// funcAliases are the func= names the kernel accepts and shows under
// another name.
var funcAliases = map[string]string{
	"FILE_MMAP":  "MMAP_CHECK",
	"PATH_CHECK": "FILE_CHECK",
}

// normalizeRule gives a rule in a form that does not depend on how the
// kernel prints it back: options sorted, numbers in decimal, func aliases
// resolved. "dont_measure fsmagic=0x01021994" and the kernel's
// "dont_measure fsmagic=0x1021994" normalize to the same string.
func normalizeRule(text string) string {
	words := strings.Fields(text)
	if len(words) == 0 {
		return ""
	}

	opts := make([]string, 0, len(words)-1)
	for _, w := range words[1:] {
		key, op, value := cutOperator(w)
		if op == "" {
			opts = append(opts, w)
			continue
		}
		if alias, ok := funcAliases[value]; ok && key == "func" {
			value = alias
		}
		if n, ok := parseNumber(key, value); ok {
			value = strconv.FormatUint(n, 10)
		}
		opts = append(opts, key+op+value)
	}
	slices.Sort(opts)
	return words[0] + " " + strings.Join(opts, " ")
}

// parseNumber reads the value of a numeric option as the kernel does:
// fsmagic in hexadecimal (with or without 0x), ids and pcr in decimal.
func parseNumber(key, value string) (uint64, bool) {
	switch key {
	case "fsmagic":
		v := strings.TrimPrefix(strings.TrimPrefix(value, "0x"), "0X")
		n, err := strconv.ParseUint(v, 16, 64)
		return n, err == nil
	case "uid", "euid", "gid", "egid", "fowner", "fgroup", "pcr":
		n, err := strconv.ParseUint(value, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// cutOperator splits an option word such as "uid>=5" or "fsmagic=0x9fa0"
// into its key, its operator and its value; op is empty for a word
// without one ("permit_directio").
func cutOperator(w string) (key, op, value string) {
	i := strings.IndexAny(w, "=<>")
	if i <= 0 {
		return w, "", ""
	}
	j := i
	for j < len(w) && strings.IndexByte("=<>", w[j]) >= 0 {
		j++
	}
	return w[:i], w[i:j], w[j:]
}

// compareRules checks that the policy read back holds the baseline rules
// followed by the rules written, in order.
func compareRules(baseline, after []string, written []rule) error {
	want := len(baseline) + len(written)
	if len(after) == len(baseline) && len(written) > 0 {
		return fmt.Errorf("%w: the kernel kept none of the %d rules written "+
			"(close() reports success even when a rule was refused "+
			"or the batch exceeded %d rules)", ErrNotCommitted, len(written), MaxRules)
	}
	if len(after) != want {
		return fmt.Errorf("%w: %d rules read back, %d expected (%d before, %d written)",
			ErrNotCommitted, len(after), want, len(baseline), len(written))
	}

	for i, r := range written {
		got := after[len(baseline)+i]
		if normalizeRule(got) != normalizeRule(r.text) {
			return fmt.Errorf("%w: policy line %d %q reads back as %q",
				ErrNotCommitted, r.line, r.text, got)
		}
	}
	return nil
}

// policyLines splits a policy read back from the kernel into its rules.
func policyLines(b []byte) []string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
