//go:build integration

package qemu

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestOracleMatchesStoredVerdicts reruns the policy oracle on both
// kernels and compares every rule's verdict with the stored one. In the
// same boot it then loads an exec-only policy: that the load commits
// proves the oracle's batch was not committed, and the list shows the
// policy at work (an executed script measured, a read file not).
func TestOracleMatchesStoredVerdicts(t *testing.T) {
	Require(t)
	corpus, err := os.ReadFile("../../policy/testdata/oracle/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	rules := strings.Split(strings.TrimSuffix(string(corpus), "\n"), "\n")
	if len(rules) < 80 {
		t.Fatalf("corpus has %d rules, want at least 80", len(rules))
	}

	for _, kernel := range Series() {
		t.Run(kernel, func(t *testing.T) {
			t.Parallel()
			stored, err := os.ReadFile("../../policy/testdata/oracle/verdicts-" + kernel + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			want, wantRules, err := ParseVerdicts(string(stored))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(wantRules, "\n") != strings.Join(rules, "\n") {
				t.Fatalf("verdicts-%s.txt is not in corpus order: recapture", kernel)
			}

			script := []byte("#!/bin/sh\ntrue\n")
			got, res, err := OracleBoot(context.Background(), Config{
				Kernel: kernel,
				Files: map[string][]byte{
					"/root/read.txt": []byte("read only\n"),
					"/root/run.sh":   script,
					"/imans/policy":  []byte("measure func=BPRM_CHECK template=ima-ng\n"),
				},
				Script: "imans-guest load /imans/policy\n" +
					"cat /root/read.txt > /dev/null\n/root/run.sh\n" +
					"imans-guest snapshot /run/snap",
				Fetch: []string{"/run/snap"},
			}, rules)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("boot of %s took %v", res.Kernel.Package, res.Elapsed)

			rejected := 0
			for i := range rules {
				if got[i] != want[i] {
					t.Errorf("rule %d %q: kernel says %s, stored %s", i+1, rules[i], got[i], want[i])
				}
				if got[i] != "OK" {
					rejected++
				}
			}
			if rejected == 0 || rejected == len(rules) {
				t.Errorf("%d of %d rules rejected: the corpus must hold both kinds",
					rejected, len(rules))
			}

			sum := sha256.Sum256(script)
			list := string(res.Files["/run/snap/ascii_runtime_measurements"])
			if !strings.Contains(list, fmt.Sprintf("sha256:%x /root/run.sh\n", sum)) {
				t.Errorf("executed script not measured:\n%s", list)
			}
			if strings.Contains(list, "/root/read.txt") {
				t.Errorf("read file measured under an exec-only policy:\n%s", list)
			}
		})
	}
}

// TestBootMeasuresKnownFile boots 6.12 under ima_policy=tcb through
// MeasureRun, reads a file whose digest is computed here, and checks the
// kernel's entry for it (template hash built here too), the replay of
// PCR 10 in every bank, the script's output and a fetched file.
func TestBootMeasuresKnownFile(t *testing.T) {
	Require(t)
	t.Parallel()
	content := []byte("imans harness known content\n")
	snap, res, err := MeasureRun(context.Background(), Config{
		Kernel:  "6.12",
		Cmdline: "ima_policy=tcb ima_template=ima-ng",
		Files:   map[string][]byte{"/root/known.txt": content},
		Script: "cat /root/known.txt > /dev/null\n" +
			"echo made by the guest > /run/made.txt\necho to stdout",
		Fetch: []string{"/run/made.txt"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot of %s (%s) took %v", res.Kernel.Package, res.Kernel.Version, res.Elapsed)

	if res.Status != 0 || string(res.Output) != "to stdout\n" {
		t.Errorf("status %d output %q, want 0 and %q", res.Status, res.Output, "to stdout\n")
	}
	if made, err := res.File("/run/made.txt"); err != nil || string(made) != "made by the guest\n" {
		t.Errorf("made.txt: %q, %v", made, err)
	}
	if err := CheckReplay(snap.Files); err != nil {
		t.Error(err)
	}
	for _, bank := range Banks {
		if _, ok := snap.Files["ascii_runtime_measurements_"+bank]; !ok {
			t.Errorf("no per-bank list for %s", bank)
		}
		if !strings.Contains(snap.PCRFile(bank), "PCR-23: ") {
			t.Errorf("pcr-%s.txt lacks PCR 23", bank)
		}
	}

	// The ima-ng entry, built here: d-ng is "sha256:" NUL digest, n-ng is
	// the name and NUL, each preceded by its length (little-endian here).
	sum := sha256.Sum256(content)
	dng := append([]byte("sha256:\x00"), sum[:]...)
	nng := []byte("/root/known.txt\x00")
	var data []byte
	for _, field := range [][]byte{dng, nng} {
		data = append(data, byte(len(field)), 0, 0, 0)
		data = append(data, field...)
	}
	want := fmt.Sprintf("10 %x ima-ng sha256:%x /root/known.txt\n", sha1.Sum(data), sum)
	if !strings.Contains(snap.ASCII(), want) {
		t.Errorf("no entry %q in:\n%s", want, snap.ASCII())
	}
}

// TestBootDeadline checks that a guest that never powers off is killed at
// the deadline, with an error that says so.
func TestBootDeadline(t *testing.T) {
	Require(t)
	t.Parallel()
	res, err := Boot(context.Background(), Config{
		Kernel:  "6.1",
		Script:  "sleep 600",
		Timeout: 8 * time.Second,
	})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "no poweroff within 8s") {
		t.Fatalf("got %v, want a deadline error", err)
	}
	elapsed := res.Elapsed
	if elapsed > 14*time.Second {
		t.Errorf("qemu ended %v after its start, deadline was 8s", elapsed)
	}
}
