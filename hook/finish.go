package hook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/internal/atomicfile"
	"github.com/imans-project/imans/measure"
	"github.com/imans-project/imans/report"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Deadlines of poststop's steps. Together they stay well under a runtime's
// default hook timeout.
const (
	// StopTimeout is how long a collector may take to drain and exit.
	StopTimeout = 5 * time.Second
)

// Banks are the PCR banks imans reads and replays.
var Banks = measure.PCR10Banks

// ErrAlreadyReported is returned by Finish when there is no run folder but
// a report for the container exists: poststop ran already.
var ErrAlreadyReported = errors.New("no run folder and a report exists: already reported")

// Outcome is what the collector process writes into its run folder when it
// stops: the backend's status and anything that went wrong around it.
type Outcome struct {
	Status measure.Status `json:"status"`
	// Error is the collector's error, if Run returned one.
	Error string `json:"error,omitempty"`
	// TPMError is set when the container's TPM could not be started.
	// (PCR 10, read after the last extend, is in Status.)
	TPMError string `json:"tpm_error,omitempty"`
	// ContainerExited is true when the collector stopped because the
	// container's init exited, before any stop request.
	ContainerExited bool      `json:"container_exited,omitempty"`
	Stopped         time.Time `json:"stopped"`
	// Report is the report the collector wrote itself (WriteEarlyReport)
	// before this outcome, when the container's init had exited.
	Report string `json:"report,omitempty"`
}

// Finished is the result of Finish.
type Finished struct {
	Report *report.Report
	// Path is where the report was written.
	Path string
	// Stop says how the collector ended.
	Stop StopResult
	// Kept is true when the run folder was kept (the report could not be
	// written to the reports folder and went into the run folder).
	Kept bool
}

// Finish ends a container's measurement and writes its report: it stops
// the collector, reads PCR 10 from the container's TPM, replays the list,
// compares both with the expectations, writes the report atomically while
// it stops the TPM and removes its folder, then removes the run folder.
// Every problem with the evidence becomes an incomplete reason in the
// report, not an error; an error means no report could be written anywhere
// (or ErrAlreadyReported).
//
// When the reports folder cannot be written, the report goes to the run
// folder (KeptReportFile), which is kept, and the error says so.
func Finish(p Paths, st *specs.State) (*Finished, error) {
	if res, marked, err := finishUnmeasured(p, st); marked {
		return res, err
	}
	dir := p.Run(st.ID)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return finishWithoutRecord(p, st)
	}
	if _, err := os.Lstat(filepath.Join(dir, KeptReportFile)); err == nil {
		// A finished run's folder, whose report could not be written
		// to the reports folder then: it is no evidence of this run.
		return finishKept(p, dir)
	}

	r := &report.Report{Schema: report.Schema, Findings: []report.Finding{}}
	res := &Finished{Report: r, Path: p.Report(st.ID)}
	var rec Record
	if err := ReadJSON(dir, RecordFile, &rec); err != nil {
		r.Incomplete = append(r.Incomplete, "createRuntime record missing: "+err.Error())
		rec = Record{ID: st.ID, Bundle: st.Bundle}
	}
	fillInfo(r, rec)

	r.Incomplete = append(r.Incomplete, rec.Incomplete...)
	if len(rec.Incomplete) > 0 {
		// Measurement never started: the recorded reasons say why,
		// and there is no list or TPM worth reading.
		res.Stop, _ = StopCollector(dir, StopTimeout)
		r.Info.Stopped = time.Now().UTC()
	} else {
		if rec.initRunning() {
			// Runtimes run poststop once the container has stopped;
			// a poststop before that ends the measurement early.
			r.Incomplete = append(r.Incomplete, fmt.Sprintf("the container's init "+
				"(pid %d) was still running at poststop: what it does after the stop "+
				"is not measured", rec.Pid))
		}
		res.Stop = stopCollector(r, dir)
		if early := readEarlyReport(r, dir, res.Path, st.ID); early != nil {
			res.Report = early
			return res, removeRunFolder(dir)
		}
		out := readOutcome(r, dir, rec)
		r.Info.Stopped = time.Now().UTC()
		compareEvidence(r, dir, rec, out)
	}

	lists := startCopyLists(r, p, dir, st.ID)
	r.Decide()

	// The TPM is no evidence any more (its PCR 10 is in the report): it
	// is stopped and its folder removed while the report is synced.
	tpmErr := make(chan error, 1)
	go func() {
		tpmErr <- RemoveTPM(dir)
	}()
	werr := r.WriteWhen(res.Path, lists)
	if werr != nil {
		// A copy that failed names the list in the run folder, which
		// is kept with the report in it.
		lists()
		res.Kept = true
		res.Path = filepath.Join(dir, KeptReportFile)
		if err := r.Write(res.Path); err != nil {
			werr = fmt.Errorf("%w; and in the run folder: %w", werr, err)
			res.Path = ""
		}
	}

	stopErr := <-tpmErr
	if werr != nil {
		return res, fmt.Errorf("write report: %w", werr)
	}
	if stopErr != nil {
		// The report is written; a swtpm that would not stop is logged
		// by the caller, and the folder is left for the next cleanup.
		return res, fmt.Errorf("report written, but stop tpm: %w", stopErr)
	}
	if err := os.RemoveAll(dir); err != nil {
		return res, fmt.Errorf("report written, but remove run folder: %w", err)
	}
	return res, nil
}

// removeRunFolder stops the TPM and removes the run folder of a container
// whose report is written.
func removeRunFolder(dir string) error {
	if err := RemoveTPM(dir); err != nil {
		// Logged by the caller; the folder is left for the next cleanup.
		return fmt.Errorf("report written, but stop tpm: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("report written, but remove run folder: %w", err)
	}
	return nil
}

// WriteEarlyReport is poststop's work done by the collector as soon as the
// container's init has exited, while the runtime is still tearing the
// container down: the same report, from the same evidence (the outcome
// out, not yet written, and the run folder dir), written durably to the
// reports folder of p. It returns the report's path for the outcome.
// poststop then only checks that the collector ended well, reads the
// report back and removes the run folder. Anything short of that (an
// error here, a collector that did not end on its own) leaves the whole
// work to poststop, as before.
func WriteEarlyReport(p Paths, dir string, out Outcome) (string, error) {
	if !out.ContainerExited {
		return "", errors.New("early report: the container's init has not exited")
	}
	var rec Record
	if err := ReadJSON(dir, RecordFile, &rec); err != nil {
		return "", fmt.Errorf("early report: %w", err)
	}
	if len(rec.Incomplete) > 0 {
		return "", errors.New("early report: measurement never started")
	}
	r := &report.Report{Schema: report.Schema, Findings: []report.Finding{}}
	fillInfo(r, rec)
	applyOutcome(r, out)
	r.Info.Stopped = time.Now().UTC()
	compareEvidence(r, dir, rec, out)
	lists := startCopyLists(r, p, dir, rec.ID)
	r.Decide()
	path := p.Report(rec.ID)
	if err := r.WriteWhen(path, lists); err != nil {
		lists()
		return "", fmt.Errorf("early report: %w", err)
	}
	return path, nil
}

// readEarlyReport returns the report the collector wrote itself, when it
// did and then ended well (stopCollector added no reason to r), read back
// from path; otherwise nil, and poststop writes the report.
func readEarlyReport(r *report.Report, dir, path, id string) *report.Report {
	if len(r.Incomplete) > 0 {
		return nil
	}
	var out Outcome
	if err := ReadJSON(dir, OutcomeFile, &out); err != nil || out.Report != path ||
		!out.ContainerExited {
		return nil
	}
	early, err := report.Read(path)
	if err != nil || early.Info.ContainerID != id {
		return nil
	}
	return early
}

// compareEvidence takes PCR 10, replays the list and compares it with the
// expectations, recording every gap as a reason.
func compareEvidence(r *report.Report, dir string, rec Record, out Outcome) {
	// The collector's backend reads PCR 10 after its last extend, over
	// the TPM's only connection; the swtpm ends with it, so there is no
	// TPM left for poststop to read.
	switch {
	case len(out.Status.PCR10) > 0:
		r.TPM.PCR10 = out.Status.PCR10
	case out.Status.PCRError != "":
		r.Incomplete = append(r.Incomplete, out.Status.PCRError)
	case out.TPMError != "":
		// Already a reason (readOutcome).
	default:
		r.Incomplete = append(r.Incomplete, "pcr 10 not known: the collector recorded "+
			"none, and the container's tpm ends with the collector")
	}
	list := replayList(r, dir)
	checkReplay(r)

	findings, err := report.Compare(list, rec.Expect, r.TPM.PCR10)
	if err != nil {
		r.Incomplete = append(r.Incomplete, err.Error())
	}
	r.Findings = append(r.Findings, findings...)
}

// finishKept ends a poststop that finds a finished run's folder, which
// keeps the report its own poststop could not write to the reports folder:
// that report is moved there now (or dropped as superseded, see
// salvageKeptReport) and the folder removed; while it cannot be moved, the
// folder stays. The earlier run's evidence is never reported again.
func finishKept(p Paths, dir string) (*Finished, error) {
	s := salvageKeptReport(p, dir)
	if !s.moved() {
		return nil, fmt.Errorf("an earlier run's report kept in %s could not be moved to "+
			"the reports folder: %w", dir, s.Err)
	}
	if err := removeRunFolder(dir); err != nil {
		return nil, err
	}
	if s.Superseded {
		return nil, fmt.Errorf("%w: an earlier run's report kept in %s (verdict %s, list "+
			"sha256 %s) is older than the reports folder's, and dropped", ErrAlreadyReported,
			dir, s.Verdict, s.LogSHA256)
	}
	return nil, fmt.Errorf("%w: an earlier run's report kept in %s is now %s (verdict %s)",
		ErrAlreadyReported, dir, s.Path, s.Verdict)
}

// finishUnmeasured ends a run whose createRuntime could not make its run
// folder (MarkUnmeasured): an incomplete report with the mark's reason. The
// run folder's path, which holds an earlier run's folder if anything, is
// not touched: the stale cleanup deals with it. The mark stays until the
// next createRuntime of the id makes its run folder: another poststop of
// the same run (runc runs one after an enforce refusal the hook already
// reported) finds its report written and does nothing. marked is false
// when there is no mark.
func finishUnmeasured(p Paths, st *specs.State) (res *Finished, marked bool, err error) {
	path := p.Unmeasured(st.ID)
	data, rerr := os.ReadFile(path)
	if errors.Is(rerr, os.ErrNotExist) {
		return nil, false, nil
	}
	var mark unmeasuredMark
	if rerr == nil {
		rerr = json.Unmarshal(data, &mark)
	}
	reason := mark.Reason
	if rerr != nil {
		reason = "its mark is unreadable: " + rerr.Error()
	}
	if done, err := report.Read(p.Report(st.ID)); err == nil && rerr == nil &&
		done.Info.Started.Equal(mark.Started) {
		return nil, true, ErrAlreadyReported
	}

	r := unmeasuredReport(st, "not measured: createRuntime could not make the run folder: "+
		reason)
	r.Info.Mode = mark.Mode
	r.Info.Started = mark.Started
	res = &Finished{Report: r, Path: p.Report(st.ID)}
	if err := r.Write(res.Path); err != nil {
		// The log has the reason; a later poststop of the run may
		// write it.
		res.Path = ""
		return res, true, fmt.Errorf("write report: %w", err)
	}
	return res, true, nil
}

// finishWithoutRecord handles a poststop with no run folder: a second
// poststop is a no-op; a poststop whose createRuntime never ran leaves an
// incomplete report, so the absence of measurement is on record.
func finishWithoutRecord(p Paths, st *specs.State) (*Finished, error) {
	path := p.Report(st.ID)
	if _, err := os.Stat(path); err == nil {
		return nil, ErrAlreadyReported
	}

	r := unmeasuredReport(st, "no measurement record: createRuntime did not run for "+
		"this container, or its run folder was removed")
	if err := r.Write(path); err != nil {
		return nil, fmt.Errorf("write report: %w", err)
	}
	return &Finished{Report: r, Path: path}, nil
}

// unmeasuredReport is the report of a run with no evidence at all, for
// the reason given: incomplete, stopped now.
func unmeasuredReport(st *specs.State, reason string) *report.Report {
	r := &report.Report{Schema: report.Schema, Findings: []report.Finding{}}
	r.Info.ContainerID = st.ID
	r.Info.Bundle = st.Bundle
	r.Info.Kernel = KernelRelease()
	r.Info.Stopped = time.Now().UTC()
	r.Incomplete = []string{reason}
	r.Decide()
	return r
}

func fillInfo(r *report.Report, rec Record) {
	r.Info.ContainerID = rec.ID
	r.Info.Bundle = rec.Bundle
	r.Info.Rootfs = rec.Rootfs
	r.Info.Mode = rec.Mode
	r.Info.Backend = rec.Backend
	r.Info.Kernel = rec.Kernel
	r.Info.Started = rec.Started
	r.Info.PolicySHA256 = rec.PolicySHA256
	r.Info.Expectations = rec.Expect
}

// stopCollector stops the collector and turns how it ended into reasons. A
// collector that ended on its own when the container exited, leaving its
// outcome, ended well.
func stopCollector(r *report.Report, dir string) StopResult {
	res, err := StopCollector(dir, StopTimeout)
	var out Outcome
	endedWell := ReadJSON(dir, OutcomeFile, &out) == nil && out.ContainerExited
	switch {
	case err != nil:
		r.Incomplete = append(r.Incomplete, err.Error())
	case !res.WasRunning && endedWell:
	case !res.WasRunning:
		r.Incomplete = append(r.Incomplete, fmt.Sprintf(
			"collector %d was not running at stop: it died or was killed during the run%s",
			res.Pid, collectorSaid(dir)))
	case res.Killed:
		r.Incomplete = append(r.Incomplete, fmt.Sprintf(
			"collector %d did not drain within %s and was killed%s", res.Pid, StopTimeout,
			collectorSaid(dir)))
	}
	return res
}

// collectorSaid returns the last line the collector wrote on stderr, if
// any, for an incomplete reason.
func collectorSaid(dir string) string {
	if line := lastLine(filepath.Join(dir, CollectorLog)); line != "" {
		return " (its last words: " + line + ")"
	}
	return ""
}

// readOutcome reads the collector's outcome into r.
func readOutcome(r *report.Report, dir string, rec Record) Outcome {
	var out Outcome
	if err := ReadJSON(dir, OutcomeFile, &out); err != nil {
		if len(rec.Incomplete) == 0 {
			r.Incomplete = append(r.Incomplete, "collector left no outcome: "+err.Error())
		}
		return Outcome{}
	}
	applyOutcome(r, out)
	return out
}

// applyOutcome records in r what the collector's outcome says.
func applyOutcome(r *report.Report, out Outcome) {
	if out.Status.Backend != "" {
		r.Info.Backend = string(out.Status.Backend)
	}
	r.Info.Violations = out.Status.Violations
	if out.Error != "" {
		r.Incomplete = append(r.Incomplete, "collector: "+out.Error)
	}
	if out.TPMError != "" {
		r.Incomplete = append(r.Incomplete, "container tpm: "+out.TPMError)
	}
	r.Incomplete = append(r.Incomplete, out.Status.Incomplete...)
}

// replayList reads the binary list, replays it per bank and returns its
// entries for the comparison. A list that does not parse to its end makes
// the report incomplete; the entries before the bad one are kept.
func replayList(r *report.Report, dir string) []report.Measured {
	f, err := os.Open(filepath.Join(dir, measure.BinaryListFile))
	if err != nil {
		r.Incomplete = append(r.Incomplete, "measurement list: "+err.Error())
		return nil
	}
	defer f.Close()

	hashes := make([]ima.Hash, len(Banks))
	for i, b := range Banks {
		hashes[i] = ima.Hash(b)
	}
	replay := ima.NewReplay(hashes...)
	sum := sha256.New()
	rd := ima.NewBinaryReader(io.TeeReader(f, sum))
	var list []report.Measured
	for i := 0; ; i++ {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.Incomplete = append(r.Incomplete, fmt.Sprintf(
				"measurement list truncated or malformed at entry %d: %v", i, err))
			break
		}
		if err := replay.Extend(e); err != nil {
			r.Incomplete = append(r.Incomplete, fmt.Sprintf("replay entry %d: %v", i, err))
			break
		}
		list = append(list, measured(i, e))
	}
	io.Copy(sum, f)

	r.TPM.Entries = len(list)
	r.TPM.LogSHA256 = hex.EncodeToString(sum.Sum(nil))
	r.TPM.ReplayPCR10 = map[string]string{}
	for _, b := range hashes {
		r.TPM.ReplayPCR10[string(b)] = hex.EncodeToString(replay.PCR(b, 10))
	}
	return list
}

// measured turns a list entry into what the comparison needs.
func measured(i int, e *ima.Entry) report.Measured {
	m := report.Measured{Index: i, Violation: e.IsViolation()}
	if name, err := e.FileName(); err == nil {
		m.Path = name
	}
	if algo, d, err := e.FileDigest(); err == nil {
		m.Digest = string(algo) + ":" + hex.EncodeToString(d)
	}
	return m
}

// checkReplay compares the replayed PCR 10 with the TPM's, bank by bank
// (report.Evidence.CompareBanks).
func checkReplay(r *report.Report) {
	if len(r.TPM.PCR10) == 0 || len(r.TPM.ReplayPCR10) == 0 {
		return
	}
	shared, differ := r.TPM.CompareBanks()
	for _, b := range differ {
		r.Incomplete = append(r.Incomplete, fmt.Sprintf(
			"replay of the list gives pcr10 %s %s but the tpm has %s",
			b, r.TPM.ReplayPCR10[b], r.TPM.PCR10[b]))
	}
	if len(shared) == 0 {
		r.Incomplete = append(r.Incomplete, "the tpm's pcr10 and the replay of the list "+
			"share no bank")
	}
	r.TPM.ListMatches = len(shared) > 0 && len(differ) == 0
}

// writeUnsynced writes data to path through a temporary file and a rename,
// mode 0600, without fsync.
func writeUnsynced(path string, data []byte) error {
	return atomicfile.Write(path, data, atomicfile.Options{NoSync: true})
}

// startCopyLists keeps the lists next to the report, since the run folder
// goes. It names the copies in r at once and makes them in the background,
// so the binary list is synced while the report is; the function it
// returns waits for them (report.WriteWhen calls it before the report's
// rename) and may be called again. Where a copy failed, it names the list
// in the run folder in r instead and returns an error, which tells the
// caller to keep that folder.
func startCopyLists(r *report.Report, p Paths, dir, id string) func() error {
	// The binary list is the evidence: fsynced, and the report's own
	// write, after it, syncs the folder. The ASCII list is a convenience
	// derived from the same entries: renamed into place, not fsynced.
	pairs := []struct {
		from, to string
		field    *string
		write    func(string, []byte) error
	}{
		{measure.BinaryListFile, p.ReportList(id), &r.Info.BinaryLog, report.WriteFileDeferSync},
		{measure.ASCIIListFile, p.ReportASCIIList(id), &r.Info.ASCIILog, writeUnsynced},
	}
	failed := make([]bool, len(pairs))
	done := make(chan struct{})
	for i := range pairs {
		pr := &pairs[i]
		pr.from = filepath.Join(dir, pr.from)
		if _, err := os.Lstat(pr.from); err == nil {
			*pr.field = pr.to
		}
	}
	go func() {
		defer close(done)
		for i, pr := range pairs {
			data, err := os.ReadFile(pr.from)
			if err != nil {
				continue
			}
			failed[i] = pr.write(pr.to, data) != nil
		}
	}()
	var once sync.Once
	var result error
	return func() error {
		once.Do(func() {
			<-done
			for i, pr := range pairs {
				if failed[i] {
					*pr.field = pr.from
					result = errors.New("lists not copied next to the report")
				}
			}
		})
		return result
	}
}
