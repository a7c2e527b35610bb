package shim

import (
	"regexp"
	"testing"
)

// The hooks.d match is AnnotationEnable quoted and anchored on both sides,
// spelled out in the package; it takes the key itself and nothing longer or
// with another character in place of a dot.
func TestHooksDMatchPattern(t *testing.T) {
	want := "^" + regexp.QuoteMeta(AnnotationEnable) + "$"
	if len(hooksDMatch) != 1 || hooksDMatch[want] != "^true$" {
		t.Fatalf("hooksDMatch %q, want {%q: %q}", hooksDMatch, want, "^true$")
	}
	re := regexp.MustCompile(want)
	for key, match := range map[string]bool{
		"io.imans.enable":   true,
		"ioximans.enable":   false,
		"io.imans.enabled":  false,
		"x.io.imans.enable": false,
	} {
		if re.MatchString(key) != match {
			t.Errorf("pattern %s on %q: %v, want %v", want, key, !match, match)
		}
	}
}
