package hook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/imans-project/imans/report"
)

// Record is what createRuntime leaves in the run folder for poststop: the
// facts of the container's start that poststop cannot learn later.
type Record struct {
	ID     string `json:"id"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
	Pid    int    `json:"pid"`
	// PidStart is the start time of the container's init (clock ticks
	// after boot), so that poststop can tell it from a reused pid.
	PidStart uint64    `json:"pid_start,omitempty"`
	Mode     string    `json:"mode"`
	Backend  string    `json:"backend"`
	Kernel   string    `json:"kernel"`
	Started  time.Time `json:"started"`
	// PolicySHA256 is the sha256 of the container's policy text, hex.
	PolicySHA256 string `json:"policy_sha256"`
	// Expect are the expectations poststop checks the run against.
	Expect report.Expectations `json:"expect"`
	// Incomplete lists why the measurement is not whole from the start
	// (audit mode only: enforce mode refuses the container instead).
	Incomplete []string `json:"incomplete,omitempty"`
}

// WriteJSON writes v as JSON to dir/name, mode 0600, through a temporary
// file and a rename so a reader never sees a part. It does not fsync: run
// folders live on /run and do not outlive a boot.
func WriteJSON(dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return writeUnsynced(filepath.Join(dir, name), append(data, '\n'))
}

// ReadJSON reads dir/name into v.
func ReadJSON(dir, name string, v any) error {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

// initRunning reports whether the container's init recorded at
// createRuntime still runs (a zombie has ended). A record without the
// init's start time cannot tell, and says no.
func (rec Record) initRunning() bool {
	if rec.Pid <= 0 || rec.PidStart == 0 {
		return false
	}
	return proc{pid: rec.Pid, start: rec.PidStart}.alive()
}
