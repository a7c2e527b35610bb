// Command kernelcheck runs the IMA namespace probe, or the activation
// against a pid, and prints the outcome; the integration tests run it on
// Debian's kernels in qemu, in the harness's busybox guest (a pure Go build
// is static; busybox provides nsenter and unshare there).
//
//	kernelcheck probe      prints "ok: REASON" or "no: REASON"
//	kernelcheck enter PID  prints each step, then "error: ..." or "active"
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/imans-project/imans/measure/imans"
)

const testPolicy = "dont_measure fsmagic=0x9fa0\nmeasure func=BPRM_CHECK\n"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kernelcheck probe | enter PID")
		os.Exit(2)
	}

	switch os.Args[1] {
	case "probe":
		ok, reason := imans.Probe()
		word := "no"
		if ok {
			word = "ok"
		}
		fmt.Printf("%s: %s\n", word, reason)
	case "enter":
		pid, err := strconv.Atoi(os.Args[len(os.Args)-1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "kernelcheck enter: pid:", err)
			os.Exit(2)
		}
		log := func(step, result string) { fmt.Printf("step: %s => %s\n", step, result) }
		ns, err := imans.Enter(context.Background(), pid, imans.EnterOptions{
			Policy: testPolicy, StepLog: log, Timeout: 20 * time.Second})
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		ns.Close()
		fmt.Println("active")
	default:
		fmt.Fprintln(os.Stderr, "kernelcheck: unknown command", os.Args[1])
		os.Exit(2)
	}
}
