package hook

import (
	"os"
	"path/filepath"
)

// Environment variables that move imans's folders, for tests and for hosts
// that keep state elsewhere. Runtimes run hooks with the hook entry's env
// only, so set them there.
const (
	RunDirEnv   = "IMANS_RUN_DIR"
	StateDirEnv = "IMANS_STATE_DIR"
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
	TPMDir       = "tpm"
	// TPMLink is the TPM address the backend is given: a symlink to the
	// swtpm's socket, made once the swtpm answers. swtpm serves one
	// client at a time, so a backend connecting early would block the
	// start's own probe.
	TPMLink       = "tpm.sock"
	reportsFolder = "reports"
)

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
