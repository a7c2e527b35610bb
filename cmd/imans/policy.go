package main

import "github.com/urfave/cli/v2"

// policyCommand is a placeholder until the policy command lands.
func policyCommand() *cli.Command {
	return &cli.Command{Name: "policy", Hidden: true}
}
