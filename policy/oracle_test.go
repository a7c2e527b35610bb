package policy

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOracle compares the checker with real kernels. The qemu harness
// writes a corpus of rules, one write() each, to the policy file of
// Debian's 6.1 and 6.12 kernels and records each verdict in
// testdata/oracle/verdicts-<version>.txt as "VERDICT<TAB>rule", VERDICT
// being OK or the errno's name. The checker must accept exactly what each
// kernel accepted, and refuse the rest with the same errno.
func TestOracle(t *testing.T) {
	for _, v := range []struct{ file, profile string }{
		{"verdicts-6.1.txt", "6.1"},
		{"verdicts-6.12.txt", "6.12"},
	} {
		t.Run(v.profile, func(t *testing.T) {
			path := filepath.Join("testdata", "oracle", v.file)
			f, err := os.Open(path)
			if os.IsNotExist(err) {
				t.Skipf("%s not recorded yet (the qemu harness writes it)", path)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()

			prof, err := ProfileByName(v.profile)
			if err != nil {
				t.Fatal(err)
			}
			checkVerdicts(t, path, f, prof)
		})
	}
}

func checkVerdicts(t *testing.T, path string, f *os.File, prof Profile) {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	n, accepted := 0, 0
	for line := 1; sc.Scan(); line++ {
		verdict, rule, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			if strings.TrimSpace(sc.Text()) != "" {
				t.Errorf("%s:%d: no tab", path, line)
			}
			continue
		}
		n++

		_, err := ParseRule(rule, prof)
		got := "OK"
		if err != nil {
			got = err.(*Error).Errno
			if got == "" {
				got = "(dropped at close)"
			}
		} else {
			accepted++
		}
		if got != verdict {
			t.Errorf("%s:%d: %q: kernel %s, checker %s (%v)", path, line, rule,
				verdict, got, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 80 {
		t.Errorf("%s: only %d rules, want at least 80", path, n)
	}
	t.Logf("%s: %d rules, %d accepted by kernel %s", path, n, accepted, prof.Name)
}
