package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// guestPackage is the import path of the helper put into every initramfs.
const guestPackage = "github.com/imans-project/imans/integration/qemu/guest"

var guestBuild struct {
	sync.Mutex
	path string
}

// guestBinary builds imans-guest (static, CGO_ENABLED=0) into the cache
// once per process; go's build cache makes later builds cheap.
func guestBinary(ctx context.Context, cache string) (string, error) {
	guestBuild.Lock()
	defer guestBuild.Unlock()
	if guestBuild.path != "" {
		return guestBuild.path, nil
	}

	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("build imans-guest: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	binDir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(binDir, ".imans-guest-")
	if err != nil {
		return "", err
	}
	tmp.Close()

	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", tmp.Name(), guestPackage)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("build imans-guest: %w: %s", err, lastLines(out, 10))
	}
	dest := filepath.Join(binDir, "imans-guest")
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", err
	}
	guestBuild.path = dest
	return dest, nil
}
