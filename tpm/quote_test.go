package tpm

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imans-project/imans/internal/testenv"
)

// extendKnown extends PCR 10 once in every bank with the bank's hash of
// data and returns the expected sha1 and sha256 values, computed in the
// test from zero.
func extendKnown(t *testing.T, tp *TPM, data string) (v1, v256 []byte) {
	t.Helper()
	digests := map[string][]byte{}
	for _, b := range []string{"sha1", "sha256", "sha384", "sha512"} {
		h, _ := BankHash(b)
		hh := h.New()
		hh.Write([]byte(data))
		digests[b] = hh.Sum(nil)
	}
	if err := tp.Extend(10, digests); err != nil {
		t.Fatal(err)
	}
	s1 := sha1.Sum(append(make([]byte, 20), digests["sha1"]...))
	s256 := sha256.Sum256(append(make([]byte, 32), digests["sha256"]...))
	return s1[:], s256[:]
}

// checkquote runs tpm2_checkquote on the quote's files and says whether
// it accepted the quote.
func checkquote(t *testing.T, q *Quote, nonce []byte) (bool, string) {
	t.Helper()
	bin := testenv.Command(t, "tpm2_checkquote")
	files, err := q.WriteToolsFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-u", files.PublicPEM, "-m", files.Message, "-s", files.Signature,
		"-f", files.PCRs, "-l", files.PCRList, "-g", "sha256"}
	if len(nonce) > 0 {
		args = append(args, "-q", hex.EncodeToString(nonce))
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return err == nil, string(out)
}

func TestQuoteVerifies(t *testing.T) {
	for _, alg := range []KeyAlg{KeyECC, KeyRSA} {
		t.Run(string(alg), func(t *testing.T) {
			_, tp := openSwtpm(t)
			want1, want256 := extendKnown(t, tp, "quoted entry")

			ak, err := tp.CreateAK(AKOptions{Alg: alg})
			if err != nil {
				t.Fatal(err)
			}
			defer ak.Close()
			nonce := []byte("report digest goes here: 32 byte")
			q, err := ak.Quote(map[string][]int{"sha1": {10}, "sha256": {10, 11}}, nonce)
			if err != nil {
				t.Fatal(err)
			}

			// The values returned are those computed independently.
			if !bytes.Equal(q.PCRs["sha1"][10], want1) ||
				!bytes.Equal(q.PCRs["sha256"][10], want256) ||
				!bytes.Equal(q.PCRs["sha256"][11], make([]byte, 32)) {
				t.Fatalf("quoted values %x, want sha1 %x sha256 %x", q.PCRs, want1, want256)
			}

			info, err := VerifyQuote(q, nonce)
			if err != nil {
				t.Fatalf("VerifyQuote: %v", err)
			}
			if !bytes.Equal(info.QualifyingData, nonce) {
				t.Errorf("qualifying data %q", info.QualifyingData)
			}
			if !slices.Equal(info.PCRs["sha256"], []int{10, 11}) ||
				!slices.Equal(info.PCRs["sha1"], []int{10}) {
				t.Errorf("quoted selection %v", info.PCRs)
			}
			// A fresh swtpm counts one reset (its first power-on with
			// Startup(CLEAR)), no restart; its clock runs.
			if info.ResetCount != 1 || info.RestartCount != 0 || info.Clock == 0 {
				t.Errorf("clock info: clock %d reset %d restart %d", info.Clock,
					info.ResetCount, info.RestartCount)
			}
			if err := q.ComparePCRs(map[string]map[int][]byte{
				"sha256": {10: want256}, "sha1": {10: want1},
			}); err != nil {
				t.Errorf("ComparePCRs: %v", err)
			}

			ok, out := checkquote(t, q, nonce)
			if !ok {
				t.Fatalf("tpm2_checkquote refused our quote: %s", out)
			}

			// The JSON form goes through unchanged.
			b, err := json.Marshal(q)
			if err != nil {
				t.Fatal(err)
			}
			var back Quote
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyQuote(&back, nonce); err != nil {
				t.Fatalf("quote after JSON: %v", err)
			}
			if !strings.Contains(string(b), "BEGIN PUBLIC KEY") {
				t.Errorf("JSON has no PEM key: %s", b)
			}
		})
	}
}

func TestQuoteTamperingFailsBoth(t *testing.T) {
	_, tp := openSwtpm(t)
	extendKnown(t, tp, "tampering")
	ak, err := tp.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	good, err := ak.Quote(map[string][]int{"sha256": {10}}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if ok, out := checkquote(t, good, nonce); !ok {
		t.Fatalf("tpm2_checkquote refused the untouched quote: %s", out)
	}

	clone := func() *Quote {
		c := *good
		c.Attest = slices.Clone(good.Attest)
		c.Signature = slices.Clone(good.Signature)
		c.PCRs = map[string]map[int][]byte{"sha256": {10: slices.Clone(good.PCRs["sha256"][10])}}
		return &c
	}
	cases := []struct {
		name   string
		modify func(q *Quote) []byte // returns the nonce to check with
		is     error
		tools  string // what tpm2_checkquote says
	}{
		{"pcr value", func(q *Quote) []byte { q.PCRs["sha256"][10][0] ^= 1; return nonce },
			ErrQuotePCRDigest, "PCR values failed to match"},
		{"nonce", func(q *Quote) []byte { return []byte{1, 2, 3, 4, 5, 6, 7, 9} },
			ErrQuoteNonce, "Error validating nonce"},
		{"signature byte", func(q *Quote) []byte {
			q.Signature[len(q.Signature)-1] ^= 0x80
			return nonce
		}, ErrQuoteSignature, "Error validating signed message"},
		{"attest byte", func(q *Quote) []byte { q.Attest[len(q.Attest)-1] ^= 1; return nonce },
			ErrQuoteSignature, "Error validating signed message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := clone()
			n := c.modify(q)
			_, err := VerifyQuote(q, n)
			if !errors.Is(err, c.is) || !errors.Is(err, ErrQuote) {
				t.Fatalf("VerifyQuote error %v, want %v", err, c.is)
			}
			ok, out := checkquote(t, q, n)
			if ok {
				t.Fatalf("tpm2_checkquote accepted a changed quote: %s", out)
			}
			if !strings.Contains(out, c.tools) {
				t.Fatalf("tpm2_checkquote refused for another reason than %q: %s", c.tools, out)
			}
		})
	}

	// An expected value that differs names the PCR.
	err = good.ComparePCRs(map[string]map[int][]byte{"sha256": {10: make([]byte, 32)}})
	if !errors.Is(err, ErrQuotePCRValue) || !strings.Contains(err.Error(), "sha256:10") {
		t.Fatalf("ComparePCRs: %v", err)
	}
}

func TestAKDeterministic(t *testing.T) {
	s, tp := openSwtpm(t)
	a, err := tp.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := a.PublicWire()
	q1, err := a.Quote(map[string][]int{"sha256": {10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	i1, err := VerifyQuote(q1, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()

	// The same template under the same seed: the same key, even after
	// the TPM restarted from its saved state.
	tp.Close()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s2 := startSwtpm(t, s.Dir)
	tp2, err := Open(s2.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp2.Close()
	b, err := tp2.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !bytes.Equal(first, b.PublicWire()) {
		t.Fatalf("re-created AK differs:\n%x\n%x", first, b.PublicWire())
	}

	// A quote by the re-created key verifies against the first one's
	// public part, and its reset count shows the restart (swtpm starts
	// with Startup(CLEAR), which is a TPM reset).
	q2, err := b.Quote(map[string][]int{"sha256": {10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	q2.AKPublic = first
	i2, err := VerifyQuote(q2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if i2.ResetCount != i1.ResetCount+1 {
		t.Errorf("reset count %d after restart, was %d", i2.ResetCount, i1.ResetCount)
	}

	// Under the owner hierarchy it is another key.
	c, err := tp2.CreateAK(AKOptions{Hierarchy: Owner})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if bytes.Equal(first, c.PublicWire()) {
		t.Fatal("owner and endorsement AKs are the same key")
	}

	// The PEM form parses back to the same key the wire form holds.
	p, err := b.PublicPEM()
	if err != nil || !bytes.HasPrefix(p, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Fatalf("PublicPEM: %v %s", err, p)
	}
}

func TestAKPersist(t *testing.T) {
	_, tp := openSwtpm(t)
	ak, err := tp.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wire := ak.PublicWire()
	const handle = 0x81010002
	if err := ak.Persist(handle); err != nil {
		t.Fatal(err)
	}

	loaded, err := tp.LoadAK(handle)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded.PublicWire(), wire) {
		t.Fatal("persisted AK has another public area")
	}
	nonce := []byte("persisted")
	q, err := loaded.Quote(map[string][]int{"sha256": {10}}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyQuote(q, nonce); err != nil {
		t.Fatal(err)
	}

	if err := loaded.Unpersist(); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.LoadAK(handle); err == nil {
		t.Fatal("LoadAK found an evicted key")
	}
}

func TestQuoteToolsPCRFile(t *testing.T) {
	_, tp := openSwtpm(t)
	want1, want256 := extendKnown(t, tp, "files")
	ak, err := tp.CreateAK(AKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	q, err := ak.Quote(map[string][]int{"sha256": {10}, "sha1": {10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := q.WriteToolsFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Quote order is canonical bank order: sha1 before sha256.
	if f.PCRList != "sha1:10+sha256:10" {
		t.Errorf("PCRList %q", f.PCRList)
	}
	if filepath.Dir(f.PCRs) != dir {
		t.Errorf("files outside %s: %s", dir, f.PCRs)
	}
	if _, err := VerifyQuote(q, nil); err != nil {
		t.Fatal(err)
	}
	if ok, out := checkquote(t, q, nil); !ok {
		t.Fatalf("tpm2_checkquote: %s", out)
	}

	// The values file holds sha1 then sha256 of PCR 10, as computed.
	got, err := os.ReadFile(f.PCRs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(slices.Clone(want1), want256...)) {
		t.Errorf("pcr file %x, want %x%x", got, want1, want256)
	}
}

// TestVerifyQuoteOfTpm2Tools checks a quote made by tpm2-tools alone
// (tpm2_createek, tpm2_createak, tpm2_quote) with VerifyQuote: our
// verifier accepts what another implementation made, and reads the PCR
// value we extended.
func TestVerifyQuoteOfTpm2Tools(t *testing.T) {
	for _, tool := range []string{"tpm2_createek", "tpm2_createak", "tpm2_quote",
		"tpm2_readpublic", "tpm2_flushcontext"} {
		testenv.Command(t, tool)
	}
	s, tp := openSwtpm(t)
	_, want256 := extendKnown(t, tp, "tpm2-tools")
	tp.Close() // swtpm serves one connection at a time

	dir := t.TempDir()
	env := append(os.Environ(), "TPM2TOOLS_TCTI=swtpm:path="+filepath.Join(s.Dir, SwtpmSocket))
	// Without a resource manager, transient objects and sessions must be
	// flushed between the tools.
	steps := [][]string{
		{"tpm2_createek", "-c", "ek.ctx", "-G", "ecc"},
		{"tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256",
			"-s", "ecdsa", "-u", "ak.pem", "-f", "pem", "-n", "ak.name"},
		{"tpm2_readpublic", "-c", "ak.ctx", "-o", "ak.tss"},
		{"tpm2_quote", "-c", "ak.ctx", "-l", "sha256:10,11", "-q", "0a0b0c", "-m", "q.msg",
			"-s", "q.sig", "-o", "q.pcrs", "-F", "values", "-g", "sha256"},
	}
	for _, step := range steps {
		for _, cmd := range [][]string{step, {"tpm2_flushcontext", "-t"},
			{"tpm2_flushcontext", "-s"}} {
			c := exec.Command(cmd[0], cmd[1:]...)
			c.Dir, c.Env = dir, env
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
		}
	}

	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	values := read("q.pcrs")
	if len(values) != 64 {
		t.Fatalf("q.pcrs has %d bytes, want two sha256 values", len(values))
	}
	q := &Quote{
		Attest:    read("q.msg"),
		Signature: read("q.sig"),
		AKPublic:  read("ak.tss"),
		PCRs:      map[string]map[int][]byte{"sha256": {10: values[:32], 11: values[32:]}},
	}
	if _, err := VerifyQuote(q, []byte{0x0a, 0x0b, 0x0c}); err != nil {
		t.Fatalf("VerifyQuote of a tpm2_quote quote: %v", err)
	}
	if err := q.ComparePCRs(map[string]map[int][]byte{"sha256": {10: want256}}); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyQuote(q, []byte{0x0a, 0x0b}); !errors.Is(err, ErrQuoteNonce) {
		t.Fatalf("other nonce: %v", err)
	}

	// Our PEM form of tpm2-tools' key equals tpm2-tools' own.
	p, err := PublicPEM(q.AKPublic)
	if err != nil || !bytes.Equal(p, read("ak.pem")) {
		t.Fatalf("PublicPEM differs from tpm2_createak's:\n%s\n%s (%v)", p, read("ak.pem"), err)
	}
}
