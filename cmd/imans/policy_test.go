package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyCommandExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "dont_measure fsmagic=0x01021994\nmeasure func=FILE_CHECK\n")
	bad := write("bad", "measure func=NOPE\n")
	appraise := write("appraise", "appraise func=BPRM_CHECK\n")

	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = devnull, devnull
	defer func() { os.Stdout, os.Stderr = stdout, stderr }()

	tests := []struct {
		args []string
		want int
	}{
		{[]string{"policy", "check", good}, 0},
		{[]string{"policy", "check", "--namespace", "dev", good}, 0},
		{[]string{"policy", "check", "--namespace", "v15", good}, 1},
		{[]string{"policy", "check", bad}, 1},
		{[]string{"policy", "check", appraise}, 0},
		{[]string{"policy", "check", "--namespace", "dev", appraise}, 1},
		{[]string{"policy", "check", "--kernel", "5.4", good}, 2},
		{[]string{"policy", "check", filepath.Join(dir, "missing")}, 2},
		{[]string{"policy", "check"}, 2},
		{[]string{"policy", "show"}, 0},
		{[]string{"policy", "show", "--canonical", "--kernel", "6.1"}, 0},
		{[]string{"policy", "eval", "--func", "BPRM_CHECK", "--mask", "MAY_EXEC"}, 0},
		{[]string{"policy", "eval", "--uid", "100000", "--uid-map", "/proc/self/uid_map",
			good}, 0},
		{[]string{"policy", "eval", "--fsmagic", "zz"}, 2},
		{[]string{"policy", "eval", "--func", "NOPE"}, 2},
		{[]string{"policy", "eval", bad}, 1},

		// Flags after the file, as the documented usage writes them.
		{[]string{"policy", "check", good, "--namespace", "v15"}, 1},
		{[]string{"policy", "check", appraise, "--namespace=dev"}, 1},
		{[]string{"policy", "check", good, "--kernel", "5.4"}, 2},
		{[]string{"policy", "check", good, "--namespace"}, 2},
		{[]string{"policy", "eval", bad, "--func", "BPRM_CHECK"}, 1},
		{[]string{"policy", "eval", good, "--fsmagic", "zz"}, 2},

		// Bad usage is 2, apart from a refused policy (1).
		{[]string{"policy", "check", "--nope", good}, 2},
		{[]string{"policy", "check", good, "--nope"}, 2},
		{[]string{"policy", "check", good, good}, 2},
		{[]string{"policy", "eval", "--nope"}, 2},
		{[]string{"policy", "show", "--nope"}, 2},
		{[]string{"policy", "show", "extra"}, 2},
	}
	for _, tc := range tests {
		if got := run(append([]string{"imans"}, tc.args...)); got != tc.want {
			t.Errorf("imans %v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}

func TestPolicyCheckTooLong(t *testing.T) {
	// A policy over the size limit is refused, from a file or from
	// standard input, never checked cut short; /dev/zero never ends.
	big := filepath.Join(t.TempDir(), "big")
	text := strings.Repeat("\n", maxPolicyArg) + "measure func=NOPE\n"
	if err := os.WriteFile(big, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(big)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	saved := os.Stdin
	os.Stdin = in
	defer func() { os.Stdin = saved }()

	for _, arg := range []string{"-", big, "/dev/zero"} {
		if got := run([]string{"imans", "policy", "check", arg}); got != 2 {
			t.Errorf("policy check %s: exit %d, want 2", arg, got)
		}
	}
	for _, flag := range []string{"--uid-map", "--gid-map"} {
		if got := run([]string{"imans", "policy", "eval", flag, "/dev/zero"}); got != 2 {
			t.Errorf("policy eval %s /dev/zero: exit %d, want 2", flag, got)
		}
	}
}

func TestPolicyEvalFlagsAfterFile(t *testing.T) {
	// Flags after the policy file count as before it, --euid defaulting
	// to --uid included.
	file := filepath.Join(t.TempDir(), "euid")
	if err := os.WriteFile(file, []byte("measure func=FILE_CHECK euid=5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{file, "--euid", "5"}, "measure:  yes"},
		{[]string{file, "--uid", "5"}, "measure:  yes"},
		{[]string{file, "--uid=5", "--euid", "0"}, "measure:  no"},
		{[]string{"--uid", "5", file, "--euid", "4"}, "measure:  no"},
		{[]string{file}, "measure:  no"},
	}
	for _, c := range cases {
		out := logTestStdout(t, func() {
			if got := run(append([]string{"imans", "policy", "eval"}, c.args...)); got != 0 {
				t.Errorf("eval %v: exit %d", c.args, got)
			}
		})
		if !strings.HasPrefix(out, c.want+" ") {
			t.Errorf("eval %v: %q, want %q", c.args, out, c.want)
		}
	}
}

func TestPolicyShowKernel(t *testing.T) {
	// --kernel renders the policy as that kernel shows it, --canonical or
	// not; without either, the text is printed as written.
	text := logTestStdout(t, func() { run([]string{"imans", "policy", "show"}) })
	canon := logTestStdout(t, func() {
		run([]string{"imans", "policy", "show", "--kernel", "6.1"})
	})
	if !strings.HasPrefix(text, "# PROC_SUPER_MAGIC\ndont_measure fsmagic=0x9fa0\n") {
		t.Errorf("show: %.60q", text)
	}
	if !strings.HasPrefix(canon, "dont_measure fsmagic=0x9fa0 \n") {
		t.Errorf("show --kernel 6.1: %.60q", canon)
	}
}
