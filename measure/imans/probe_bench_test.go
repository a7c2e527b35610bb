package imans

import (
	"path/filepath"
	"testing"
)

// BenchmarkProbeUncached is the cost of one probe without the per-boot
// cache: a child in new user and mount namespaces, one mount attempt.
func BenchmarkProbeUncached(b *testing.B) {
	for b.Loop() {
		if ok, reason := probe(); reason == "" {
			b.Fatalf("probe gave no reason (ok %v)", ok)
		}
	}
}

// BenchmarkProbeCached is the cost of Probe once the answer is known.
func BenchmarkProbeCached(b *testing.B) {
	Probe()
	for b.Loop() {
		Probe()
	}
}

// BenchmarkProbeCachedFile is the cost of ProbeCached once the file holds
// this boot's answer: what a hook process pays.
func BenchmarkProbeCachedFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "probe.json")
	ProbeCached(path)
	for b.Loop() {
		ProbeCached(path)
	}
}
