//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/report"
)

// runTimeout bounds one container run with its hooks: far above the
// normal (a few hundred milliseconds), far below the test's timeout.
const runTimeout = 60 * time.Second

var (
	buildOnce sync.Once
	imansBin  string
	buildErr  error
)

// TestMain removes the binaries imansBinary built once every test ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if imansBin != "" {
		os.RemoveAll(filepath.Dir(imansBin))
	}
	os.Exit(code)
}

// imansBinary builds imans, and the imans-runtime wrapper beside it, once
// per test binary, into a temporary folder kept for the whole run, and
// returns the path of imans.
func imansBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imans-bin")
		if err != nil {
			buildErr = err
			return
		}
		imansBin = filepath.Join(dir, "imans")
		for pkg, out := range map[string]string{
			"github.com/imans-project/imans/cmd/imans":         imansBin,
			"github.com/imans-project/imans/cmd/imans-runtime": filepath.Join(dir, "imans-runtime"),
		} {
			if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return imansBin
}

// hookEnv is a test's own imans folders and runtime state root.
type hookEnv struct {
	t        *testing.T
	bin      string
	runDir   string
	stateDir string
	runcRoot string
	base     string // measured filesystem for bundles
}

// newHookEnv checks the components and makes the test's folders. The run
// folder is short (/run/imtXXX) since the TPM's socket path is bounded.
func newHookEnv(t *testing.T, runtimes ...string) *hookEnv {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, append([]string{"swtpm", "busybox"}, runtimes...)...)
	e := &hookEnv{t: t, bin: imansBinary(t)}

	e.runDir = tempDir(t, "/run", "imt")
	e.stateDir = filepath.Join(t.TempDir(), "state")
	e.runcRoot = tempDir(t, "/run", "imr")
	e.base = t.TempDir()
	if fsType(t, e.base) == unix.TMPFS_MAGIC {
		e.base = tempDir(t, "/var/tmp", "imb")
	}
	// A remapped container root must reach its bundle.
	must(t, os.Chmod(e.base, 0o755))
	must(t, os.Chmod(filepath.Dir(e.base), 0o755))
	return e
}

func tempDir(t *testing.T, parent, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func fsType(t *testing.T, path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Type)
}

// bundle is one container bundle: a busybox rootfs with /app/demo.sh.
type bundle struct {
	dir, rootfs string
	spec        specs.Spec
}

// newBundle makes a busybox bundle running `/bin/sh /app/demo.sh` whose
// script has the given text. uid > 0 remaps the container's root to uid
// through a user namespace and chowns the rootfs.
func (e *hookEnv) newBundle(name, script string, uid uint32) *bundle {
	t := e.t
	t.Helper()
	b := &bundle{dir: filepath.Join(e.base, name)}
	b.rootfs = filepath.Join(b.dir, "rootfs")
	for _, d := range []string{"bin", "app", "proc", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(b.rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(b.rootfs, "bin", "busybox"), data, 0o755))
	for _, applet := range []string{"sh", "true", "echo", "cat", "sleep"} {
		must(t, os.Symlink("busybox", filepath.Join(b.rootfs, "bin", applet)))
	}
	b.writeScript(t, script)

	hookEnvVars := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"IMANS_RUN_DIR=" + e.runDir,
		"IMANS_STATE_DIR=" + e.stateDir,
	}
	b.spec = specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			Args:            []string{"/bin/sh", "/app/demo.sh"},
			Env:             []string{"PATH=/bin"},
			Cwd:             "/",
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: name,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "nodev"}},
		},
		Hooks: &specs.Hooks{
			CreateRuntime: []specs.Hook{{Path: e.bin,
				Args: []string{"imans", "hook", "create-runtime"}, Env: hookEnvVars}},
			Poststop: []specs.Hook{{Path: e.bin,
				Args: []string{"imans", "hook", "poststop"}, Env: hookEnvVars}},
		},
		Annotations: map[string]string{"io.imans.enable": "true"},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"},
				{Type: "mount"}, {Type: "network"}},
		},
	}
	if uid > 0 {
		b.spec.Linux.Namespaces = append(b.spec.Linux.Namespaces,
			specs.LinuxNamespace{Type: "user"})
		b.spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uid, Size: 65536}}
		b.spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uid, Size: 65536}}
		// Without a cgroup namespace runc's rootful userns container is
		// fine; mounts of proc need the pid namespace, which is there.
		must(t, filepath.Walk(b.rootfs, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(uid), int(uid))
		}))
	}
	b.save(t)
	return b
}

func (b *bundle) writeScript(t *testing.T, script string) {
	t.Helper()
	path := filepath.Join(b.rootfs, "app", "demo.sh")
	// Replace, never rewrite in place: a new inode, as an attacker's
	// copy would be; ownership follows the rootfs.
	var st unix.Stat_t
	owner := unix.Lstat(filepath.Join(b.rootfs, "app"), &st) == nil
	must(t, os.WriteFile(path+".new", []byte(script), 0o755))
	if owner {
		os.Lchown(path+".new", int(st.Uid), int(st.Gid))
	}
	must(t, os.Rename(path+".new", path))
}

func (b *bundle) save(t *testing.T) {
	t.Helper()
	data, err := json.MarshalIndent(&b.spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(b.dir, "config.json"), data, 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// runResult is what a container run printed and how it ended.
type runResult struct {
	out  string
	err  error
	took time.Duration
}

// run runs the bundle under runtime ("runc" or "crun") as container id and
// waits for it, with a deadline.
func (e *hookEnv) run(runtime string, b *bundle, id string) runResult {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := e.runCmd(ctx, runtime, b, id)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		e.t.Fatalf("%s run %s: no end within %s (a hang)\n%s", runtime, id, runTimeout, out)
	}
	return runResult{out: string(out), err: err, took: time.Since(start)}
}

// runCmd is the command that runs a container: runc directly; crun in a
// private mount namespace without the cgroup v2 mount of the hybrid
// layout, which crun 1.8 refuses.
func (e *hookEnv) runCmd(ctx context.Context, runtime string, b *bundle, id string) *exec.Cmd {
	switch runtime {
	case "crun":
		script := fmt.Sprintf("umount /sys/fs/cgroup/unified 2>/dev/null; "+
			"exec crun --root %s run --bundle %s %s", e.runcRoot, b.dir, id)
		return exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
			"sh", "-c", script)
	default:
		return exec.CommandContext(ctx, "runc", "--root", e.runcRoot, "run",
			"--bundle", b.dir, id)
	}
}

// reportOf reads a container's report.
func (e *hookEnv) reportOf(id string) *report.Report {
	e.t.Helper()
	r, err := report.Read(filepath.Join(e.stateDir, "reports", id+".json"))
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// imans runs the imans binary with the test's folders.
func (e *hookEnv) imans(stdin []byte, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "IMANS_RUN_DIR="+e.runDir, "IMANS_STATE_DIR="+e.stateDir)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, s bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &s
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("imans %v: no end within %s", args, runTimeout)
	}
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return o.String(), s.String(), code
}

// listEntry is one entry of a binary ima-ng list as this test reads it,
// independently of package ima.
type listEntry struct {
	pcr    uint32
	name   string
	digest string // "algo:hex"
	data   []byte
}

// parseList reads a binary measurement list (host order, sha1 template
// digests, ima-ng template) field by field.
func parseList(t *testing.T, data []byte) []listEntry {
	t.Helper()
	var list []listEntry
	le := binary.LittleEndian
	for off := 0; off < len(data); {
		need := func(n int) {
			if off+n > len(data) {
				t.Fatalf("list truncated at byte %d (entry %d)", off, len(list))
			}
		}
		need(4 + 20 + 4)
		var e listEntry
		e.pcr = le.Uint32(data[off:])
		off += 4 + 20
		nl := int(le.Uint32(data[off:]))
		off += 4
		need(nl + 4)
		tmpl := string(data[off : off+nl])
		off += nl
		if tmpl != "ima-ng" {
			t.Fatalf("entry %d: template %q, want ima-ng", len(list), tmpl)
		}
		dl := int(le.Uint32(data[off:]))
		off += 4
		need(dl)
		e.data = data[off : off+dl]
		off += dl

		// d-ng: u32 len, "algo:" NUL digest; n-ng: u32 len, name NUL.
		d := e.data
		f1 := int(le.Uint32(d))
		dng := d[4 : 4+f1]
		i := bytes.IndexByte(dng, 0)
		e.digest = string(dng[:i]) + hex.EncodeToString(dng[i+1:])
		f2 := int(le.Uint32(d[4+f1:]))
		e.name = strings.TrimRight(string(d[8+f1:8+f1+f2]), "\x00")
		list = append(list, e)
	}
	return list
}

// replayPCR10 replays a list into PCR 10 of the sha1 and sha256 banks,
// each bank extended with its own hash of the template data (all ones for
// a violation's all-zero data digest is not expected in these tests).
func replayPCR10(list []listEntry) map[string]string {
	p1 := make([]byte, sha1.Size)
	p256 := make([]byte, sha256.Size)
	for _, e := range list {
		if e.pcr != 10 {
			continue
		}
		d1 := sha1.Sum(e.data)
		s1 := sha1.Sum(append(p1, d1[:]...))
		p1 = s1[:]
		d256 := sha256.Sum256(e.data)
		s256 := sha256.Sum256(append(p256, d256[:]...))
		p256 = s256[:]
	}
	return map[string]string{"sha1": hex.EncodeToString(p1),
		"sha256": hex.EncodeToString(p256)}
}

// checkWhole checks that a report's record is whole and that the TPM's
// PCR 10 is what this test computes from the report's copy of the list.
// It returns the list.
func checkWhole(t *testing.T, r *report.Report) []listEntry {
	t.Helper()
	if len(r.Incomplete) > 0 || r.Verdict == report.Incomplete {
		t.Fatalf("report %s incomplete: %q", r.Info.ContainerID, r.Incomplete)
	}
	data, err := os.ReadFile(r.Info.BinaryLog)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != r.TPM.LogSHA256 {
		t.Errorf("list sha256 %s, report says %s", got, r.TPM.LogSHA256)
	}
	list := parseList(t, data)
	if len(list) != r.TPM.Entries {
		t.Errorf("list has %d entries, report says %d", len(list), r.TPM.Entries)
	}
	want := replayPCR10(list)
	for _, bank := range []string{"sha1", "sha256"} {
		if r.TPM.PCR10[bank] != want[bank] {
			t.Errorf("%s: tpm pcr10 %s %s, independent replay %s",
				r.Info.ContainerID, bank, r.TPM.PCR10[bank], want[bank])
		}
		evmctlAccepts(t, r.Info.BinaryLog, bank, r.TPM.PCR10[bank])
	}
	return list
}

// evmctlAccepts checks with evmctl that the list replays to the PCR 10
// value the report has for one bank. evmctl wants every PCR in its file;
// the container's TPM has only PCR 10 extended.
func evmctlAccepts(t *testing.T, list, bank, pcr10 string) {
	t.Helper()
	evmctl := testenv.Command(t, "evmctl")
	var b strings.Builder
	for i := 0; i < 24; i++ {
		v := strings.Repeat("0", len(pcr10))
		if i == 10 {
			v = pcr10
		}
		fmt.Fprintf(&b, "PCR-%02d: %s\n", i, v)
	}
	file := filepath.Join(t.TempDir(), bank+".pcrs")
	must(t, os.WriteFile(file, []byte(b.String()), 0o600))
	out, err := exec.Command(evmctl, "ima_measurement", "--pcrs", bank+","+file, list).
		CombinedOutput()
	if err != nil {
		t.Errorf("evmctl rejects %s against pcr10 %s %s: %v\n%s", list, bank, pcr10, err, out)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// findEntry returns the list's entries for a path.
func findEntry(list []listEntry, name string) []listEntry {
	var out []listEntry
	for _, e := range list {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

// runFolders lists the run folders left in the test's run folder.
func (e *hookEnv) runFolders() []string {
	entries, _ := os.ReadDir(e.runDir)
	var dirs []string
	for _, d := range entries {
		if d.Name() == ".tpm" {
			// The containers' TPM folders: any left is a leftover.
			tpms, _ := os.ReadDir(filepath.Join(e.runDir, ".tpm"))
			for _, x := range tpms {
				dirs = append(dirs, ".tpm/"+x.Name())
			}
			continue
		}
		if d.IsDir() {
			dirs = append(dirs, d.Name())
		}
	}
	return dirs
}
