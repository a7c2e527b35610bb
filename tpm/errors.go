package tpm

import "errors"

// Sentinel errors. Every error this package returns for one of these
// conditions wraps the matching sentinel, so callers test it with
// errors.Is; the message also names the TPM's address. Where an operating
// system error is the cause (fs.ErrNotExist, fs.ErrPermission), it stays
// in the chain as well.
var (
	// ErrNoDevice means nothing exists at the address: no device file, no
	// socket, or nothing listening on it.
	ErrNoDevice = errors.New("no tpm at this address")

	// ErrPermission means the device or socket exists but may not be
	// opened by this process.
	ErrPermission = errors.New("permission denied to open tpm")

	// ErrBadAddress means the address string has no form Open knows.
	ErrBadAddress = errors.New("bad tpm address")

	// ErrTimeout means a command got no complete response before its
	// deadline.
	ErrTimeout = errors.New("tpm command timed out")

	// ErrGone means the TPM's connection broke during a command: the
	// swtpm process died or closed the socket.
	ErrGone = errors.New("tpm connection lost mid-command")

	// ErrClosed means the TPM was used after Close.
	ErrClosed = errors.New("tpm is closed")

	// ErrBankNotAllocated means a PCR bank was asked for that the TPM
	// does not have allocated.
	ErrBankNotAllocated = errors.New("pcr bank not allocated")

	// ErrUnknownBank means a bank name is none of sha1, sha256, sha384,
	// sha512.
	ErrUnknownBank = errors.New("unknown pcr bank")

	// ErrSwtpmMissing means the swtpm program was not found on PATH.
	ErrSwtpmMissing = errors.New("swtpm program not found")

	// ErrSwtpmRunning means a live swtpm already serves the folder.
	ErrSwtpmRunning = errors.New("swtpm already running for this folder")

	// ErrSwtpmStart means swtpm exited or never answered while starting.
	ErrSwtpmStart = errors.New("swtpm did not start")

	// ErrQuote is wrapped by every failure of VerifyQuote, beside the
	// specific sentinel below that names the check that failed.
	ErrQuote = errors.New("quote verification failed")

	// ErrQuoteSignature means the signature does not verify with the
	// attestation key's public part.
	ErrQuoteSignature = errors.New("quote signature invalid")

	// ErrQuoteMagic means the attest structure does not start with
	// TPM_GENERATED_VALUE: the TPM did not make it.
	ErrQuoteMagic = errors.New("attest magic is not TPM_GENERATED_VALUE")

	// ErrQuoteType means the attest structure is not a quote.
	ErrQuoteType = errors.New("attest type is not a quote")

	// ErrQuoteNonce means the qualifying data differs from the expected.
	ErrQuoteNonce = errors.New("quote qualifying data mismatch")

	// ErrQuotePCRDigest means the PCR values given with the quote do not
	// hash to the digest the TPM signed.
	ErrQuotePCRDigest = errors.New("quote pcr digest mismatch")

	// ErrQuotePCRValue means a quoted PCR differs from an expected value.
	ErrQuotePCRValue = errors.New("quoted pcr value differs from expected")

	// ErrAKNotRestricted means a key offered as an attestation key is not
	// a restricted signing key, so what it signs proves nothing.
	ErrAKNotRestricted = errors.New("attestation key is not a restricted signing key")

	// ErrQuoteFormat means a quote's bytes do not parse.
	ErrQuoteFormat = errors.New("malformed quote")
)
