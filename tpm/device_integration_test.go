//go:build integration

package tpm

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imans-project/imans/integration/qemu"
	"github.com/imans-project/imans/internal/testenv"
)

// TestKernelTPMDevice runs `imans tpm` inside a guest of Debian's 6.12
// kernel whose TPM (tpm-tis, backed by a swtpm) the kernel drives: the
// character devices /dev/tpmrm0 and /dev/tpm0, not a socket. The guest
// reads PCR 10, quotes it through both devices, and reads the kernel's own
// view of the PCR from sysfs; the host then verifies the quotes and checks
// that the quoted value is the kernel's.
func TestKernelTPMDevice(t *testing.T) {
	qemu.Require(t)
	goBin := testenv.Command(t, "go")

	bin := filepath.Join(t.TempDir(), "imans")
	build := exec.Command(goBin, "build", "-trimpath", "-o", bin, "./cmd/imans")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build imans: %v\n%s", err, out)
	}
	imans, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	const nonce = "00112233445566778899aabbccddeeff"
	script := strings.Join([]string{
		"set -e",
		"imans tpm pcrs --tpm /dev/tpmrm0 --pcr 10 --banks sha1,sha256 > /run/pcrs.txt",
		"cat /sys/class/tpm/tpm0/pcr-sha256/10 > /run/sysfs-sha256-10",
		"cat /sys/class/tpm/tpm0/pcr-sha1/10 > /run/sysfs-sha1-10",
		"imans tpm quote --tpm /dev/tpmrm0 --pcrs sha1:10+sha256:10 --nonce " + nonce +
			" --out /run/q-rm.json",
		"imans tpm quote --tpm /dev/tpm0 --pcrs sha256:10 --ak rsa --nonce " + nonce +
			" --out /run/q-raw.json",
		"imans tpm verify-quote --nonce " + nonce + " /run/q-rm.json > /dev/null",
		"echo guest done",
	}, "\n")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := qemu.Boot(ctx, qemu.Config{
		Kernel: "6.12",
		Files:  map[string][]byte{"/bin/imans": imans},
		Script: script,
		Fetch: []string{"/run/pcrs.txt", "/run/sysfs-sha256-10", "/run/sysfs-sha1-10",
			"/run/q-rm.json", "/run/q-raw.json"},
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	if res.Status != 0 || !bytes.Contains(res.Output, []byte("guest done")) {
		t.Fatalf("guest script: status %d\n%s", res.Status, res.Output)
	}

	sysfs := func(bank string) []byte {
		b, err := res.File("/run/sysfs-" + bank + "-10")
		if err != nil {
			t.Fatal(err)
		}
		v, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("sysfs %s: %v", bank, err)
		}
		return v
	}
	kernel := map[string][]byte{"sha1": sysfs("sha1"), "sha256": sysfs("sha256")}
	// IMA extended its boot_aggregate into PCR 10 at boot.
	if bytes.Equal(kernel["sha256"], make([]byte, 32)) {
		t.Fatal("PCR 10 is zero: IMA did not extend the guest's TPM")
	}

	pcrs, _ := res.File("/run/pcrs.txt")
	for bank, v := range kernel {
		if !strings.Contains(string(pcrs), "10: 0x"+strings.ToUpper(hex.EncodeToString(v))) {
			t.Errorf("imans tpm pcrs %s differs from sysfs %x:\n%s", bank, v, pcrs)
		}
	}

	want, _ := hex.DecodeString(nonce)
	for _, name := range []string{"/run/q-rm.json", "/run/q-raw.json"} {
		raw, err := res.File(name)
		if err != nil {
			t.Fatal(err)
		}
		var q Quote
		if err := json.Unmarshal(raw, &q); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		info, err := VerifyQuote(&q, want)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		expect := map[string]map[int][]byte{"sha256": {10: kernel["sha256"]}}
		if err := q.ComparePCRs(expect); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%s: clock %d resetCount %d restartCount %d", name, info.Clock,
			info.ResetCount, info.RestartCount)
	}
}
