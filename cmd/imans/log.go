package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/ima"
)

// logBanks are the banks verify replays.
var logBanks = []ima.Hash{ima.SHA1, ima.SHA256, ima.SHA384, ima.SHA512}

// Exit statuses of the log commands.
const (
	logExitMatch      = 0
	logExitMismatch   = 1
	logExitUnreadable = 2
)

// logCommand reads, shows and verifies IMA measurement lists.
func logCommand() *cli.Command {
	listFlags := []cli.Flag{
		&cli.BoolFlag{Name: "canonical",
			Usage: "read a binary list written with ima_canonical_fmt (little-endian)"},
		&cli.BoolFlag{Name: "host-order", Usage: "read a binary list in the host's byte order"},
		&cli.StringFlag{Name: "bank", Usage: "bank of the list's template hashes " +
			"(default: from a _sha256-style file name suffix, else detected)"},
	}
	return &cli.Command{
		Name:   "log",
		Usage:  "read, show and verify IMA measurement lists",
		Action: unknownSubcommand(logExitUnreadable),
		Subcommands: []*cli.Command{{
			Name:      "show",
			Usage:     "print the entries of a binary or ASCII measurement list",
			ArgsUsage: "FILE",
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "json", Usage: "one JSON object per entry"},
			}, listFlags...),
			OnUsageError: usageExit(logExitUnreadable),
			Action:       withOperands(logExitUnreadable, logShow),
		}, {
			Name:      "verify",
			Usage:     "check template hashes and replay a list against PCR values",
			ArgsUsage: "FILE",
			Description: "Exit status: 0 when the list, or a prefix of it holding at least\n" +
				"one entry, leads to the PCR values in every bank given; 1 on a\n" +
				"mismatch (or a template hash that does not match its entry); 2 when\n" +
				"an input cannot be read, or on bad usage. Flags may also follow FILE.\n" +
				"Without --pcrs, prints the replayed PCR values.",
			Flags: append([]cli.Flag{
				&cli.GenericFlag{Name: "pcrs", Value: &logList{}, Usage: "`BANK,FILE` of " +
					"PCR values (evmctl's PCR-NN: hex, or tpm2_pcrread output; FILE " +
					"alone for tpm2_pcrread output naming its banks); repeatable"},
				&cli.GenericFlag{Name: "mode", Value: &logList{}, Usage: "`BANK=hash|padded`: " +
					"how the kernel extended a bank (default: try both); repeatable"},
				&cli.BoolFlag{Name: "whole",
					Usage: "require the whole list to match, not only a prefix"},
			}, listFlags...),
			OnUsageError: usageExit(logExitUnreadable),
			Action:       withOperands(logExitUnreadable, logVerify),
		}},
	}
}

// unknownSubcommand is the action of a command with subcommands: help
// when none is named, exit status code for a name it does not know
// (urfave/cli would show "No help topic" and exit 3).
func unknownSubcommand(code int) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() == 0 {
			return cli.ShowSubcommandHelp(c)
		}
		return cli.Exit(fmt.Sprintf("%s: unknown command %q (see --help)", c.Command.HelpName,
			c.Args().First()), code)
	}
}

// usageExit returns an OnUsageError that makes a bad flag exit with
// status code, so that a script can tell it from a verdict.
func usageExit(code int) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		return cli.Exit(fmt.Sprintf("%s: %v (see --help)", c.Command.HelpName, err), code)
	}
}

// withOperands makes an action that also takes flags given after the
// operands, as in `imans log verify FILE --pcrs sha1,F` (urfave/cli stops
// reading flags at the first operand). A bad flag exits with code.
func withOperands(code int, fn func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args, help, err := operands(c)
		if err != nil {
			return cli.Exit(fmt.Sprintf("%s: %v (see --help)", c.Command.HelpName, err),
				code)
		}
		if help {
			return cli.ShowSubcommandHelp(c)
		}
		return fn(c, args)
	}
}

// operands returns the operands of a command, setting the flags found
// among them; "--" ends the flags. help is set by -h or --help.
func operands(c *cli.Context) (args []string, help bool, err error) {
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			return append(args, rest[i+1:]...), help, nil
		}
		if len(a) < 2 || a[0] != '-' {
			args = append(args, a)
			continue
		}

		name, val, hasVal := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f := commandFlag(c.Command, name)
		if f == nil {
			return nil, false, fmt.Errorf("flag provided but not defined: %s", a)
		}
		if name == "help" || name == "h" {
			help = true
			continue
		}
		if v, ok := f.(cli.DocGenerationFlag); ok && !v.TakesValue() {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 == len(rest) {
				return nil, false, fmt.Errorf("flag needs an argument: %s", a)
			}
			i++
			val = rest[i]
		}
		if err := c.Set(name, val); err != nil {
			return nil, false, fmt.Errorf("invalid value %q for flag %s: %w", val, a, err)
		}
	}
	return args, help, nil
}

// commandFlag returns the flag of cmd with the given name or alias.
func commandFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// logOpen opens the list named by the command's operands.
func logOpen(c *cli.Context, args []string, extra ...ima.Option) (*os.File, *ima.Reader,
	error) {
	if len(args) != 1 {
		return nil, nil, cli.Exit("imans log "+c.Command.Name+": one FILE expected",
			logExitUnreadable)
	}
	path := args[0]

	opts := extra
	switch {
	case c.Bool("canonical") && c.Bool("host-order"):
		return nil, nil, cli.Exit("--canonical and --host-order exclude each other",
			logExitUnreadable)
	case c.Bool("canonical"):
		opts = append(opts, ima.Canonical())
	case c.Bool("host-order"):
		opts = append(opts, ima.HostOrder())
	}
	bank := ima.Hash(c.String("bank"))
	if bank == "" {
		bank = logBankFromName(path)
	}
	if bank != "" {
		if !bank.Known() {
			return nil, nil, cli.Exit(fmt.Sprintf("--bank %s: unknown hash algorithm", bank),
				logExitUnreadable)
		}
		opts = append(opts, ima.Bank(bank))
	}

	f, err := os.Open(path)
	if err != nil {
		return nil, nil, cli.Exit(err.Error(), logExitUnreadable)
	}
	rd, err := ima.NewReader(f, opts...)
	if err != nil {
		f.Close()
		return nil, nil, cli.Exit(fmt.Sprintf("%s: %v", path, err), logExitUnreadable)
	}
	return f, rd, nil
}

// logBankFromName returns the bank of a kernel per-bank list from its name
// (binary_runtime_measurements_sha256 and friends), or "".
func logBankFromName(path string) ima.Hash {
	base := filepath.Base(path)
	i := strings.LastIndexByte(base, '_')
	if i < 0 || !strings.Contains(base, "runtime_measurements") {
		return ""
	}
	h := ima.Hash(base[i+1:])
	if !h.Known() {
		return ""
	}
	return h
}

// logJSONEntry is the form of an entry printed by log show --json.
type logJSONEntry struct {
	Index        int    `json:"index"`
	Offset       int64  `json:"offset"`
	PCR          uint32 `json:"pcr"`
	Template     string `json:"template"`
	TemplateHash string `json:"template_hash"`
	FileDigest   string `json:"file_digest,omitempty"`
	Name         string `json:"name"`
	NameHex      string `json:"name_hex,omitempty"`
	Violation    bool   `json:"violation,omitempty"`
	Error        string `json:"error,omitempty"`
}

// logShow prints every entry of a list.
func logShow(c *cli.Context, args []string) error {
	f, rd, err := logOpen(c, args)
	if err != nil {
		return err
	}
	defer f.Close()

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	bad := 0
	for {
		off := rd.Offset()
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, ima.ErrTemplateHash) {
			w.Flush()
			return cli.Exit(fmt.Sprintf("%s: %v", f.Name(), err), logExitUnreadable)
		}

		j := logDescribe(rd.Index()-1, off, e)
		if err != nil {
			bad++
			j.Error = err.Error()
		}
		if c.Bool("json") {
			if err := enc.Encode(j); err != nil {
				return cli.Exit(err.Error(), logExitUnreadable)
			}
			continue
		}
		logPrintEntry(w, j)
	}
	if bad > 0 {
		w.Flush()
		return cli.Exit(fmt.Sprintf("%s: %d entries whose template hash does not match",
			f.Name(), bad), logExitMismatch)
	}
	return nil
}

// logDescribe turns an entry into what show prints.
func logDescribe(i int, off int64, e *ima.Entry) logJSONEntry {
	j := logJSONEntry{Index: i, Offset: off, PCR: e.PCR, Template: e.Template,
		TemplateHash: hex.EncodeToString(e.Digest), Violation: e.IsViolation()}
	if algo, d, err := e.FileDigest(); err == nil {
		j.FileDigest = string(algo) + ":" + hex.EncodeToString(d)
	}
	if name, err := e.FileName(); err == nil {
		j.Name = name
		if !utf8.ValidString(name) {
			j.NameHex = hex.EncodeToString([]byte(name))
		}
	}
	return j
}

// logPrintEntry prints one entry on one line, its name quoted so that
// newlines and invalid UTF-8 show.
func logPrintEntry(w io.Writer, j logJSONEntry) {
	mark := ""
	if j.Violation {
		mark = " VIOLATION"
	}
	if j.Error != "" {
		mark += " ERROR: " + j.Error
	}
	digest := j.FileDigest
	if digest == "" {
		digest = "-"
	}
	fmt.Fprintf(w, "%6d %2d %s %-9s %s %q%s\n", j.Index, j.PCR, j.TemplateHash, j.Template,
		digest, j.Name, mark)
}

// logVerify checks a list's template hashes and replays it against PCR
// values.
func logVerify(c *cli.Context, args []string) error {
	if len(args) != 1 {
		return cli.Exit("imans log verify: one FILE expected", logExitUnreadable)
	}
	want, err := logPCRArgs(logValues(c, "pcrs"))
	if err != nil {
		return cli.Exit(err.Error(), logExitUnreadable)
	}
	modes, err := logModeArgs(logValues(c, "mode"))
	if err != nil {
		return cli.Exit(err.Error(), logExitUnreadable)
	}
	for b := range modes {
		if !slices.Contains(logBanks, b) {
			return cli.Exit(fmt.Sprintf("--mode %s=...: bank %s: only sha1, sha256, "+
				"sha384, sha512", b, b), logExitUnreadable)
		}
	}

	banks := make([]ima.Hash, 0, len(want))
	for _, b := range logBanks {
		if _, ok := want[b]; ok || len(want) == 0 {
			banks = append(banks, b)
		}
	}
	for b := range want {
		if !slices.Contains(banks, b) {
			return cli.Exit(fmt.Sprintf("bank %s: only sha1, sha256, sha384, sha512", b),
				logExitUnreadable)
		}
	}

	// First every bank extended with its own hash, as kernels from 5.8
	// do; where a bank does not match, a second pass tries the padded
	// sha1 hash of older kernels (and Debian's 6.1 for sha384 and
	// sha512). Two passes over a file cost less than replaying both ways
	// at once.
	// Input that cannot be read twice (a pipe) is replayed both ways in
	// one pass.
	once := ima.ExtendHash
	if fi, err := os.Stat(args[0]); err == nil && !fi.Mode().IsRegular() {
		once = ima.ExtendAuto
	}
	first := map[ima.Hash]ima.ExtendMode{}
	for _, b := range banks {
		first[b] = once
		if m, ok := modes[b]; ok {
			first[b] = m
		}
	}
	run, err := logReplay(c, args, banks, want, first)
	if err != nil {
		return err
	}
	if len(want) > 0 && !run.res.Matched() {
		second, retry := map[ima.Hash]ima.ExtendMode{}, false
		for _, b := range run.res.Banks {
			second[b.Bank] = first[b.Bank]
			if _, fixed := modes[b.Bank]; !fixed && b.Bank != ima.SHA1 && !b.Matched() {
				second[b.Bank] = ima.ExtendPadded
				retry = true
			}
		}
		if retry {
			if again, err := logReplay(c, args, banks, want, second); err == nil &&
				again.res.Matched() {
				run = again
			}
		}
	}
	return logReport(c, run, want)
}

// logRun is one replay of a list by verify.
type logRun struct {
	name, format string
	replay       *ima.Replay
	res          *ima.Result
	stats        ima.ReadStats
}

// logReplay reads the list and replays it with the given modes.
func logReplay(c *cli.Context, args []string, banks []ima.Hash,
	want map[ima.Hash]map[uint32][]byte, modes map[ima.Hash]ima.ExtendMode) (*logRun, error) {
	replay := ima.NewReplay(banks...)
	for b, v := range want {
		if err := replay.Expect(b, v); err != nil {
			return nil, cli.Exit(err.Error(), logExitUnreadable)
		}
	}
	for b, m := range modes {
		if err := replay.SetMode(b, m); err != nil {
			return nil, cli.Exit(err.Error(), logExitUnreadable)
		}
	}

	f, rd, err := logOpen(c, args, ima.Reuse())
	if err != nil {
		return nil, err
	}
	defer f.Close()

	st, err := replay.ReadAll(rd)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("%s: %v", f.Name(), err), logExitUnreadable)
	}
	format := "binary"
	if rd.ASCII() {
		format = "ASCII"
	} else if rd.Order() == binary.BigEndian {
		format = "binary, big-endian"
	}
	if rd.DigestSize() > 20 {
		format += fmt.Sprintf(", %d-byte template hashes", rd.DigestSize())
	}
	return &logRun{name: f.Name(), format: format, replay: replay, res: replay.Result(),
		stats: st}, nil
}

// logReport prints the outcome of verify and returns its exit status.
func logReport(c *cli.Context, run *logRun, want map[ima.Hash]map[uint32][]byte) error {
	replay, res, badHash := run.replay, run.res, run.stats.BadHashes
	fmt.Printf("%s (%s): %d entries, %d violations\n", run.name, run.format,
		replay.Entries(), replay.Violations())
	if badHash > 0 {
		fmt.Printf("template hash: %d entries do not match, the first: %v\n", badHash,
			run.stats.FirstBad)
	}

	if len(want) == 0 {
		for _, b := range []ima.Hash{ima.SHA1, ima.SHA256, ima.SHA384, ima.SHA512} {
			for _, pcr := range replay.PCRs(b) {
				fmt.Printf("%-6s PCR-%02d: %x\n", b, pcr, replay.PCR(b, pcr))
			}
		}
		if badHash > 0 {
			return cli.Exit(fmt.Sprintf("%d template hash mismatches", badHash), logExitMismatch)
		}
		return nil
	}

	for _, b := range res.Banks {
		for _, pcr := range b.PCRs {
			state := "mismatch"
			if b.Matched() {
				state = fmt.Sprintf("matches after %d entries (%s)", b.Prefix, b.Mode)
			}
			fmt.Printf("%-6s PCR-%02d: %s\n", b.Bank, pcr, state)
			if !b.Matched() {
				fmt.Printf("       replayed %x\n       expected %x\n", b.Replayed[pcr],
					b.Expected[pcr])
			}
		}
		if len(b.PCRs) == 0 {
			fmt.Printf("%-6s: the list extends none of the PCRs given\n", b.Bank)
		}
	}
	// PCRs that no entry was extended into (a kernel without IMA) would
	// otherwise match any list, by its empty prefix.
	none := res.Matched() && res.Prefix == 0 && res.Entries > 0
	if none {
		fmt.Printf("mismatch: the PCR values cover none of the %d entries\n", res.Entries)
	} else {
		fmt.Println(res)
	}

	switch {
	case badHash > 0:
		return cli.Exit(fmt.Sprintf("mismatch: %d entries whose template hash does not match",
			badHash), logExitMismatch)
	case !res.Matched():
		return cli.Exit("mismatch: no prefix of the list leads to the PCR values",
			logExitMismatch)
	case none:
		return cli.Exit(fmt.Sprintf("mismatch: the PCR values cover none of the %d entries",
			res.Entries), logExitMismatch)
	case c.Bool("whole") && !res.Whole():
		return cli.Exit(fmt.Sprintf("mismatch: --whole, and only %d of %d entries match",
			res.Prefix, res.Entries), logExitMismatch)
	}
	return nil
}

// logPCRArgs reads the --pcrs arguments: "bank,file", or "file" for
// tpm2_pcrread output that names its banks.
func logPCRArgs(args []string) (map[ima.Hash]map[uint32][]byte, error) {
	out := map[ima.Hash]map[uint32][]byte{}
	for _, a := range args {
		bank, path, ok := strings.Cut(a, ",")
		if !ok {
			bank, path = "", a
		}
		if bank != "" && !slices.Contains(logBanks, ima.Hash(bank)) {
			return nil, fmt.Errorf("--pcrs %s: bank %s: only sha1, sha256, sha384, sha512",
				a, bank)
		}
		v, err := logReadPCRFile(path)
		if err != nil {
			return nil, err
		}

		if bank == "" {
			// The banks of a tpm2_pcrread output that verify replays;
			// a TPM may have others (sm3).
			n := 0
			for b, m := range v {
				if b == "" {
					return nil, fmt.Errorf("--pcrs %s: the file names no bank: "+
						"give BANK,FILE", a)
				}
				if slices.Contains(logBanks, b) {
					out[b] = m
					n++
				}
			}
			if n == 0 {
				return nil, fmt.Errorf("--pcrs %s: no bank of sha1, sha256, sha384, "+
					"sha512 in the file", a)
			}
			continue
		}
		m, err := v.ForBank(ima.Hash(bank))
		if err != nil {
			return nil, fmt.Errorf("--pcrs %s: %w", a, err)
		}
		out[ima.Hash(bank)] = m
	}
	return out, nil
}

// logReadPCRFile parses one file of PCR values.
func logReadPCRFile(path string) (ima.PCRValues, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v, err := ima.ParsePCRFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// logModeArgs reads the --mode arguments, "bank=hash" or "bank=padded".
func logModeArgs(args []string) (map[ima.Hash]ima.ExtendMode, error) {
	out := map[ima.Hash]ima.ExtendMode{}
	for _, a := range args {
		bank, mode, _ := strings.Cut(a, "=")
		switch mode {
		case "hash":
			out[ima.Hash(bank)] = ima.ExtendHash
		case "padded":
			out[ima.Hash(bank)] = ima.ExtendPadded
		default:
			return nil, fmt.Errorf("--mode %s: want BANK=hash or BANK=padded", a)
		}
	}
	return out, nil
}

// logList is a repeatable flag whose values may hold commas (a
// StringSliceFlag would split "sha1,FILE" in two).
type logList []string

// Set appends one value.
func (l *logList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// String joins the values.
func (l *logList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, " ")
}

// logValues returns the values of a logList flag.
func logValues(c *cli.Context, name string) []string {
	if l, ok := c.Generic(name).(*logList); ok && l != nil {
		return *l
	}
	return nil
}
