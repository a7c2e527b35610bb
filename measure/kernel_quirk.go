package measure

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/tpm"
)

// quirkHostPCR is the kernel quirk the collector looks for: a kernel with
// only the posted v15 series plus measure support extends namespace
// entries into the host's PCR 10 (without adding them to the host's list)
// and measures a file once across all namespaces. It shows as a host list
// that replayed to the host's PCR 10 when the container started and no
// longer does when it stops.
const quirkHostPCR = "kernel quirk: the host's measurement list stopped replaying to the " +
	"host's PCR 10 while the container ran; this kernel extends namespace entries " +
	"into the host PCR (the posted v15 series with measure support), and measures " +
	"a file once across all namespaces, so this container's list may lack files " +
	"first measured elsewhere"

// hostReplay is the outcome of one check of the host's list against the
// host's PCR 10.
type hostReplay struct {
	checked bool   // false: nothing to compare (no host IMA or no TPM)
	replays bool   // a prefix of the host list replays to PCR 10
	detail  string // for the step log
}

// checkHostReplay reads the host's PCR 10 and then the host's list, and
// says whether some prefix of the list replays to that value (the kernel
// appends an entry before it extends the PCR, so the list may be ahead).
func checkHostReplay(listPath, tpmAddr string) hostReplay {
	if listPath == "" || tpmAddr == "" {
		return hostReplay{detail: "check off"}
	}
	if _, err := os.Stat(listPath); err != nil {
		return hostReplay{detail: "no host list: " + reasonOf(err)}
	}
	if strings.HasPrefix(tpmAddr, "/") {
		if _, err := os.Stat(tpmAddr); err != nil {
			return hostReplay{detail: "no host TPM: " + reasonOf(err)}
		}
	}

	bank, want, err := readHostPCR10(tpmAddr)
	if err != nil {
		return hostReplay{detail: "host TPM: " + err.Error()}
	}

	f, err := os.Open(listPath)
	if err != nil {
		return hostReplay{detail: "host list: " + err.Error()}
	}
	defer f.Close()

	rd := ima.NewBinaryReader(f, ima.Bank(ima.SHA1))
	r := ima.NewReplay(bank)
	match := func() bool {
		return bytes.Equal(r.PCRMode(bank, MeasurementPCR, ima.ExtendHash), want) ||
			bytes.Equal(r.PCRMode(bank, MeasurementPCR, ima.ExtendPadded), want)
	}
	found := match()
	for {
		e, err := rd.Next()
		if err != nil && !errors.Is(err, ima.ErrTemplateHash) {
			if errors.Is(err, io.EOF) {
				break
			}
			return hostReplay{detail: "host list: " + err.Error()}
		}
		if e.PCR != MeasurementPCR {
			continue
		}
		if err := r.Extend(e); err != nil {
			return hostReplay{detail: "host list: " + err.Error()}
		}
		found = found || match()
	}

	detail := fmt.Sprintf("host list of %d entries, %s PCR 10 %x", r.Entries(), bank, want)
	return hostReplay{checked: true, replays: found, detail: detail}
}

// readHostPCR10 reads PCR 10 of the host TPM in sha1 where allocated, else
// sha256.
func readHostPCR10(addr string) (ima.Hash, []byte, error) {
	t, err := tpm.Open(addr)
	if err != nil {
		return "", nil, err
	}
	defer t.Close()

	banks, err := t.Banks()
	if err != nil {
		return "", nil, err
	}
	bank := ima.SHA1
	if !slices.Contains(banks, string(bank)) {
		bank = ima.SHA256
	}
	v, err := t.ReadPCR(MeasurementPCR, string(bank))
	if err != nil {
		return "", nil, err
	}
	return bank, v[string(bank)], nil
}

// hostReplayAtStart checks the host's replay before activation.
func (c *kernelCollector) hostReplayAtStart() hostReplay {
	h := checkHostReplay(c.cfg.hostList, c.cfg.hostTPM)
	c.step("check the host list against the host PCR 10 (before)", replayText(h))
	return h
}

// hostReplayAtStop checks again and reports the quirk when the host list
// replayed at the start and no longer does.
func (c *kernelCollector) hostReplayAtStop(start hostReplay) {
	h := checkHostReplay(c.cfg.hostList, c.cfg.hostTPM)
	c.step("check the host list against the host PCR 10 (after)", replayText(h))
	if start.checked && start.replays && h.checked && !h.replays {
		c.addIncomplete(quirkHostPCR)
	}
}

func replayText(h hostReplay) string {
	switch {
	case !h.checked:
		return "not checked: " + h.detail
	case h.replays:
		return "ok: replays: " + h.detail
	}
	return "does not replay: " + h.detail
}

func reasonOf(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
