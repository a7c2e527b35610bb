package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imans-project/imans/ima"
)

// logTestCaptured is a list from Debian's 6.1 kernel with two violations, and
// its PCRs read in the same boot.
const logTestCaptured = "../../ima/testdata/kernel/6.1-violations"

func logTestPCRArgs(dir string) []string {
	var out []string
	for _, b := range []string{"sha1", "sha256", "sha384", "sha512"} {
		out = append(out, "--pcrs", b+","+filepath.Join(dir, "pcr-"+b+".txt"))
	}
	return out
}

func TestLogVerifyExitStatus(t *testing.T) {
	list := filepath.Join(logTestCaptured, "binary_runtime_measurements")
	raw, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	// The list with one more entry: the PCRs were read before it.
	extra, _ := ima.NewNG(10, ima.SHA256, make([]byte, 32), "/late")
	longer := filepath.Join(tmp, "longer")
	os.WriteFile(longer, extra.AppendBinary(append([]byte(nil), raw...), binary.NativeEndian),
		0o600)

	// The list cut inside its last entry.
	cut := filepath.Join(tmp, "cut")
	os.WriteFile(cut, raw[:len(raw)-3], 0o600)

	// A PCR file that is not one.
	badPCR := filepath.Join(tmp, "bad-pcr")
	os.WriteFile(badPCR, []byte("PCR-10 nothex\n"), 0o600)

	// The same PCR values as tpm2_pcrread prints them, banks named.
	yaml := filepath.Join(tmp, "pcrread.yaml")
	var y []byte
	for _, b := range []string{"sha1", "sha256"} {
		f, _ := os.Open(filepath.Join(logTestCaptured, "pcr-"+b+".txt"))
		v, err := ima.ParsePCRFile(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		y = append(y, "  "+b+":\n"...)
		y = fmt.Appendf(y, "    10: 0x%X\n", v[""][10])
	}
	os.WriteFile(yaml, y, 0o600)

	cases := []struct {
		name string
		args []string
		want int
	}{
		{"logTestCaptured list, every bank", append(logTestPCRArgs(logTestCaptured), list), 0},
		{"ASCII list", append(logTestPCRArgs(logTestCaptured), filepath.Join(logTestCaptured,
			"ascii_runtime_measurements")), 0},
		{"tpm2_pcrread output", []string{"--pcrs", yaml, list}, 0},
		{"tpm2_pcrread output, one bank", []string{"--pcrs", "sha256," + yaml, list}, 0},
		{"a later entry", append(logTestPCRArgs(logTestCaptured), longer), 0},
		{"a later entry, --whole", append(logTestPCRArgs(logTestCaptured), "--whole", longer), 1},
		{"other PCRs", append(logTestPCRArgs("../../ima/testdata/kernel/6.1-ima-ng"), list), 1},
		{"missing list", append(logTestPCRArgs(logTestCaptured), filepath.Join(tmp, "none")), 2},
		{"cut list", append(logTestPCRArgs(logTestCaptured), cut), 2},
		{"bad PCR file", []string{"--pcrs", "sha1," + badPCR, list}, 2},
		{"padded forced on sha256", append(logTestPCRArgs(logTestCaptured), "--mode", "sha256=padded",
			list), 1},
	}
	for _, c := range cases {
		args := append([]string{"imans", "log", "verify"}, c.args...)
		if got := run(args); got != c.want {
			t.Errorf("%s: exit status %d, want %d", c.name, got, c.want)
		}
	}
}

func TestLogShow(t *testing.T) {
	list := filepath.Join(logTestCaptured, "binary_runtime_measurements")
	if got := run([]string{"imans", "log", "show", "--json", list}); got != 0 {
		t.Errorf("show --json: exit status %d", got)
	}
	if got := run([]string{"imans", "log", "show", list + ".none"}); got != 2 {
		t.Errorf("show of a missing file: exit status %d", got)
	}
}

func TestLogVerifyEveryCapture(t *testing.T) {
	// imans log verify matches every captured list, binary, ASCII and
	// per bank, against the PCRs of all four banks.
	dirs, _ := filepath.Glob("../../ima/testdata/kernel/*/info.txt")
	if len(dirs) == 0 {
		t.Fatal("no captured kernel lists")
	}
	n := 0
	for _, info := range dirs {
		dir := filepath.Dir(info)
		lists, _ := filepath.Glob(filepath.Join(dir, "*_runtime_measurements*"))
		for _, list := range lists {
			args := append(append([]string{"imans", "log", "verify", "--whole"},
				logTestPCRArgs(dir)...), list)
			if got := run(args); got != 0 {
				t.Errorf("%s: exit status %d", list, got)
			}
			n++
		}
	}
	t.Logf("%d lists verified", n)
}
