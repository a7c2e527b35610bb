package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kernel is a Debian kernel image unpacked in the cache.
type Kernel struct {
	Series  string // "6.1" or "6.12"
	Package string // Debian package, such as linux-image-6.1.0-57-amd64
	Version string // its Debian version, such as 6.1.192-3
	Release string // what uname -r says, such as 6.1.0-57-amd64
	Image   string // path of the vmlinuz file in the cache
	Config  string // path of the kernel's config file in the cache
}

// seriesPattern gives, per kernel series, the names of the Debian bookworm
// packages that carry it (signed images; the unsigned ones hold the same
// kernel). 6.12 comes from bookworm-security (+deb12) or
// bookworm-backports (+bpo).
var seriesPattern = map[string]*regexp.Regexp{
	"6.1":  regexp.MustCompile(`^linux-image-6\.1\.0-([0-9]+)-amd64$`),
	"6.12": regexp.MustCompile(`^linux-image-6\.12\.([0-9]+)\+(deb12|bpo)-amd64$`),
}

// Series lists the kernel series the harness knows, oldest first.
func Series() []string {
	return []string{"6.1", "6.12"}
}

// kernelEnv names the variable that pins a series to one package, such as
// IMANS_QEMU_KERNEL_6_12=linux-image-6.12.118+deb12-amd64.
func kernelEnv(series string) string {
	return "IMANS_QEMU_KERNEL_" + strings.ReplaceAll(series, ".", "_")
}

// FetchKernel returns the kernel of a series, from the cache when a
// kernel of that series is there (the newest one), else downloaded with
// apt-get download (the newest package of the series that apt knows) and
// its /boot unpacked into the cache. A package named in the series'
// IMANS_QEMU_KERNEL_* variable wins over both.
func FetchKernel(ctx context.Context, cacheDir, series string) (*Kernel, error) {
	pattern, ok := seriesPattern[series]
	if !ok {
		return nil, fmt.Errorf("kernel series %q: want one of %v", series, Series())
	}
	kernelsDir := filepath.Join(cacheDir, "kernels")
	if err := os.MkdirAll(kernelsDir, 0o755); err != nil {
		return nil, err
	}

	unlock, err := lockFile(filepath.Join(cacheDir, "kernels.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	pkg := os.Getenv(kernelEnv(series))
	if pkg != "" && !pattern.MatchString(pkg) {
		return nil, fmt.Errorf("%s=%q: not a %s kernel package", kernelEnv(series), pkg, series)
	}
	if pkg == "" {
		if k := newestCached(kernelsDir, pattern); k != nil {
			return k, nil
		}
		pkg, err = newestPackage(ctx, series, pattern)
		if err != nil {
			return nil, err
		}
	}
	if k, err := readKernelInfo(filepath.Join(kernelsDir, pkg)); err == nil {
		return k, nil
	}
	return downloadKernel(ctx, kernelsDir, series, pkg)
}

// newestCached gives the cached kernel with the highest number in its
// package name, or nil.
func newestCached(kernelsDir string, pattern *regexp.Regexp) *Kernel {
	entries, err := os.ReadDir(kernelsDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if pattern.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sortByNumber(names, pattern)
	for i := len(names) - 1; i >= 0; i-- {
		if k, err := readKernelInfo(filepath.Join(kernelsDir, names[i])); err == nil {
			return k
		}
	}
	return nil
}

// newestPackage asks apt's cache for the packages of the series and picks
// the one with the highest ABI or patch number. When apt knows none (a
// fresh machine has no package lists) and we are root, it runs apt-get
// update once and asks again.
func newestPackage(ctx context.Context, series string, pattern *regexp.Regexp) (string, error) {
	names, err := searchPackages(ctx, pattern)
	if err != nil {
		return "", fmt.Errorf("apt-cache search for the %s kernel: %w", series, err)
	}

	if len(names) == 0 && os.Geteuid() == 0 {
		uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(uctx, "apt-get", "update", "-qq").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("apt-get update: %w: %s", err, lastLines(out, 5))
		}
		if names, err = searchPackages(ctx, pattern); err != nil {
			return "", fmt.Errorf("apt-cache search for the %s kernel: %w", series, err)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no %s kernel package known to apt: run apt-get update; "+
			"6.12 needs bookworm-security (or bookworm-backports) in the sources, "+
			"see docs/harness.md", series)
	}
	sortByNumber(names, pattern)
	return names[len(names)-1], nil
}

// searchPackages lists the package names apt knows that match pattern.
func searchPackages(ctx context.Context, pattern *regexp.Regexp) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	out, err := exec.CommandContext(ctx, "apt-cache", "search", "--names-only",
		strings.TrimSuffix(strings.TrimPrefix(pattern.String(), "^"), "$")).Output()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if pattern.MatchString(name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// sortByNumber orders package names by the number the pattern captures.
func sortByNumber(names []string, pattern *regexp.Regexp) {
	num := func(name string) int {
		m := pattern.FindStringSubmatch(name)
		if len(m) < 2 {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	sort.Slice(names, func(i, j int) bool { return num(names[i]) < num(names[j]) })
}

// downloadKernel fetches the package with apt-get download and unpacks
// its /boot (the modules are not needed: the harness uses built-in
// drivers only) into kernelsDir/PKG, then drops the .deb.
func downloadKernel(ctx context.Context, kernelsDir, series, pkg string) (*Kernel, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	tmp, err := os.MkdirTemp(kernelsDir, ".download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %w: %s", pkg, err, lastLines(out, 5))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: want one .deb, found %d", pkg, len(debs))
	}

	version, err := exec.CommandContext(ctx, "dpkg-deb", "-f", debs[0], "Version").Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb -f %s: %w", debs[0], err)
	}
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	unpack := exec.CommandContext(ctx, "sh", "-c",
		`dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/*'`,
		"sh", debs[0], root)
	if out, err := unpack.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack /boot of %s: %w: %s", debs[0], err, lastLines(out, 5))
	}

	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("%s: want one /boot/vmlinuz-*, found %d", pkg, len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")

	dest := filepath.Join(kernelsDir, pkg)
	stage := filepath.Join(tmp, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(images[0], filepath.Join(stage, "vmlinuz")); err != nil {
		return nil, err
	}
	config := filepath.Join(root, "boot", "config-"+release)
	if err := os.Rename(config, filepath.Join(stage, "config")); err != nil {
		return nil, fmt.Errorf("%s has no config-%s: %w", pkg, release, err)
	}
	k := &Kernel{
		Series:  series,
		Package: pkg,
		Version: strings.TrimSpace(string(version)),
		Release: release,
	}
	info, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, "kernel.json"), info, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dest)
	if err := os.Rename(stage, dest); err != nil {
		return nil, err
	}
	return readKernelInfo(dest)
}

// readKernelInfo loads a cached kernel's description and checks its image
// is there.
func readKernelInfo(dir string) (*Kernel, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s/kernel.json: %w", dir, err)
	}
	k.Image = filepath.Join(dir, "vmlinuz")
	k.Config = filepath.Join(dir, "config")
	if _, err := os.Stat(k.Image); err != nil {
		return nil, err
	}
	return &k, nil
}

// lockFile takes an exclusive flock, for the cache shared by test
// processes that run in parallel.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// lastLines gives the end of a command's output for an error message.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

var errNoModule = errors.New("module root not found (no go.mod of github.com/imans-project/imans)")

// moduleRoot finds the checkout: walking up from the working folder (a
// test runs in its package's folder) to the go.mod of this module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/imans-project/imans\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errNoModule
		}
		dir = parent
	}
}
