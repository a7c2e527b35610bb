package ima

import (
	"errors"
	"io"
)

// ReadStats counts what ReadAll met.
type ReadStats struct {
	// BadHashes counts the entries whose template hash did not match
	// their data; they are replayed all the same, as the kernel extends
	// what it computed from the data.
	BadHashes int

	// FirstBad is the error of the first of them.
	FirstBad error
}

// Sizes of the batches ReadAll passes between its two goroutines.
const (
	batchEntries = 512
	batchArena   = 128 << 10
	batchesAhead = 3
)

// batch is a run of entries read and hashed ahead of their replay.
type batch struct {
	entries []Entry
	errs    []error
	sums    []byte // per entry, per bank: the bank's hash of the data
	has     []bool // whether sums holds that hash
	arena   []byte // the entries' Digest and Data
	extra   int    // bytes of entries too large for the arena
	err     error  // what ended the reading after these entries
}

// ReadAll reads the list to its end and replays every entry: it is the
// loop of Next and Extend, with the reading, the template hash checks and
// the banks' hashes of the template data done on a second goroutine, so
// that two cores share the work. The memory it uses does not depend on
// the length of the list. A template hash mismatch is counted and the
// entry replayed; any other error of the Reader (including ErrPartial in
// follow mode) ends the reading and is returned, after the entries before
// it have been replayed.
func (r *Replay) ReadAll(rd *Reader) (ReadStats, error) {
	var st ReadStats
	nb := len(r.banks)
	full := make(chan *batch, batchesAhead)
	free := make(chan *batch, batchesAhead+2)
	stop := make(chan struct{})
	done := make(chan struct{})

	go func() {
		defer close(done)
		r.produce(rd, full, free, stop)
	}()
	defer func() {
		close(stop)
		<-done
	}()

	pre := make([][]byte, nb)
	for b := range full {
		for i := range b.entries {
			e := &b.entries[i]
			for bi := range nb {
				pre[bi] = nil
				if b.has[i*nb+bi] {
					k := (i*nb + bi) * 64
					pre[bi] = b.sums[k : k+r.banks[bi].algo.Size()]
				}
			}
			if b.errs[i] != nil {
				if st.BadHashes == 0 {
					st.FirstBad = b.errs[i]
				}
				st.BadHashes++
			}
			if err := r.extendWith(e, pre); err != nil {
				return st, err
			}
		}
		if b.err != nil {
			if errors.Is(b.err, io.EOF) {
				return st, nil
			}
			return st, b.err
		}
		select {
		case free <- b:
		default:
		}
	}
	return st, nil
}

// produce reads batches of entries and hashes their data for the banks
// whose own hash the replay needs, until the end of the list, an error,
// or stop.
func (r *Replay) produce(rd *Reader, full, free chan *batch, stop chan struct{}) {
	defer close(full)
	nb := len(r.banks)
	var b *batch
	rd.alloc = func(n int) []byte {
		if len(b.arena)+n <= cap(b.arena) {
			start := len(b.arena)
			b.arena = b.arena[:start+n]
			return b.arena[start : start+n : start+n]
		}
		b.extra += n
		return make([]byte, n)
	}
	defer func() { rd.alloc = nil }()

	for {
		select {
		case b = <-free:
		default:
			b = &batch{
				entries: make([]Entry, 0, batchEntries),
				errs:    make([]error, 0, batchEntries),
				sums:    make([]byte, batchEntries*nb*64),
				has:     make([]bool, batchEntries*nb),
				arena:   make([]byte, 0, batchArena),
			}
		}
		b.entries, b.errs, b.arena, b.extra, b.err = b.entries[:0], b.errs[:0], b.arena[:0],
			0, nil

		for len(b.entries) < batchEntries {
			e, err := rd.Next()
			if err != nil && !errors.Is(err, ErrTemplateHash) {
				b.err = err
				break
			}
			b.entries = append(b.entries, *e)
			b.errs = append(b.errs, err)

			i := len(b.entries) - 1
			ce := &b.entries[i]
			viol := ce.IsViolation()
			for bi, br := range r.banks {
				b.has[i*nb+bi] = false
				if viol || br.algo == SHA1 || br.mode == ExtendPadded || !br.ok {
					continue
				}
				k := (i*nb + bi) * 64
				if _, err := ce.templateHash(b.sums[k:k:k+64], br.algo); err == nil {
					b.has[i*nb+bi] = true
				}
			}
			// A batch ends when its arena is full, or when entries too
			// large for it have taken as much again: batches stay small
			// whatever size the entries have.
			if cap(b.arena)-len(b.arena) < 512 || b.extra >= batchArena {
				break
			}
		}

		select {
		case full <- b:
		case <-stop:
			return
		}
		if b.err != nil {
			return
		}
	}
}
