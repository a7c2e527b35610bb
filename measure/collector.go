package measure

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imans-project/imans/tpm"
)

// tpmRetry is the pause between two tries to reach a TPM that is not up.
const tpmRetry = 20 * time.Millisecond

// attachTPM opens the TPM at addr in the background and attaches it to
// log, retrying until it answers: the container's TPM may start after the
// collector. Where up is given, dialling starts once it is closed. Where
// attached is given, it is called once with the outcome. The channel
// yields a function closing the TPM, or nil; every reason the TPM could not
// be attached goes to incomplete.
func attachTPM(ctx context.Context, addr string, log *Log, up <-chan struct{},
	attached func(ok bool), incomplete func(string)) <-chan func() {
	out := make(chan func(), 1)
	done := func(closeTPM func()) {
		out <- closeTPM
		if attached != nil {
			attached(closeTPM != nil)
		}
	}
	if addr == "" {
		incomplete("no TPM address: PCR 10 not extended")
		done(nil)
		return out
	}

	go func() {
		last := errors.New("not up yet")
		giveUp := func() {
			incomplete(fmt.Sprintf("TPM %s never answered: %v", addr, last))
			done(nil)
		}
		if up != nil {
			select {
			case <-up:
			case <-ctx.Done():
				giveUp()
				return
			}
		}
		for {
			t, err := tpm.Open(addr)
			if err == nil {
				log.AttachTPM(t)
				done(func() { t.Close() })
				return
			}
			last = err
			select {
			case <-ctx.Done():
				giveUp()
				return
			case <-time.After(tpmRetry):
			}
		}
	}()
	return out
}

// finish ends a collector's record: it waits for the TPM attacher, closes
// log (its last extends within timeout), lets the TPM go, and fills st
// with the counts and every reason the record is not whole: the
// collector's own (read by own once the attacher is done), the log's, and
// runErr's. The error is the log's failure to close, if any.
func finish(st *Status, log *Log, tpmDone <-chan func(), timeout time.Duration,
	own func() []string, runErr error) error {
	closeTPM := <-tpmDone
	closeErr := log.Close(timeout)
	if closeTPM != nil {
		closeTPM()
	}

	st.Entries, st.Violations = log.Counts()
	st.Incomplete = append(own(), log.Incomplete()...)
	if runErr != nil {
		st.Incomplete = append(st.Incomplete, runErr.Error())
	}
	return closeErr
}
