package qemu

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// Snapshot holds what imans-guest snapshot took in one step: every PCR of
// every allocated bank ("pcr-sha256.txt", as evmctl's PCR-NN lines), then
// the kernel's measurement lists by their securityfs names
// ("ascii_runtime_measurements", "binary_runtime_measurements_sha256", ...).
type Snapshot struct {
	Files map[string][]byte
}

// ASCII gives the classic ASCII list (sha1 template hashes).
func (s *Snapshot) ASCII() string {
	return string(s.Files["ascii_runtime_measurements"])
}

// Binary gives the classic binary list.
func (s *Snapshot) Binary() []byte {
	return s.Files["binary_runtime_measurements"]
}

// PCRFile gives a bank's "PCR-NN: hex" text, empty if the bank is not
// allocated.
func (s *Snapshot) PCRFile(bank string) string {
	return string(s.Files["pcr-"+bank+".txt"])
}

// MeasureRun boots with cfg, loads policy (when not empty; one rule a
// write(), committed) before cfg.Script runs, and takes a snapshot after
// it. It serves cross-checks against the kernel: run a workload under a
// policy, get the kernel's own list. A script that fails is an error.
// Mind that a custom policy without dont_measure rules for sysfs and
// securityfs measures the snapshot's own reads (see docs/harness.md).
func MeasureRun(ctx context.Context, cfg Config, policy string) (*Snapshot, *Result, error) {
	const policyPath = "/imans/policy"
	const dir = "/run/imans-snapshot"

	files := map[string][]byte{}
	for p, data := range cfg.Files {
		files[p] = data
	}
	script := "set -e\n"
	if policy != "" {
		files[policyPath] = []byte(policy)
		script += "imans-guest load " + policyPath + "\n"
	}
	cfg.Files = files
	cfg.Script = script + "(\n" + cfg.Script + "\n)\nimans-guest snapshot " + dir + "\n"
	cfg.Fetch = append(cfg.Fetch, dir)

	res, err := Boot(ctx, cfg)
	if err != nil {
		return nil, res, err
	}
	if res.Status != 0 {
		return nil, res, fmt.Errorf("guest script exit %d: %s", res.Status, res.Output)
	}
	snap := &Snapshot{Files: map[string][]byte{}}
	for p, data := range res.Files {
		if strings.HasPrefix(p, dir+"/") {
			snap.Files[path.Base(p)] = data
		}
	}
	return snap, res, nil
}
