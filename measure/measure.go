// Package measure holds the two measurement backends (the kernel's IMA
// namespace and the fanotify collector) behind one interface. Both write the
// container's measurement lists in the kernel's formats into the container's
// run folder and extend PCR 10 of the container's TPM once per entry, in
// list order.
package measure

import "context"

// Backend names a measurement backend.
type Backend string

// The backends. Auto is resolved by the hook before a collector starts.
const (
	Auto     Backend = "auto"
	Kernel   Backend = "kernel"
	Fanotify Backend = "fanotify"
)

// Files of a container's run folder that both backends write.
const (
	BinaryListFile = "binary_runtime_measurements"
	ASCIIListFile  = "ascii_runtime_measurements"
	StatusFile     = "status.json"
)

// Spec is everything a collector needs to measure one container. The hook
// writes it to spec.json in the run folder before starting the collector.
type Spec struct {
	// ID is the container id, already checked to be a safe path element.
	ID string `json:"id"`
	// Dir is the container's run folder, /run/imans/<id>.
	Dir string `json:"dir"`
	// Pid is the host pid of the container's init at createRuntime.
	Pid int `json:"pid"`
	// Bundle is the OCI bundle folder; Rootfs the host path of its root.
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
	// Backend is Kernel or Fanotify, never Auto.
	Backend Backend `json:"backend"`
	// Policy is the container's IMA policy text.
	Policy string `json:"policy"`
	// HashAlgo is the file digest algorithm of the entries: "sha256"
	// unless configured.
	HashAlgo string `json:"hash_algo"`
	// TPM is the address of the container's TPM (tpm.Open syntax).
	TPM string `json:"tpm"`
}

// Status is what a collector reports when it stops, in status.json.
type Status struct {
	Backend    Backend `json:"backend"`
	Entries    int     `json:"entries"`
	Violations int     `json:"violations"`
	// Incomplete lists every reason the record is not whole (lost events,
	// queue overflow, TPM errors). Empty means the record is whole.
	Incomplete []string `json:"incomplete,omitempty"`
	// PCR10 is PCR 10 of the container's TPM after the last extend, per
	// bank (PCR10Banks), in lowercase hex; PCRError says why it could not
	// be read. Both are empty without a TPM.
	PCR10    map[string]string `json:"pcr10,omitempty"`
	PCRError string            `json:"pcr_error,omitempty"`
}

// Collector measures one container until its context is cancelled.
type Collector interface {
	// Run sets up the measurement, calls ready exactly once when the
	// container may start (everything it will do from then on is
	// measured), and measures until ctx is done; then it drains what is
	// pending, closes the lists and returns the final status. An error
	// before ready means nothing was measured.
	Run(ctx context.Context, ready func()) (Status, error)
}
