package qemu

import (
	"context"
	"fmt"
	"strings"
)

// Oracle writes each rule to the kernel's IMA policy file with its own
// write(), keeping the file open for the whole corpus, and returns one
// verdict a rule: "OK" or the errno name ("EINVAL", "ERANGE", ...). The
// batch is never committed: the guest helper writes a rule no kernel
// takes after the corpus, which drops the batch on close, and fails when
// the policy file is gone afterwards. The boot uses the kernel's default
// policy, so rules that depend on an LSM get the verdict of a kernel with
// no custom policy yet.
func Oracle(ctx context.Context, kernel string, rules []string, cacheDir string) (
	[]string, error) {
	verdicts, _, err := OracleBoot(ctx, Config{Kernel: kernel, CacheDir: cacheDir}, rules)
	return verdicts, err
}

// OracleBoot runs the oracle first in a boot described by cfg, then
// cfg.Script (which may load a policy: the oracle leaves none behind), and
// fetches cfg.Fetch as Boot does. A failing oracle or script is an error.
func OracleBoot(ctx context.Context, cfg Config, rules []string) ([]string, *Result, error) {
	const corpusPath, verdictsPath = "/imans/corpus", "/run/imans-verdicts"
	for i, r := range rules {
		if strings.ContainsAny(r, "\n\t") || strings.HasPrefix(r, "/") || r == "" {
			return nil, nil, fmt.Errorf("rule %d %q: empty, multi-line, tab or leading '/' "+
				"(the kernel would read a policy file)", i+1, r)
		}
	}
	files := map[string][]byte{corpusPath: []byte(strings.Join(rules, "\n") + "\n")}
	for p, data := range cfg.Files {
		files[p] = data
	}
	cfg.Files = files
	script := cfg.Script
	if strings.TrimSpace(script) == "" {
		script = ":" // an empty ( ) is a syntax error to the guest's shell
	}
	cfg.Script = "set -e\nimans-guest oracle " + corpusPath + " " + verdictsPath +
		"\n(\n" + script + "\n)\n"
	cfg.Fetch = append([]string{verdictsPath}, cfg.Fetch...)

	res, err := Boot(ctx, cfg)
	if err != nil {
		return nil, res, fmt.Errorf("oracle on %s: %w", cfg.Kernel, err)
	}
	if res.Status != 0 {
		return nil, res, fmt.Errorf("oracle on %s: exit %d: %s", cfg.Kernel, res.Status, res.Output)
	}

	out, err := res.File(verdictsPath)
	if err != nil {
		return nil, res, err
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(rules) {
		return nil, res, fmt.Errorf("oracle on %s: %d verdicts for %d rules",
			cfg.Kernel, len(lines), len(rules))
	}
	verdicts := make([]string, len(rules))
	for i, line := range lines {
		v, rule, ok := strings.Cut(line, "\t")
		if !ok || rule != rules[i] {
			return nil, res, fmt.Errorf("oracle on %s: verdict line %d %q does not match rule %q",
				cfg.Kernel, i+1, line, rules[i])
		}
		verdicts[i] = v
	}
	return verdicts, res, nil
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
