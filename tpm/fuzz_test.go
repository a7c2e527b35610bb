package tpm

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
)

// A quote made by swtpm with an ECC AK over sha256 PCR 10, nonce 00112233,
// kept to seed the fuzz targets with bytes of the real shapes.
const (
	seedAttest = "ff54434780180022000b628e5de7271c18cf9dcecf0ac166b7244d988a9e28f1457a" +
		"dbccca3c4abdc2c200040011223300000000000000b300000001000000000120191023001636" +
		"3600000002000403000400000b03000c00002021f2b340b4129fac24b4380ec053af7ea3fb20" +
		"e61d35f6a603b89a1680fada94"
	seedSig = "0018000b00209372d2d88f5eaf64f82f27d5acb4c034d4a8df33b8bfc5d3f7b6d1c5863031" +
		"0b0020a8fff0103f95bceaa13ca9f349a8ca4c47e3cecaa6960e2f34a901f25176b0bc"
)

// FuzzVerifyQuote feeds arbitrary attest, signature and key bytes to
// VerifyQuote: it must return an error wrapping ErrQuote, never panic.
func FuzzVerifyQuote(f *testing.F) {
	f.Add(mustHex(seedAttest), mustHex(seedSig), []byte{0, 2, 0, 0}, []byte{0, 0x11})
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18}, []byte{0, 0x18}, []byte{}, []byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, attest, sig, pub, nonce []byte) {
		q := &Quote{Attest: attest, Signature: sig, AKPublic: pub}
		_, err := VerifyQuote(q, nonce)
		if err == nil {
			t.Fatal("random bytes verified")
		}
		if !errors.Is(err, ErrQuote) {
			t.Fatalf("error does not wrap ErrQuote: %v", err)
		}
		_, _ = PublicPEM(pub)
		_, _ = q.Selection()
		_, _ = q.WriteToolsFiles(dir)
	})
}

// FuzzQuoteJSON decodes arbitrary quote files: errors, never panics, and
// what decodes encodes again.
func FuzzQuoteJSON(f *testing.F) {
	f.Add([]byte(`{"format":"imans-quote/1","attest":"` + seedAttest + `","signature":"` +
		seedSig + `","pcrs":{"sha256":{"10":"` + "00" + `"}},"ak_public":"0002"}`))
	f.Add([]byte(`{"format":"imans-quote/1","pcrs":{"sha1":{"99":"00"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var q Quote
		if err := json.Unmarshal(b, &q); err != nil {
			return
		}
		if _, err := json.Marshal(&q); err != nil {
			t.Fatalf("re-encoding a decoded quote: %v", err)
		}
		_, _ = VerifyQuote(&q, nil)
	})
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
