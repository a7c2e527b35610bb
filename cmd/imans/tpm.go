package main

import "github.com/urfave/cli/v2"

// tpmCommand is a placeholder until the tpm command lands.
func tpmCommand() *cli.Command {
	return &cli.Command{Name: "tpm", Hidden: true}
}
