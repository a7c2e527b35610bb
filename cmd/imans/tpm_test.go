package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/tpm"
)

// tpmStdout runs the imans command line with stdout sent to a file and
// returns the exit status and what it printed.
func tpmStdout(t *testing.T, args ...string) (int, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = f
	code := run(append([]string{"imans"}, args...))
	os.Stdout = old
	f.Close()
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

func TestTPMCommands(t *testing.T) {
	testenv.Command(t, "swtpm")
	dir, err := os.MkdirTemp("", "imans-cli-tpm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tpm.StartSwtpm(ctx, filepath.Join(dir, "tpm"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	// Extend PCR 10 once, then compute its sha256 value here.
	tp, err := tpm.Open(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string][]byte{}
	for _, b := range tpm.BankNames() {
		h, _ := tpm.BankHash(b)
		hh := h.New()
		hh.Write([]byte("cli"))
		digests[b] = hh.Sum(nil)
	}
	if err := tp.Extend(10, digests); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	v := sha256.Sum256(append(make([]byte, 32), digests["sha256"]...))
	want := hex.EncodeToString(v[:])

	code, out := tpmStdout(t, "tpm", "pcrs", "--tpm", s.Addr, "--banks", "sha256", "--pcr", "10")
	if code != 0 || !strings.Contains(out, "10: 0x"+strings.ToUpper(want)) {
		t.Fatalf("tpm pcrs: exit %d, output %q, want 10: 0x%s", code, out, want)
	}
	expect := filepath.Join(dir, "expect.txt")
	if err := os.WriteFile(expect, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}

	// Bind the quote to a file, as a report is bound.
	body := filepath.Join(dir, "report.json")
	if err := os.WriteFile(body, []byte(`{"verdict":"pass"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	qfile := filepath.Join(dir, "quote.json")
	code, _ = tpmStdout(t, "tpm", "quote", "--tpm", s.Addr, "--pcrs", "10", "--banks",
		"sha1,sha256", "--data", body, "--out", qfile)
	if code != 0 {
		t.Fatalf("tpm quote: exit %d", code)
	}
	raw, err := os.ReadFile(qfile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil || doc["format"] != tpm.QuoteFormat {
		t.Fatalf("quote file: %v %s", err, raw)
	}

	// `tpm ak` prints the key the quote was made with.
	code, pemOut := tpmStdout(t, "tpm", "ak", "--tpm", s.Addr)
	if code != 0 || pemOut != doc["ak_pem"] {
		t.Fatalf("tpm ak: exit %d, %q; quote's key %q", code, pemOut, doc["ak_pem"])
	}

	cases := []struct {
		name string
		args []string
		code int
	}{
		{"good", []string{"--data", body, "--expect", expect}, 0},
		{"good, one pcr given", []string{"--data", body, "--expect-pcr", "sha256:10=" + want}, 0},
		{"other data", []string{"--data", expect}, 1},
		{"no data", nil, 1},
		{"other pcr value", []string{"--data", body, "--expect-pcr",
			"sha256:10=" + strings.Repeat("0", 64)}, 1},
		{"pcr not quoted", []string{"--data", body, "--expect-pcr",
			"sha256:11=" + strings.Repeat("0", 64)}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"tpm", "verify-quote"}, c.args...)
			code, out := tpmStdout(t, append(args, qfile)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; output %s", code, c.code, out)
			}
		})
	}

	// A changed signature byte fails.
	var q tpm.Quote
	if err := json.Unmarshal(raw, &q); err != nil {
		t.Fatal(err)
	}
	q.Signature[len(q.Signature)-1] ^= 1
	bad, _ := json.Marshal(&q)
	badFile := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := tpmStdout(t, "tpm", "verify-quote", "--data", body, badFile); code != 1 {
		t.Fatalf("changed signature: exit %d, want 1", code)
	}
}
