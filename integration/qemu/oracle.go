package qemu

import (
	"context"
	"fmt"
	"strings"
)

// Oracle writes each rule to the kernel's IMA policy file with its own
// write(), keeping the file open for the whole corpus, and returns one
// verdict a rule: "OK" or the errno name ("EINVAL", "EACCES", ...). The
// batch is never committed: the guest helper writes a rule no kernel
// takes after the corpus, which drops the batch on close, and fails when
// the policy file is gone afterwards. The boot uses the kernel's default
// policy, so rules that depend on an LSM get the verdict of a kernel with
// no custom policy yet.
func Oracle(ctx context.Context, kernel string, rules []string, cacheDir string) (
	[]string, error) {
	for i, r := range rules {
		if strings.ContainsAny(r, "\n\t") || strings.HasPrefix(r, "/") || r == "" {
			return nil, fmt.Errorf("rule %d %q: empty, multi-line, tab or leading '/' "+
				"(the kernel would read a policy file)", i+1, r)
		}
	}

	res, err := Boot(ctx, Config{
		Kernel:   kernel,
		Files:    map[string][]byte{"/imans/corpus": []byte(strings.Join(rules, "\n") + "\n")},
		Script:   "imans-guest oracle /imans/corpus /run/verdicts",
		Fetch:    []string{"/run/verdicts"},
		CacheDir: cacheDir,
	})
	if err != nil {
		return nil, fmt.Errorf("oracle on %s: %w", kernel, err)
	}
	if res.Status != 0 {
		return nil, fmt.Errorf("oracle on %s: exit %d: %s", kernel, res.Status, res.Output)
	}

	lines := strings.Split(strings.TrimSuffix(string(res.Files["/run/verdicts"]), "\n"), "\n")
	if len(lines) != len(rules) {
		return nil, fmt.Errorf("oracle on %s: %d verdicts for %d rules", kernel, len(lines), len(rules))
	}
	verdicts := make([]string, len(rules))
	for i, line := range lines {
		v, rule, ok := strings.Cut(line, "\t")
		if !ok || rule != rules[i] {
			return nil, fmt.Errorf("oracle on %s: verdict line %d %q does not match rule %q",
				kernel, i+1, line, rules[i])
		}
		verdicts[i] = v
	}
	return verdicts, nil
}

// ParseVerdicts reads a verdicts file: "VERDICT<TAB>rule" lines.
func ParseVerdicts(text string) (verdicts, rules []string, err error) {
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		v, rule, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, nil, fmt.Errorf("verdicts line %d: no tab", i+1)
		}
		verdicts = append(verdicts, v)
		rules = append(rules, rule)
	}
	return verdicts, rules, nil
}

// FormatVerdicts writes the verdicts file.
func FormatVerdicts(verdicts, rules []string) string {
	var b strings.Builder
	for i := range rules {
		fmt.Fprintf(&b, "%s\t%s\n", verdicts[i], rules[i])
	}
	return b.String()
}
