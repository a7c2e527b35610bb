// Command nop does nothing a program need not do: with no arguments it
// exits at once; with some, it execs them (the first found on PATH). The
// benchmarks run it where a hook or a runtime wrapper would go: the
// start of any Go program is the floor under theirs.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		return
	}
	path, err := exec.LookPath(os.Args[1])
	if err == nil {
		err = syscall.Exec(path, os.Args[1:], os.Environ())
	}
	fmt.Fprintln(os.Stderr, "nop:", err)
	os.Exit(127)
}
