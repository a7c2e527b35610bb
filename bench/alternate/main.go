// Command alternate times commands against each other: it runs each of
// them in turn, N rounds, and prints per command the median wall time, the
// median CPU time of the command and every child it waited for (user and
// system, from wait4), and both as ratios to the first command. Taking the
// commands in turn, round by round, spreads the machine's other load over
// all of them alike; the medians are what the bench scripts compare.
//
//	alternate [-n N] [-warm W] -- NAME CMD ARGS... -- NAME CMD ARGS... ...
//
// In the arguments, {} becomes a word unique to the run (the round and
// the command's index), for container ids. A command that fails stops the
// whole run with its output.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// arm is one command under test and its measurements.
type arm struct {
	name string
	argv []string
	wall []time.Duration
	cpu  []time.Duration
}

func main() {
	rounds := flag.Int("n", 100, "rounds: runs of each command")
	warm := flag.Int("warm", 2, "untimed runs of each command first")
	flag.Parse()

	arms, err := parseArms(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "alternate:", err)
		os.Exit(2)
	}
	tag := strconv.Itoa(os.Getpid())
	for i := -*warm; i < *rounds; i++ {
		for k, a := range arms {
			id := fmt.Sprintf("a%s-%d-%d", tag, k, i+*warm)
			wall, cpu, err := runOnce(a.argv, id)
			if err != nil {
				fmt.Fprintf(os.Stderr, "alternate: %s: %v\n", a.name, err)
				os.Exit(1)
			}
			if i >= 0 {
				a.wall = append(a.wall, wall)
				a.cpu = append(a.cpu, cpu)
			}
		}
	}

	base := arms[0]
	fmt.Printf("%-28s %10s %7s %10s %7s\n", "command ("+strconv.Itoa(*rounds)+" runs)",
		"wall", "ratio", "cpu", "ratio")
	for _, a := range arms {
		w, c := median(a.wall), median(a.cpu)
		fmt.Printf("%-28s %8.2fms %7.3f %8.2fms %7.3f\n", a.name, ms(w),
			float64(w)/float64(median(base.wall)), ms(c), float64(c)/float64(median(base.cpu)))
	}
}

// parseArms splits "-- NAME CMD ARGS... -- NAME ..." into commands; the
// first "--" may be gone (package flag takes it as the end of the flags).
func parseArms(args []string) ([]*arm, error) {
	if len(args) > 0 && args[0] != "--" {
		args = append([]string{"--"}, args...)
	}
	var arms []*arm
	for len(args) > 0 {
		if args[0] != "--" {
			return nil, fmt.Errorf("want -- NAME CMD ARGS..., got %q", args[0])
		}
		args = args[1:]
		end := slices.Index(args, "--")
		if end < 0 {
			end = len(args)
		}
		if end < 2 {
			return nil, errors.New("each command needs a name and a program")
		}
		arms = append(arms, &arm{name: args[0], argv: args[1:end]})
		args = args[end:]
	}
	if len(arms) == 0 {
		return nil, errors.New("no command to time")
	}
	return arms, nil
}

// runOnce runs argv once, {} replaced by id, and returns its wall time and
// the CPU time of it and its waited-for children.
func runOnce(argv []string, id string) (wall, cpu time.Duration, err error) {
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = strings.ReplaceAll(a, "{}", id)
	}
	cmd := exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out

	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%v\n%s", err, out.Bytes())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return wall, cpu, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
