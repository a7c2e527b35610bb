package main

import "github.com/urfave/cli/v2"

// installCommand is a placeholder until the install command lands.
func installCommand() *cli.Command {
	return &cli.Command{Name: "install", Hidden: true}
}
