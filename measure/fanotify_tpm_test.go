package measure

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/tpm"
)

// startTestSwtpm starts a swtpm in a folder short enough for its sockets.
func startTestSwtpm(t testing.TB) *tpm.Swtpm {
	t.Helper()
	testenv.Command(t, "swtpm")
	dir, err := os.MkdirTemp("", "imans-measure-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sw, err := tpm.StartSwtpm(ctx, filepath.Join(dir, "tpm"))
	if err != nil {
		t.Fatalf("StartSwtpm: %v", err)
	}
	t.Cleanup(func() { sw.Stop() })
	return sw
}

// readPCR10 reads PCR 10 of the TPM in sha1 and sha256.
func readPCR10(t testing.TB, addr string) map[string][]byte {
	t.Helper()
	tp, err := tpm.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	v, err := tp.ReadPCR(10, "sha1", "sha256")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// independentPCR10 extends a zero PCR with each entry's template data
// hashed by crypto/sha1 and crypto/sha256 directly (all 0xff for a
// violation), without package ima's replay.
func independentPCR10(entries []*ima.Entry) (s1, s256 []byte) {
	s1, s256 = make([]byte, 20), make([]byte, 32)
	for _, e := range entries {
		d1, d256 := sha1.Sum(e.Data), sha256.Sum256(e.Data)
		if e.IsViolation() {
			d1, d256 = [20]byte(bytes.Repeat([]byte{0xff}, 20)),
				[32]byte(bytes.Repeat([]byte{0xff}, 32))
		}
		n1 := sha1.Sum(append(s1, d1[:]...))
		n256 := sha256.Sum256(append(s256, d256[:]...))
		s1, s256 = n1[:], n256[:]
	}
	return s1, s256
}

// checkAgainstTPM checks the list of dir against PCR 10 of the TPM: by
// an independent computation, by package ima's replay, and by evmctl.
func checkAgainstTPM(t *testing.T, dir, addr string) {
	t.Helper()
	entries := readList(t, dir)
	pcrs := readPCR10(t, addr)

	s1, s256 := independentPCR10(entries)
	if !bytes.Equal(pcrs["sha1"], s1) || !bytes.Equal(pcrs["sha256"], s256) {
		t.Errorf("TPM PCR 10 sha1 %x sha256 %x, list computes %x %x",
			pcrs["sha1"], pcrs["sha256"], s1, s256)
	}

	r := ima.NewReplay(ima.SHA1, ima.SHA256)
	for i, e := range entries {
		if err := r.Extend(e); err != nil {
			t.Fatalf("replay entry %d: %v", i, err)
		}
	}
	if !bytes.Equal(r.PCR(ima.SHA1, 10), pcrs["sha1"]) ||
		!bytes.Equal(r.PCR(ima.SHA256, 10), pcrs["sha256"]) {
		t.Errorf("replay gives %x %x, TPM has %x %x", r.PCR(ima.SHA1, 10),
			r.PCR(ima.SHA256, 10), pcrs["sha1"], pcrs["sha256"])
	}

	// evmctl wants every PCR from 0 in its files: read them all.
	evmctl := testenv.Command(t, "evmctl")
	tp, err := tpm.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	all := make([]int, 24)
	for i := range all {
		all[i] = i
	}
	vals, err := tp.ReadPCRs(map[string][]int{"sha1": all, "sha256": all})
	if err != nil {
		t.Fatal(err)
	}
	f1, f256 := filepath.Join(dir, "pcrs-sha1"), filepath.Join(dir, "pcrs-sha256")
	for name, bank := range map[string]string{f1: "sha1", f256: "sha256"} {
		var b bytes.Buffer
		for _, i := range all {
			fmt.Fprintf(&b, "PCR-%02d: %s\n", i, hex.EncodeToString(vals[bank][i]))
		}
		writeFile(t, name, b.String(), 0o644)
	}
	out, err := exec.Command(evmctl, "ima_measurement", "--pcrs", "sha1,"+f1,
		"--pcrs", "sha256,"+f256, filepath.Join(dir, BinaryListFile)).CombinedOutput()
	if err != nil {
		t.Errorf("evmctl rejects the list: %v\n%s", err, out)
		if d := os.Getenv("IMANS_KEEP"); d != "" {
			exec.Command("cp", "-r", dir, d).Run()
		}
	}
}

func TestFanotifyTPMReplayAndEvmctl(t *testing.T) {
	rootfs := newRootfs(t, map[string]string{
		"app/demo.sh": "#!/bin/sh\necho demo\n",
		"data/a.txt":  "first\n",
		"data/b.txt":  "second\n",
	})
	sw := startTestSwtpm(t)

	c := startContainer(t, rootfs, "/app/demo.sh; cat /data/a.txt /data/b.txt")
	dir := t.TempDir()
	st := collect(t, Spec{ID: "t2", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs,
		TPM: sw.Addr}, func() { c.run(t) })
	if len(st.Incomplete) != 0 || st.Entries != 4 {
		t.Fatalf("status %+v, want 4 entries and a whole record", st)
	}
	checkAgainstTPM(t, dir, sw.Addr)
	// The status carries PCR 10 as read over the collector's own
	// connection after its last extend: the values computed from the list.
	s1, s256 := independentPCR10(readList(t, dir))
	if st.PCR10["sha1"] != hex.EncodeToString(s1) ||
		st.PCR10["sha256"] != hex.EncodeToString(s256) || st.PCRError != "" {
		t.Errorf("status pcr10 %v (%q), list computes %x %x", st.PCR10, st.PCRError, s1, s256)
	}

	// evmctl must also notice a PCR the list does not give.
	wrong := filepath.Join(dir, "pcrs-wrong")
	writeFile(t, wrong, "PCR-10: "+hexSHA256("x")+"\n", 0o644)
	out, err := exec.Command("evmctl", "ima_measurement", "--pcrs", "sha256,"+wrong,
		filepath.Join(dir, BinaryListFile)).CombinedOutput()
	if err == nil {
		t.Errorf("evmctl accepts a wrong PCR value:\n%s", out)
	}
}

func TestFanotifyTPMAttachedLate(t *testing.T) {
	rootfs := newRootfs(t, map[string]string{"data/a.txt": "late\n"})
	testenv.Command(t, "swtpm")
	dir := t.TempDir()
	tpmDir, err := os.MkdirTemp("", "imans-measure-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tpmDir)
	addr := "unix:" + filepath.Join(tpmDir, "tpm", "swtpm.sock")

	c := startContainer(t, rootfs, "cat /data/a.txt")
	var sw *tpm.Swtpm
	st := collect(t, Spec{ID: "t3", Dir: dir, Pid: c.cmd.Process.Pid, Rootfs: rootfs,
		TPM: addr}, func() {
		c.run(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if sw, err = tpm.StartSwtpm(ctx, filepath.Join(tpmDir, "tpm")); err != nil {
			t.Fatalf("StartSwtpm: %v", err)
		}
		if sw.Addr != addr {
			t.Fatalf("swtpm address %s, want %s", sw.Addr, addr)
		}
		time.Sleep(300 * time.Millisecond)
	})
	defer sw.Stop()
	if len(st.Incomplete) != 0 || st.Entries != 2 {
		t.Fatalf("status %+v, want 2 entries and a whole record", st)
	}
	checkAgainstTPM(t, dir, sw.Addr)
}
