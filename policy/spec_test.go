package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Digests of the empty input, computed independently (sha1sum, sha256sum
// of /dev/null).
const (
	emptySHA1   = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// configDir makes a configuration folder with one policy and the Keylime
// test files as expectations.
func configDir(t testing.TB) string {
	dir := t.TempDir()
	for _, sub := range []string{"policies", "expectations"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policies/exec-only", "measure func=BPRM_CHECK\n")
	write("policies/broken", "# ok\nmeasure func=NOPE\n")
	write("policies/huge", strings.Repeat("#", MaxPolicySize+1))
	if err := os.Mkdir(filepath.Join(dir, "policies", "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("testdata/keylime")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata/keylime", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		write("expectations/"+e.Name(), string(data))
	}
	return dir
}

func TestSpecDefaults(t *testing.T) {
	s, err := SpecFromAnnotations(map[string]string{"org.other": "x"}, configDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Enable || s.Mode != ModeAudit || s.Backend != BackendAuto ||
		s.PolicySource != "builtin" || s.PolicyText != BuiltinText() ||
		len(s.Policy.Rules) != 30 || s.Expect.Digests != nil || s.Expect.PCR10 != nil {
		t.Errorf("defaults: %+v", s)
	}
}

func TestSpecFull(t *testing.T) {
	ann := map[string]string{
		AnnotationEnable:  "true",
		AnnotationMode:    "enforce",
		AnnotationBackend: "fanotify",
		AnnotationPolicy:  "measure func=BPRM_CHECK mask=MAY_EXEC\nmeasure func=FILE_CHECK uid=0",
		AnnotationExpectDigests: `{"/bin/sh": ["SHA256:` + strings.ToUpper(emptySHA256) +
			`", "` + emptySHA1 + `"], "boot_aggregate": ["` + emptySHA256 + `"]}`,
		AnnotationPCR10SHA1:   strings.Repeat("AB", 20),
		AnnotationPCR10SHA256: strings.Repeat("0", 64),
	}
	s, err := SpecFromAnnotations(ann, configDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Enable || s.Mode != ModeEnforce || s.Backend != BackendFanotify ||
		s.PolicySource != "annotation" || len(s.Policy.Rules) != 2 {
		t.Errorf("spec: %+v", s)
	}
	d := s.Expect.Digests["/bin/sh"]
	if len(d) != 2 || d[0] != "sha256:"+emptySHA256 || d[1] != "sha1:"+emptySHA1 {
		t.Errorf("digests: %v", d)
	}
	if s.Expect.Source != "annotation" || s.Expect.PCR10["sha1"] != strings.Repeat("ab", 20) ||
		s.Expect.PCR10["sha256"] != strings.Repeat("0", 64) {
		t.Errorf("expectations: %+v", s.Expect)
	}
	if listed, ok := s.Expect.Allowed("/bin/sh", "SHA1:"+emptySHA1); !listed || !ok {
		t.Errorf("allowed: %v %v", listed, ok)
	}
	if listed, ok := s.Expect.Allowed("/bin/sh", "sha1:"+strings.Repeat("0", 40)); !listed || ok {
		t.Errorf("changed digest: %v %v", listed, ok)
	}
}

func TestSpecFiles(t *testing.T) {
	dir := configDir(t)
	s, err := SpecFromAnnotations(map[string]string{
		AnnotationPolicy:        "@exec-only",
		AnnotationExpectDigests: "@good.json",
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.PolicySource != "@exec-only" || s.PolicyText != "measure func=BPRM_CHECK\n" ||
		s.Policy.Rules[0].Func != BprmCheck {
		t.Errorf("policy: %q from %s", s.PolicyText, s.PolicySource)
	}
	e := s.Expect
	if e.Source != "@good.json" || len(e.Digests) != 2 ||
		e.Digests["/bin/busybox"][0] != "sha256:"+emptySHA256 ||
		e.Digests["/etc/empty"][0] != "sha1:"+emptySHA1 ||
		e.Digests["/etc/empty"][1] != "sha256:"+emptySHA256 {
		t.Errorf("expectations: %+v", e)
	}
	// Keylime matches from the start of the path (Python's re.match).
	for path, want := range map[string]bool{
		"/tmp/x": true, "/usr/lib/a.pyc": true, "/var/log/messages": true,
		"/bin/tmp/": false, "/data/var/log/x": false, "/usr/lib/a.py": false,
	} {
		if e.Excluded(path) != want {
			t.Errorf("excluded %s: %v, want %v (excludes %q)", path, !want, want, e.Excludes)
		}
	}
}

func TestBadAnnotations(t *testing.T) {
	dir := configDir(t)
	tests := []struct {
		key, val, want string
	}{
		{"io.imans.bogus", "x", "unknown imans annotation"},
		{"io.imans.expect.pcr10.sha384", strings.Repeat("0", 96), "unknown imans annotation"},
		{"io.imans.Enable", "true", "unknown imans annotation"},
		{AnnotationEnable, "yes", "want true or false"},
		{AnnotationMode, "strict", "want audit or enforce"},
		{AnnotationBackend, "ebpf", "want auto, kernel or fanotify"},
		{AnnotationBackend, strings.Repeat("a", MaxShortValueSize+1), "over the limit"},
		{AnnotationPolicy, strings.Repeat("#", MaxPolicySize+1), "over the limit"},
		{AnnotationPolicy, "measure func=NOPE", `line 1: "func=NOPE"`},
		{AnnotationPolicy, "@broken", `policy @broken: line 2: "func=NOPE"`},
		{AnnotationPolicy, "@../x", "not a plain file name"},
		{AnnotationPolicy, "@", "not a plain file name"},
		{AnnotationPolicy, "@..", "not a plain file name"},
		{AnnotationPolicy, "@missing", "no such file"},
		{AnnotationPolicy, "@adir", "not a regular file"},
		{AnnotationPolicy, "@huge", "over the limit"},
		{AnnotationPolicy, "  \n# only a comment\n", "empty policy"},
		{AnnotationExpectDigests, `{"/bin/sh": ["sha256:` + emptySHA1 + `"]}`,
			"sha256 needs 64 hex digits, have 40"},
		{AnnotationExpectDigests, `{"/bin/sh": ["sha256:zz"]}`, "not hexadecimal"},
		{AnnotationExpectDigests, `{"/bin/sh": ["md5:` + emptySHA1[:32] + `"]}`,
			`unknown algorithm "md5"`},
		{AnnotationExpectDigests, `{"/bin/sh": "sha1:` + emptySHA1 + `"`, "JSON"},
		{AnnotationExpectDigests, `{bad json`, "JSON"},
		{AnnotationExpectDigests, `null`, "have null"},
		{AnnotationExpectDigests, `{} {}`, "data after the JSON object"},
		// a stray closing bracket, which json.Decoder.More takes for the end
		{AnnotationExpectDigests, `{"/bin/sh": ["` + emptySHA1 + `"]}}`,
			"data after the JSON object, at offset 57"},
		{AnnotationExpectDigests, "{}]\n", "data after the JSON object, at offset 2"},
		{AnnotationExpectDigests, `{"bin/sh": ["` + emptySHA1 + `"]}`, "not absolute"},
		{AnnotationExpectDigests, `{"/bin/sh": []}`, "has no digest"},
		{AnnotationExpectDigests, `{"/bin/sh": null}`, "has no digest"},
		{AnnotationExpectDigests, `{"/bin/sh": "` + emptySHA1 + `"}`,
			`path "/bin/sh": want a list of digest strings, found a JSON string`},
		{AnnotationExpectDigests, `{"/bin/sh": ["` + emptySHA1 + `", 1]}`,
			`path "/bin/sh": want a list of digest strings, found a JSON number`},
		{AnnotationExpectDigests, `["/bin/sh"]`, "want a JSON object, have a list"},
		{AnnotationExpectDigests, `{"boot_aggregatex": ["` + emptySHA1 + `"]}`, "not absolute"},
		{AnnotationExpectDigests, "{" + strings.Repeat(" ", MaxDigestsSize) + "}",
			"over the limit"},
		{AnnotationExpectDigests, "@../../etc/passwd", "not a plain file name"},
		{AnnotationExpectDigests, "@version2.json", "meta.version 2"},
		{AnnotationExpectDigests, "@allowlist.txt", "keylime runtime policy"},
		{AnnotationPCR10SHA1, "xyz", "not hexadecimal"},
		{AnnotationPCR10SHA1, emptySHA256, "sha1 PCR needs 40 hex digits, have 64"},
		{AnnotationPCR10SHA256, emptySHA1, "sha256 PCR needs 64 hex digits, have 40"},
	}
	for _, tc := range tests {
		_, err := SpecFromAnnotations(map[string]string{tc.key: tc.val}, dir)
		if err == nil {
			t.Errorf("%s=%.40q accepted", tc.key, tc.val)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "annotation "+tc.key+": ") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s=%.40q: %q, want the key and %q", tc.key, tc.val, msg, tc.want)
		}
	}
}

func TestKernelBackendPolicy(t *testing.T) {
	ann := map[string]string{AnnotationBackend: BackendKernel}
	if _, err := SpecFromAnnotations(ann, ""); err != nil {
		t.Errorf("built-in policy with the kernel backend: %v", err)
	}

	ann[AnnotationPolicy] = "measure func=BPRM_CHECK\nappraise func=FILE_CHECK\n"
	_, err := SpecFromAnnotations(ann, "")
	if err == nil || !strings.Contains(err.Error(), "annotation io.imans.policy: ") ||
		!strings.Contains(err.Error(), `line 2: "appraise": action not allowed`) {
		t.Errorf("appraise rule with the kernel backend: %v", err)
	}

	ann[AnnotationBackend] = BackendFanotify
	if _, err := SpecFromAnnotations(ann, ""); err != nil {
		t.Errorf("appraise rule with the fanotify backend: %v", err)
	}
}

func TestBadAnnotationsAll(t *testing.T) {
	_, err := SpecFromAnnotations(map[string]string{
		AnnotationMode: "x", AnnotationBackend: "y", "io.imans.z": "",
	}, "")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, k := range []string{AnnotationMode, AnnotationBackend, "io.imans.z"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("%q does not name %s", err, k)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "x.json", ".hidden", "a..b"} {
		if !ValidName(n) {
			t.Errorf("%q refused", n)
		}
	}
	for _, n := range []string{"", ".", "..", "a/b", "/a", "a\x00", strings.Repeat("a", 256)} {
		if ValidName(n) {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestSpecFromAnnotationsFIFO(t *testing.T) {
	// A FIFO under the config folder must not block the hook: opening
	// one for reading waits for a writer that never comes.
	dir := configDir(t)
	for _, p := range []string{"policies/fifo", "expectations/fifo"} {
		if err := syscall.Mkfifo(filepath.Join(dir, p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := SpecFromAnnotations(map[string]string{AnnotationPolicy: "@fifo",
			AnnotationExpectDigests: "@fifo"}, dir)
		done <- err
	}()
	select {
	case err := <-done:
		for _, k := range []string{AnnotationPolicy, AnnotationExpectDigests} {
			if err == nil || !strings.Contains(err.Error(), "annotation "+k+": @fifo: ") ||
				!strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("error %v, want %s naming a file that is not a regular one", err, k)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("SpecFromAnnotations blocks on a FIFO")
	}
}

// encoding/json keeps the last of two equal keys: an annotation giving a
// path twice would be checked against the second list only, which a
// reader of the annotation, who sees the first, easily overlooks.
func TestDigestsDuplicatePath(t *testing.T) {
	val := `{"/app/demo.sh":["sha256:` + strings.Repeat("0", 64) + `"],` +
		`"/app/demo.sh":["sha256:` + emptySHA256 + `"]}`
	_, err := SpecFromAnnotations(map[string]string{AnnotationExpectDigests: val}, "")
	want := `annotation io.imans.expect.digests: path "/app/demo.sh" is given twice ` +
		`(the second ends at offset 106): give each path once, with all its digests in one list`
	if err == nil || err.Error() != want {
		t.Errorf("path given twice: %v, want %q", err, want)
	}

	// The same path with both digests in one list is what was meant.
	val = `{"/app/demo.sh":["sha256:` + strings.Repeat("0", 64) + `","sha256:` +
		emptySHA256 + `"]}`
	s, err := SpecFromAnnotations(map[string]string{AnnotationExpectDigests: val}, "")
	if err != nil || len(s.Expect.Digests["/app/demo.sh"]) != 2 {
		t.Errorf("one list of two digests: %+v, %v", s, err)
	}

	// A name that differs only in how JSON escapes it is the same path.
	val = `{"/app/demo.sh":["` + emptySHA1 + `"],"/app/demo\u002esh":["` + emptySHA1 + `"]}`
	_, err = SpecFromAnnotations(map[string]string{AnnotationExpectDigests: val}, "")
	if err == nil || !strings.Contains(err.Error(), `path "/app/demo.sh" is given twice`) {
		t.Errorf("path given twice, once escaped: %v", err)
	}
}
