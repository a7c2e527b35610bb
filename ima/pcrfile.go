package ima

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// PCRValues holds PCR values per bank, as read by ParsePCRFile. Values of
// a file that names no bank (evmctl's "PCR-NN: hex") are under the bank
// "".
type PCRValues map[Hash]map[uint32][]byte

// maxPCRFile bounds the size of a PCR file that ParsePCRFile reads.
const maxPCRFile = 1 << 20

// ParsePCRFile reads PCR values in one of the forms tools write them:
//
//	PCR-10: 0123abcd...            (evmctl; also sysfs pcrs, hex in pairs)
//	  sha1:                        (tpm2_pcrread, tpm2-tools 4 and 5)
//	    10: 0x0123ABCD...
//	sha1 :                         (tpm2_pcrread, tpm2-tools 3)
//	  10 : 0123abcd...
//
// Blank lines and lines starting with '#' are skipped. Errors name the
// line. A file over 1 MiB is refused.
func ParsePCRFile(r io.Reader) (PCRValues, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPCRFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading PCR file: %w", err)
	}
	if len(data) > maxPCRFile {
		return nil, fmt.Errorf("PCR file over %d bytes", maxPCRFile)
	}

	out := PCRValues{}
	bank := Hash("")
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxPCRFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("PCR file line %d: %q: no ':'", n, trunc(line))
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)

		// "sha256:" opens a bank of tpm2_pcrread output.
		if val == "" {
			h := tpm2Bank(strings.ToLower(key))
			if !h.Known() {
				return nil, fmt.Errorf("PCR file line %d: bank %q: %w", n, key, ErrUnknownHash)
			}
			bank = h
			continue
		}

		num := key
		evmctl := strings.HasPrefix(strings.ToUpper(key), "PCR-")
		if evmctl {
			num = key[4:]
		}
		pcr, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("PCR file line %d: PCR index %q not a number", n, key)
		}
		if pcr > MaxPCR {
			// No list extends it: a typo would go unseen.
			return nil, fmt.Errorf("PCR file line %d: PCR index %d, at most %d", n, pcr,
				MaxPCR)
		}
		hexval := strings.ReplaceAll(val, " ", "")
		hexval = strings.TrimPrefix(strings.TrimPrefix(hexval, "0x"), "0X")
		v, err := hex.DecodeString(hexval)
		if err != nil || len(v) == 0 {
			return nil, fmt.Errorf("PCR file line %d: value %q not hex", n, trunc(val))
		}

		b := bank
		if evmctl {
			b = ""
		}
		if b != "" && len(v) != b.Size() {
			return nil, fmt.Errorf("PCR file line %d: %s PCR %d has %d bytes, want %d",
				n, b, pcr, len(v), b.Size())
		}
		if out[b] == nil {
			out[b] = map[uint32][]byte{}
		}
		if _, dup := out[b][uint32(pcr)]; dup {
			return nil, fmt.Errorf("PCR file line %d: PCR %d given twice", n, pcr)
		}
		out[b][uint32(pcr)] = v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("PCR file holds no PCR value")
	}
	return out, nil
}

// tpm2Bank returns the kernel's name of a bank as tpm2-tools names it:
// sm3_256 is sm3, sha3_256 is sha3-256; other names are the same.
func tpm2Bank(name string) Hash {
	switch name {
	case "sm3_256":
		return "sm3"
	case "sha3_256", "sha3_384", "sha3_512":
		return Hash(strings.Replace(name, "_", "-", 1))
	}
	return Hash(name)
}

// ForBank returns the values for bank b: those given under b, else the
// values of a file that names no bank, which must have b's size.
func (v PCRValues) ForBank(b Hash) (map[uint32][]byte, error) {
	if m, ok := v[b]; ok {
		return m, nil
	}
	m, ok := v[""]
	if !ok {
		return nil, fmt.Errorf("no PCR values for bank %s", b)
	}
	for pcr, val := range m {
		if len(val) != b.Size() {
			return nil, fmt.Errorf("PCR %d has %d bytes, a %s value has %d",
				pcr, len(val), b, b.Size())
		}
	}
	return m, nil
}

// trunc shortens a line for an error message.
func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// FormatPCRFile writes PCR values in evmctl's form, "PCR-NN: hex", one a
// line in increasing order of PCR.
func FormatPCRFile(w io.Writer, pcrs map[uint32][]byte) error {
	idx := make([]uint32, 0, len(pcrs))
	for i := range pcrs {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		if _, err := fmt.Fprintf(w, "PCR-%02d: %x\n", i, pcrs[i]); err != nil {
			return err
		}
	}
	return nil
}
