package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"sort"

	"github.com/google/go-tpm/tpm2"
)

// Values of a TPMS_ATTEST's first fields.
const (
	generatedValue = 0xff544347 // TPM_GENERATED_VALUE
	stAttestQuote  = 0x8018     // TPM_ST_ATTEST_QUOTE
)

// QuoteInfo is what a verified quote tells, all of it signed by the TPM.
// ResetCount, RestartCount and FirmwareVersion are obfuscated by the TPM
// when the attestation key is not in the endorsement or platform
// hierarchy; compare them only between quotes of the same key.
type QuoteInfo struct {
	// Clock is the TPM's clock in milliseconds: time it has been powered
	// since it was last cleared.
	Clock uint64
	// ResetCount counts TPM resets (reboots) since the last clear.
	ResetCount uint32
	// RestartCount counts TPM restarts and resumes since the last reset.
	RestartCount uint32
	// Safe says no greater Clock value was reported before.
	Safe bool
	// FirmwareVersion is the vendor's firmware version number.
	FirmwareVersion uint64
	// Signer is the qualified name of the attestation key.
	Signer []byte
	// QualifyingData is the data the quote was bound to.
	QualifyingData []byte
	// PCRs is the quoted selection: bank -> PCR indexes, ascending.
	PCRs map[string][]int
}

// VerifyQuote checks a quote offline, in this order: the attestation key
// is a restricted signing key; the signature over Attest verifies with it;
// Attest starts with TPM_GENERATED_VALUE and is a quote; its qualifying
// data equals qualifyingData; the PCR values in q hash to its PCR digest,
// and q holds no value that was not quoted. Every failure wraps ErrQuote
// and the sentinel of the check that failed (ErrQuoteSignature,
// ErrQuoteMagic, ...). It does not say whether the key belongs to a TPM
// the caller trusts: that is the caller's business, from AKPublic.
func VerifyQuote(q *Quote, qualifyingData []byte) (*QuoteInfo, error) {
	info, err := verifyQuote(q, qualifyingData)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrQuote, err)
	}
	return info, nil
}

// verifyQuote does the checks of VerifyQuote.
func verifyQuote(q *Quote, qualifyingData []byte) (*QuoteInfo, error) {
	if q == nil {
		return nil, fmt.Errorf("%w: no quote", ErrQuoteFormat)
	}
	pub, err := parsePublic(q.AKPublic)
	if err != nil {
		return nil, err
	}
	if err := checkAKPublic(pub); err != nil {
		return nil, err
	}

	if err := checkSignature(pub, q.Signature, q.Attest); err != nil {
		return nil, err
	}

	if len(q.Attest) < 6 {
		return nil, fmt.Errorf("%w: attest has %d bytes", ErrQuoteFormat, len(q.Attest))
	}
	if m := binary.BigEndian.Uint32(q.Attest); m != generatedValue {
		return nil, fmt.Errorf("%w: magic %#08x", ErrQuoteMagic, m)
	}
	if ty := binary.BigEndian.Uint16(q.Attest[4:]); ty != stAttestQuote {
		return nil, fmt.Errorf("%w: type %#04x, want %#04x", ErrQuoteType, ty, stAttestQuote)
	}
	att, quote, err := parseQuote(q.Attest)
	if err != nil {
		return nil, err
	}

	if !bytes.Equal(att.ExtraData.Buffer, qualifyingData) {
		return nil, fmt.Errorf("%w: quote has %s, want %s", ErrQuoteNonce,
			hexOrEmpty(att.ExtraData.Buffer), hexOrEmpty(qualifyingData))
	}

	if err := checkPCRDigest(q, quote); err != nil {
		return nil, err
	}

	sel := make(map[string][]int)
	for _, s := range quote.PCRSelect.PCRSelections {
		sel[bankName(s.Hash)] = append(sel[bankName(s.Hash)], selected(s.PCRSelect)...)
	}
	return &QuoteInfo{
		Clock:           att.ClockInfo.Clock,
		ResetCount:      att.ClockInfo.ResetCount,
		RestartCount:    att.ClockInfo.RestartCount,
		Safe:            bool(att.ClockInfo.Safe),
		FirmwareVersion: att.FirmwareVersion,
		Signer:          slices.Clone(att.QualifiedSigner.Buffer),
		QualifyingData:  slices.Clone(att.ExtraData.Buffer),
		PCRs:            sel,
	}, nil
}

// checkSignature verifies a TPMT_SIGNATURE over msg with a public area.
func checkSignature(pub *tpm2.TPMTPublic, sigBytes, msg []byte) error {
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return fmt.Errorf("%w: ak public: %w", ErrQuoteFormat, err)
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](sigBytes)
	if err != nil {
		return fmt.Errorf("%w: signature: %w", ErrQuoteFormat, err)
	}
	h, err := signatureHash(sig)
	if err != nil {
		return err
	}
	hh := h.New()
	hh.Write(msg)
	digest := hh.Sum(nil)

	switch k := key.(type) {
	case *ecdsa.PublicKey:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return fmt.Errorf("%w: ecc key, %#x signature", ErrQuoteSignature,
				uint16(sig.SigAlg))
		}
		r := new(big.Int).SetBytes(s.SignatureR.Buffer)
		ss := new(big.Int).SetBytes(s.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest, r, ss) {
			return fmt.Errorf("%w: ecdsa %v signature does not match", ErrQuoteSignature, h)
		}
	case *rsa.PublicKey:
		switch sig.SigAlg {
		case tpm2.TPMAlgRSASSA:
			s, _ := sig.Signature.RSASSA()
			if err := rsa.VerifyPKCS1v15(k, h, digest, s.Sig.Buffer); err != nil {
				return fmt.Errorf("%w: rsassa %v: %w", ErrQuoteSignature, h, err)
			}
		case tpm2.TPMAlgRSAPSS:
			s, _ := sig.Signature.RSAPSS()
			opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h}
			if err := rsa.VerifyPSS(k, h, digest, s.Sig.Buffer, opts); err != nil {
				return fmt.Errorf("%w: rsapss %v: %w", ErrQuoteSignature, h, err)
			}
		default:
			return fmt.Errorf("%w: rsa key, %#x signature", ErrQuoteSignature,
				uint16(sig.SigAlg))
		}
	default:
		return fmt.Errorf("%w: ak public: unsupported key type %T", ErrQuoteFormat, key)
	}
	return nil
}

// checkPCRDigest compares the signed PCR digest with the hash of the
// values in q, and refuses values for PCRs that were not quoted.
func checkPCRDigest(q *Quote, info *tpm2.TPMSQuoteInfo) error {
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](q.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature: %w", ErrQuoteFormat, err)
	}
	h, err := signatureHash(sig)
	if err != nil {
		return err
	}
	digest, err := pcrDigest(h, info.PCRSelect, q.PCRs)
	if err != nil {
		return err
	}
	if !bytes.Equal(digest, info.PCRDigest.Buffer) {
		return fmt.Errorf("%w: values hash to %x, the tpm signed %x", ErrQuotePCRDigest,
			digest, info.PCRDigest.Buffer)
	}

	quoted := make(map[string][]int)
	for _, s := range info.PCRSelect.PCRSelections {
		quoted[bankName(s.Hash)] = selected(s.PCRSelect)
	}
	for bank, values := range q.PCRs {
		for pcr := range values {
			if !slices.Contains(quoted[bank], pcr) {
				return fmt.Errorf("%w: a value is given for pcr %s:%d, which was not quoted",
					ErrQuotePCRDigest, bank, pcr)
			}
		}
	}
	return nil
}

// ComparePCRs compares the quote's PCR values with expected ones (bank ->
// PCR index -> value). Call it after VerifyQuote: only then are the values
// vouched for. Every expected PCR must be quoted and equal; the error
// names each one that is not.
func (q *Quote) ComparePCRs(expected map[string]map[int][]byte) error {
	var bad []string
	banks := make([]string, 0, len(expected))
	for b := range expected {
		banks = append(banks, b)
	}
	sort.Strings(banks)
	for _, b := range banks {
		pcrs := make([]int, 0, len(expected[b]))
		for p := range expected[b] {
			pcrs = append(pcrs, p)
		}
		sort.Ints(pcrs)
		for _, p := range pcrs {
			got, ok := q.PCRs[b][p]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s:%d not quoted", b, p))
			case !bytes.Equal(got, expected[b][p]):
				bad = append(bad, fmt.Sprintf("%s:%d is %x, want %x", b, p, got,
					expected[b][p]))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %w: %v", ErrQuote, ErrQuotePCRValue, bad)
	}
	return nil
}

// hexOrEmpty prints bytes in hex, and "(empty)" for none.
func hexOrEmpty(b []byte) string {
	if len(b) == 0 {
		return "(empty)"
	}
	return fmt.Sprintf("%x", b)
}
