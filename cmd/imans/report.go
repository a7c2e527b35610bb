package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/report"
)

// reportCommand is `imans report show ID|FILE [--json]`.
func reportCommand() *cli.Command {
	return &cli.Command{
		Name:   "report",
		Usage:  "read container reports",
		Action: unknownSubcommand(2),
		Subcommands: []*cli.Command{
			{
				Name:      "show",
				Usage:     "summarize a report: the verdict, then each finding",
				ArgsUsage: "ID|FILE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
					&cli.BoolFlag{Name: "check", Usage: "exit with the verdict: 0 pass, " +
						"3 fail, 4 incomplete (1 and 2 stay errors)"},
				},
				Action: reportShow,
			},
		},
	}
}

func reportShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("imans report show: want one container id or report file", 2)
	}
	r, err := reportLoad(c.Args().First())
	if err != nil {
		return err
	}
	if warning := listMismatch(r); warning != "" {
		fmt.Fprintln(os.Stderr, "imans: warning: "+warning)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = r.Summary(os.Stdout)
	}
	if err != nil || !c.Bool("check") {
		return err
	}
	return verdictExit(r.Verdict)
}

// listMismatch says when the binary list a report names is not the list
// the report was made from (its sha256 is not log_sha256): a copy replaced
// since, which the report's evidence does not cover. Empty when it is, or
// when there is no list to check.
func listMismatch(r *report.Report) string {
	if r.Info.BinaryLog == "" || r.TPM.LogSHA256 == "" {
		return ""
	}
	f, err := openList(r.Info.BinaryLog)
	if err != nil {
		return "the report's " + err.Error()
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return fmt.Sprintf("the report's list %s: %v", r.Info.BinaryLog, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != r.TPM.LogSHA256 {
		return fmt.Sprintf("the list at %s is not this report's (sha256 %s, the report "+
			"has %s): it was replaced since", r.Info.BinaryLog, got, r.TPM.LogSHA256)
	}
	return ""
}

// openList opens the list a report names, which must be a regular file.
// O_NONBLOCK: the path comes from the report, and opening a FIFO for
// reading would wait for a writer.
func openList(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("list %s: not a regular file", path)
	}
	return f, nil
}

// Exit statuses of `imans report show --check`, after 1 (an error) and 2
// (a bad command line).
const (
	exitFail       = 3
	exitIncomplete = 4
)

// verdictExit is the exit of `report show --check` for a verdict: only a
// pass exits 0. The summary is printed already, so the exit says nothing.
func verdictExit(v report.Verdict) error {
	switch v {
	case report.Pass:
		return nil
	case report.Fail:
		return cli.Exit("", exitFail)
	default:
		return cli.Exit("", exitIncomplete)
	}
}

// reportLoad reads a report named by file path (anything with a '/') or by
// container id (kept in its run folder, or in the reports folder). An id
// with no report that names a .json file in the current folder reads that
// file: ids may end in .json too, and are looked for first.
func reportLoad(arg string) (*report.Report, error) {
	if arg == "" {
		return nil, errors.New("no container id or report file: the argument is empty")
	}
	if strings.Contains(arg, "/") {
		return report.Read(arg)
	}
	r, err := reportOfID(arg)
	if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(arg, ".json") {
		if _, serr := os.Stat(arg); serr == nil {
			return report.Read(arg)
		}
	}
	return r, err
}

// reportOfID reads the newest report of container id: the reports
// folder's, or one kept in the id's run folder (poststop could not write
// the reports folder) when that one started later.
func reportOfID(arg string) (*report.Report, error) {
	// Any id a runtime accepts has a report: the paths name ids that are
	// not safe file names by their hash (hook.FileName).
	paths := hook.DefaultPaths()
	runDir := paths.Run(arg)
	keptPath := filepath.Join(runDir, hook.KeptReportFile)
	kept, kerr := report.Read(keptPath)
	if kerr != nil && !errors.Is(kerr, fs.ErrNotExist) && !errors.Is(kerr, syscall.ENOTDIR) {
		return nil, kerr
	}
	r, err := report.Read(paths.Report(arg))
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil, err
	}

	switch {
	case kept != nil && (r == nil || kept.Info.Started.After(r.Info.Started)):
		fmt.Fprintf(os.Stderr, "imans: showing %s, kept there because poststop could not "+
			"write the reports folder (%s)\n", keptPath, paths.Reports())
		return kept, nil
	case r == nil:
		if fi, serr := os.Stat(runDir); serr == nil && fi.IsDir() {
			return nil, fmt.Errorf("%w (%s has a run folder, %s: its run has not "+
				"reached its poststop)", err, arg, runDir)
		}
		return nil, err
	case kept != nil:
		fmt.Fprintf(os.Stderr, "imans: %s keeps an older report of %s, which the next "+
			"start moves or drops\n", keptPath, arg)
	default:
		// A run folder whose record is this report's run is one that
		// is being removed, or that its poststop never removed.
		var rec hook.Record
		if rerr := hook.ReadJSON(runDir, hook.RecordFile, &rec); rerr == nil &&
			!rec.Started.Equal(r.Info.Started) {
			fmt.Fprintf(os.Stderr, "imans: %s has a run folder (%s) of a later run: if "+
				"it is in progress, this report is of an earlier one\n", arg, runDir)
		}
	}
	return r, nil
}
