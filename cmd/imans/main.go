// Command imans measures containers: an OCI hook, a runtime wrapper and
// the tools to read measurement lists, policies, TPMs and reports.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/internal/wrapper"
)

func main() {
	os.Exit(run(os.Args))
}

// run dispatches on the program's name: started as imans-runtime (a link
// to it), the binary is the runtime wrapper, as the imans-runtime binary
// is; otherwise it is the imans tool.
func run(args []string) int {
	if filepath.Base(args[0]) == "imans-runtime" {
		return wrapper.Main(args, wrapper.Self)
	}

	app := &cli.App{
		Name:                 "imans",
		Usage:                "per-container integrity measurement for OCI runtimes",
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {},
		Commands: []*cli.Command{
			hookCommand(),
			runtimeCommand(),
			logCommand(),
			policyCommand(),
			tpmCommand(),
			reportCommand(),
			expectCommand(),
			installCommand(),
			collectorCommand(),
			imaNamespaceCommand(),
		},
	}
	if err := app.Run(args); err != nil {
		if msg := err.Error(); msg != "" {
			// An exit without a message is a status only
			// (`report show --check`).
			fmt.Fprintln(os.Stderr, "imans:", msg)
		}
		return exitCode(err)
	}
	return 0
}

// exitCode maps an error to the process's exit status: a cli.ExitCoder
// carries its own, also when wrapped; anything else is 1.
func exitCode(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
