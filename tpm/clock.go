package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Clock is the TPM's time and clock state, as TPM2_ReadClock reports it.
// Unlike a quote's, these values are not signed: take them as
// informational.
type Clock struct {
	// Time is milliseconds since the TPM was last powered on or reset.
	Time uint64
	// Clock is milliseconds the TPM has been powered since it was last
	// cleared.
	Clock uint64
	// ResetCount counts TPM resets since the last clear.
	ResetCount uint32
	// RestartCount counts restarts and resumes since the last reset.
	RestartCount uint32
	// Safe says no greater Clock value was reported before.
	Safe bool
}

// ReadClock reads the TPM's time and clock.
func (t *TPM) ReadClock() (*Clock, error) {
	rsp, err := tpm2.ReadClock{}.Execute(t.ch.with(0))
	if err != nil {
		return nil, fmt.Errorf("read clock of %s: %w", t.addr, err)
	}
	ti := rsp.CurrentTime
	return &Clock{
		Time:         ti.Time,
		Clock:        ti.ClockInfo.Clock,
		ResetCount:   ti.ClockInfo.ResetCount,
		RestartCount: ti.ClockInfo.RestartCount,
		Safe:         bool(ti.ClockInfo.Safe),
	}, nil
}
