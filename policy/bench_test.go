package policy

import (
	"crypto/sha256"
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
