package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	const (
		good  = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
		other = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
		pcr   = "a98c6ab0b53f4b2b1a1d5c4ef5e6e0a3d8b5b2a4c3e8f1d7b9c0e2f4a6b8d0c1"
	)
	exp := Expectations{
		Digests:  map[string][]string{"/app/demo.sh": {good}, "/etc/passwd": {good}},
		Excludes: []string{`^/tmp/`},
		PCR10:    map[string]string{"sha256": pcr},
	}
	list := []Measured{
		{Index: 0, Path: "/app/demo.sh", Digest: strings.ToUpper(good[:7]) + good[7:]},
		{Index: 1, Path: "/etc/passwd", Digest: other},
		{Index: 2, Path: "/bin/x", Digest: good},
		{Index: 3, Path: "/tmp/scratch", Digest: other},
		{Index: 4, Path: "/dev/v", Violation: true},
	}
	got, err := Compare(list, exp, map[string]string{"sha256": strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{Kind: ChangedFile, Index: 1, Path: "/etc/passwd", Digest: other, Expected: []string{good}},
		{Kind: UnexpectedFile, Index: 2, Path: "/bin/x", Digest: good},
		{Kind: Violation, Index: 4, Path: "/dev/v"},
		{Kind: PCRMismatch, Bank: "sha256", ExpectedPCR: pcr, ActualPCR: strings.Repeat("0", 64)},
	}
	if len(got) != len(want) {
		t.Fatalf("findings %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i].String() || got[i].Index != want[i].Index {
			t.Errorf("finding %d: %q, want %q", i, got[i], want[i])
		}
	}

	if _, err := Compare(nil, Expectations{Excludes: []string{"("}}, nil); err == nil ||
		!strings.Contains(err.Error(), "exclude 0") {
		t.Errorf("bad exclude: %v, want an error naming exclude 0", err)
	}
}

func TestDecide(t *testing.T) {
	vouched := Evidence{PCR10: map[string]string{"sha1": "00"}, ListMatches: true}
	cases := []struct {
		name string
		r    Report
		want Verdict
	}{
		{"whole and clean", Report{TPM: vouched}, Pass},
		{"finding", Report{TPM: vouched, Findings: []Finding{{Kind: ChangedFile}}}, Fail},
		{"reason wins over finding", Report{TPM: vouched, Incomplete: []string{"x"},
			Findings: []Finding{{Kind: ChangedFile}}}, Incomplete},
		{"no tpm read", Report{}, Incomplete},
		{"replay differs", Report{TPM: Evidence{PCR10: vouched.PCR10}}, Incomplete},
	}
	for _, c := range cases {
		c.r.Decide()
		if c.r.Verdict != c.want {
			t.Errorf("%s: %s, want %s", c.name, c.r.Verdict, c.want)
		}
		if c.want == Incomplete && len(c.r.Incomplete) == 0 {
			t.Errorf("%s: incomplete without a reason", c.name)
		}
	}
}

func TestWriteRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reports")
	path := filepath.Join(dir, "c1.json")
	r := &Report{Schema: Schema, Verdict: Fail, Findings: []Finding{{Kind: UnexpectedFile,
		Path: "/a b", Digest: "sha256:00"}}}
	r.Info.ContainerID = "c1"
	if err := r.Write(path); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	back, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Info.ContainerID != "c1" || back.Findings[0].Path != "/a b" {
		t.Errorf("read back %+v", back)
	}
	var buf bytes.Buffer
	back.Summary(&buf)
	if !strings.HasPrefix(buf.String(), "FAIL  container c1\n  unexpected file: /a b sha256:00") {
		t.Errorf("summary:\n%s", buf.String())
	}
}

func TestReadRefuses(t *testing.T) {
	cases := map[string]string{
		"schema":  `{"schema":"imans.report/v9","verdict":"pass"}`,
		"verdict": `{"schema":"imans.report/v1","verdict":"fine"}`,
		"json":    `{"schema":`,
	}
	for name, body := range cases {
		_, err := Parse([]byte(body))
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if name == "schema" && !errors.Is(err, ErrSchema) {
			t.Errorf("schema: %v, want ErrSchema", err)
		}
	}
}

func TestWriteFileReadOnlyFolder(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root writes through modes; the hook's integration test covers
		// an unwritable folder with a file in its place instead.
		dir := t.TempDir()
		blocker := filepath.Join(dir, "reports")
		os.WriteFile(blocker, nil, 0o600)
		if err := WriteFile(filepath.Join(blocker, "x.json"), []byte("{}")); err == nil {
			t.Fatal("write under a file: no error")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if err := WriteFile(filepath.Join(dir, "x.json"), []byte("{}")); err == nil {
		t.Fatal("write into a read-only folder: no error")
	}
}
