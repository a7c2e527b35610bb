package shim

import (
	"path/filepath"
	"slices"
	"strings"
)

// Invocation is what the wrapper needs to know of a runtime command line:
// the command, where its bundle is, and where the runtime logs.
type Invocation struct {
	// Command is the runtime's command ("create", "run", "state", ...),
	// empty when the line has none (--version, --help).
	Command string
	// Bundle is the value of --bundle or -b; empty means the current
	// folder. Only set for create and run.
	Bundle string
	// Config is crun's --config (-f): the spec file when it is not the
	// bundle's config.json. Only set for create and run.
	Config string
	// Log and LogFormat are the runtime's global --log and --log-format;
	// the wrapper writes its own messages the same way.
	Log       string
	LogFormat string
}

// Creates reports whether the command creates a container, the moment the
// hooks must be in config.json.
func (inv Invocation) Creates() bool {
	return inv.Command == "create" || inv.Command == "run"
}

// globalValueFlags are the global options of runc and crun that take a
// value as the next word when not written as --name=value. The others
// (--debug, --systemd-cgroup, --help, --version) stand alone.
var globalValueFlags = []string{
	"log", "log-format", "log-level", "root", "criu", "rootless", "cgroup-manager",
}

// createValueFlags are the options of create and run that take a value.
var createValueFlags = []string{
	"bundle", "b", "console-socket", "pid-file", "preserve-fds", "config", "f",
}

// ConfigPath is the spec file the runtime will read for create and run:
// crun's --config as given (crun resolves it from the current folder, not
// from the bundle), else the bundle's config.json.
func (inv Invocation) ConfigPath() string {
	if inv.Config != "" {
		return inv.Config
	}
	return filepath.Join(inv.Bundle, "config.json")
}

// ParseArgs reads a runc or crun command line (without the program's name)
// the way those runtimes do: global options, the command, the command's
// options and arguments. Options may have one or two dashes and their
// value after a space or an '='. It never fails: a line it cannot read is
// passed through untouched by the wrapper and judged by the runtime.
func ParseArgs(args []string) Invocation {
	var inv Invocation

	i := 0
	for ; i < len(args); i++ {
		name, value, hasValue, isFlag := splitFlag(args[i])
		if !isFlag {
			break
		}
		if name == "" {
			i++
			break
		}
		if !hasValue && slices.Contains(globalValueFlags, name) && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "log":
			inv.Log = value
		case "log-format":
			inv.LogFormat = value
		}
	}
	if i >= len(args) {
		return inv
	}
	inv.Command = args[i]
	if !inv.Creates() {
		return inv
	}

	// crun takes options after the container's id too, so read them all.
	for i++; i < len(args); i++ {
		name, value, hasValue, isFlag := splitFlag(args[i])
		if !isFlag {
			continue
		}
		if name == "" {
			break
		}
		if !hasValue && slices.Contains(createValueFlags, name) && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch name {
		case "bundle", "b":
			inv.Bundle = value
		case "config", "f":
			inv.Config = value
		}
	}
	return inv
}

// splitFlag splits "--name=value", "-name value" and the like. "--" gives
// an empty name; a word without a leading dash, or a lone "-", is no flag.
func splitFlag(arg string) (name, value string, hasValue, isFlag bool) {
	if len(arg) < 2 || arg[0] != '-' {
		return "", "", false, false
	}
	if arg == "--" {
		return "", "", false, true
	}
	name = strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	name, value, hasValue = strings.Cut(name, "=")
	return name, value, hasValue, true
}
