package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/imans-project/imans/internal/atomicfile"
)

// maxReportSize bounds a report file read back.
const maxReportSize = 64 << 20

// ErrSchema is wrapped when a report has a schema this package cannot read.
var ErrSchema = errors.New("unknown report schema")

// WriteFile writes data to path atomically: a temporary file in the same
// folder, written and fsynced, renamed over path, then the folder fsynced.
// The folder is created 0700 if missing; the file is 0600. A reader sees
// the old file or the whole new one, never a part.
func WriteFile(path string, data []byte) error {
	return writeFile(path, data, true)
}

// WriteFileDeferSync is WriteFile without the folder's fsync: the rename is
// durable once a later WriteFile in the same folder returns. It saves a
// folder fsync per file when several files go together.
func WriteFileDeferSync(path string, data []byte) error {
	return writeFile(path, data, false)
}

func writeFile(path string, data []byte, syncDir bool) error {
	return writeFileWhen(path, data, syncDir, nil)
}

func writeFileWhen(path string, data []byte, syncDir bool, ready func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600, NoSyncDir: !syncDir,
		Ready: ready})
}

// Write writes the report as indented JSON to path atomically (WriteFile).
func (r *Report) Write(path string) error {
	return r.WriteWhen(path, nil)
}

// WriteWhen is Write that, once the report's data is synced, waits for
// ready before the rename; an error from ready leaves path as it was. It
// lets files the report names be synced while the report is.
func (r *Report) WriteWhen(path string, ready func() error) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return writeFileWhen(path, append(data, '\n'), true, ready)
}

// Read reads a report file: the schema first, then the body of that
// schema's version.
func Read(path string) (*Report, error) {
	// O_NONBLOCK: opening a FIFO for reading would wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read report %s: not a regular file (%s)", path, fi.Mode().Type())
	}

	data, err := io.ReadAll(io.LimitReader(f, maxReportSize+1))
	if err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	if len(data) > maxReportSize {
		return nil, fmt.Errorf("read report %s: larger than 64 MiB", path)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return r, nil
}

// Parse decodes a report, checking its schema before its body, then that
// its verdict is the one its contents give (CheckVerdict).
func Parse(data []byte) (*Report, error) {
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	if head.Schema != Schema {
		return nil, fmt.Errorf("%w %q (this imans reads %q)", ErrSchema, head.Schema, Schema)
	}

	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	switch r.Verdict {
	case Pass, Fail, Incomplete:
	default:
		return nil, fmt.Errorf("decode report: unknown verdict %q", r.Verdict)
	}
	if err := r.CheckVerdict(); err != nil {
		return nil, err
	}
	return &r, nil
}
