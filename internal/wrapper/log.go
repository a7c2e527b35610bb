package wrapper

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// newLogger writes the wrapper's own messages as the runtime it
// stands for would: to the --log file when given (opened only when there
// is something to say), as JSON lines {"level","msg","time"} with runc's
// lowercase levels when --log-format is json, else as text. Errors also go
// to stderr, where engines without a log file look.
func newLogger(path, format string) *slog.Logger {
	w := &lazyLog{path: path}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: runcAttr}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(&stderrErrors{Handler: h, logFile: path != ""})
}

// runcAttr spells levels and times the way runc's log lines do.
func runcAttr(groups []string, a slog.Attr) slog.Attr {
	switch {
	case len(groups) > 0:
		return a
	case a.Key == slog.LevelKey:
		return slog.String(slog.LevelKey, strings.ToLower(a.Value.String()))
	case a.Key == slog.TimeKey:
		return slog.String(slog.TimeKey, a.Value.Time().Format(time.RFC3339))
	}
	return a
}

// lazyLog appends each write to a file opened for that write only; without
// a path it discards. Its errors are ignored: the wrapper must not fail a
// container because its log cannot be written.
type lazyLog struct{ path string }

func (l *lazyLog) Write(p []byte) (int, error) {
	if l.path == "" {
		return len(p), nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return len(p), nil
	}
	defer f.Close()
	f.Write(p)
	return len(p), nil
}

// stderrErrors copies error records to stderr, as one plain line, and
// passes records to the log file's handler only when there is a log file.
// The wrapper logs without attributes, so With and WithGroup are not
// wrapped.
type stderrErrors struct {
	slog.Handler
	logFile bool
}

func (h *stderrErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		fmt.Fprintln(io.Writer(os.Stderr), r.Message)
	}
	if !h.logFile {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}
