// Command capture boots Debian's 6.1 and 6.12 kernels in qemu and writes
// the project's real-kernel test data: measurement lists with the PCRs of
// every bank under ima/testdata/kernel/<set>/, and the policy oracle's
// verdicts under policy/testdata/oracle/. Run it from the checkout:
//
//	go run ./integration/qemu/cmd/capture            # everything
//	go run ./integration/qemu/cmd/capture -only 6.12-ima-ng,oracle
//
// docs/harness.md says what each set holds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imans-project/imans/integration/qemu"
)

func main() {
	root := flag.String("root", ".", "checkout to write the test data into")
	only := flag.String("only", "", "comma-separated set names (\"oracle\" for the policy oracle)")
	jobs := flag.Int("j", 2, "boots at a time")
	list := flag.Bool("list", false, "list the sets and exit")
	flag.Parse()

	if *list {
		for _, s := range qemu.CaptureSets() {
			fmt.Printf("%-22s %s: %s\n", s.Name, s.Kernel, s.Cmdline)
		}
		fmt.Printf("%-22s policy oracle on every kernel\n", "oracle")
		return
	}
	if err := run(*root, *only, *jobs); err != nil {
		fmt.Fprintln(os.Stderr, "capture:", err)
		os.Exit(1)
	}
}

func run(root, only string, jobs int) error {
	want := func(name string) bool {
		return only == "" || slices.Contains(strings.Split(only, ","), name)
	}
	ctx := context.Background()

	var tasks []func() error
	for _, set := range qemu.CaptureSets() {
		if want(set.Name) {
			tasks = append(tasks, func() error { return captureSet(ctx, root, set) })
		}
	}
	if want("oracle") {
		for _, k := range qemu.Series() {
			tasks = append(tasks, func() error { return oracle(ctx, root, k) })
		}
	}
	if len(tasks) == 0 {
		return fmt.Errorf("no set named in -only %q (see -list)", only)
	}

	var mu sync.Mutex
	var errs []string
	sem := make(chan struct{}, max(jobs, 1))
	var wg sync.WaitGroup
	for _, task := range tasks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := task(); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d failed:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	return nil
}

func captureSet(ctx context.Context, root string, set qemu.CaptureSet) error {
	files, res, err := qemu.Capture(ctx, set, "")
	dir := filepath.Join(root, "ima", "testdata", "kernel", set.Name)
	if err != nil {
		if files == nil {
			return err
		}
		dir = filepath.Join(os.TempDir(), "imans-capture-failed", set.Name)
		defer fmt.Printf("%s: failed, files kept in %s\n", set.Name, dir)
	}

	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("%s: %d files, boot %v\n", set.Name, len(files), res.Elapsed.Round(time.Millisecond))
	return err
}

func oracle(ctx context.Context, root, kernel string) error {
	dir := filepath.Join(root, "policy", "testdata", "oracle")
	corpus, err := os.ReadFile(filepath.Join(dir, "corpus.txt"))
	if err != nil {
		return err
	}
	rules := strings.Split(strings.TrimSuffix(string(corpus), "\n"), "\n")

	start := time.Now()
	verdicts, err := qemu.Oracle(ctx, kernel, rules, "")
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "verdicts-"+kernel+".txt")
	if err := os.WriteFile(out, []byte(qemu.FormatVerdicts(verdicts, rules)), 0o644); err != nil {
		return err
	}
	fmt.Printf("oracle %s: %d rules, %v\n",
		kernel, len(rules), time.Since(start).Round(time.Millisecond))
	return nil
}
