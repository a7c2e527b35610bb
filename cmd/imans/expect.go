package main

import "github.com/urfave/cli/v2"

// expectCommand is a placeholder until the expect command lands.
func expectCommand() *cli.Command {
	return &cli.Command{Name: "expect", Hidden: true}
}
