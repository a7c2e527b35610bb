package tpm

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// QuoteFormat names the JSON form of a quote; it is the file's "format".
const QuoteFormat = "imans-quote/1"

// quoteJSON is the JSON form of a Quote: byte strings in hex, PCR values
// keyed by bank, then by decimal PCR index.
type quoteJSON struct {
	Format    string                       `json:"format"`
	Attest    string                       `json:"attest"`
	Signature string                       `json:"signature"`
	PCRs      map[string]map[string]string `json:"pcrs"`
	AKPublic  string                       `json:"ak_public"`
	AKPEM     string                       `json:"ak_pem,omitempty"`
}

// MarshalJSON encodes the quote as an "imans-quote/1" document, with the
// key's PEM form added for readers that want it (the wire form is what
// the quote is checked with).
func (q *Quote) MarshalJSON() ([]byte, error) {
	j := quoteJSON{
		Format:    QuoteFormat,
		Attest:    hex.EncodeToString(q.Attest),
		Signature: hex.EncodeToString(q.Signature),
		PCRs:      make(map[string]map[string]string),
		AKPublic:  hex.EncodeToString(q.AKPublic),
	}
	if p, err := PublicPEM(q.AKPublic); err == nil {
		j.AKPEM = string(p)
	}
	for bank, values := range q.PCRs {
		j.PCRs[bank] = make(map[string]string)
		for pcr, v := range values {
			j.PCRs[bank][strconv.Itoa(pcr)] = hex.EncodeToString(v)
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes an "imans-quote/1" document. The PEM key, if any,
// is ignored: ak_public is authoritative.
func (q *Quote) UnmarshalJSON(b []byte) error {
	var j quoteJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%w: %w", ErrQuoteFormat, err)
	}
	if j.Format != QuoteFormat {
		return fmt.Errorf("%w: format %q, want %q", ErrQuoteFormat, j.Format, QuoteFormat)
	}

	var out Quote
	fields := []struct {
		name string
		src  string
		dst  *[]byte
	}{
		{"attest", j.Attest, &out.Attest},
		{"signature", j.Signature, &out.Signature},
		{"ak_public", j.AKPublic, &out.AKPublic},
	}
	for _, f := range fields {
		v, err := hex.DecodeString(f.src)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrQuoteFormat, f.name, err)
		}
		*f.dst = v
	}

	values, err := ParsePCRValues(j.PCRs)
	if err != nil {
		return fmt.Errorf("%w: pcrs: %w", ErrQuoteFormat, err)
	}
	out.PCRs = values
	*q = out
	return nil
}

// ParsePCRValues converts bank -> decimal PCR index -> hex value, the form
// of the "pcrs" object of a quote file, checking names, indexes and
// sizes.
func ParsePCRValues(in map[string]map[string]string) (map[string]map[int][]byte, error) {
	out := make(map[string]map[int][]byte, len(in))
	for bank, values := range in {
		h, err := BankHash(bank)
		if err != nil {
			return nil, err
		}
		out[bank] = make(map[int][]byte, len(values))
		for idx, hx := range values {
			pcr, err := strconv.Atoi(idx)
			if err != nil || checkPCR(pcr) != nil {
				return nil, fmt.Errorf("%s: pcr index %q is not 0..%d", bank, idx, NumPCRs-1)
			}
			v, err := hex.DecodeString(hx)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", bank, pcr, err)
			}
			if len(v) != h.Size() {
				return nil, fmt.Errorf("%s:%d: value has %d bytes, want %d", bank, pcr, len(v),
					h.Size())
			}
			out[bank][pcr] = v
		}
	}
	return out, nil
}

// ToolsFiles names the files WriteToolsFiles wrote and the PCR list, so
// that tpm2-tools 5 can check the quote:
//
//	tpm2_checkquote -u PublicPEM -m Message -s Signature -f PCRs \
//	    -l PCRList -g sha256 -q HEX
type ToolsFiles struct {
	Message    string // Attest
	Signature  string // TPMT_SIGNATURE
	PCRs       string // the quoted values, concatenated in quote order
	PublicPEM  string // the key, PEM
	PublicWire string // the key, TPM2B_PUBLIC
	PCRList    string // the selection, as "sha1:10,11+sha256:10"
}

// WriteToolsFiles writes the quote into dir in tpm2-tools' file formats.
// The PCR values are written in the order of the signed selection, which
// must therefore parse.
func (q *Quote) WriteToolsFiles(dir string) (*ToolsFiles, error) {
	_, info, err := parseQuote(q.Attest)
	if err != nil {
		return nil, err
	}
	var (
		values []byte
		list   []string
	)
	for _, s := range info.PCRSelect.PCRSelections {
		bank := bankName(s.Hash)
		pcrs := selected(s.PCRSelect)
		var idx []string
		for _, p := range pcrs {
			v, ok := q.PCRs[bank][p]
			if !ok {
				return nil, fmt.Errorf("%w: no value for quoted pcr %s:%d", ErrQuoteFormat,
					bank, p)
			}
			values = append(values, v...)
			idx = append(idx, strconv.Itoa(p))
		}
		list = append(list, bank+":"+strings.Join(idx, ","))
	}
	pemKey, err := PublicPEM(q.AKPublic)
	if err != nil {
		return nil, err
	}

	f := &ToolsFiles{
		Message:    filepath.Join(dir, "quote.msg"),
		Signature:  filepath.Join(dir, "quote.sig"),
		PCRs:       filepath.Join(dir, "quote.pcrs"),
		PublicPEM:  filepath.Join(dir, "ak.pem"),
		PublicWire: filepath.Join(dir, "ak.pub"),
		PCRList:    strings.Join(list, "+"),
	}
	writes := []struct {
		path string
		data []byte
	}{
		{f.Message, q.Attest},
		{f.Signature, q.Signature},
		{f.PCRs, values},
		{f.PublicPEM, pemKey},
		{f.PublicWire, q.AKPublic},
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
			return nil, fmt.Errorf("write quote files: %w", err)
		}
	}
	return f, nil
}

// Selection returns the PCRs the quote covers, from the signed attest
// structure: bank -> PCR indexes, ascending.
func (q *Quote) Selection() (map[string][]int, error) {
	_, info, err := parseQuote(q.Attest)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]int)
	for _, s := range info.PCRSelect.PCRSelections {
		out[bankName(s.Hash)] = slices.Clone(selected(s.PCRSelect))
	}
	return out, nil
}
