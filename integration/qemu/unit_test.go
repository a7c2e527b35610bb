package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
)

// TestInitramfsListsWithCpio checks the newc writer against GNU cpio's
// reading of it: names, types, symlink target, device numbers, content.
func TestInitramfsListsWithCpio(t *testing.T) {
	cpio := testenv.Command(t, "cpio")
	r := newInitramfs()
	for _, e := range []cpioEntry{
		{name: "/init", mode: modeFile | 0o755, data: []byte("#!/bin/sh\n")},
		{name: "bin/sh", mode: modeSymlink | 0o777, data: []byte("busybox")},
		{name: "dev/console", mode: modeChar | 0o600, major: 5, minor: 1},
		{name: "root/data/with space.txt", mode: modeFile | 0o644, data: []byte("abc")},
	} {
		if err := r.add(e); err != nil {
			t.Fatal(err)
		}
	}
	archive := r.bytes()
	if len(archive)%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", len(archive))
	}

	cmd := exec.Command(cpio, "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v: %s", err, out)
	}
	for _, want := range []string{
		`(?m)^drwxr-xr-x .* bin$`,
		`(?m)^lrwxrwxrwx .* bin/sh -> busybox$`,
		`(?m)^crw------- .* 5,\s+1 .* dev/console$`,
		`(?m)^-rwxr-xr-x .* 10 .* init$`,
		`(?m)^drwxr-xr-x .* root/data$`,
		`(?m)^-rw-r--r-- .* 3 .* root/data/with space.txt$`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("cpio listing lacks %s:\n%s", want, out)
		}
	}

	dir := t.TempDir()
	cmd = exec.Command(cpio, "-id", "--quiet", "root/data/with space.txt")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "root/data/with space.txt"))
	if err != nil || string(got) != "abc" {
		t.Errorf("extracted content %q, %v; want abc", got, err)
	}
}

func TestInitramfsRejectsFileAsParent(t *testing.T) {
	r := newInitramfs()
	if err := r.add(cpioEntry{name: "a", mode: modeFile | 0o644}); err != nil {
		t.Fatal(err)
	}
	err := r.add(cpioEntry{name: "a/b", mode: modeFile | 0o644})
	if err == nil || !strings.Contains(err.Error(), `parent "a" is not a folder`) {
		t.Errorf("got %v, want an error naming the parent", err)
	}
}

// wireFile encodes a file as imans-guest send does, so that the parser's
// tests do not depend on the guest program.
func wireFile(path string, data []byte, sum [32]byte) string {
	enc := base64.StdEncoding
	text := enc.EncodeToString(data)
	var b strings.Builder
	fmt.Fprintf(&b, "IMANS-FILE %s %d %x\r\n", enc.EncodeToString([]byte(path)), len(data), sum)
	for len(text) > 76 {
		b.WriteString(text[:76] + "\n")
		text = text[76:]
	}
	b.WriteString(text + "\nIMANS-END\n")
	return b.String()
}

func TestParseWire(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 100)
	good := wireFile("/run/a b", big, sha256.Sum256(big)) +
		wireFile("/run/empty", nil, sha256.Sum256(nil))
	bad := wireFile("/run/x", []byte("abc"), sha256.Sum256([]byte("abd")))
	missing := "IMANS-MISSING " + base64.StdEncoding.EncodeToString([]byte("/nope")) + " " +
		base64.StdEncoding.EncodeToString([]byte("no such file")) + "\n"

	files, err := parseWire([]byte("noise before\n" + good + "IMANS-DONE\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["/run/a b"], big) || len(files["/run/empty"]) != 0 || len(files) != 2 {
		t.Errorf("parsed %d files, /run/a b has %d bytes", len(files), len(files["/run/a b"]))
	}

	for name, tc := range map[string]struct{ text, want string }{
		"no DONE":    {good, "ended before IMANS-DONE"},
		"bad digest": {bad + "IMANS-DONE\n", "guest file /run/x: got 3 bytes with sha256"},
		"missing":    {missing + "IMANS-DONE\n", "could not read /nope (no such file)"},
		"no END":     {"IMANS-FILE L3J1bi94 3 00\nYWJj\n", "no IMANS-END"},
		"bad header": {"IMANS-FILE x\nIMANS-DONE\n", "data line 1: bad FILE header"},
	} {
		_, err := parseWire([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

// TestCheckReplayCapturedData replays every captured set (the sha1 list
// and each per-bank list) and checks that a changed template hash, a
// truncated list and a list with extra entries are caught.
func TestCheckReplayCapturedData(t *testing.T) {
	dirs, _ := filepath.Glob("../../ima/testdata/kernel/*")
	if len(dirs) < 10 {
		t.Fatalf("found %d captured sets, want at least 10", len(dirs))
	}
	for _, dir := range dirs {
		files := readDir(t, dir)
		if err := CheckReplay(files); err != nil {
			t.Errorf("%s: %v", dir, err)
		}

		list := files["binary_runtime_measurements"]
		changed := copyFiles(files)
		edited := append([]byte(nil), list...)
		edited[4] ^= 1 // first byte of the first entry's template hash
		changed["binary_runtime_measurements"] = edited
		if err := CheckReplay(changed); err == nil {
			t.Errorf("%s: changed template hash replays", dir)
		}
		cut := copyFiles(files)
		cut["binary_runtime_measurements"] = list[:len(list)-1]
		if err := CheckReplay(cut); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("%s: truncated list: %v", dir, err)
		}
		extra := copyFiles(files)
		extra["binary_runtime_measurements"] = append(append([]byte(nil), list...), list...)
		if err := CheckReplay(extra); err == nil {
			t.Errorf("%s: doubled list replays", dir)
		}
	}
}

// TestCapturedKnownDigests checks the workload files' digests in the
// captured lists against digests computed here.
func TestCapturedKnownDigests(t *testing.T) {
	sum := sha256.Sum256(workloadFiles["/root/data/hello.txt"])
	want := fmt.Sprintf("sha256:%x /root/data/hello.txt", sum)
	if want != "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 "+
		"/root/data/hello.txt" {
		t.Fatalf("sha256 of hello: %s", want)
	}
	space := sha256.Sum256(workloadFiles["/root/data/with space.txt"])
	for _, set := range []string{"6.1-ima-ng", "6.12-ima-ng", "6.12-ima-sig", "6.1-violations"} {
		list := string(readDir(t, "../../ima/testdata/kernel/"+set)["ascii_runtime_measurements"])
		if !strings.Contains(list, want) {
			t.Errorf("%s: no %q", set, want)
		}
		if !strings.Contains(list, fmt.Sprintf("sha256:%x /root/data/with_space.txt", space)) {
			t.Errorf("%s: no entry for the name with a space (recorded with _)", set)
		}
	}
}

func TestSortByNumber(t *testing.T) {
	names := []string{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64",
		"linux-image-6.1.0-10-amd64"}
	sortByNumber(names, seriesPattern["6.1"])
	if names[2] != "linux-image-6.1.0-57-amd64" || names[0] != "linux-image-6.1.0-9-amd64" {
		t.Errorf("order %v", names)
	}
	if seriesPattern["6.12"].MatchString("linux-image-6.12.118+deb12-amd64-unsigned") {
		t.Error("6.12 pattern takes the unsigned package")
	}
	for _, name := range []string{
		"linux-image-6.12.118+deb12-amd64", "linux-image-6.12.12+bpo-amd64",
	} {
		if !seriesPattern["6.12"].MatchString(name) {
			t.Errorf("6.12 pattern misses %s", name)
		}
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

func copyFiles(files map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range files {
		out[k] = v
	}
	return out
}

func TestResultTakeStatus(t *testing.T) {
	var r Result
	err := r.take(map[string][]byte{
		guestStatus: []byte("7\n"), guestOutput: []byte("out\n"), "/run/x": []byte("x"),
	})
	if err != nil || r.Status != 7 || string(r.Output) != "out\n" || len(r.Files) != 1 {
		t.Errorf("take: %v, status %d, output %q, %d files", err, r.Status, r.Output, len(r.Files))
	}
	if err := r.take(map[string][]byte{}); err == nil {
		t.Error("take without a status file: no error")
	}
}

func TestSlotsLimitBoots(t *testing.T) {
	t.Setenv(SlotsEnv, "1")
	cache := t.TempDir()
	release, err := takeSlot(context.Background(), cache)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := takeSlot(ctx, cache); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second slot of one: got %v, want a deadline error", err)
	}

	release()
	again, err := takeSlot(context.Background(), cache)
	if err != nil {
		t.Fatalf("slot after release: %v", err)
	}
	again()

	t.Setenv(SlotsEnv, "0")
	if _, err := takeSlot(context.Background(), cache); err == nil ||
		!strings.Contains(err.Error(), SlotsEnv) {
		t.Errorf("zero slots: got %v, want an error naming %s", err, SlotsEnv)
	}
}

func TestBuildInitramfsChecksPaths(t *testing.T) {
	guest := filepath.Join(t.TempDir(), "guest")
	if err := os.WriteFile(guest, []byte("helper"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Command(t, "busybox")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Files: map[string][]byte{"rel/x": nil}}, `guest file "rel/x": want an absolute path`},
		{Config{Files: map[string][]byte{"/init": nil}}, `guest file "/init": the harness's own`},
		{Config{Fetch: []string{"run/x"}}, `fetch path "run/x": want an absolute path`},
		{Config{Fetch: []string{"/a\nb"}}, "want an absolute path on one line"},
	} {
		_, err := buildInitramfs(tc.cfg, guest)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}

	archive, err := buildInitramfs(Config{Script: "echo hi", Fetch: []string{"/run/a", "/run/b c"},
		Files: map[string][]byte{"/root/f": []byte("data")}}, guest)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"imans/script\x00", "echo hi", "/run/a\n/run/b c\n",
		"root/f\x00", "bin/imans-guest\x00", "helper", "TRAILER!!!\x00"} {
		if !bytes.Contains(archive, []byte(want)) {
			t.Errorf("archive lacks %q", want)
		}
	}
}

func TestFetchKernelChecksPin(t *testing.T) {
	t.Setenv("IMANS_QEMU_KERNEL_6_1", "linux-image-6.12.118+deb12-amd64")
	_, err := FetchKernel(context.Background(), t.TempDir(), "6.1")
	if err == nil || !strings.Contains(err.Error(), "IMANS_QEMU_KERNEL_6_1") {
		t.Errorf("got %v, want an error naming the variable", err)
	}
	_, err = FetchKernel(context.Background(), t.TempDir(), "5.10")
	if err == nil || !strings.Contains(err.Error(), `kernel series "5.10"`) {
		t.Errorf("got %v, want an error naming the series", err)
	}
}

func TestFetchKernelUsesCache(t *testing.T) {
	cache := t.TempDir()
	for _, pkg := range []string{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-12-amd64"} {
		dir := filepath.Join(cache, "kernels", pkg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		info := fmt.Sprintf(`{"Series":"6.1","Package":%q,"Version":"v","Release":"r"}`, pkg)
		if err := os.WriteFile(filepath.Join(dir, "kernel.json"), []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, err := FetchKernel(context.Background(), cache, "6.1")
	if err != nil {
		t.Fatal(err)
	}
	if k.Package != "linux-image-6.1.0-12-amd64" || k.Image != filepath.Join(cache,
		"kernels", "linux-image-6.1.0-12-amd64", "vmlinuz") {
		t.Errorf("got %+v, want the newest cached kernel", k)
	}
}
