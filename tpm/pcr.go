package tpm

import (
	"crypto"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// NumPCRs is the number of PCRs of a PC Client TPM; valid indexes are
// 0 to NumPCRs-1.
const NumPCRs = 24

// bankAlgs maps a bank's name to its TPM algorithm, in the order banks are
// listed.
var bankAlgs = []struct {
	name string
	alg  tpm2.TPMAlgID
	hash crypto.Hash
}{
	{"sha1", tpm2.TPMAlgSHA1, crypto.SHA1},
	{"sha256", tpm2.TPMAlgSHA256, crypto.SHA256},
	{"sha384", tpm2.TPMAlgSHA384, crypto.SHA384},
	{"sha512", tpm2.TPMAlgSHA512, crypto.SHA512},
}

// BankNames returns the bank names this package knows, in canonical order.
func BankNames() []string {
	names := make([]string, len(bankAlgs))
	for i, b := range bankAlgs {
		names[i] = b.name
	}
	return names
}

// bankAlg returns the algorithm of a bank name.
func bankAlg(name string) (tpm2.TPMAlgID, error) {
	for _, b := range bankAlgs {
		if b.name == name {
			return b.alg, nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of %v)", ErrUnknownBank, name, BankNames())
}

// bankName returns the name of an algorithm, "" for others.
func bankName(alg tpm2.TPMAlgID) string {
	for _, b := range bankAlgs {
		if b.alg == alg {
			return b.name
		}
	}
	return ""
}

// BankHash returns the hash function of a bank.
func BankHash(name string) (crypto.Hash, error) {
	for _, b := range bankAlgs {
		if b.name == name {
			return b.hash, nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of %v)", ErrUnknownBank, name, BankNames())
}

// Banks returns the allocated PCR banks that this package knows, in
// canonical order (sha1, sha256, sha384, sha512). A bank counts as
// allocated when at least one of its PCRs is. The answer is read once
// and kept: allocation changes only with a TPM reset.
func (t *TPM) Banks() ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.banks != nil {
		return slices.Clone(t.banks), nil
	}

	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapPCRs,
		PropertyCount: 1,
	}.Execute(t.ch.with(0))
	if err != nil {
		return nil, fmt.Errorf("read allocated pcr banks of %s: %w", t.addr, err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("read allocated pcr banks of %s: %w", t.addr, err)
	}

	var allocated []tpm2.TPMAlgID
	for _, s := range sel.PCRSelections {
		if slices.ContainsFunc(s.PCRSelect, func(b byte) bool { return b != 0 }) {
			allocated = append(allocated, s.Hash)
		}
	}
	banks := []string{}
	for _, b := range bankAlgs {
		if slices.Contains(allocated, b.alg) {
			banks = append(banks, b.name)
		}
	}
	t.banks = banks
	return slices.Clone(banks), nil
}

// checkBanks validates bank names against the allocated banks; none
// given means all allocated banks.
func (t *TPM) checkBanks(banks []string) ([]string, error) {
	allocated, err := t.Banks()
	if err != nil {
		return nil, err
	}
	if len(banks) == 0 {
		return allocated, nil
	}
	for _, b := range banks {
		if _, err := bankAlg(b); err != nil {
			return nil, err
		}
		if !slices.Contains(allocated, b) {
			return nil, fmt.Errorf("tpm %s: %w: %s (allocated: %v)",
				t.addr, ErrBankNotAllocated, b, allocated)
		}
	}
	return banks, nil
}

// checkPCR validates a PCR index.
func checkPCR(pcr int) error {
	if pcr < 0 || pcr >= NumPCRs {
		return fmt.Errorf("pcr %d out of range 0..%d", pcr, NumPCRs-1)
	}
	return nil
}

// ReadPCR returns the value of one PCR in each named bank, keyed by bank
// name; no banks means every allocated bank. A bank that is not allocated
// gives ErrBankNotAllocated.
func (t *TPM) ReadPCR(pcr int, banks ...string) (map[string][]byte, error) {
	if err := checkPCR(pcr); err != nil {
		return nil, err
	}
	banks, err := t.checkBanks(banks)
	if err != nil {
		return nil, err
	}

	want := make(map[string][]int, len(banks))
	for _, b := range banks {
		want[b] = []int{pcr}
	}
	values, err := t.readPCRs(want)
	if err != nil {
		return nil, fmt.Errorf("read pcr %d: %w", pcr, err)
	}

	out := make(map[string][]byte, len(banks))
	for _, b := range banks {
		out[b] = values[b][pcr]
	}
	return out, nil
}

// ReadPCRs returns the values of several PCRs in several banks: bank ->
// PCR index -> value. The banks must be allocated.
func (t *TPM) ReadPCRs(sel map[string][]int) (map[string]map[int][]byte, error) {
	banks := make([]string, 0, len(sel))
	for b, pcrs := range sel {
		banks = append(banks, b)
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return nil, err
			}
		}
	}
	if _, err := t.checkBanks(banks); err != nil {
		return nil, err
	}
	return t.readPCRs(sel)
}

// readPCRs reads a selection, in as many PCR_Read commands as the TPM
// needs (it returns at most eight values per command and says which).
func (t *TPM) readPCRs(sel map[string][]int) (map[string]map[int][]byte, error) {
	out := make(map[string]map[int][]byte)
	pending := make(map[string][]int)
	for b, pcrs := range sel {
		out[b] = make(map[int][]byte)
		if len(pcrs) > 0 {
			pending[b] = slices.Clone(pcrs)
		}
	}

	for len(pending) > 0 {
		in, err := selection(pending)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: in}.Execute(t.ch.with(0))
		if err != nil {
			return nil, fmt.Errorf("tpm %s: pcr read: %w", t.addr, err)
		}

		got, before := 0, countPending(pending)
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			name := bankName(s.Hash)
			for _, pcr := range selected(s.PCRSelect) {
				if got >= len(rsp.PCRValues.Digests) {
					return nil, fmt.Errorf("tpm %s: pcr read returned fewer values than selected",
						t.addr)
				}
				value := rsp.PCRValues.Digests[got].Buffer
				got++
				if !slices.Contains(pending[name], pcr) {
					continue // not asked for, or already read
				}
				out[name][pcr] = value
				pending[name] = slices.DeleteFunc(pending[name],
					func(p int) bool { return p == pcr })
				if len(pending[name]) == 0 {
					delete(pending, name)
				}
			}
		}
		if got == 0 || countPending(pending) == before {
			var left []string
			for b := range pending {
				left = append(left, b)
			}
			slices.Sort(left)
			return nil, fmt.Errorf("tpm %s: %w: no values returned for %v",
				t.addr, ErrBankNotAllocated, left)
		}
	}
	return out, nil
}

// countPending counts the PCRs still to read.
func countPending(pending map[string][]int) int {
	n := 0
	for _, pcrs := range pending {
		n += len(pcrs)
	}
	return n
}

// selection builds a PCR selection in canonical bank order.
func selection(sel map[string][]int) (tpm2.TPMLPCRSelection, error) {
	var out tpm2.TPMLPCRSelection
	for _, b := range bankAlgs {
		pcrs, ok := sel[b.name]
		if !ok {
			continue
		}
		us := make([]uint, len(pcrs))
		for i, p := range pcrs {
			us[i] = uint(p)
		}
		out.PCRSelections = append(out.PCRSelections, tpm2.TPMSPCRSelection{
			Hash:      b.alg,
			PCRSelect: tpm2.PCClientCompatible.PCRs(us...),
		})
	}
	for b := range sel {
		if _, err := bankAlg(b); err != nil {
			return out, err
		}
	}
	return out, nil
}

// selected lists the PCR indexes set in a selection bitmap, ascending.
func selected(bitmap []byte) []int {
	var pcrs []int
	for i, b := range bitmap {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, i*8+bit)
			}
		}
	}
	return pcrs
}

// Extend extends one PCR in one command (TPM2_PCR_Extend), with one digest
// per bank. digests must hold a digest for every allocated bank and no
// other, each of its bank's size: a PCR extended in only some banks could
// no longer be replayed, so a missing bank is an error.
func (t *TPM) Extend(pcr int, digests map[string][]byte) error {
	if err := checkPCR(pcr); err != nil {
		return err
	}
	allocated, err := t.Banks()
	if err != nil {
		return err
	}

	var values tpm2.TPMLDigestValues
	for b := range digests {
		if _, err := bankAlg(b); err != nil {
			return fmt.Errorf("extend pcr %d: %w", pcr, err)
		}
		if !slices.Contains(allocated, b) {
			return fmt.Errorf("extend pcr %d: tpm %s: %w: %s (allocated: %v)",
				pcr, t.addr, ErrBankNotAllocated, b, allocated)
		}
	}
	for _, b := range allocated {
		d, ok := digests[b]
		if !ok {
			return fmt.Errorf("extend pcr %d: no digest for allocated bank %s", pcr, b)
		}
		h, _ := BankHash(b)
		if len(d) != h.Size() {
			return fmt.Errorf("extend pcr %d: %s digest has %d bytes, want %d",
				pcr, b, len(d), h.Size())
		}
		alg, _ := bankAlg(b)
		values.Digests = append(values.Digests, tpm2.TPMTHA{HashAlg: alg, Digest: d})
	}

	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{
			Handle: tpm2.TPMHandle(pcr),
			Auth:   tpm2.PasswordAuth(nil),
		},
		Digests: values,
	}.Execute(t.ch.with(0))
	if err != nil {
		return fmt.Errorf("extend pcr %d: tpm %s: %w", pcr, t.addr, err)
	}
	return nil
}
