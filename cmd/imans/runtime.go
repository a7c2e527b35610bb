package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/internal/wrapper"
	"github.com/imans-project/imans/shim"
)

// runtimeCommand is `imans runtime ARGS...`: the runtime wrapper under the
// imans command; its arguments are runc's or crun's, untouched. The hooks
// it adds run this binary.
func runtimeCommand() *cli.Command {
	return &cli.Command{
		Name:      "runtime",
		Usage:     "run an OCI runtime (runc, crun) with the imans hooks added on create",
		ArgsUsage: "[runtime options] COMMAND [command options] ...",
		Description: "A drop-in for runc or crun; the imans-runtime binary is the same " +
			"wrapper on its own, for engines that start it for every runtime command. " +
			"Every command goes to the real runtime untouched; on create and run, a " +
			"bundle whose config.json has the annotation io.imans.enable=true first gets " +
			"the imans createRuntime and poststop hooks. The runtime is the first of " +
			shim.RuntimeEnv + " (comma-separated), else of " + shim.RuntimeConf +
			", else runc then crun.",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			args := append([]string{"imans runtime"}, c.Args().Slice()...)
			os.Exit(wrapper.Main(args, wrapper.Self))
			return nil
		},
	}
}
