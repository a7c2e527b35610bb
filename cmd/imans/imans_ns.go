package main

import "github.com/urfave/cli/v2"

// imaNamespaceCommand is a placeholder until the kernel backend's helper
// lands.
func imaNamespaceCommand() *cli.Command {
	return &cli.Command{Name: "ima-namespace", Hidden: true}
}
