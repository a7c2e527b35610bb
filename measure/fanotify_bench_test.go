package measure

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
)

// benchFiles is the number of distinct scripts executed, and of distinct
// files read, by the benchmark's workload.
const benchFiles = 2000

// benchWorkload executes each script and reads each file once.
var benchWorkload = fmt.Sprintf(`i=0
while [ $i -lt %d ]; do
	/app/s$i.sh
	cat /data/f$i.txt >/dev/null
	i=$((i+1))
done`, benchFiles)

// benchRootfs makes the benchmark's root filesystem.
func benchRootfs(b *testing.B) string {
	files := map[string]string{}
	for i := 0; i < benchFiles; i++ {
		files[fmt.Sprintf("app/s%d.sh", i)] = fmt.Sprintf("#!/bin/sh\n: script %d\n", i)
		files[fmt.Sprintf("data/f%d.txt", i)] = fmt.Sprintf("data file %d\n", i)
	}
	return newRootfs(b, files)
}

// timeWorkload runs the workload in a fresh container, with around
// started before the container may go and stopped after it ended, and
// returns the workload's time.
func timeWorkload(b *testing.B, rootfs string, around func(pid int) (stop func())) time.Duration {
	c := startContainer(b, rootfs, benchWorkload)
	stop := func() {}
	if around != nil {
		stop = around(c.cmd.Process.Pid)
	}
	start := time.Now()
	c.run(b)
	d := time.Since(start)
	stop()
	return d
}

// withCollector starts a fanotify collector with a TPM on the container.
func withCollector(b *testing.B, rootfs, tpmAddr string) func(pid int) func() {
	return func(pid int) func() {
		col, err := NewFanotify(Spec{ID: "bench", Dir: b.TempDir(), Pid: pid,
			Rootfs: rootfs, TPM: tpmAddr})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		res := make(chan error, 1)
		var st Status
		go func() {
			var err error
			st, err = col.Run(ctx, func() { close(ready) })
			res <- err
		}()
		select {
		case <-ready:
		case err := <-res:
			b.Fatalf("collector: %v", err)
		}
		return func() {
			cancel()
			if err := <-res; err != nil {
				b.Fatalf("collector: %v", err)
			}
			if st.Entries < 2*benchFiles {
				b.Fatalf("collector recorded %d entries, want at least %d", st.Entries,
					2*benchFiles)
			}
		}
	}
}

// withFapolicyd runs fapolicyd, permissive, with a rule that looks up
// every file in its trust database, where every file of the root
// filesystem is listed with its sha256 (integrity = sha256: each trusted
// file is hashed). Its configuration and database folders are
// bind-mounted over /etc/fapolicyd and /var/lib/fapolicyd in a private
// mount namespace, so the machine's own stay untouched; a filesystem mark
// lets it see the container's mounts from there.
func withFapolicyd(b *testing.B, rootfs string) func(pid int) func() {
	bin, err := exec.LookPath("fapolicyd")
	if err != nil {
		testenv.Missing(b, "fapolicyd not found on PATH")
	}
	conf, db := b.TempDir(), b.TempDir()
	os.Chmod(conf, 0o755)
	writeFile(b, filepath.Join(conf, "fapolicyd.conf"), `permissive = 1
nice_val = 0
q_size = 640
uid = root
gid = root
do_stat_report = 0
detailed_report = 0
db_max_size = 50
subj_cache_size = 1549
obj_cache_size = 8191
watch_fs = ext2,ext3,ext4,xfs,btrfs
trust = file
integrity = sha256
syslog_format = rule,dec,perm,auid,pid,exe,:,path,ftype,trust
rpm_sha256_only = 0
allow_filesystem_mark = 1
`, 0o644)
	rules := "allow perm=any all : trust=1\nallow perm=any all : all\n"
	writeFile(b, filepath.Join(conf, "rules.d", "10-bench.rules"), rules, 0o644)
	writeFile(b, filepath.Join(conf, "fapolicyd.rules"), rules, 0o644)
	os.MkdirAll(filepath.Join(conf, "trust.d"), 0o755)

	var trust strings.Builder
	filepath.WalkDir(rootfs, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&trust, "%s %d %x\n", p, len(data), sha256Of(string(data)))
		return nil
	})
	writeFile(b, filepath.Join(conf, "fapolicyd.trust"), trust.String(), 0o644)

	return func(pid int) func() {
		cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" /etc/fapolicyd && mount --bind "$2" /var/lib/fapolicyd &&
exec "$3" --permissive --debug-deny`, "sh", conf, db, bin)
		out, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		started := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			once := false
			for sc.Scan() {
				if !once && strings.Contains(sc.Text(), "Starting to listen for events") {
					once = true
					started <- true
				}
			}
			if !once {
				started <- false
			}
		}()
		select {
		case ok := <-started:
			if !ok {
				cmd.Wait()
				b.Fatal("fapolicyd ended before listening")
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			b.Fatal("fapolicyd did not start listening within 60s")
		}
		return func() {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
}

// BenchmarkFanotifyWorkload times a workload that executes 2,000
// distinct scripts and reads 2,000 distinct files in a container: alone,
// under the fanotify collector (with a swtpm TPM), and, with
// IMANS_BENCH_FAPOLICYD=1, under fapolicyd (IMANS_BENCH_NOTPM=1 adds the
// collector without a TPM). Each iteration runs every variant once; the
// medians and their ratios to the plain run are reported as metrics.
func BenchmarkFanotifyWorkload(b *testing.B) {
	rootfs := benchRootfs(b)
	sw := startTestSwtpm(b)
	variants := []struct {
		name   string
		around func(pid int) func()
	}{
		{"plain", nil},
		{"collector", withCollector(b, rootfs, sw.Addr)},
	}
	if os.Getenv("IMANS_BENCH_NOTPM") == "1" {
		variants = append(variants, struct {
			name   string
			around func(pid int) func()
		}{"collector-notpm", withCollector(b, rootfs, "")})
	}
	if os.Getenv("IMANS_BENCH_FAPOLICYD") == "1" {
		variants = append(variants, struct {
			name   string
			around func(pid int) func()
		}{"fapolicyd", withFapolicyd(b, rootfs)})
	}

	// Runs alternate between the variants, and each variant's median is
	// reported: other load on the machine shifts single runs, not the
	// middle of several.
	runs := make([][]time.Duration, len(variants))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, v := range variants {
			runs[j] = append(runs[j], timeWorkload(b, rootfs, v.around))
		}
	}
	b.StopTimer()

	base := median(runs[0])
	for j, v := range variants {
		m := median(runs[j])
		b.ReportMetric(m.Seconds(), "s/"+v.name)
		if j > 0 {
			b.ReportMetric(float64(m)/float64(base), v.name+"/plain")
		}
	}
}

// median returns the middle of some durations.
func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
