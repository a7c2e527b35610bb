// Command imans-guest is the helper the qemu harness puts into the
// initramfs of every boot, at /bin/imans-guest. It does what busybox sh
// cannot do reliably: read every PCR bank and the measurement lists in one
// step, write policy rules one write() each, add a key, and send files back
// to the host over a serial port.
//
// It is built for linux/amd64 with CGO_ENABLED=0 by the harness and runs
// only inside the guest.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}

	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "snapshot":
		err = snapshotCmd(args)
	case "oracle":
		err = oracleCmd(args)
	case "load":
		err = loadCmd(args)
	case "send":
		err = sendCmd(args)
	case "addkey":
		err = addKeyCmd(args)
	case "violations":
		err = violationsCmd(args)
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imans-guest:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  imans-guest snapshot DIR          PCRs of every bank, then the IMA lists, into DIR
  imans-guest oracle RULES OUT      write each line of RULES to the IMA policy file
                                    with its own write(), verdicts into OUT; never commits
  imans-guest load POLICY           write and commit a policy, one rule a write()
  imans-guest send PORT PATH...     send files (directories recursively) over PORT;
                                    @FILE stands for the paths listed in FILE
  imans-guest addkey DER KEYRING    add an X.509 certificate as an asymmetric key
  imans-guest violations DIR        cause one open-writers and one ToMToU violation`
