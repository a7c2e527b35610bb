package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// vouched is the evidence of a whole record: PCR 10 read, the list's replay
// equal to it, one entry.
var vouched = Evidence{PCR10: map[string]string{"sha1": "00"},
	ReplayPCR10: map[string]string{"sha1": "00"}, ListMatches: true, Entries: 1}

func TestDecide(t *testing.T) {
	empty := Evidence{PCR10: vouched.PCR10, ReplayPCR10: vouched.ReplayPCR10, ListMatches: true}
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
		// a container whose process never started, or whose files are all
		// on a filesystem the policy leaves out (tmpfs): nothing to vouch for
		{"empty list", Report{TPM: empty}, Incomplete},
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
		if err := c.r.CheckVerdict(); err != nil {
			t.Errorf("%s: a decided report refused: %v", c.name, err)
		}
	}
}

func TestWriteRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reports")
	path := filepath.Join(dir, "c1.json")
	r := &Report{Schema: Schema, Verdict: Fail, Findings: []Finding{{Kind: UnexpectedFile,
		Path: "/a b", Digest: "sha256:00"}}, TPM: vouched}
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

// A report file is the host's: one whose verdict its own contents
// contradict (edited to "pass", say) is refused, naming the file and what
// contradicts it, the rule being Decide's.
func TestReadRefusesContradictoryVerdict(t *testing.T) {
	unexpected := Finding{Kind: UnexpectedFile, Path: "/app/demo.sh", Digest: "sha256:00"}
	cases := []struct {
		name string
		r    Report
		want string
	}{
		{"pass with a reason", Report{Verdict: Pass, TPM: vouched,
			Incomplete: []string{"collector 12 was not running at stop", "x"}},
			`it says "pass", but it lists 2 incomplete reasons (the first: ` +
				`"collector 12 was not running at stop"), which makes it "incomplete"`},
		{"pass with a finding", Report{Verdict: Pass, TPM: vouched,
			Findings: []Finding{unexpected}},
			`it says "pass", but it lists 1 finding (the first: unexpected file: ` +
				`/app/demo.sh sha256:00), which makes it "fail"`},
		{"fail with a reason", Report{Verdict: Fail, TPM: vouched,
			Incomplete: []string{"replay entry 3: bad"}, Findings: []Finding{unexpected}},
			`it says "fail", but it lists 1 incomplete reason (the first: ` +
				`"replay entry 3: bad"), which makes it "incomplete"`},
		{"pass without the tpm", Report{Verdict: Pass,
			TPM: Evidence{PCR10: vouched.PCR10, Entries: 1}},
			`it says "pass", but the list is not vouched for by the TPM, ` +
				`which makes it "incomplete"`},
		{"pass with a tpm that differs from the replay", Report{Verdict: Pass,
			TPM: Evidence{PCR10: map[string]string{"sha1": "ff"},
				ReplayPCR10: vouched.ReplayPCR10, ListMatches: true, Entries: 1}},
			`it says "pass", but the list is not vouched for by the TPM, ` +
				`which makes it "incomplete"`},
		{"pass with a tpm bank the list was not replayed in", Report{Verdict: Pass,
			TPM: Evidence{PCR10: map[string]string{"sha384": "00"},
				ReplayPCR10: vouched.ReplayPCR10, ListMatches: true, Entries: 1}},
			`it says "pass", but the list is not vouched for by the TPM, ` +
				`which makes it "incomplete"`},
		{"pass with an empty list", Report{Verdict: Pass,
			TPM: Evidence{PCR10: vouched.PCR10, ReplayPCR10: vouched.ReplayPCR10,
				ListMatches: true}},
			`it says "pass", but nothing was measured: the list is empty`},
		{"fail with nothing", Report{Verdict: Fail, TPM: vouched},
			`it says "fail", but it lists no incomplete reason and no finding, ` +
				`which makes it "pass"`},
		{"incomplete with nothing", Report{Verdict: Incomplete, TPM: vouched},
			`it says "incomplete", but it lists no incomplete reason and no finding, ` +
				`which makes it "pass"`},
	}
	dir := t.TempDir()
	for _, c := range cases {
		c.r.Schema = Schema
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".json")
		if err := c.r.Write(path); err != nil {
			t.Fatal(err)
		}
		_, err := Read(path)
		want := "read report " + path + ": verdict contradicts the report: " + c.want
		if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrVerdict) {
			t.Errorf("%s: %v, want %q", c.name, err, want)
		}
	}

	// The same reports as Decide leaves them are read back.
	for _, c := range cases {
		c.r.Schema = Schema
		c.r.Decide()
		data, err := json.Marshal(&c.r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data); err != nil {
			t.Errorf("%s, decided: %v", c.name, err)
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

// A file name that is not UTF-8 reaches the expectations only through JSON
// (the annotation, the output of imans expect), which carries each invalid
// byte as U+FFFD: the name as measured must still find them.
func TestCompareNameNotUTF8(t *testing.T) {
	const digest = "sha256:8a33a3171728d0f2e90a4e934f3372f2235f2b1dd2eee84ae1970f1e9463ec60"
	raw := "/app/\xff\xfez"
	body, err := json.Marshal(map[string][]string{raw: {digest}})
	if err != nil {
		t.Fatal(err)
	}
	var exp Expectations
	if err := json.Unmarshal(body, &exp.Digests); err != nil {
		t.Fatal(err)
	}
	if _, ok := exp.Digests["/app/\uFFFD\uFFFDz"]; !ok {
		t.Fatalf("json gave %q, want two U+FFFD", body)
	}

	got, err := Compare([]Measured{{Path: raw, Digest: digest}}, exp, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("findings %+v, %v: want none", got, err)
	}

	// Another invalid name that JSON spells the same is held to the same
	// digests: a different content is a changed file.
	other := "sha256:" + strings.Repeat("ab", 32)
	got, _ = Compare([]Measured{{Path: "/app/\x80\x81z", Digest: other}}, exp, nil)
	if len(got) != 1 || got[0].Kind != ChangedFile {
		t.Errorf("findings %+v, want one changed file", got)
	}
}

// The summary is read on a terminal: a name or reason with a newline or an
// escape sequence, which a container can give its files, must stay on its
// line and not reach the terminal raw.
func TestSummaryEscapesNames(t *testing.T) {
	r := &Report{
		Schema:  Schema,
		Verdict: Fail,
		Findings: []Finding{
			{Kind: UnexpectedFile, Path: "/app/x\nPASS  container fake", Digest: "sha256:00"},
			{Kind: UnexpectedFile, Path: "/app/\x1b[31mred", Digest: "sha256:01"},
			{Kind: UnexpectedFile, Path: "/app/plain", Digest: "sha256:02"},
		},
		Incomplete: []string{"list entry 3: name \"a\rb\""},
		Info:       Info{ContainerID: "c\x1b]0;t\x07"},
	}
	var b bytes.Buffer
	if err := r.Summary(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\r", "\x07", "\nPASS"} {
		if strings.Contains(out, bad) {
			t.Errorf("summary holds %q raw:\n%s", bad, out)
		}
	}
	for _, want := range []string{
		`unexpected file: "/app/x\nPASS  container fake" sha256:00`,
		`unexpected file: "/app/\x1b[31mred" sha256:01`,
		"unexpected file: /app/plain sha256:02",
		`container "c\x1b]0;t\a"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %s:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 6 {
		t.Errorf("summary has %d lines, want 6:\n%s", lines, out)
	}
}

// A FIFO or a device given as a report must not block the reader.
func TestReadNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "r.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Read(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("fifo: %v, want not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read of a fifo blocks")
	}
	if _, err := Read("/dev/zero"); err == nil ||
		!strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: %v, want not a regular file", err)
	}
}

// A changed file allowed many digests lists the first few and counts the
// rest, which the report's expectations hold.
func TestCompareManyAllowed(t *testing.T) {
	var allowed []string
	for i := 0; i < 1000; i++ {
		allowed = append(allowed, fmt.Sprintf("sha256:%064x", i))
	}
	exp := Expectations{Digests: map[string][]string{"/app/w": allowed}}
	list := []Measured{{Index: 0, Path: "/app/w", Digest: fmt.Sprintf("sha256:%064x", 5000)}}
	got, err := Compare(list, exp, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("%v, %v", got, err)
	}
	f := got[0]
	if f.Kind != ChangedFile || len(f.Expected) != MaxExpectedListed || f.ExpectedMore != 992 ||
		f.Expected[7] != allowed[7] {
		t.Errorf("finding lists %d and %d more, want %d and 992", len(f.Expected),
			f.ExpectedMore, MaxExpectedListed)
	}
	if s := f.String(); !strings.HasSuffix(s, allowed[7]+" or 992 more)") {
		t.Errorf("rendered %q", s)
	}
}
