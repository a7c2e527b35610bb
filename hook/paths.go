package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/imans-project/imans/shim"
)

// Environment variables that move imans's folders, for tests and for hosts
// that keep state elsewhere. Runtimes run hooks with the hook entry's env
// only, so set them there. They are named in package shim, whose runtime
// wrapper copies them into the hook entries it adds.
const (
	RunDirEnv   = shim.RunDirEnv
	StateDirEnv = shim.StateDirEnv
)

// Default folders.
const (
	DefaultRunDir   = "/run/imans"
	DefaultStateDir = "/var/lib/imans"
)

// Files of a container's run folder written by the hook and the collector
// (the backend's own files are named in package measure).
const (
	SpecFile     = "spec.json"
	RecordFile   = "record.json"
	PidFile      = "collector.pid"
	OutcomeFile  = "collector.json"
	CollectorLog = "collector.log"
	// KeptReportFile is where poststop writes the report when the
	// reports folder cannot be written; the run folder is then kept.
	KeptReportFile = "report.json"
	// TPMErrorFile holds why the container's TPM could not be launched.
	TPMErrorFile  = "tpm-error"
	reportsFolder = "reports"
	// tpmFolders holds the containers' TPM folders in the run
	// directory. CheckID refuses a leading '.', so no run folder has
	// that name.
	tpmFolders = ".tpm"
	// unmeasuredFolder holds the marks of runs whose createRuntime could
	// not make their run folder (Paths.Unmeasured). Its leading '.' keeps
	// it apart from run folders, as tpmFolders.
	unmeasuredFolder = ".unmeasured"
)

// TPMFolder returns the TPM folder (swtpm state, sockets, pid file) of a
// run folder: <run directory>/.tpm/ and the first 16 hex digits of the
// sha256 of the run folder's name. It is short so the swtpm's unix sockets
// fit in the 107 bytes of a socket path whatever the id's length.
func TPMFolder(runFolder string) string {
	sum := sha256.Sum256([]byte(filepath.Base(runFolder)))
	return filepath.Join(filepath.Dir(runFolder), tpmFolders,
		hex.EncodeToString(sum[:8]))
}

// TPMLink returns the TPM address the backend is given: a symlink next to
// TPMFolder to the swtpm's socket, made when the collector launches the
// swtpm (its socket takes connections from the start; the first command is
// answered once the TPM is up).
func TPMLink(runFolder string) string { return TPMFolder(runFolder) + ".sock" }

// KernelProbePrefix starts the names of the files the kernel probe's
// answer is kept in, directly in the run directory; the stale cleanup
// leaves them alone.
const KernelProbePrefix = "kernel-probe"

// Paths are the folders imans works in. The zero value is not usable: use
// DefaultPaths.
type Paths struct {
	// RunDir holds one run folder per running container (0700).
	RunDir string
	// StateDir holds the reports folder and the log file (0700).
	StateDir string
}

// DefaultPaths returns the default folders, overridden by IMANS_RUN_DIR and
// IMANS_STATE_DIR when set to absolute paths.
func DefaultPaths() Paths {
	p := Paths{RunDir: DefaultRunDir, StateDir: DefaultStateDir}
	if v := os.Getenv(RunDirEnv); filepath.IsAbs(v) {
		p.RunDir = filepath.Clean(v)
	}
	if v := os.Getenv(StateDirEnv); filepath.IsAbs(v) {
		p.StateDir = filepath.Clean(v)
	}
	return p
}

// Unmeasured returns the mark createRuntime leaves for poststop when it
// could not make the container's run folder: what is at Run(id) then is an
// earlier run's, and none of this run's evidence.
func (p Paths) Unmeasured(id string) string {
	return filepath.Join(p.RunDir, unmeasuredFolder, FileName(id))
}

// Run returns the run folder of a container (named by FileName).
func (p Paths) Run(id string) string { return filepath.Join(p.RunDir, FileName(id)) }

// Reports returns the reports folder.
func (p Paths) Reports() string { return filepath.Join(p.StateDir, reportsFolder) }

// Report returns the report file of a container (named by FileName).
func (p Paths) Report(id string) string {
	return filepath.Join(p.Reports(), FileName(id)+".json")
}

// ReportList returns where the copy of a container's binary list is kept.
func (p Paths) ReportList(id string) string {
	return filepath.Join(p.Reports(), FileName(id)+".log.bin")
}

// ReportASCIIList returns where the copy of a container's ASCII list is kept.
func (p Paths) ReportASCIIList(id string) string {
	return filepath.Join(p.Reports(), FileName(id)+".log.txt")
}

// LogFile returns the log file of the imans binary.
func (p Paths) LogFile() string { return filepath.Join(p.StateDir, "imans.log") }
