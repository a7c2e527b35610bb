package tpm

import (
	"bytes"
	"crypto"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// MaxQualifyingData is the most qualifying data a quote carries (a
// TPM2B_DATA holds a TPMT_HA: at most a SHA-512 digest).
const MaxQualifyingData = 64

// quoteTries is how often Quote retries when a PCR changed between the
// quote and the read of the values.
const quoteTries = 5

// Quote is a TPM2_Quote with what a verifier needs to check it offline.
type Quote struct {
	// Attest is the TPMS_ATTEST structure the TPM signed (the contents of
	// the TPM2B_ATTEST, without its size): tpm2_checkquote's message.
	Attest []byte
	// Signature is the TPMT_SIGNATURE over Attest.
	Signature []byte
	// PCRs holds the quoted PCR values: bank -> PCR index -> value. They
	// are what the PCR digest in Attest vouches for once verified.
	PCRs map[string]map[int][]byte
	// AKPublic is the attestation key's TPM2B_PUBLIC.
	AKPublic []byte
}

// Quote makes the TPM sign the PCRs in sel (bank -> PCR indexes) together
// with qualifyingData (a nonce or the digest of what the quote is bound
// to, at most MaxQualifyingData bytes), and returns it with the PCR
// values. The values are read after the quote; if a PCR was extended in
// between, so that they no longer match the signed digest, the quote is
// made again.
func (ak *AK) Quote(sel map[string][]int, qualifyingData []byte) (*Quote, error) {
	if ak.handle == 0 {
		return nil, fmt.Errorf("quote: attestation key is closed")
	}
	if len(qualifyingData) > MaxQualifyingData {
		return nil, fmt.Errorf("quote: qualifying data has %d bytes, at most %d fit",
			len(qualifyingData), MaxQualifyingData)
	}
	clean := make(map[string][]int, len(sel))
	for b, pcrs := range sel {
		if len(pcrs) == 0 {
			continue
		}
		for _, p := range pcrs {
			if err := checkPCR(p); err != nil {
				return nil, fmt.Errorf("quote: %w", err)
			}
		}
		clean[b] = slices.Compact(slices.Sorted(slices.Values(pcrs)))
	}
	if len(clean) == 0 {
		return nil, fmt.Errorf("quote: no pcrs selected")
	}
	banks := make([]string, 0, len(clean))
	for b := range clean {
		banks = append(banks, b)
	}
	if _, err := ak.t.checkBanks(banks); err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	in, err := selection(clean)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}

	for range quoteTries {
		q, again, err := ak.quoteOnce(in, clean, qualifyingData)
		if err != nil || !again {
			return q, err
		}
	}
	return nil, fmt.Errorf("quote on %s: pcrs kept changing during %d tries",
		ak.t.addr, quoteTries)
}

// quoteOnce makes one quote and reads the values; again is true when they
// do not match the signed digest.
func (ak *AK) quoteOnce(in tpm2.TPMLPCRSelection, sel map[string][]int,
	qualifyingData []byte) (q *Quote, again bool, err error) {
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: qualifyingData},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      in,
	}.Execute(ak.t.ch.with(0))
	if err != nil {
		return nil, false, fmt.Errorf("quote on %s: %w", ak.t.addr, err)
	}
	values, err := ak.t.readPCRs(sel)
	if err != nil {
		return nil, false, fmt.Errorf("quote: %w", err)
	}

	q = &Quote{
		Attest:    slices.Clone(rsp.Quoted.Bytes()),
		Signature: tpm2.Marshal(rsp.Signature),
		PCRs:      values,
		AKPublic:  ak.PublicWire(),
	}
	_, info, err := parseQuote(q.Attest)
	if err != nil {
		return nil, false, err
	}
	h, err := signatureHash(&rsp.Signature)
	if err != nil {
		return nil, false, err
	}
	digest, err := pcrDigest(h, info.PCRSelect, values)
	if err != nil {
		return nil, false, err
	}
	return q, !bytes.Equal(digest, info.PCRDigest.Buffer), nil
}

// parseQuote decodes a quote's attest structure (TPMS_ATTEST) and its
// quote information.
func parseQuote(b []byte) (*tpm2.TPMSAttest, *tpm2.TPMSQuoteInfo, error) {
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: attest: %w", ErrQuoteFormat, err)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrQuoteFormat, err)
	}
	return att, info, nil
}

// signatureHash returns the hash a signature was made with, which is also
// the hash of a quote's PCR digest.
func signatureHash(sig *tpm2.TPMTSignature) (crypto.Hash, error) {
	var alg tpm2.TPMIAlgHash
	switch sig.SigAlg {
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, fmt.Errorf("%w: signature: %w", ErrQuoteFormat, err)
		}
		alg = s.Hash
	case tpm2.TPMAlgRSASSA:
		s, err := sig.Signature.RSASSA()
		if err != nil {
			return 0, fmt.Errorf("%w: signature: %w", ErrQuoteFormat, err)
		}
		alg = s.Hash
	case tpm2.TPMAlgRSAPSS:
		s, err := sig.Signature.RSAPSS()
		if err != nil {
			return 0, fmt.Errorf("%w: signature: %w", ErrQuoteFormat, err)
		}
		alg = s.Hash
	default:
		return 0, fmt.Errorf("%w: signature algorithm %#x not supported",
			ErrQuoteFormat, uint16(sig.SigAlg))
	}
	name := bankName(alg)
	if name == "" {
		return 0, fmt.Errorf("%w: signature hash %#x not supported", ErrQuoteFormat, uint16(alg))
	}
	return BankHash(name)
}

// pcrDigest hashes the values of a selection in the TPM's order: banks in
// the selection's order, PCRs ascending within each bank.
func pcrDigest(h crypto.Hash, sel tpm2.TPMLPCRSelection,
	values map[string]map[int][]byte) ([]byte, error) {
	hh := h.New()
	for _, s := range sel.PCRSelections {
		name := bankName(s.Hash)
		if name == "" {
			return nil, fmt.Errorf("%w: quoted bank %#x unknown", ErrQuoteFormat, uint16(s.Hash))
		}
		size, _ := BankHash(name)
		for _, pcr := range selected(s.PCRSelect) {
			v, ok := values[name][pcr]
			if !ok {
				return nil, fmt.Errorf("%w: no value given for quoted pcr %s:%d",
					ErrQuotePCRDigest, name, pcr)
			}
			if len(v) != size.Size() {
				return nil, fmt.Errorf("%w: value of pcr %s:%d has %d bytes, want %d",
					ErrQuotePCRDigest, name, pcr, len(v), size.Size())
			}
			hh.Write(v)
		}
	}
	return hh.Sum(nil), nil
}
