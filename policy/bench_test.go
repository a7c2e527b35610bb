package policy

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

var sinkDecision Decision

func BenchmarkParseBuiltin(b *testing.B) {
	b.SetBytes(int64(len(BuiltinText())))
	for b.Loop() {
		if _, err := Parse(BuiltinText()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluateBuiltin(b *testing.B) {
	p := Builtin()
	a := Access{Func: FileCheck, Mask: MayRead, FSMagic: ext4Magic, FOwner: 1000}
	for b.Loop() {
		sinkDecision = p.Evaluate(a)
	}
}

// BenchmarkEvaluateMaxRules is the worst case: 1024 rules, none matching.
func BenchmarkEvaluateMaxRules(b *testing.B) {
	p, err := Parse(strings.Repeat("measure func=BPRM_CHECK uid>5000\n", MaxNamespaceRules))
	if err != nil {
		b.Fatal(err)
	}
	a := Access{Func: FileCheck, Mask: MayRead, FSMagic: ext4Magic}
	for b.Loop() {
		sinkDecision = p.Evaluate(a)
	}
}

// BenchmarkEvaluateVsSHA256 puts the cost of deciding on an access with
// the built-in policy beside the cost of hashing a 4 KiB file, measured in
// the same run: the fanotify collector does both for every new file.
func BenchmarkEvaluateVsSHA256(b *testing.B) {
	p := Builtin()
	a := Access{Func: FileCheck, Mask: MayRead, FSMagic: ext4Magic, FOwner: 1000}
	buf := make([]byte, 4096)

	start := time.Now()
	for i := 0; i < b.N; i++ {
		sinkDecision = p.Evaluate(a)
	}
	eval := time.Since(start)

	start = time.Now()
	for i := 0; i < b.N; i++ {
		sum := sha256.Sum256(buf)
		buf[0] = sum[0]
	}
	hash := time.Since(start)

	b.ReportMetric(float64(eval)/float64(hash), "eval/sha256-4KiB")
}

// learntDigests is a digests object as imans expect writes it for a run
// that measured n files, each with one sha256 digest.
func learntDigests(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		fmt.Fprintf(&b, `"/usr/lib/python3/site-packages/pkg%d/module%05d.py":["sha256:%x"]`,
			i%97, i, sum)
	}
	b.WriteByte('}')
	return b.String()
}

// BenchmarkSpecDigestsInline decodes an inline digests annotation close to
// its size limit, MaxDigestsSize: the hook does this for every container
// that gives its expectations inline.
func BenchmarkSpecDigestsInline(b *testing.B) {
	val := learntDigests(7000)
	if len(val) > MaxDigestsSize {
		b.Fatalf("annotation of %d bytes, over the limit", len(val))
	}
	ann := map[string]string{AnnotationExpectDigests: val}
	b.SetBytes(int64(len(val)))
	for b.Loop() {
		if _, err := SpecFromAnnotations(ann, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseKeylime decodes an expectations file (the @name form) of
// 12,000 files, the size of a run too large for the inline annotation.
func BenchmarkParseKeylime(b *testing.B) {
	data := []byte(`{"meta":{"version":1},"release":0,"digests":` + learntDigests(12000) +
		`,"excludes":["/tmp/"],"keyrings":{},"ima":{"ignored_keyrings":[]}}`)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseKeylime(data); err != nil {
			b.Fatal(err)
		}
	}
}
