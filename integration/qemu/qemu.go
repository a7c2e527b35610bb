// Package qemu boots Debian's kernels in qemu (TCG) with a fresh swtpm
// TPM and a busybox initramfs, runs a shell script in the guest as root,
// and brings back files the script leaves behind: measurement lists, PCR
// values, policy verdicts. Integration tests of every package use it to
// check their work against a real kernel's IMA.
//
// Kernels come from Debian's archive with apt-get download and are cached
// under integration/cache (git-ignored); nothing the harness can fetch is
// committed. docs/harness.md describes the guest and the capture of the
// test data.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Config describes one boot. The zero value boots the newest 6.12 kernel
// with IMA's built-in defaults, runs nothing and fetches nothing.
type Config struct {
	// Kernel is the series: "6.1" or "6.12" (the default).
	Kernel string

	// Cmdline is added to the harness's own command line (console, root,
	// panic, quiet): IMA options such as "ima_policy=tcb
	// ima_template=ima-ng"; "loglevel=7" brings back the kernel's messages.
	Cmdline string

	// Files are put into the initramfs at their guest paths, mode 0755.
	// The root is a ramfs, which ima_policy=tcb measures; /run is a tmpfs,
	// which it does not.
	Files map[string][]byte

	// Script is run by busybox sh as root from /root, after proc, sysfs,
	// securityfs, devtmpfs and /run are mounted. Its output goes to
	// Result.Output. imans-guest (see its usage) is on PATH.
	Script string

	// Fetch lists guest paths, files or folders (taken recursively), sent
	// back after Script ends, whatever its status. A path that does not
	// exist then makes Boot fail.
	Fetch []string

	// NoTPM leaves the TPM out (IMA then runs without PCR extends).
	NoTPM bool

	// Timeout bounds the boot from the start of its TPM to qemu's exit,
	// qemu being killed when it passes; the wait for a boot slot and the
	// kernel's download are bounded by ctx alone. Zero means two minutes.
	Timeout time.Duration

	// MemoryMB is the guest's memory; zero means 512.
	MemoryMB int

	// CacheDir holds the kernels and the guest helper; empty means
	// $IMANS_QEMU_CACHE, else integration/cache of the checkout.
	CacheDir string
}

// Result is what came back from a boot.
type Result struct {
	Kernel  Kernel
	Cmdline string            // the full kernel command line
	Status  int               // exit status of Script
	Output  []byte            // Script's stdout and stderr
	Files   map[string][]byte // fetched files by guest path
	Console []byte            // the serial console: kernel messages
	Elapsed time.Duration     // from qemu's start to its exit
}

// File gives a fetched file, or an error naming the path.
func (r *Result) File(guestPath string) ([]byte, error) {
	data, ok := r.Files[guestPath]
	if !ok {
		return nil, fmt.Errorf("guest file %s was not fetched", guestPath)
	}
	return data, nil
}

// baseCmdline is given to every boot. root=/dev/ram0 keeps the initramfs
// root a ramfs (measured by ima_policy=tcb; a tmpfs root would not be);
// panic=-1 with -no-reboot makes a panic end qemu at once.
const baseCmdline = "console=ttyS0 root=/dev/ram0 rdinit=/init panic=-1 quiet"

// DefaultTimeout bounds a boot whose Config has no Timeout.
const DefaultTimeout = 2 * time.Minute

// Boot starts a fresh TPM and qemu with the kernel and an initramfs built
// from the config, waits for the guest to power off, and returns what it
// sent back. An error says which step failed; a guest that hangs is killed
// at the deadline and the error carries the end of its console. Once qemu
// has run, the Result comes back with the error too (Console, Elapsed).
// A non-zero Status of the script is not an error.
func Boot(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()

	cache, err := cacheDir(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	kernel, err := FetchKernel(ctx, cache, cfg.Kernel)
	if err != nil {
		return nil, err
	}
	guest, err := guestBinary(ctx, cache)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "imans-qemu-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	initrd, err := buildInitramfs(cfg, guest)
	if err != nil {
		return nil, err
	}
	initrdPath := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrdPath, initrd, 0o644); err != nil {
		return nil, err
	}

	release, err := takeSlot(ctx, cache)
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	res := &Result{Kernel: *kernel, Cmdline: strings.TrimSpace(baseCmdline + " " + cfg.Cmdline)}
	args := qemuArgs(cfg, res, dir, initrdPath)
	if !cfg.NoTPM {
		tpm, err := startTPM(ctx, dir)
		if err != nil {
			return nil, err
		}
		defer tpm.stop()
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+tpm.ctrl,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}

	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	var qemuErr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qemuErr, &qemuErr
	start := time.Now()
	runErr := cmd.Run()
	res.Elapsed = time.Since(start)
	res.Console, _ = os.ReadFile(filepath.Join(dir, "console.log"))

	if ctx.Err() != nil {
		return res, fmt.Errorf("qemu (%s): no poweroff within %v: %w; console: %s",
			kernel.Package, cfg.Timeout, ctx.Err(), tail(res.Console, 1500))
	}
	if runErr != nil {
		return res, fmt.Errorf("qemu (%s): %w: %s; console: %s",
			kernel.Package, runErr, lastLines(qemuErr.Bytes(), 5), tail(res.Console, 1500))
	}

	data, err := os.ReadFile(filepath.Join(dir, "data.log"))
	if err != nil {
		return res, err
	}
	files, err := parseWire(data)
	if err != nil {
		// The script's status and output come first: show them, since a
		// file the script failed to make is usually why one is missing.
		script := "no script status"
		if res.take(files) == nil {
			script = fmt.Sprintf("script status %d, output: %s", res.Status,
				tail(res.Output, 1500))
		}
		return res, fmt.Errorf("guest (%s) data: %w; %s; console: %s",
			kernel.Package, err, script, tail(res.Console, 1500))
	}
	return res, res.take(files)
}

// withDefaults fills in the zero fields.
func (cfg Config) withDefaults() Config {
	if cfg.Kernel == "" {
		cfg.Kernel = "6.12"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 512
	}
	return cfg
}

// qemuArgs gives qemu's command line without the TPM: one CPU under TCG,
// no devices but the two serial ports (console, then data) written to
// files in dir, no reboot (a reboot or panic ends qemu).
func qemuArgs(cfg Config, res *Result, dir, initrd string) []string {
	return []string{
		"-accel", "tcg", "-m", fmt.Sprint(cfg.MemoryMB), "-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", res.Kernel.Image, "-initrd", initrd, "-append", res.Cmdline,
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-serial", "file:" + filepath.Join(dir, "data.log"),
	}
}

// take moves the harness's own files out of the fetched ones.
func (r *Result) take(files map[string][]byte) error {
	status, ok := files[guestStatus]
	if !ok {
		return errors.New("guest sent no script status")
	}
	if _, err := fmt.Sscan(string(status), &r.Status); err != nil {
		return fmt.Errorf("guest script status %q: %w", status, err)
	}
	r.Output = files[guestOutput]
	delete(files, guestStatus)
	delete(files, guestOutput)
	r.Files = files
	return nil
}

// Guest paths the init script uses.
const (
	guestScript = "/imans/script"
	guestFetch  = "/imans/fetch"
	guestStatus = "/run/imans/status"
	guestOutput = "/run/imans/output"
)

// initScript is the guest's /init. The data port is ttyS1, the console
// ttyS0. The script's status and output are sent first, then the
// fetched paths; poweroff -f ends qemu (with -no-reboot).
//
// The serial port carries about 160 KB/s of file content under TCG: fine
// for measurement lists, slow for tens of MB. A virtio or 9p channel would
// be faster but needs modules, and the harness unpacks none.
const initScript = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mkdir -p /run/imans /tmp
cd /root
sh ` + guestScript + ` > ` + guestOutput + ` 2>&1
echo $? > ` + guestStatus + `
imans-guest send /dev/ttyS1 ` + guestStatus + ` ` + guestOutput + ` @` + guestFetch + `
poweroff -f
`

// buildInitramfs puts busybox, the guest helper, /init, the script, the
// fetch list and the config's files into a newc archive.
func buildInitramfs(cfg Config, guest string) ([]byte, error) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox (Debian package busybox-static): %w", err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	helper, err := os.ReadFile(guest)
	if err != nil {
		return nil, err
	}

	for _, p := range cfg.Fetch {
		if !path.IsAbs(p) || strings.Contains(p, "\n") {
			return nil, fmt.Errorf("fetch path %q: want an absolute path on one line", p)
		}
	}
	r := newInitramfs()
	members := []cpioEntry{
		{name: "init", mode: modeFile | 0o755, data: []byte(initScript)},
		{name: "bin/busybox", mode: modeFile | 0o755, data: bb},
		{name: "bin/sh", mode: modeSymlink | 0o777, data: []byte("busybox")},
		{name: "bin/imans-guest", mode: modeFile | 0o755, data: helper},
		{name: "dev/console", mode: modeChar | 0o600, major: 5, minor: 1},
		{name: "proc", mode: modeDir | 0o755},
		{name: "sys", mode: modeDir | 0o755},
		{name: "run", mode: modeDir | 0o755},
		{name: "root", mode: modeDir | 0o700},
		{name: "sbin", mode: modeDir | 0o755},
		{name: "usr/bin", mode: modeDir | 0o755},
		{name: "usr/sbin", mode: modeDir | 0o755},
		{name: strings.TrimPrefix(guestScript, "/"), mode: modeFile | 0o644,
			data: []byte(cfg.Script)},
		{name: strings.TrimPrefix(guestFetch, "/"), mode: modeFile | 0o644,
			data: []byte(strings.Join(cfg.Fetch, "\n") + "\n")},
	}
	for _, m := range members {
		if err := r.add(m); err != nil {
			return nil, err
		}
	}

	names := make([]string, 0, len(cfg.Files))
	for name := range cfg.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !path.IsAbs(name) {
			return nil, fmt.Errorf("guest file %q: want an absolute path", name)
		}
		if _, ok := r.entries[strings.TrimPrefix(path.Clean(name), "/")]; ok {
			return nil, fmt.Errorf("guest file %q: the harness's own", name)
		}
		e := cpioEntry{name: name, mode: modeFile | 0o755, data: cfg.Files[name]}
		if err := r.add(e); err != nil {
			return nil, err
		}
	}
	return r.bytes(), nil
}

// cacheDir resolves and creates the cache folder.
func cacheDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("IMANS_QEMU_CACHE")
	}
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", fmt.Errorf("qemu cache: set IMANS_QEMU_CACHE: %w", err)
		}
		dir = filepath.Join(root, "integration", "cache")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("qemu cache: %w", err)
	}
	return dir, nil
}

// tail gives the last n bytes of a log for an error message.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
