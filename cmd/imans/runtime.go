package main

import "github.com/urfave/cli/v2"

// runtimeCommand is a placeholder until the runtime command lands.
func runtimeCommand() *cli.Command {
	return &cli.Command{Name: "runtime", Hidden: true}
}

// runtimeMain is a placeholder until the runtime wrapper lands.
func runtimeMain(args []string) int { return 1 }
