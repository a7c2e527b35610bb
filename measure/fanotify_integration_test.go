//go:build integration

package measure

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openerEnv makes the test binary an opener: "DIR FILES ROUNDS" opens
// DIR/f0 .. DIR/f<FILES-1> read-only, ROUNDS times over, and exits.
const openerEnv = "IMANS_TEST_OPENER"

func init() {
	spec := os.Getenv(openerEnv)
	if spec == "" {
		return
	}
	f := strings.Fields(spec)
	files, _ := strconv.Atoi(f[1])
	rounds, _ := strconv.Atoi(f[2])
	for r := 0; r < rounds; r++ {
		for i := 0; i < files; i++ {
			fd, err := unix.Open(f[0]+"/f"+strconv.Itoa(i), unix.O_RDONLY, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			unix.Close(fd)
		}
	}
	os.Exit(0)
}

// TestFanotifyMillionOpensBoundedMemory opens 40,000 distinct files 25
// times each in a container, under a collector whose once-cache holds
// 16,384 files: the cache stays within its bound, the heap stays small,
// and every file has an entry (forgotten files are measured again).
func TestFanotifyMillionOpensBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a million opens: not in -short")
	}
	const files, rounds, cacheSize = 40_000, 25, 16384
	rootfs := newRootfs(t, nil)
	data := filepath.Join(rootfs, "data")
	for i := 0; i < files; i++ {
		writeFile(t, filepath.Join(data, "f"+strconv.Itoa(i)), strconv.Itoa(i), 0o644)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	c := startContainer(t, rootfs, "", "HELPER="+self,
		fmt.Sprintf("%s=%s %d %d", openerEnv, data, files, rounds))
	dir := t.TempDir()
	col, err := NewFanotify(Spec{ID: "m", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs},
		WithCacheSize(cacheSize))
	if err != nil {
		t.Fatal(err)
	}
	fc := col.(*fanotifyCollector)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()

	start := time.Now()
	st := collectWith(t, Spec{}, fc, func() { c.runFor(t, 5*time.Minute) })
	close(stop)
	t.Logf("%d opens in %s, %d entries, peak heap %d MiB (before %d MiB), cache %d files",
		files*rounds, time.Since(start), st.Entries, peak.Load()>>20, before.HeapInuse>>20,
		fc.cache.len())

	if fc.cache.len() > cacheSize {
		t.Errorf("once-cache holds %d files, bound %d", fc.cache.len(), cacheSize)
	}
	if grow := int64(peak.Load()) - int64(before.HeapInuse); grow > 64<<20 {
		t.Errorf("heap grew by %d MiB during a million opens", grow>>20)
	}
	if st.Entries < files || st.Entries > files*rounds {
		t.Errorf("%d entries, want between %d and %d", st.Entries, files, files*rounds)
	}

	// Every file has an entry.
	seen := map[string]bool{}
	for _, e := range readList(t, dir) {
		n, err := e.FileName()
		if err != nil {
			t.Fatal(err)
		}
		seen[n] = true
	}
	for i := 0; i < files; i++ {
		if n := "/data/f" + strconv.Itoa(i); !seen[n] {
			t.Fatalf("no entry for %s", n)
		}
	}
}
