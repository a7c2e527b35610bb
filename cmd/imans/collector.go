package main

import "github.com/urfave/cli/v2"

// collectorCommand is a placeholder until the collector command lands.
func collectorCommand() *cli.Command {
	return &cli.Command{Name: "collector", Hidden: true}
}
