// Command alternate times commands against each other: it runs each of
// them once per round, N rounds, and prints per command the median wall
// time and the median CPU time of the command and every child it waited
// for (user and system, from wait4), both as ratios to the first command
// with a 95% interval for the ratio.
//
//	alternate [-n N] [-warm W] [-settle] [-seed S] -- NAME CMD ARGS... -- NAME CMD ARGS... ...
//
// Taking the commands round by round spreads the machine's other load
// over all of them alike. Within a round the order is shuffled: on these
// machines a run's wall time depends on what ran just before it (a run
// after a hooked container waits about 6 ms longer, with no more CPU),
// and a fixed order would give each command the same predecessor every
// time. With -settle, every timed run follows an untimed run of the first
// command, so that all of them follow the same thing; what a command
// leaves behind then falls on the untimed runs.
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
	"math/rand/v2"
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
	warm := flag.Int("warm", 2, "untimed rounds first")
	settle := flag.Bool("settle", false, "run the first command, untimed, before every timed run")
	seed := flag.Uint64("seed", 0, "seed of the shuffled order (0: from the clock)")
	flag.Parse()

	arms, err := parseArms(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "alternate:", err)
		os.Exit(2)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(*seed, 0))
	tag := strconv.Itoa(os.Getpid())
	run := func(a *arm, id string) (time.Duration, time.Duration) {
		wall, cpu, err := runOnce(a.argv, id)
		if err != nil {
			fmt.Fprintf(os.Stderr, "alternate: %s: %v\n", a.name, err)
			os.Exit(1)
		}
		return wall, cpu
	}
	order := make([]int, len(arms))
	for i := range order {
		order[i] = i
	}
	for r := -*warm; r < *rounds; r++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			id := fmt.Sprintf("a%s-%d-%d", tag, k, r+*warm)
			if *settle {
				run(arms[0], id+"s")
			}
			wall, cpu := run(arms[k], id)
			if r >= 0 {
				arms[k].wall = append(arms[k].wall, wall)
				arms[k].cpu = append(arms[k].cpu, cpu)
			}
		}
	}

	how := "shuffled"
	if *settle {
		how += ", each after an untimed " + strconv.Quote(arms[0].name)
	}
	fmt.Printf("%d rounds, order %s (seed %d); ratio [95%% interval]\n", *rounds, how, *seed)
	fmt.Printf("%-24s %9s %21s %9s %21s\n", "command", "wall", "ratio", "cpu", "ratio")
	base := arms[0]
	for _, a := range arms {
		fmt.Printf("%-24s %7.2fms %21s %7.2fms %21s\n",
			a.name, ms(median(a.wall)), ratio(rng, a.wall, base.wall),
			ms(median(a.cpu)), ratio(rng, a.cpu, base.cpu))
	}
}

// ratio formats the ratio of the medians of a and b with a 95% interval
// from a bootstrap: both samples resampled with replacement, 2000 times.
func ratio(rng *rand.Rand, a, b []time.Duration) string {
	const resamples = 2000
	rs := make([]float64, resamples)
	ra, rb := make([]time.Duration, len(a)), make([]time.Duration, len(b))
	for i := range rs {
		for j := range ra {
			ra[j] = a[rng.IntN(len(a))]
		}
		for j := range rb {
			rb[j] = b[rng.IntN(len(b))]
		}
		rs[i] = float64(median(ra)) / float64(median(rb))
	}
	slices.Sort(rs)
	return fmt.Sprintf("%.3f [%.3f %.3f]", float64(median(a))/float64(median(b)),
		rs[resamples*25/1000], rs[resamples*975/1000])
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

// median returns the middle of d (the mean of the two middle values for
// an even count); d is left as it was.
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
