package main

import "github.com/urfave/cli/v2"

// logCommand is a placeholder until the log command lands.
func logCommand() *cli.Command {
	return &cli.Command{Name: "log", Hidden: true}
}
