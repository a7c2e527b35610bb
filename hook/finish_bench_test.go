package hook

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/report"
)

// BenchmarkFinish times poststop's own work on a run folder whose
// collector has ended: replay of the list in two banks, the comparison
// with an expectation per file, the list copies and the report, all
// fsynced. The collector's drain is not part of it.
func BenchmarkFinish(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var list []byte
			exp := report.Expectations{Digests: map[string][]string{}}
			for i := 0; i < n; i++ {
				path := fmt.Sprintf("/usr/lib/file%05d", i)
				sum := sha256.Sum256([]byte(path))
				e, err := ima.NewNG(10, ima.SHA256, sum[:], path)
				if err != nil {
					b.Fatal(err)
				}
				list = e.AppendBinary(list, binary.LittleEndian)
				exp.Digests[path] = []string{fmt.Sprintf("sha256:%x", sum)}
			}
			p := Paths{RunDir: b.TempDir(), StateDir: b.TempDir()}
			b.SetBytes(int64(len(list)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := p.Run("c1")
				os.MkdirAll(dir, 0o700)
				os.WriteFile(filepath.Join(dir, measure.BinaryListFile), list, 0o600)
				WriteJSON(dir, RecordFile, Record{ID: "c1", Expect: exp})
				WriteJSON(dir, OutcomeFile, Outcome{ContainerExited: true,
					Status: measure.Status{PCR10: map[string]string{"sha1": "00",
						"sha256": "00"}}})
				os.WriteFile(filepath.Join(dir, PidFile), []byte("1 1\n"), 0o600)
				os.Remove(p.Report("c1"))
				b.StartTimer()
				if _, err := Finish(p, &specs.State{ID: "c1"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
