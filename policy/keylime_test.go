package policy

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseKeylime(t *testing.T) {
	data, err := os.ReadFile("testdata/keylime/good.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseKeylime(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Digests["/bin/busybox"]; len(got) != 1 || got[0] != "sha256:"+emptySHA256 {
		t.Errorf("busybox: %v", got)
	}
	if len(e.Excludes) != 3 || e.Excludes[1] != `.*\.pyc$` {
		t.Errorf("excludes: %q", e.Excludes)
	}
}

func TestParseKeylimeBad(t *testing.T) {
	tests := map[string]string{
		"no-meta.json":      "no meta.version",
		"version2.json":     "meta.version 2, want 1",
		"short-digest.json": `"/bin/sh"[0]`,
		"lookahead.json":    "excludes[0]: error parsing regexp: invalid or unsupported Perl syntax",
		"digests-list.json": "digests: want a JSON object, have a list",
		"no-digests.json":   `no "digests" member`,
		"relative.json":     `path "bin/sh" is not absolute`,
		"allowlist.txt":     "invalid character",
	}
	for name, want := range tests {
		data, err := os.ReadFile("testdata/keylime/" + name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseKeylime(data)
		if err == nil || !strings.Contains(err.Error(), want) ||
			!strings.HasPrefix(err.Error(), "keylime runtime policy: ") {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

func TestNormalizeDigest(t *testing.T) {
	good := map[string]string{
		emptySHA1:                           "sha1:" + emptySHA1,
		strings.ToUpper(emptySHA256):        "sha256:" + emptySHA256,
		"SHA256:" + emptySHA256:             "sha256:" + emptySHA256,
		"sha384:" + strings.Repeat("a", 96): "sha384:" + strings.Repeat("a", 96),
		strings.Repeat("b", 128):            "sha512:" + strings.Repeat("b", 128),
	}
	for in, want := range good {
		if got, err := NormalizeDigest(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "sha1:", "abc", "sha1:" + emptySHA256, "crc:00",
		"sha256:" + emptySHA256 + "0", "sha256:g" + emptySHA256[1:]} {
		if got, err := NormalizeDigest(bad); err == nil {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
}

func TestExcludesStayAnchored(t *testing.T) {
	// An exclude is matched from the start of the path as a whole: a
	// closing parenthesis in it must not end the anchored group and leave
	// the rest free to match anywhere. Python's re refuses such
	// unbalanced expressions; so do we.
	for _, x := range []string{`x)|/var/tmp/(?:`, `a)(b`, `(`} {
		data := `{"meta":{"version":1},"digests":{},"excludes":["/tmp/",` +
			strconv.Quote(x) + `]}`
		if _, err := ParseKeylime([]byte(data)); err == nil ||
			!strings.Contains(err.Error(), "excludes[1]") {
			t.Errorf("exclude %q: error %v, want one naming excludes[1]", x, err)
		}

		e := Expectations{Excludes: []string{"/tmp/", x}}
		if e.Excluded("/home/var/tmp/evil") {
			t.Errorf("exclude %q excludes /home/var/tmp/evil", x)
		}
		if !e.Excluded("/tmp/x") {
			t.Errorf("exclude %q stops /tmp/ from excluding /tmp/x", x)
		}
		if _, err := e.ExcludeMatcher(); err == nil ||
			!strings.HasPrefix(err.Error(), "excludes[1]: ") {
			t.Errorf("ExcludeMatcher with %q: %v", x, err)
		}
	}
}

func TestKeylimeErrorsShortenValues(t *testing.T) {
	// A 1 MiB digest or path is named by its start in the error, which
	// the hook logs and the report keeps.
	long := strings.Repeat("a", 1<<20)
	for _, data := range []string{
		`{"meta":{"version":1},"digests":{"/a":["` + long + `"]}}`,
		`{"meta":{"version":1},"digests":{"/a":["sha256:` + long + `"]}}`,
		`{"meta":{"version":1},"digests":{"/a":["` + long + `:00"]}}`,
		`{"meta":{"version":1},"digests":{"` + long + `":["00"]}}`,
		`{"meta":{"version":1},"digests":{"/` + long + `":["zz"]}}`,
	} {
		_, err := ParseKeylime([]byte(data))
		if err == nil || len(err.Error()) > 400 {
			t.Errorf("error of %d bytes: %.100v", len(fmt.Sprint(err)), err)
		}
	}
}

// encoding/json keeps the last of two equal keys: a policy giving a path,
// or a member imans reads, twice must be refused rather than read as its
// last copy.
func TestParseKeylimeDuplicateKeys(t *testing.T) {
	const (
		meta  = `{"meta":{"version":1},`
		first = `"/app/demo.sh":["` + emptySHA1 + `"]`
		other = `"/app/demo.sh":["` + emptySHA256 + `"]`
	)
	tests := []struct {
		name, data, want string
	}{
		{"path", meta + `"digests":{` + first + `,` + other + `}}`,
			`keylime runtime policy: digests: path "/app/demo.sh" is given twice ` +
				`(the second ends at offset 107)`},
		{"digests member", meta + `"digests":{` + first + `},"digests":{` + other + `}}`,
			`keylime runtime policy: member "digests" is given twice ` +
				`(the second ends at offset 103)`},
		{"meta.version", `{"meta":{"version":1,"version":2},"digests":{}}`,
			`keylime runtime policy: meta: member "version" is given twice ` +
				`(the second ends at offset 30)`},
		{"meta", `{"meta":{"version":2},"meta":{"version":1},"digests":{}}`,
			`keylime runtime policy: member "meta" is given twice ` +
				`(the second ends at offset 28)`},
	}
	for _, tc := range tests {
		_, err := ParseKeylime([]byte(tc.data))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		var dup *DuplicateKeyError
		if !errors.As(err, &dup) {
			t.Errorf("%s: %v is no DuplicateKeyError", tc.name, err)
		}
	}

	// Repeats inside a member imans does not read are Keylime's business.
	e, err := ParseKeylime([]byte(meta + `"ima":{"log_hash_alg":"sha1","log_hash_alg":"x"},` +
		`"digests":{` + first + `}}`))
	if err != nil || e.Digests["/app/demo.sh"][0] != "sha1:"+emptySHA1 {
		t.Errorf("repeat inside an ignored member: %+v, %v", e, err)
	}

	// Member names match exactly, as in Keylime: "Digests" is not "digests".
	_, err = ParseKeylime([]byte(meta + `"Digests":{` + first + `}}`))
	if err == nil || err.Error() != `keylime runtime policy: no "digests" member` {
		t.Errorf("member Digests: %v, want no \"digests\" member", err)
	}
}

func TestKeylimeDigest(t *testing.T) {
	sha256hex := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"sha256:" + sha256hex:                sha256hex,
		"sha1:" + strings.Repeat("cd", 20):   strings.Repeat("cd", 20),
		"sm3:" + sha256hex:                   "sm3:" + sha256hex, // sha256's length
		"sha512:" + strings.Repeat("ef", 64): strings.Repeat("ef", 64),
		"sha256:" + strings.Repeat("ab", 20): "sha256:" + strings.Repeat("ab", 20),
	} {
		if got := KeylimeDigest(in); got != want {
			t.Errorf("KeylimeDigest(%s) = %s, want %s", in, got, want)
		}
		// Either form reads back as the digest given.
		if back, err := NormalizeDigest(KeylimeDigest(in)); err == nil && back != in {
			t.Errorf("%s read back as %s", in, back)
		}
	}
}
