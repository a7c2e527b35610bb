package main

import "github.com/urfave/cli/v2"

// reportCommand is a placeholder until the report command lands.
func reportCommand() *cli.Command {
	return &cli.Command{Name: "report", Hidden: true}
}
