package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/policy"
)

// policyCommand is `imans policy check|show|eval`.
func policyCommand() *cli.Command {
	kernelFlag := &cli.StringFlag{
		Name:  "kernel",
		Value: "default",
		Usage: "check as kernel `VERSION` does: 6.1, 6.12, or default " +
			"(6.12 with the namespace's 1024-rule limit)",
	}
	return &cli.Command{
		Name:   "policy",
		Usage:  "check, show and try out IMA policies",
		Action: unknownSubcommand(2),
		Subcommands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "check a policy as the kernel would take it (exit 1 with the errors)",
				ArgsUsage: "FILE|-",
				Description: "Exit status: 0 when the kernel would take every rule; 1 with\n" +
					"each refused rule listed as FILE:LINE: \"WORD\": reason (ERRNO); 2 on\n" +
					"bad usage or a file that cannot be read. Flags may also follow FILE.",
				Flags: []cli.Flag{
					kernelFlag,
					&cli.StringFlag{Name: "namespace", Usage: "rules go into an IMA " +
						"namespace of `VARIANT` v15 (audit and dont_* only) or dev " +
						"(measure too)"},
				},
				OnUsageError: usageExit(2),
				Action:       withOperands(2, policyCheck),
			},
			{
				Name:  "show",
				Usage: "print the built-in container policy",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "canonical", Usage: "print it as the kernel's " +
						"policy file shows it"},
					kernelFlag,
				},
				OnUsageError: usageExit(2),
				Action:       withOperands(2, policyShow),
			},
			{
				Name:         "eval",
				Usage:        "decide on one access with a policy (the built-in one by default)",
				ArgsUsage:    "[FILE]",
				Flags:        evalFlags(),
				OnUsageError: usageExit(2),
				Action:       withOperands(2, policyEval),
			},
		},
	}
}

func evalFlags() []cli.Flag {
	idFlag := func(name, usage string) cli.Flag {
		return &cli.StringFlag{Name: name, Value: "0", Usage: usage}
	}
	sameAs := func(name, usage, other string) cli.Flag {
		return &cli.StringFlag{Name: name, Value: "0", Usage: usage,
			DefaultText: "the value of --" + other}
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "func", Value: "FILE_CHECK", Usage: "the hook: FILE_CHECK, " +
			"BPRM_CHECK, MMAP_CHECK, KEY_CHECK, POST_SETATTR, ..."},
		&cli.StringFlag{Name: "mask", Value: "MAY_READ", Usage: "MAY_READ, MAY_WRITE, " +
			"MAY_EXEC, MAY_APPEND joined with |, or a number"},
		&cli.StringFlag{Name: "fsmagic", Value: "0xef53", Usage: "filesystem magic (hex)"},
		&cli.StringFlag{Name: "fsuuid", Usage: "filesystem UUID"},
		&cli.StringFlag{Name: "fsname", Usage: "filesystem type name"},
		idFlag("uid", "process uid"), sameAs("euid", "effective uid", "uid"),
		idFlag("gid", "process gid"), sameAs("egid", "effective gid", "gid"),
		idFlag("fowner", "file owner"), idFlag("fgroup", "file group"),
		&cli.StringFlag{Name: "data", Usage: "keyring (KEY_CHECK) or label (CRITICAL_DATA)"},
		&cli.StringFlag{Name: "uid-map", Usage: "a uid_map `FILE` (/proc/PID/uid_map): " +
			"the ids given are host ids, mapped into the container"},
		&cli.StringFlag{Name: "gid-map", Usage: "a gid_map `FILE`, as --uid-map"},
	}
}

// maxPolicyArg bounds the size of a policy read by the policy commands.
const maxPolicyArg = 16 << 20

// readPolicyArg reads the policy named on the command line ("-": stdin),
// refusing one over maxPolicyArg rather than checking it cut short.
func readPolicyArg(name string) (string, error) {
	in := os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, maxPolicyArg+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxPolicyArg {
		return "", fmt.Errorf("%s: over %d bytes", name, maxPolicyArg)
	}
	return string(data), nil
}

func policyProfile(c *cli.Context) (policy.Profile, error) {
	name := c.String("kernel")
	if ns := c.String("namespace"); ns != "" {
		name += "/" + ns
	}
	p, err := policy.ProfileByName(name)
	if err != nil {
		return p, cli.Exit("imans policy: "+err.Error(), 2)
	}
	return p, nil
}

func policyCheck(c *cli.Context, args []string) error {
	if len(args) != 1 {
		return cli.Exit("imans policy check: want one policy file (or -)", 2)
	}
	prof, err := policyProfile(c)
	if err != nil {
		return err
	}
	file := args[0]
	text, err := readPolicyArg(file)
	if err != nil {
		return cli.Exit("imans policy check: "+err.Error(), 2)
	}

	p, err := policy.ParseProfile(text, prof)
	var list policy.ErrorList
	if errors.As(err, &list) {
		var b strings.Builder
		for _, e := range list {
			errno := e.Errno
			if errno == "" {
				errno = "batch dropped"
			}
			word := ""
			if e.Word != "" {
				word = fmt.Sprintf(" %q:", policy.ShortWord(e.Word))
			}
			fmt.Fprintf(&b, "%s:%d:%s %s (%s)\n", file, e.Line, word, e.Reason, errno)
		}
		fmt.Fprintf(&b, "%s: kernel %s refuses %d rule(s)", file, prof.Name, len(list))
		return cli.Exit(b.String(), 1)
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d rules, all taken by kernel %s\n", file, len(p.Rules), prof.Name)
	return nil
}

func policyShow(c *cli.Context, args []string) error {
	if len(args) != 0 {
		return cli.Exit("imans policy show: no operand expected", 2)
	}
	// --kernel asks for a kernel's rendering: --canonical is implied.
	if !c.Bool("canonical") && !c.IsSet("kernel") {
		fmt.Print(policy.BuiltinText())
		return nil
	}
	prof, err := policyProfile(c)
	if err != nil {
		return err
	}
	fmt.Print(policy.Builtin().RenderFor(prof))
	return nil
}

func policyEval(c *cli.Context, args []string) error {
	p := policy.Builtin()
	if len(args) > 1 {
		return cli.Exit("imans policy eval: want at most one policy file", 2)
	}
	if len(args) == 1 {
		text, err := readPolicyArg(args[0])
		if err != nil {
			return cli.Exit("imans policy eval: "+err.Error(), 2)
		}
		if p, err = policy.Parse(text); err != nil {
			return cli.Exit(fmt.Sprintf("imans policy eval: %s:\n%v", args[0], err), 1)
		}
	}

	a, err := evalAccess(c)
	if err != nil {
		return cli.Exit("imans policy eval: "+err.Error(), 2)
	}

	d := p.Evaluate(a)
	yes := map[bool]string{true: "yes", false: "no"}
	tmpl := d.Template
	if tmpl == "" {
		tmpl = "the default"
	}
	fmt.Printf("measure:  %s (PCR %d, template %s)\n", yes[d.Measure], d.PCR, tmpl)
	fmt.Printf("appraise: %s\naudit:    %s\nhash:     %s\n",
		yes[d.Appraise], yes[d.Audit], yes[d.Hash])
	lines := make([]string, len(d.Lines))
	for i, l := range d.Lines {
		lines[i] = fmt.Sprint(l)
	}
	if len(lines) == 0 {
		lines = []string{"none"}
	}
	fmt.Printf("deciding rules (lines): %s\n", strings.Join(lines, ", "))
	return nil
}

// evalAccess builds the access from the eval flags.
func evalAccess(c *cli.Context) (policy.Access, error) {
	var a policy.Access
	var err error

	if a.Func, err = policy.ParseFunc(c.String("func")); err != nil &&
		c.String("func") != "POST_SETATTR" {
		return a, err
	}
	if c.String("func") == "POST_SETATTR" {
		a.Func = policy.PostSetattr
	}
	if a.Mask, err = policy.ParseMask(c.String("mask")); err != nil {
		return a, err
	}
	if a.FSMagic, err = parseNum(c.String("fsmagic"), 16, 64); err != nil {
		return a, fmt.Errorf("--fsmagic: %w", err)
	}
	if u := c.String("fsuuid"); u != "" {
		r, err := policy.ParseRule("measure fsuuid="+u, policy.DefaultProfile())
		if err != nil {
			return a, fmt.Errorf("--fsuuid: %q is not a UUID", u)
		}
		a.FSUUID = r.FSUUID
	}
	a.FSName, a.Data = c.String("fsname"), c.String("data")

	ids := []struct {
		flag string
		dst  *uint32
	}{{"uid", &a.UID}, {"euid", &a.EUID}, {"gid", &a.GID}, {"egid", &a.EGID},
		{"fowner", &a.FOwner}, {"fgroup", &a.FGroup}}
	for _, id := range ids {
		v, err := parseNum(c.String(id.flag), 10, 32)
		if err != nil {
			return a, fmt.Errorf("--%s: %w", id.flag, err)
		}
		*id.dst = uint32(v)
	}
	if !c.IsSet("euid") {
		a.EUID = a.UID
	}
	if !c.IsSet("egid") {
		a.EGID = a.GID
	}
	a.SUID, a.SGID = a.EUID, a.EGID

	uidMap, err := readIDMap(c.String("uid-map"))
	if err != nil {
		return a, fmt.Errorf("--uid-map: %w", err)
	}
	gidMap, err := readIDMap(c.String("gid-map"))
	if err != nil {
		return a, fmt.Errorf("--gid-map: %w", err)
	}
	return a.InContainer(uidMap, gidMap), nil
}

// maxIDMapArg bounds the size of an id map file (the kernel takes at most
// 340 lines).
const maxIDMapArg = 64 << 10

func readIDMap(file string) (policy.IDMap, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIDMapArg+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxIDMapArg {
		return nil, fmt.Errorf("%s: over %d bytes", file, maxIDMapArg)
	}
	return policy.ParseIDMap(string(data))
}

// parseNum reads an unsigned number of at most bits bits; base 16 takes an
// optional 0x.
func parseNum(s string, base, bits int) (uint64, error) {
	digits := s
	if base == 16 {
		digits = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	}
	v, err := strconv.ParseUint(digits, base, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of at most %d bits", s, bits)
	}
	return v, nil
}
