package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/internal/atomicfile"
	"github.com/imans-project/imans/tpm"
	"github.com/urfave/cli/v2"
)

// defaultTPM is the TPM the tpm commands use without --tpm: the kernel's
// resource manager, which lets several programs share the TPM.
const defaultTPM = "/dev/tpmrm0"

// tpmCommand is `imans tpm`: read PCRs, make and check quotes.
func tpmCommand() *cli.Command {
	return &cli.Command{
		Name:  "tpm",
		Usage: "read PCRs of a TPM, make quotes and verify them",
		Subcommands: []*cli.Command{
			{
				Name:  "pcrs",
				Usage: "print PCR values (tpm2_pcrread's layout)",
				Flags: []cli.Flag{
					tpmFlag(),
					&cli.StringFlag{Name: "banks",
						Usage: "comma-separated banks (default: all allocated)"},
					&cli.StringFlag{Name: "pcr", Usage: "comma-separated PCR indexes (default: all)"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON: bank -> index -> hex"},
				},
				Action: tpmPCRs,
			},
			{
				Name:  "ak",
				Usage: "print the attestation key's public part (PEM), optionally persist it",
				Flags: append([]cli.Flag{tpmFlag()}, append(akFlags(),
					&cli.StringFlag{Name: "pub", Usage: "also write the TPM2B_PUBLIC to this file"},
					&cli.StringFlag{Name: "persist",
						Usage: "make the key persistent at this handle (0x81xxxxxx)"},
				)...),
				Action: tpmAK,
			},
			{
				Name:  "quote",
				Usage: "quote PCRs with qualifying data and write the quote as JSON",
				Flags: append([]cli.Flag{
					tpmFlag(),
					&cli.StringFlag{Name: "pcrs", Value: "10",
						Usage: "PCR indexes (\"10,11\") or a selection (\"sha1:10+sha256:10\")"},
					&cli.StringFlag{Name: "banks",
						Usage: "banks for plain indexes (default: all allocated)"},
					&cli.StringFlag{Name: "nonce", Usage: "qualifying data, hex"},
					&cli.StringFlag{Name: "data",
						Usage: "qualifying data is the SHA-256 of this file"},
					&cli.StringFlag{Name: "out", Required: true, Usage: "quote file (JSON)"},
					&cli.StringFlag{Name: "tools-dir",
						Usage: "also write tpm2-tools files for tpm2_checkquote here"},
				}, akFlags()...),
				Action: tpmQuote,
			},
			{
				Name:      "verify-quote",
				Usage:     "verify a quote file offline; exit 0 if it holds, 1 if not",
				ArgsUsage: "QUOTE.json",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "nonce", Usage: "expected qualifying data, hex"},
					&cli.StringFlag{Name: "data",
						Usage: "expected qualifying data is the SHA-256 of this file"},
					&cli.StringFlag{Name: "expect",
						Usage: "expected PCR values (tpm2_pcrread layout, as `tpm pcrs` prints)"},
					&cli.StringSliceFlag{Name: "expect-pcr",
						Usage: "an expected PCR value: BANK:INDEX=HEX (repeatable)"},
					&cli.BoolFlag{Name: "json", Usage: "print what the quote tells as JSON"},
				},
				Action: tpmVerifyQuote,
			},
		},
	}
}

// tpmFlag is --tpm, made anew for each command that takes it.
func tpmFlag() cli.Flag {
	return &cli.StringFlag{Name: "tpm", Value: defaultTPM, EnvVars: []string{"IMANS_TPM"},
		Usage: "TPM address: /dev/tpmrm0, /dev/tpm0, unix:/path/swtpm.sock, tcp:host:port"}
}

// akFlags are the flags that choose an attestation key.
func akFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ak", Value: "ecc", Usage: "attestation key algorithm: ecc or rsa"},
		&cli.StringFlag{Name: "hierarchy", Value: "endorsement",
			Usage: "hierarchy of the key: endorsement or owner"},
		&cli.StringFlag{Name: "ak-handle",
			Usage: "use the key persisted at this handle instead of re-creating it"},
	}
}

// tpmOpen opens the TPM named by --tpm.
func tpmOpen(c *cli.Context) (*tpm.TPM, error) {
	return tpm.Open(c.String("tpm"))
}

// tpmSplitList splits a comma-separated flag value, dropping empty items.
func tpmSplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// tpmIndexes parses comma-separated PCR indexes.
func tpmIndexes(s string) ([]int, error) {
	var out []int
	for _, f := range tpmSplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n >= tpm.NumPCRs {
			return nil, fmt.Errorf("pcr index %q is not 0..%d", f, tpm.NumPCRs-1)
		}
		out = append(out, n)
	}
	return out, nil
}

func tpmPCRs(c *cli.Context) error {
	pcrs, err := tpmIndexes(c.String("pcr"))
	if err != nil {
		return fmt.Errorf("--pcr: %w", err)
	}
	if len(pcrs) == 0 {
		for i := range tpm.NumPCRs {
			pcrs = append(pcrs, i)
		}
	}
	t, err := tpmOpen(c)
	if err != nil {
		return err
	}
	defer t.Close()
	banks := tpmSplitList(c.String("banks"))
	if len(banks) == 0 {
		if banks, err = t.Banks(); err != nil {
			return err
		}
	}

	sel := make(map[string][]int, len(banks))
	for _, b := range banks {
		sel[b] = pcrs
	}
	values, err := t.ReadPCRs(sel)
	if err != nil {
		return err
	}
	return tpmPrintPCRs(os.Stdout, values, c.Bool("json"))
}

// tpmPrintPCRs prints values in tpm2_pcrread's layout or as JSON.
func tpmPrintPCRs(w io.Writer, values map[string]map[int][]byte, asJSON bool) error {
	if asJSON {
		out := make(map[string]map[string]string, len(values))
		for b, vs := range values {
			out[b] = make(map[string]string, len(vs))
			for p, v := range vs {
				out[b][strconv.Itoa(p)] = hex.EncodeToString(v)
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, b := range tpm.BankNames() {
		vs, ok := values[b]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %s:\n", b)
		idx := make([]int, 0, len(vs))
		for p := range vs {
			idx = append(idx, p)
		}
		slices.Sort(idx)
		for _, p := range idx {
			fmt.Fprintf(w, "    %-2d: 0x%X\n", p, vs[p])
		}
	}
	return nil
}

// tpmLoadAK creates or loads the attestation key the flags choose.
func tpmLoadAK(c *cli.Context, t *tpm.TPM) (*tpm.AK, error) {
	if h := c.String("ak-handle"); h != "" {
		handle, err := strconv.ParseUint(h, 0, 32)
		if err != nil {
			return nil, fmt.Errorf("--ak-handle %q: %w", h, err)
		}
		return t.LoadAK(uint32(handle))
	}
	return t.CreateAK(tpm.AKOptions{
		Alg:       tpm.KeyAlg(c.String("ak")),
		Hierarchy: tpm.Hierarchy(c.String("hierarchy")),
	})
}

func tpmAK(c *cli.Context) error {
	t, err := tpmOpen(c)
	if err != nil {
		return err
	}
	defer t.Close()
	ak, err := tpmLoadAK(c, t)
	if err != nil {
		return err
	}
	defer ak.Close()

	if h := c.String("persist"); h != "" {
		handle, err := strconv.ParseUint(h, 0, 32)
		if err != nil {
			return fmt.Errorf("--persist %q: %w", h, err)
		}
		if err := ak.Persist(uint32(handle)); err != nil {
			return err
		}
	}
	if p := c.String("pub"); p != "" {
		if err := os.WriteFile(p, ak.PublicWire(), 0o644); err != nil {
			return err
		}
	}
	pemKey, err := ak.PublicPEM()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(pemKey)
	return err
}

// tpmQualifyingData reads --nonce or --data: hex bytes, or a file's SHA-256.
func tpmQualifyingData(c *cli.Context) ([]byte, error) {
	nonce, data := c.String("nonce"), c.String("data")
	switch {
	case nonce != "" && data != "":
		return nil, errors.New("give --nonce or --data, not both")
	case nonce != "":
		b, err := hex.DecodeString(nonce)
		if err != nil {
			return nil, fmt.Errorf("--nonce: %w", err)
		}
		return b, nil
	case data != "":
		b, err := os.ReadFile(data)
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		sum := sha256.Sum256(b)
		return sum[:], nil
	}
	return nil, nil
}

// tpmSelection reads --pcrs and --banks: either indexes applied to the
// banks, or a tpm2-tools selection "sha1:10,11+sha256:10".
func tpmSelection(pcrs, banks string, t *tpm.TPM) (map[string][]int, error) {
	sel := map[string][]int{}
	if strings.Contains(pcrs, ":") {
		for _, part := range strings.Split(pcrs, "+") {
			bank, list, ok := strings.Cut(part, ":")
			if !ok {
				return nil, fmt.Errorf("--pcrs: %q is not BANK:INDEXES", part)
			}
			idx, err := tpmIndexes(list)
			if err != nil {
				return nil, fmt.Errorf("--pcrs: %s: %w", bank, err)
			}
			sel[strings.TrimSpace(bank)] = idx
		}
		return sel, nil
	}

	idx, err := tpmIndexes(pcrs)
	if err != nil {
		return nil, fmt.Errorf("--pcrs: %w", err)
	}
	if len(idx) == 0 {
		return nil, errors.New("--pcrs: no PCR given")
	}
	bs := tpmSplitList(banks)
	if len(bs) == 0 {
		if bs, err = t.Banks(); err != nil {
			return nil, err
		}
	}
	for _, b := range bs {
		sel[b] = idx
	}
	return sel, nil
}

func tpmQuote(c *cli.Context) error {
	nonce, err := tpmQualifyingData(c)
	if err != nil {
		return err
	}
	t, err := tpmOpen(c)
	if err != nil {
		return err
	}
	defer t.Close()
	sel, err := tpmSelection(c.String("pcrs"), c.String("banks"), t)
	if err != nil {
		return err
	}
	ak, err := tpmLoadAK(c, t)
	if err != nil {
		return err
	}
	defer ak.Close()

	q, err := ak.Quote(sel, nonce)
	if err != nil {
		return err
	}
	body, err := json.MarshalIndent(q, "", "  ")
	if err != nil {
		return err
	}
	if err := tpmWriteFile(c.String("out"), append(body, '\n')); err != nil {
		return err
	}

	if dir := c.String("tools-dir"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := q.WriteToolsFiles(dir)
		if err != nil {
			return err
		}
		cmd := fmt.Sprintf("tpm2_checkquote -u %s -m %s -s %s -f %s -l %s -g sha256",
			f.PublicPEM, f.Message, f.Signature, f.PCRs, f.PCRList)
		if len(nonce) > 0 {
			cmd += " -q " + hex.EncodeToString(nonce)
		}
		fmt.Fprintln(os.Stderr, "check with:", cmd)
	}
	return nil
}

// tpmWriteFile writes a file through a temporary file, fsynced, and a
// rename.
func tpmWriteFile(path string, data []byte) error {
	return atomicfile.Write(path, data, atomicfile.Options{Perm: 0o644, NoSyncDir: true})
}

// tpmExpectedPCRs gathers --expect and --expect-pcr.
func tpmExpectedPCRs(c *cli.Context) (map[string]map[int][]byte, error) {
	want := map[string]map[int][]byte{}
	if path := c.String("expect"); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--expect: %w", err)
		}
		defer f.Close()
		values, err := ima.ParsePCRFile(f)
		if err != nil {
			return nil, fmt.Errorf("--expect %s: %w", path, err)
		}
		for bank, vs := range values {
			if bank == "" {
				return nil, fmt.Errorf("--expect %s: values without a bank name "+
					"(PCR-NN form): use the tpm2_pcrread layout", path)
			}
			for p, v := range vs {
				if want[string(bank)] == nil {
					want[string(bank)] = map[int][]byte{}
				}
				want[string(bank)][int(p)] = v
			}
		}
	}
	for _, s := range c.StringSlice("expect-pcr") {
		key, hx, ok := strings.Cut(s, "=")
		bank, idx, ok2 := strings.Cut(key, ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("--expect-pcr %q: want BANK:INDEX=HEX", s)
		}
		values, err := tpm.ParsePCRValues(map[string]map[string]string{bank: {idx: hx}})
		if err != nil {
			return nil, fmt.Errorf("--expect-pcr %q: %w", s, err)
		}
		for p, v := range values[bank] {
			if want[bank] == nil {
				want[bank] = map[int][]byte{}
			}
			want[bank][p] = v
		}
	}
	return want, nil
}

func tpmVerifyQuote(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("verify-quote: give one quote file", 1)
	}
	nonce, err := tpmQualifyingData(c)
	if err != nil {
		return err
	}
	want, err := tpmExpectedPCRs(c)
	if err != nil {
		return err
	}
	body, err := os.ReadFile(c.Args().First())
	if err != nil {
		return err
	}
	var q tpm.Quote
	if err := json.Unmarshal(body, &q); err != nil {
		return fmt.Errorf("%s: %w", c.Args().First(), err)
	}

	info, err := tpm.VerifyQuote(&q, nonce)
	if err != nil {
		return err
	}
	if len(want) > 0 {
		if err := q.ComparePCRs(want); err != nil {
			return err
		}
	}

	if c.Bool("json") {
		out := map[string]any{
			"verified":        true,
			"clock":           info.Clock,
			"reset_count":     info.ResetCount,
			"restart_count":   info.RestartCount,
			"safe":            info.Safe,
			"firmware":        fmt.Sprintf("%#x", info.FirmwareVersion),
			"qualifying_data": hex.EncodeToString(info.QualifyingData),
			"pcrs_checked":    len(want) > 0,
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return nil
	}
	fmt.Printf("quote verified: signature, magic, type, qualifying data, pcr digest\n")
	fmt.Printf("clock %d ms, resetCount %d, restartCount %d, safe %v\n",
		info.Clock, info.ResetCount, info.RestartCount, info.Safe)
	if len(want) > 0 {
		fmt.Printf("expected pcr values: all equal\n")
	}
	return tpmPrintPCRs(os.Stdout, q.PCRs, false)
}
