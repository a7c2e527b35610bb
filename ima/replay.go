package ima

import (
	"bytes"
	"fmt"
	"slices"
)

// ExtendMode is how a kernel extends a bank for an entry.
type ExtendMode int

const (
	// ExtendAuto replays a bank both ways and reports the one that
	// matches the PCR values.
	ExtendAuto ExtendMode = iota

	// ExtendHash extends the bank's own hash of the template data, as
	// kernels from 5.8 do where they can compute that hash.
	ExtendHash

	// ExtendPadded extends the sha1 template hash zero-padded to the
	// bank's size, as kernels before 5.8 do for every bank, and Debian's
	// 6.1 still does for sha384 and sha512.
	ExtendPadded
)

// String returns "auto", "hash" or "padded".
func (m ExtendMode) String() string {
	switch m {
	case ExtendAuto:
		return "auto"
	case ExtendHash:
		return "hash"
	case ExtendPadded:
		return "padded"
	}
	return fmt.Sprintf("ExtendMode(%d)", int(m))
}

// Replay computes the PCR values a measurement list leads to, bank by
// bank, an entry at a time: its memory does not grow with the list. Given
// the PCR values read from a TPM (Expect), it also finds the longest
// prefix of the list that leads to them.
type Replay struct {
	banks      []*bankReplay
	entries    int
	violations int

	// buf0 and buf1 hold the digests of an entry being extended.
	buf0, buf1 [64]byte
}

// span is a range of prefix lengths [lo, hi], in entries, over which a
// replayed PCR equals its expected value.
type span struct{ lo, hi int }

// bankReplay is the state of one bank, in both extend modes.
type bankReplay struct {
	algo  Hash
	mode  ExtendMode
	ok    bool // the standard library computes algo
	pcrs  map[uint32]*pcrReplay
	want  map[uint32][]byte
	order []uint32
}

// pcrReplay is one PCR of one bank: its value in each mode (0 hash, 1
// padded) and where it matched the expected value.
type pcrReplay struct {
	val   [2][]byte
	want  []byte
	match [2][]span
	open  [2]int
}

// NewReplay returns a Replay of the given banks, each in ExtendAuto mode.
// A bank the standard library cannot hash is kept and fails at Extend.
func NewReplay(banks ...Hash) *Replay {
	r := &Replay{}
	for _, b := range banks {
		if r.bank(b) != nil {
			continue
		}
		_, err := b.New()
		r.banks = append(r.banks, &bankReplay{algo: b, ok: err == nil && b.Size() <= 64,
			pcrs: map[uint32]*pcrReplay{}})
	}
	return r
}

// bank returns the state of bank b, or nil.
func (r *Replay) bank(b Hash) *bankReplay {
	for _, br := range r.banks {
		if br.algo == b {
			return br
		}
	}
	return nil
}

// SetMode fixes how bank b is extended instead of trying both ways. It
// must be called before the first Extend.
func (r *Replay) SetMode(b Hash, m ExtendMode) error {
	br := r.bank(b)
	if br == nil {
		return fmt.Errorf("replay: bank %s not replayed", b)
	}
	if r.entries > 0 {
		return fmt.Errorf("replay: mode of bank %s set after %d entries", b, r.entries)
	}
	br.mode = m
	return nil
}

// Expect gives the values the PCRs of bank b were read with, for the
// prefix search of Result. It must be called before the first Extend.
func (r *Replay) Expect(b Hash, pcrs map[uint32][]byte) error {
	br := r.bank(b)
	if br == nil {
		return fmt.Errorf("replay: bank %s not replayed", b)
	}
	if r.entries > 0 {
		return fmt.Errorf("replay: expected values of bank %s given after %d entries",
			b, r.entries)
	}
	for pcr, v := range pcrs {
		if len(v) != b.Size() {
			return fmt.Errorf("replay: PCR %d of bank %s has %d bytes, want %d",
				pcr, b, len(v), b.Size())
		}
	}
	br.want = pcrs
	return nil
}

// Extend replays one entry into every bank.
func (r *Replay) Extend(e *Entry) error {
	return r.extendWith(e, nil)
}

// extendWith is Extend with, in pre, the bank's own hash of the template
// data already computed for some banks (pre[i] for bank i, or nil).
func (r *Replay) extendWith(e *Entry, pre [][]byte) error {
	if e.PCR > MaxPCR {
		return fmt.Errorf("replay entry %d: PCR index %d, at most %d", r.entries, e.PCR, MaxPCR)
	}
	violation := e.IsViolation()
	var sha1Digest []byte
	var sha1Buf [20]byte

	for bi, br := range r.banks {
		if !br.ok {
			return fmt.Errorf("replay entry %d: bank %q: %w", r.entries, br.algo, ErrUnknownHash)
		}
		p := br.pcr(e.PCR)

		// The digests to extend: [0] hash mode, [1] padded mode.
		var d [2][]byte
		buf0, buf1 := &r.buf0, &r.buf1
		size := br.algo.Size()
		switch {
		case violation:
			d[0] = ffs[:size]
			if br.algo != SHA1 {
				d[1] = d[0]
			}
		default:
			if pre != nil && pre[bi] != nil {
				d[0] = pre[bi]
			} else if br.mode != ExtendPadded || br.algo == SHA1 {
				h, err := e.bankDigest(buf0[:0], br.algo)
				if err != nil {
					return fmt.Errorf("replay entry %d, bank %s: %w", r.entries, br.algo, err)
				}
				d[0] = h
			}
			if br.algo == SHA1 {
				sha1Digest = append(sha1Buf[:0], d[0]...)
				break
			}
			if br.mode != ExtendHash {
				if sha1Digest == nil {
					s, err := e.bankDigest(sha1Buf[:0], SHA1)
					if err != nil {
						return fmt.Errorf("replay entry %d: %w", r.entries, err)
					}
					sha1Digest = s
				}
				*buf1 = [64]byte{}
				copy(buf1[:], sha1Digest)
				d[1] = buf1[:size]
			}
		}

		for m := range 2 {
			if d[m] == nil {
				continue
			}
			if err := extend(br.algo, p.val[m], d[m]); err != nil {
				return fmt.Errorf("replay entry %d, bank %s: %w", r.entries, br.algo, err)
			}
			p.track(m, r.entries)
		}
	}

	r.entries++
	if violation {
		r.violations++
	}
	return nil
}

// bankDigest appends ExtendDigest for an entry that is not a violation,
// using the template hash already checked by a Reader when it is that
// bank's.
func (e *Entry) bankDigest(dst []byte, b Hash) ([]byte, error) {
	if len(e.Digest) == b.Size() && e.checked == b {
		return e.Digest, nil
	}
	return e.templateHash(dst, b)
}

// ffs is the largest digest of a violation: all 0xff.
var ffs = func() (b [64]byte) {
	for i := range b {
		b[i] = 0xff
	}
	return b
}()

// pcr returns the state of PCR i, made on its first use.
func (br *bankReplay) pcr(i uint32) *pcrReplay {
	p := br.pcrs[i]
	if p != nil {
		return p
	}

	size := br.algo.Size()
	p = &pcrReplay{open: [2]int{-1, -1}}
	p.val[0] = make([]byte, size, 64)
	p.val[1] = make([]byte, size, 64)
	if w, ok := br.want[i]; ok {
		p.want = w
		if bytes.Equal(w, p.val[0]) {
			p.open = [2]int{0, 0}
		}
	}
	br.pcrs[i] = p
	br.order = append(br.order, i)
	return p
}

// track records, after entry n changed the value of mode m, where that
// value matched the expected one.
func (p *pcrReplay) track(m, n int) {
	if p.want == nil {
		return
	}
	if p.open[m] >= 0 {
		p.match[m] = append(p.match[m], span{p.open[m], n})
		p.open[m] = -1
	}
	if bytes.Equal(p.val[m], p.want) {
		p.open[m] = n + 1
	}
}

// spans returns where mode m matched, with a match still open at the end
// of the list closed there.
func (p *pcrReplay) spans(m, entries int) []span {
	s := p.match[m]
	if p.open[m] >= 0 {
		s = append(slices.Clip(s), span{p.open[m], entries})
	}
	return s
}

// Entries returns the number of entries replayed.
func (r *Replay) Entries() int {
	return r.entries
}

// Violations returns the number of violations among them.
func (r *Replay) Violations() int {
	return r.violations
}

// PCR returns the replayed value of a PCR in bank b after every entry:
// the bank's own hash mode unless the bank was set to ExtendPadded. A PCR
// no entry extended is all zero; an unknown bank gives nil.
func (r *Replay) PCR(b Hash, pcr uint32) []byte {
	br := r.bank(b)
	if br == nil {
		return nil
	}
	m := ExtendHash
	if br.mode == ExtendPadded {
		m = ExtendPadded
	}
	return r.PCRMode(b, pcr, m)
}

// PCRMode returns the replayed value of a PCR in bank b for one extend
// mode (ExtendHash or ExtendPadded), or nil when that mode was not
// replayed.
func (r *Replay) PCRMode(b Hash, pcr uint32, m ExtendMode) []byte {
	br := r.bank(b)
	if br == nil || (m != ExtendHash && m != ExtendPadded) {
		return nil
	}
	p := br.pcrs[pcr]
	if p == nil {
		return make([]byte, b.Size())
	}
	if br.algo == SHA1 {
		return slices.Clone(p.val[0])
	}
	if br.mode != ExtendAuto && br.mode != m {
		return nil
	}
	return slices.Clone(p.val[m-ExtendHash])
}

// PCRs returns the PCR indexes the list extended in bank b, in the order
// of their first extend.
func (r *Replay) PCRs(b Hash) []uint32 {
	br := r.bank(b)
	if br == nil {
		return nil
	}
	return slices.Clone(br.order)
}
