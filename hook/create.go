package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/report"
	"github.com/imans-project/imans/tpm"
)

// ReadyTimeout is how long createRuntime waits for the collector to be
// ready. Runtimes give a hook no timeout by default and engines commonly
// use tens of seconds; this stays well under that.
const ReadyTimeout = 10 * time.Second

// staleAge is how old a run folder without a live collector must be before
// another container's createRuntime removes it, so a folder being set up
// right now is never taken for stale.
const staleAge = 30 * time.Second

// maxTPMSocket is the longest unix socket path (sun_path less its NUL).
const maxTPMSocket = 107

// CreateConfig is what createRuntime decided for a container from its
// state and annotations.
type CreateConfig struct {
	// Mode is "audit" or "enforce".
	Mode string
	// Backend is measure.Kernel or measure.Fanotify (never Auto).
	Backend measure.Backend
	// PolicyText is the container's IMA policy.
	PolicyText string
	// Expect are the expectations poststop checks against.
	Expect report.Expectations
}

// NewRecord returns the record of a container's start.
func NewRecord(p Paths, st *specs.State, rootfs string, c CreateConfig) *Record {
	sum := sha256.Sum256([]byte(c.PolicyText))
	var pidStart uint64
	if st.Pid > 0 {
		// Zero when it cannot be read: poststop then cannot tell
		// whether the init still runs, and assumes it does not.
		pidStart, _ = startTime(st.Pid)
	}
	return &Record{
		ID:           st.ID,
		Bundle:       st.Bundle,
		Rootfs:       rootfs,
		Pid:          st.Pid,
		PidStart:     pidStart,
		Mode:         c.Mode,
		Backend:      string(c.Backend),
		Kernel:       KernelRelease(),
		Started:      time.Now().UTC(),
		PolicySHA256: hex.EncodeToString(sum[:]),
		Expect:       c.Expect,
	}
}

// PrepareRunDir makes a fresh run folder (0700) for a container. A folder
// left for the same id by an earlier run is ended first: its collector and
// TPM are stopped and it is removed. A report that run's poststop kept in
// the folder (its reports folder could not be written) is moved to the
// reports folder first; the new run's report replaces it there at this
// run's poststop. A kept report that can be neither moved nor dropped as
// superseded keeps its folder: PrepareRunDir fails, as it does when the
// folder will not go, and the caller marks the run unmeasured
// (MarkUnmeasured). What became of a kept report is returned for the log;
// nil when there was none.
func PrepareRunDir(p Paths, id string) (string, *Salvaged, error) {
	if err := os.MkdirAll(p.RunDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("run folder: %w", err)
	}
	dir := p.Run(id)
	var salvaged *Salvaged
	if fi, err := os.Lstat(dir); err == nil {
		if fi.IsDir() {
			salvaged = salvageKeptReport(p, dir)
			if salvaged != nil && !salvaged.moved() {
				// The folder is that report's only copy: it stays,
				// and this run goes unmeasured (MarkUnmeasured).
				return "", salvaged, fmt.Errorf("run folder: previous run of %s keeps "+
					"a report that could not be moved to the reports folder: %w",
					id, salvaged.Err)
			}
		}
		if err := removeStale(dir, fi); err != nil {
			return "", salvaged, fmt.Errorf("run folder: previous run of %s: %w", id, err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", salvaged, fmt.Errorf("run folder: %w", err)
	}
	// A mark left by an earlier run of the id whose poststop never came
	// is not this run's.
	os.Remove(p.Unmeasured(id))
	return dir, salvaged, nil
}

// unmeasuredMark is what MarkUnmeasured leaves for poststop.
type unmeasuredMark struct {
	Reason  string    `json:"reason"`
	Mode    string    `json:"mode"`
	Started time.Time `json:"started"`
}

// MarkUnmeasured records, for poststop, that this run of the container
// (in mode "audit" or "enforce") has no run folder of its own
// (PrepareRunDir failed with why): poststop then reports it incomplete with
// that reason and leaves whatever is at the run folder's path, an earlier
// run's, alone.
func MarkUnmeasured(p Paths, id, mode string, why error) error {
	path := p.Unmeasured(id)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("mark unmeasured: %w", err)
	}
	data, err := json.Marshal(unmeasuredMark{Reason: oneLine(why), Mode: mode,
		Started: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("mark unmeasured: %w", err)
	}
	return writeUnsynced(path, data)
}

// Salvaged says what became of a report kept in a run folder (KeptReportFile)
// when the folder was about to be removed.
type Salvaged struct {
	// Folder is the run folder's name.
	Folder string
	// ID and Verdict are the kept report's, when it could be read.
	ID      string
	Verdict report.Verdict
	// Path is where the report is now; empty when it could not be moved,
	// and Err says why, or when the reports folder holds a newer report
	// of the id, which supersedes it (Superseded): it is dropped, and the
	// log keeps its verdict and its list's sha256.
	Path       string
	Err        error
	Superseded bool
	LogSHA256  string
}

// moved reports whether the kept report needs its folder no more.
func (s *Salvaged) moved() bool { return s.Path != "" || s.Superseded }

// salvageKeptReport moves the report kept in run folder dir, if any, to the
// reports folder, with copies of the lists it names, as poststop would have
// written it. Nil when the folder keeps no report.
func salvageKeptReport(p Paths, dir string) *Salvaged {
	kept := filepath.Join(dir, KeptReportFile)
	if _, err := os.Lstat(kept); err != nil {
		return nil
	}
	s := &Salvaged{Folder: filepath.Base(dir)}
	r, err := report.Read(kept)
	if err != nil {
		s.Err = err
		return s
	}
	s.ID, s.Verdict, s.LogSHA256 = r.Info.ContainerID, r.Verdict, r.TPM.LogSHA256
	if FileName(r.Info.ContainerID) != s.Folder {
		s.Err = fmt.Errorf("%s: names container %q, whose run folder is not %s",
			kept, r.Info.ContainerID, s.Folder)
		return s
	}
	path := p.Report(r.Info.ContainerID)
	if newer, err := report.Read(path); err == nil && newer.Info.Started.After(r.Info.Started) {
		// The reports folder holds each id's newest report.
		s.Superseded = true
		return s
	}
	lists := startCopyLists(r, p, dir, r.Info.ContainerID)
	if err := r.WriteWhen(path, lists); err != nil {
		lists()
		s.Err = err
		return s
	}
	if err := lists(); err != nil {
		// The report is in place but names a list in the run folder,
		// which is about to go: say so rather than point at nothing.
		s.Err = fmt.Errorf("report moved to %s, but %w", path, err)
	}
	s.Path = path
	return s
}

// removeStale removes what is at a run folder's path: a folder with
// removeRunDir; anything else (a plain file, a symlink) with a single
// unlink that never follows a link.
func removeStale(dir string, fi os.FileInfo) error {
	if fi.IsDir() {
		return removeRunDir(dir)
	}
	return os.Remove(dir)
}

// removeRunDir stops what a run folder's processes and removes it.
func removeRunDir(dir string) error {
	if _, err := StopCollector(dir, time.Second); err != nil && !errors.Is(err, ErrNoCollector) {
		return err
	}
	if err := RemoveTPM(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// RemoveTPM stops a run folder's swtpm and removes its TPM folder and
// link. A TPM folder that is gone has no swtpm left to stop: the collector
// removes it only after its swtpm exited (and StopSwtpmDir, finding no pid
// file and no stop marker, would look through every process for one).
func RemoveTPM(dir string) error {
	tpmDir := TPMFolder(dir)
	if _, err := os.Lstat(tpmDir); err == nil {
		if err := tpm.StopSwtpmDir(tpmDir); err != nil {
			return err
		}
	}
	if err := os.Remove(TPMLink(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(tpmDir)
}

// LaunchTPM launches the container's swtpm in the run folder's TPM folder,
// links TPMLink to its socket, and returns a connection to it, made at
// once (the socket takes connections from the launch on; the first command
// waits for the TPM to be up). The swtpm ends with that connection, its
// first and only client: handed to the collector, whose backend extends
// through it, it goes when the collector goes, even killed, and with it
// the swtpm; a connection never handed on goes when this process ends.
// The collector adopts the swtpm (tpm.AdoptSwtpm) and stops it. A launch
// that fails leaves its reason in TPMErrorFile, for the collector's
// outcome.
func LaunchTPM(dir string) (*os.File, error) {
	conn, err := launchTPM(dir)
	if err != nil {
		writeUnsynced(filepath.Join(dir, TPMErrorFile), []byte(err.Error()+"\n"))
	}
	return conn, err
}

func launchTPM(dir string) (*os.File, error) {
	s, err := tpm.LaunchSwtpm(TPMFolder(dir), tpm.EndWithClient())
	if err != nil {
		return nil, err
	}
	sock := strings.TrimPrefix(s.Addr, "unix:")
	fail := func(err error) (*os.File, error) {
		s.Stop()
		return nil, fmt.Errorf("container tpm: %w", err)
	}
	if err := os.Symlink(sock, TPMLink(dir)); err != nil {
		return fail(err)
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	f, err := c.File()
	if err != nil {
		return fail(err)
	}
	return f, nil
}

// Setup writes the run folder's spec and record for a container whose
// folder PrepareRunDir made, and returns the collector's spec.
func Setup(dir string, st *specs.State, rec *Record, c CreateConfig) (*measure.Spec, error) {
	sock := filepath.Join(TPMFolder(dir), tpm.SwtpmSocket)
	if len(sock)+len(".ctrl") > maxTPMSocket {
		return nil, fmt.Errorf("tpm folder %s too long for a unix socket", TPMFolder(dir))
	}
	spec := &measure.Spec{
		ID:       st.ID,
		Dir:      dir,
		Pid:      st.Pid,
		Bundle:   st.Bundle,
		Rootfs:   rec.Rootfs,
		Backend:  c.Backend,
		Policy:   c.PolicyText,
		HashAlgo: "sha256",
		TPM:      "unix:" + TPMLink(dir),
	}
	if err := WriteJSON(dir, SpecFile, spec); err != nil {
		return nil, err
	}
	if err := WriteJSON(dir, RecordFile, rec); err != nil {
		return nil, err
	}
	return spec, nil
}

// Abandon records in the run folder why a container's measurement could
// not start (audit mode), so poststop reports incomplete with that reason.
// The collector and the TPM, if any, are stopped.
func Abandon(dir string, rec *Record, why error) error {
	StopCollector(dir, time.Second)
	// The TPM goes too: nothing will read it, and `crun run`, a
	// subreaper, would wait for its swtpm before poststop.
	RemoveTPM(dir)
	rec.Incomplete = append(rec.Incomplete, "measurement did not start: "+oneLine(why))
	return WriteJSON(dir, RecordFile, rec)
}

// Refuse ends a refused start (enforce mode): the run folder's collector
// and TPM are stopped and its files removed, and a record naming the
// refusal is left in it, so the poststop a runtime still runs reports
// incomplete with the real reason. That poststop, or the stale cleanup,
// removes the folder.
func Refuse(dir string, rec *Record, why error) error {
	if err := removeRunDir(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("run folder: %w", err)
	}
	rec.Incomplete = append(rec.Incomplete, "refused by createRuntime (enforce): "+oneLine(why))
	return WriteJSON(dir, RecordFile, rec)
}

// oneLine is err's text on one line: the reasons errors.Join puts on lines
// of their own (every annotation at fault, say) joined by "; ", as a
// report's reason and the hook's stderr line keep them.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// CleanStale removes run folders of containers that are gone: no live
// collector, and untouched for a while. It returns the names of the folders
// removed, and what became of the reports some of them kept (moved to the
// reports folder; a folder whose report could not be moved is left whole).
// Folders it cannot remove are left for the next time.
func CleanStale(p Paths) (removed []string, salvaged []Salvaged) {
	entries, err := os.ReadDir(p.RunDir)
	if err != nil {
		return nil, nil
	}
	for _, e := range entries {
		name := e.Name()
		if !isFileName(name) || strings.HasPrefix(name, KernelProbePrefix) {
			continue
		}
		dir := filepath.Join(p.RunDir, name)
		info, err := os.Lstat(dir)
		if err != nil || time.Since(info.ModTime()) < staleAge {
			continue
		}
		if !info.IsDir() {
			// No run folder is ever anything but a folder.
			if removeStale(dir, info) == nil {
				removed = append(removed, name)
			}
			continue
		}
		if pr, err := readPidFile(dir); err == nil && pr.alive() && collectorOf(pr.pid, dir) {
			continue
		}
		var rec Record
		if ReadJSON(dir, RecordFile, &rec) == nil && rec.initRunning() {
			continue
		}
		if s := salvageKeptReport(p, dir); s != nil {
			salvaged = append(salvaged, *s)
			if !s.moved() {
				continue
			}
		}
		if removeRunDir(dir) == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed, salvaged
}
