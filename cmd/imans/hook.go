package main

import "github.com/urfave/cli/v2"

// hookCommand is a placeholder until the hook command lands.
func hookCommand() *cli.Command {
	return &cli.Command{Name: "hook", Hidden: true}
}
