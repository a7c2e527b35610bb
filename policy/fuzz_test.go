package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that the parser never panics, that every error names a
// line, and that a rendered policy parses back to the same rendering
// unless it holds what the kernel itself prints in a form it would not
// read back: an id of 2^31 or more (shown negative) or sigv3 (shown before
// the digest_type=verity it needs).
func FuzzParse(f *testing.F) {
	f.Add(BuiltinText())
	f.Add("measure func=BPRM_CHECK mask=^MAY_EXEC uid>1000 " +
		"fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a90")
	f.Add("appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_algos=sha256,sha1")
	f.Add("measure func=KEY_CHECK keyrings=a|b pcr=11 template=ima-buf\n# c\n\taudit")
	f.Add("appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3 permit_directio")
	f.Add("dont_measure fsmagic=0x1ffffffffffffffff fowner<4294967294 subj_role=x")

	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T %v is not an ErrorList", err, err)
			}
			for _, e := range list {
				if e.Line < 1 || !strings.HasPrefix(e.Error(), "line ") {
					t.Fatalf("error without a line: %v", e)
				}
			}
			return
		}

		out := p.Render()
		q, err := Parse(out)
		if err != nil {
			if !unreadable(p) {
				t.Fatalf("rendering %q does not parse: %v", out, err)
			}
			return
		}
		if again := q.Render(); again != out {
			t.Fatalf("rendering not stable:\n%q\n%q", out, again)
		}
		for _, a := range []Access{
			{Func: FileCheck, Mask: MayRead, FSMagic: 0xef53},
			{Func: KeyCheck, Data: ".ima"},
			{Func: PostSetattr},
		} {
			if d1, d2 := p.Evaluate(a), q.Evaluate(a); d1.Measure != d2.Measure ||
				d1.Appraise != d2.Appraise || d1.PCR != d2.PCR {
				t.Fatalf("evaluation differs after rendering: %+v %+v", d1, d2)
			}
		}
	})
}

func unreadable(p *Policy) bool {
	for _, r := range p.Rules {
		if r.Has(OptVerity | OptDigsig) {
			return true
		}
		for _, v := range []uint32{r.UID, r.GID, r.FOwner, r.FGroup} {
			if v >= 1<<31 {
				return true
			}
		}
	}
	return false
}

// FuzzSpecFromAnnotations checks that the annotation decoder never
// panics and that every error names an io.imans. key it was given.
func FuzzSpecFromAnnotations(f *testing.F) {
	dir := configDir(f)
	f.Add("io.imans.policy", "@exec-only", "io.imans.expect.digests", "@good.json")
	f.Add("io.imans.expect.digests", `{"/a": ["sha1:`+emptySHA1+`"]}`, "io.imans.enable", "true")
	f.Add("io.imans.expect.pcr10.sha1", emptySHA1, "io.imans.mode", "enforce")
	f.Add("io.imans.policy", "measure func=FILE_CHECK\n", "io.imans.backend", "kernel")
	f.Add("io.imans.x", "", "io.imans.policy", "@../x")
	f.Add("io.imans.expect.digests", `{"/a": ["`+emptySHA1+`"], "/a": ["`+emptySHA1+`"]}`,
		"io.imans.enable", "true")

	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		ann := map[string]string{k1: v1, k2: v2}
		s, err := SpecFromAnnotations(ann, dir)
		if err == nil {
			if s.Policy == nil || len(s.Policy.Rules) == 0 {
				t.Fatalf("spec without a policy: %+v", s)
			}
			return
		}
		named := false
		for _, k := range []string{k1, k2} {
			if strings.HasPrefix(k, AnnotationPrefix) &&
				strings.Contains(err.Error(), "annotation "+k+": ") {
				named = true
			}
		}
		if !named {
			t.Fatalf("error names no key: %v", err)
		}
	})
}

// FuzzDecodeDigestObject checks that the key-by-key decoder of a digests
// object never panics and, when it accepts a text, reads what
// encoding/json reads, with every path once.
func FuzzDecodeDigestObject(f *testing.F) {
	f.Add(`{"/a": ["sha1:` + emptySHA1 + `"], "/b": null}`)
	f.Add(`{"/a": ["x"], "/a": ["y"]}`)
	f.Add(`{"/a\u0000": [], "/b": ["1", 2]}`)
	f.Add(`{"/\ud800": ["x"], "/\ufffd": ["y"]}`)
	f.Add(`null`)
	f.Add(`{}}`)

	f.Fuzz(func(t *testing.T, text string) {
		dec := json.NewDecoder(strings.NewReader(text))
		d, err := decodeDigestObject(dec)
		if err != nil || checkEnd(dec) != nil {
			return
		}
		if len(d.paths) != len(d.lists) {
			t.Fatalf("%d paths, %d in the map: a path twice", len(d.paths), len(d.lists))
		}
		var std map[string][]string
		if err := json.Unmarshal([]byte(text), &std); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(std, d.lists) {
			t.Fatalf("read %q, encoding/json reads %q", d.lists, std)
		}
	})
}
