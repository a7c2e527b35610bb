package shim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// RuntimeEnv names the environment variable that lists the runtimes the
// wrapper may hand commands to, in order, separated by commas, colons or
// spaces: names looked up in PATH or absolute paths.
const RuntimeEnv = "IMANS_RUNTIME"

// RuntimeConf is the file read when RuntimeEnv is unset: one runtime a
// line, '#' starts a comment.
const RuntimeConf = "/etc/imans/runtime.conf"

// DefaultRuntimes is the list used when neither RuntimeEnv nor
// RuntimeConf names any runtime. Candidates returns a copy of it.
var DefaultRuntimes = []string{"runc", "crun"}

// ErrNoRuntime is returned when no runtime of the list exists other than
// the wrapper itself.
var ErrNoRuntime = errors.New("no OCI runtime found")

// Candidates returns the runtimes to try, from env (the value of
// RuntimeEnv, may be empty), else the config file at conf, else the
// defaults. A missing config file is not an error; an unreadable one is.
func Candidates(env, conf string) ([]string, error) {
	if list := splitList(env); len(list) > 0 {
		return list, nil
	}

	f, err := os.Open(conf)
	if errors.Is(err, os.ErrNotExist) {
		return slices.Clone(DefaultRuntimes), nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtime list: %w", err)
	}
	defer f.Close()
	list, err := readConf(f)
	if err != nil {
		return nil, fmt.Errorf("runtime list %s: %w", conf, err)
	}
	if len(list) == 0 {
		return slices.Clone(DefaultRuntimes), nil
	}
	return list, nil
}

func readConf(r io.Reader) ([]string, error) {
	var list []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		list = append(list, splitList(line)...)
	}
	return list, sc.Err()
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ':' || r == ' ' || r == '\t'
	})
}

// fallbackPath is searched for a runtime named without a folder when PATH
// does not have it: podman's conmon runs the runtime with a PATH that may
// not lead to runc.
var fallbackPath = []string{
	"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
}

// FindRuntime returns the absolute path of the first candidate that
// exists and is not the file self (the wrapper's own executable, compared
// by device and inode after following links, so that a runtime list or a
// PATH that leads back to the wrapper cannot make it exec itself). A name
// without a slash is looked up in PATH, then in fallbackPath.
func FindRuntime(candidates []string, self string) (string, error) {
	selfInfo, err := os.Stat(self)
	if err != nil {
		return "", fmt.Errorf("find runtime: %w", err)
	}

	var tried []string
	for _, c := range candidates {
		path, err := lookPath(c)
		if err != nil {
			why := " (not found)"
			if fi, serr := os.Stat(c); serr == nil && strings.Contains(c, "/") {
				why = fmt.Sprintf(" (not an executable file: %s)", fi.Mode())
			}
			tried = append(tried, c+why)
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			tried = append(tried, c+" (not found)")
			continue
		}
		if os.SameFile(fi, selfInfo) {
			tried = append(tried, c+" (the wrapper itself)")
			continue
		}
		if b := filepath.Base(path); b == "imans" || b == "imans-runtime" {
			// The wrapper in another file, or the tool that holds it.
			tried = append(tried, c+" (an imans binary, not an OCI runtime)")
			continue
		}
		if !filepath.IsAbs(path) {
			if path, err = filepath.Abs(path); err != nil {
				return "", fmt.Errorf("find runtime: %w", err)
			}
		}
		return path, nil
	}
	return "", fmt.Errorf("%w: tried %s", ErrNoRuntime, strings.Join(tried, ", "))
}

func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return path, err
	}
	for _, dir := range fallbackPath {
		if path, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return path, nil
		}
	}
	return "", err
}
