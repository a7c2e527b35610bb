package measure

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	"github.com/imans-project/imans/tpm"
)

// tpmRetry is the pause between two tries to reach a TPM that is not up.
const tpmRetry = 20 * time.Millisecond

// attachTPM attaches the TPM to log: conn, a connection to it made
// beforehand, at once; else the TPM at addr, opened in the background and
// retried until it answers or ctx ends. The channel yields the TPM, or
// nil; every reason the TPM could not be attached goes to incomplete.
func attachTPM(ctx context.Context, addr string, conn net.Conn, log *Log,
	incomplete func(string)) <-chan *tpm.TPM {
	out := make(chan *tpm.TPM, 1)
	if conn != nil {
		// Its commands wait for the TPM to be up.
		t := tpm.OpenConn(addr, conn)
		log.AttachTPM(t)
		out <- t
		return out
	}
	if addr == "" {
		incomplete("no TPM address: PCR 10 not extended")
		out <- nil
		return out
	}

	go func() {
		for {
			t, err := tpm.Open(addr)
			if err == nil {
				log.AttachTPM(t)
				out <- t
				return
			}
			select {
			case <-ctx.Done():
				incomplete(fmt.Sprintf("TPM %s never answered: %v", addr, err))
				out <- nil
				return
			case <-time.After(tpmRetry):
			}
		}
	}()
	return out
}

// PCR10Banks are the banks of PCR 10 a collector reads at its end.
var PCR10Banks = []string{"sha1", "sha256"}

// pcrTimeout bounds the read of PCR 10 at the end.
const pcrTimeout = 3 * time.Second

// finish ends a collector's record: it waits for the TPM attacher, closes
// log (its last extends within timeout), reads PCR 10 over the same
// connection, lets the TPM go, and fills st with the counts, PCR 10 and
// every reason the record is not whole: the collector's own (read by own
// once the attacher is done), the log's, and runErr's. The error is the
// log's failure to close, if any. PCR 10 is read before the connection
// closes: a container's swtpm ends with the connection it serves.
func finish(st *Status, log *Log, tpmDone <-chan *tpm.TPM, timeout time.Duration,
	own func() []string, runErr error) error {
	t := <-tpmDone
	closeErr := log.Close(timeout)
	if t != nil {
		t.SetTimeout(pcrTimeout)
		vals, err := t.ReadPCR(10, PCR10Banks...)
		if err != nil {
			st.PCRError = fmt.Sprintf("read pcr 10 of the container tpm: %v", err)
		} else {
			st.PCR10 = map[string]string{}
			for bank, v := range vals {
				st.PCR10[bank] = hex.EncodeToString(v)
			}
		}
		t.Close()
	}

	st.Entries, st.Violations = log.Counts()
	st.Incomplete = append(own(), log.Incomplete()...)
	if runErr != nil {
		st.Incomplete = append(st.Incomplete, runErr.Error())
	}
	return closeErr
}
