package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// SlotsEnv names the variable that sets how many boots may run at once on
// the machine (default: the number of CPUs). Test processes of different
// packages share the slots through lock files in the cache: under TCG
// each guest keeps a CPU busy, and more guests than CPUs only make every
// boot slower, up to its deadline.
const SlotsEnv = "IMANS_QEMU_SLOTS"

// takeSlot waits until one of the machine's boot slots is free and holds
// it until release is called. The wait ends with ctx.
func takeSlot(ctx context.Context, cache string) (release func(), err error) {
	slots := runtime.NumCPU()
	if v := os.Getenv(SlotsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want a positive number", SlotsEnv, v)
		}
		slots = n
	}
	dir := filepath.Join(cache, "slots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}

	for {
		for i := 0; i < slots; i++ {
			f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, err
			}
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() { f.Close() }, nil
			}
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("boot slot %d: %w", i, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a free boot slot (%d in use): %w", slots, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
