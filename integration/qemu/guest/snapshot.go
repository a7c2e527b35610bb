package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	tpmSysfs = "/sys/class/tpm/tpm0"
	imaDir   = "/sys/kernel/security/ima"
)

// pcrBanks are tried in this order; a bank the TPM has not allocated has no
// folder in sysfs and is left out.
var pcrBanks = []string{"sha1", "sha256", "sha384", "sha512", "sm3_256"}

// snapshotCmd reads every PCR of every allocated bank first and then the
// measurement lists, so that the lists hold at least the entries the PCRs
// account for. Nothing between the two steps opens a measured file.
func snapshotCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("snapshot needs one folder")
	}
	dir := args[0]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	pcrs := map[string]string{}
	for _, bank := range pcrBanks {
		text, err := readBank(bank)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		pcrs[bank] = text
	}

	lists := map[string][]byte{}
	entries, err := os.ReadDir(imaDir)
	if err != nil {
		return fmt.Errorf("read %s: %w", imaDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.Contains(name, "runtime_measurements") && name != "violations" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(imaDir, name))
		if err != nil {
			return err
		}
		lists[name] = data
	}

	for bank, text := range pcrs {
		path := filepath.Join(dir, "pcr-"+bank+".txt")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	for name, data := range lists {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readBank gives the bank's 24 PCRs as evmctl's "PCR-NN: hex" lines, hex
// in lower case (sysfs prints upper case).
func readBank(bank string) (string, error) {
	var b strings.Builder
	for i := 0; i < 24; i++ {
		path := fmt.Sprintf("%s/pcr-%s/%d", tpmSysfs, bank, i)
		data, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "PCR-%02d: %s\n", i, strings.ToLower(strings.TrimSpace(string(data))))
	}
	return b.String(), nil
}
