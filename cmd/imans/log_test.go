package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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

func TestLogFlagsAfterFile(t *testing.T) {
	// The documented form puts the flags after the list (evmctl's order);
	// urfave/cli alone stops reading flags at the first operand.
	list := filepath.Join(logTestCaptured, "binary_runtime_measurements")
	other := "../../ima/testdata/kernel/6.1-ima-ng"
	raw, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	extra, _ := ima.NewNG(10, ima.SHA256, make([]byte, 32), "/late")
	longer := filepath.Join(t.TempDir(), "longer")
	os.WriteFile(longer, extra.AppendBinary(append([]byte(nil), raw...), binary.NativeEndian),
		0o600)

	// PCR 10 of every bank as a TPM that no entry was extended into
	// shows it: the empty prefix of any list leads there.
	zero := filepath.Join(t.TempDir(), "zero")
	var z []byte
	for _, b := range []ima.Hash{ima.SHA1, ima.SHA256, ima.SHA384, ima.SHA512} {
		z = fmt.Appendf(z, "  %s:\n    10: 0x%X\n", b, make([]byte, b.Size()))
	}
	os.WriteFile(zero, z, 0o600)

	// tpm2_pcrread prints every bank the TPM has, one of them SM3 here,
	// which verify cannot replay: given the file alone, verify takes the
	// banks it can.
	withSM3 := filepath.Join(t.TempDir(), "with-sm3")
	onlySM3 := filepath.Join(t.TempDir(), "only-sm3")
	var y []byte
	for _, b := range []string{"sha1", "sha256"} {
		f, _ := os.Open(filepath.Join(logTestCaptured, "pcr-"+b+".txt"))
		v, err := ima.ParsePCRFile(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		y = fmt.Appendf(y, "  %s:\n    10: 0x%X\n", b, v[""][10])
	}
	sm3 := fmt.Appendf(nil, "  sm3_256:\n    10: 0x%X\n", make([]byte, 32))
	os.WriteFile(withSM3, append(y, sm3...), 0o600)
	os.WriteFile(onlySM3, sm3, 0o600)

	cases := []struct {
		name string
		args []string
		want int
	}{
		{"every bank after the list", append([]string{list}, logTestPCRArgs(logTestCaptured)...),
			0},
		{"PCRs of another boot after the list", append([]string{list},
			logTestPCRArgs(other)...), 1},
		{"--pcrs=BANK,FILE after the list", []string{list,
			"--pcrs=sha1," + filepath.Join(logTestCaptured, "pcr-sha1.txt")}, 0},
		{"--whole after the list", append(append([]string{longer},
			logTestPCRArgs(logTestCaptured)...), "--whole"), 1},
		{"flags on both sides", append(append([]string{"--whole"},
			logTestPCRArgs(logTestCaptured)[:2]...), list, "--pcrs",
			"sha256,"+filepath.Join(logTestCaptured, "pcr-sha256.txt")), 0},
		{"--pcrs without its value", []string{list, "--pcrs"}, 2},
		{"two lists", []string{list, list}, 2},
		{"unknown flag", []string{"--nope", list}, 2},
		{"unknown flag after the list", []string{list, "--nope"}, 2},
		{"--mode of an unknown bank", append(append([]string{"--mode", "sha3=hash"},
			logTestPCRArgs(logTestCaptured)...), list), 2},
		{"PCRs no entry was extended into", []string{list, "--pcrs", zero}, 1},
		{"tpm2_pcrread output with an SM3 bank", []string{list, "--pcrs", withSM3}, 0},
		{"tpm2_pcrread output with only an SM3 bank", []string{list, "--pcrs", onlySM3}, 2},
		{"--pcrs of a bank verify does not replay", []string{"--pcrs",
			"md5," + filepath.Join(logTestCaptured, "pcr-sha1.txt"), list}, 2},
	}
	for _, c := range cases {
		args := append([]string{"imans", "log", "verify"}, c.args...)
		if got := run(args); got != c.want {
			t.Errorf("%s: exit status %d, want %d", c.name, got, c.want)
		}
	}

	out := logTestStdout(t, func() {
		if got := run([]string{"imans", "log", "show", list, "--json"}); got != 0 {
			t.Errorf("show FILE --json: exit status %d", got)
		}
	})
	if !strings.HasPrefix(out, `{"index":0,"offset":0,"pcr":10,"template":"ima-ng",`) {
		t.Errorf("show FILE --json printed %.80q, want JSON", out)
	}
	if got := run([]string{"imans", "log", "show", "--nope", list}); got != 2 {
		t.Errorf("show with an unknown flag: exit status %d, want 2", got)
	}
	out = logTestStdout(t, func() {
		if got := run([]string{"imans", "log", "verify", list, "--pcrs", zero}); got != 1 {
			t.Errorf("verify against PCRs of no entry: exit status %d, want 1", got)
		}
	})
	if strings.Contains(out, "match: ") && !strings.Contains(out, "mismatch: ") {
		t.Errorf("verify against PCRs of no entry prints %q", out)
	}
	if got := run([]string{"imans", "log", "verfiy", list}); got != 2 {
		t.Errorf("an unknown subcommand: exit status %d, want 2", got)
	}
	if got := run([]string{"imans", "policy", "chekc", list}); got != 2 {
		t.Errorf("an unknown policy subcommand: exit status %d, want 2", got)
	}
	out = logTestStdout(t, func() {
		if got := run([]string{"imans", "log"}); got != 0 {
			t.Errorf("imans log: exit status %d, want 0", got)
		}
	})
	if !strings.Contains(out, "verify") {
		t.Errorf("imans log prints %.80q, want its help", out)
	}
}

// logTestStdout returns what fn prints on standard output.
func logTestStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	fn()
	os.Stdout = saved
	w.Close()
	return string(<-done)
}
