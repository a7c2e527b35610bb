package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math/big"
	"path"
	"sort"
	"strings"
	"time"
)

// CaptureSet is one boot whose measurement lists and PCRs are kept as
// test data under ima/testdata/kernel/<Name>/.
type CaptureSet struct {
	Name     string // folder name, such as "6.12-ima-ng"
	Kernel   string // series
	Cmdline  string // IMA options
	Template string // the template most entries use, for info.txt
	Hash     string // the file digest algorithm, for info.txt
	Policy   string // what is measured, for info.txt
	Extra    string // shell commands run after the common workload
	Files    map[string][]byte
}

// Workload files, the same in every set, with known content so that tests
// can check their digests (sha256 of "hello\n" is 5891b5b5...).
var workloadFiles = map[string][]byte{
	"/root/data/hello.txt":       []byte("hello\n"),
	"/root/data/with space.txt":  []byte("a name with a space\n"),
	"/root/data/run.sh":          []byte("#!/bin/sh\necho run.sh ran\n"),
	"/root/data/nested/deep.txt": []byte("deep\n"),
}

const workload = `cat /root/data/hello.txt "/root/data/with space.txt" > /dev/null
/root/data/run.sh
cat /root/data/nested/deep.txt > /dev/null
`

// oddNames are files whose names the lists record raw (newline, tab,
// invalid UTF-8) or, in the legacy template, shortened to the base name
// (a path of 255 bytes or more).
var oddNames = map[string][]byte{
	"/root/odd/new\nline.txt":         []byte("newline\n"),
	"/root/odd/tab\there.txt":         []byte("tab\n"),
	"/root/odd/bad-\xff\xfe-utf8.txt": []byte("invalid utf-8\n"),
	"/root/odd/long/" + strings.Repeat("d", 120) + "/" + strings.Repeat("e", 120) +
		"/long-name.txt": []byte("a path of 270 bytes\n"),
}

const oddWorkload = `for f in /root/odd/* /root/odd/long/*/*/*; do
	if [ -f "$f" ]; then cat "$f" > /dev/null; fi
done
`

// bufPolicy is loaded by the ima-buf sets: keys (the early boot keys
// queued by the kernel, and one the script adds) and critical data give
// ima-buf entries; files are measured as under ima_policy=tcb.
// The pseudo filesystems are left out first (proc, sysfs, debugfs, tmpfs,
// devpts, binfmt_misc, securityfs, cgroup, nsfs), as tcb does, or the
// snapshot's own reads of sysfs would be measured between PCRs and lists.
const bufPolicy = `dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_measure fsmagic=0x64626720
dont_measure fsmagic=0x01021994
dont_measure fsmagic=0x1cd1
dont_measure fsmagic=0x42494e4d
dont_measure fsmagic=0x73636673
dont_measure fsmagic=0x27e0eb
dont_measure fsmagic=0x6e736673
measure func=KEY_CHECK template=ima-buf
measure func=CRITICAL_DATA template=ima-buf
measure func=BPRM_CHECK
measure func=FILE_CHECK mask=MAY_READ uid=0
`

// CaptureSets lists the sets: for each kernel the three templates, one
// with violations and one with ima-buf entries; on 6.12 also the
// canonical (little-endian) format and sha512 file digests.
func CaptureSets() []CaptureSet {
	var sets []CaptureSet
	for _, k := range Series() {
		sets = append(sets,
			CaptureSet{Name: k + "-ima-sig", Kernel: k, Cmdline: "ima_policy=tcb",
				Template: "ima-sig", Hash: "sha256", Policy: "tcb"},
			CaptureSet{Name: k + "-ima-ng", Kernel: k,
				Cmdline:  "ima_policy=tcb ima_template=ima-ng",
				Template: "ima-ng", Hash: "sha256", Policy: "tcb"},
			CaptureSet{Name: k + "-ima", Kernel: k, Cmdline: "ima_policy=tcb ima_template=ima",
				Template: "ima", Hash: "sha1 (forced by the legacy template)", Policy: "tcb"},
			CaptureSet{Name: k + "-violations", Kernel: k,
				Cmdline:  "ima_policy=tcb ima_template=ima-ng",
				Template: "ima-ng", Hash: "sha256",
				Policy: "tcb; imans-guest violations causes one open-writers and one ToMToU",
				Extra:  "imans-guest violations /root\n"},
			CaptureSet{Name: k + "-ima-buf", Kernel: k,
				Cmdline:  "ima_policy=critical_data ima_template=ima-ng",
				Template: "ima-ng (files), ima-buf (keys, critical data)", Hash: "sha256",
				Policy: "critical_data at boot, then KEY_CHECK, CRITICAL_DATA, BPRM_CHECK, " +
					"FILE_CHECK; a self-signed X.509 key added to @u",
				Extra: "imans-guest load /root/data/policy\n" +
					"imans-guest addkey /root/data/key.der @u\n" +
					"cat /root/data/hello.txt > /dev/null\n"},
		)
	}
	for _, k := range Series() {
		sets = append(sets, CaptureSet{Name: k + "-names", Kernel: k,
			Cmdline:  "ima_policy=tcb ima_template=ima-ng",
			Template: "ima-ng", Hash: "sha256",
			Policy: "tcb; file names with a newline, a tab, invalid UTF-8, a 270-byte path",
			Extra:  oddWorkload, Files: oddNames})
	}
	sets = append(sets,
		CaptureSet{Name: "6.12-ima-names", Kernel: "6.12",
			Cmdline:  "ima_policy=tcb ima_template=ima",
			Template: "ima", Hash: "sha1 (forced by the legacy template)",
			Policy: "tcb; odd names as in the -names sets: the 270-byte path is cut to its base name",
			Extra:  oddWorkload, Files: oddNames},
		CaptureSet{Name: "6.12-canonical", Kernel: "6.12",
			Cmdline:  "ima_policy=tcb ima_template=ima-ng ima_canonical_fmt",
			Template: "ima-ng", Hash: "sha256", Policy: "tcb; binary lists little-endian"},
		CaptureSet{Name: "6.12-ima-ng-sha512", Kernel: "6.12",
			Cmdline:  "ima_policy=tcb ima_template=ima-ng ima_hash=sha512",
			Template: "ima-ng", Hash: "sha512", Policy: "tcb"},
	)
	return sets
}

// snapshotDir is where the capture script leaves its files in the guest
// (a tmpfs, so writing them is not measured).
const snapshotDir = "/run/snapshot"

// Capture boots the set, runs the workload and takes the snapshot (PCRs
// first, then the lists). It returns the files of the testdata folder by
// name, info.txt included, after checking that PCR 10 of every bank the
// lists cover replays from the ASCII lists.
func Capture(ctx context.Context, set CaptureSet, cacheDir string) (
	map[string][]byte, *Result, error) {
	files := map[string][]byte{}
	for name, data := range workloadFiles {
		files[name] = data
	}
	for name, data := range set.Files {
		files[name] = data
	}
	if strings.Contains(set.Extra, "addkey") {
		der, err := selfSignedCert()
		if err != nil {
			return nil, nil, err
		}
		files["/root/data/key.der"] = der
		files["/root/data/policy"] = []byte(bufPolicy)
	}

	script := "set -e\n" + workload + set.Extra + "imans-guest snapshot " + snapshotDir + "\n"
	res, err := Boot(ctx, Config{
		Kernel:   set.Kernel,
		Cmdline:  set.Cmdline,
		Files:    files,
		Script:   script,
		Fetch:    []string{snapshotDir},
		CacheDir: cacheDir,
	})
	if err != nil {
		return nil, res, fmt.Errorf("capture %s: %w", set.Name, err)
	}
	if res.Status != 0 {
		return nil, res, fmt.Errorf("capture %s: script exit %d: %s", set.Name, res.Status, res.Output)
	}

	out := map[string][]byte{}
	for p, data := range res.Files {
		out[path.Base(p)] = data
	}
	out["info.txt"] = []byte(set.info(res, out))
	if err := CheckReplay(out); err != nil {
		return out, res, fmt.Errorf("capture %s: %w", set.Name, err)
	}
	return out, res, nil
}

// info writes info.txt: where the data came from.
func (set CaptureSet) info(res *Result, files map[string][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel: %s\n", res.Kernel.Release)
	fmt.Fprintf(&b, "package: %s %s\n", res.Kernel.Package, res.Kernel.Version)
	fmt.Fprintf(&b, "cmdline: %s\n", res.Cmdline)
	fmt.Fprintf(&b, "template: %s\n", set.Template)
	fmt.Fprintf(&b, "hash: %s\n", set.Hash)
	fmt.Fprintf(&b, "policy: %s\n", set.Policy)
	fmt.Fprintf(&b, "entries: %s\n", strings.TrimSpace(string(files["runtime_measurements_count"])))
	fmt.Fprintf(&b, "violations: %s\n", strings.TrimSpace(string(files["violations"])))
	var banks []string
	for name := range files {
		if b, ok := strings.CutPrefix(name, "pcr-"); ok {
			banks = append(banks, strings.TrimSuffix(b, ".txt"))
		}
	}
	sort.Strings(banks)
	fmt.Fprintf(&b, "tpm: swtpm, banks %s, PCRs read from /sys/class/tpm/tpm0 before the lists\n",
		strings.Join(banks, ","))
	fmt.Fprintf(&b, "captured: %s by integration/qemu (docs/harness.md)\n",
		time.Now().UTC().Format("2006-01-02"))
	return b.String()
}

// CheckReplay recomputes PCR 10 from the template hashes of the binary
// lists (a violation's zero hash extends all-0xff) and compares it with
// the snapshot's PCR files: the classic list against sha1, and each
// per-bank list (6.12) against its bank. It is independent of package
// ima on purpose, a second opinion on the captured data.
func CheckReplay(files map[string][]byte) error {
	checks := map[string]string{"binary_runtime_measurements": "sha1"}
	for name := range files {
		if bank, ok := strings.CutPrefix(name, "binary_runtime_measurements_"); ok {
			checks[name] = bank
		}
	}
	for list, bank := range checks {
		data, ok := files[list]
		if !ok {
			return fmt.Errorf("no %s", list)
		}
		want, err := pcrValue(files["pcr-"+bank+".txt"], 10)
		if err != nil {
			return fmt.Errorf("pcr-%s.txt: %w", bank, err)
		}
		got, n, err := replayBinary(data, bank)
		if err != nil {
			return fmt.Errorf("%s: %w", list, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: %d entries replay to %x in %s, PCR-10 is %x",
				list, n, got, bank, want)
		}
	}
	return nil
}

// replayBinary extends a zero PCR with each entry's template hash, read
// from a binary list in the host's (little-endian) order: u32 PCR, the
// hash (the bank's size), u32 template name length and name, then u32
// data length and data; the legacy "ima" template has no data length but
// a 20-byte digest, u32 name length and name.
func replayBinary(list []byte, bank string) ([]byte, int, error) {
	newHash := map[string]func() hash.Hash{
		"sha1": sha1.New, "sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New,
	}[bank]
	if newHash == nil {
		return nil, 0, fmt.Errorf("bank %s not known to the replay check", bank)
	}
	size := newHash().Size()
	pcr := make([]byte, size)
	n := 0
	for off := 0; off < len(list); n++ {
		start := off
		take := func(k int) ([]byte, error) {
			if k < 0 || k > len(list)-off {
				return nil, fmt.Errorf("entry %d at byte %d: truncated", n, start)
			}
			b := list[off : off+k]
			off += k
			return b, nil
		}
		u32 := func() (int, error) {
			b, err := take(4)
			if err != nil {
				return 0, err
			}
			return int(binary.LittleEndian.Uint32(b)), nil
		}

		if _, err := take(4); err != nil {
			return nil, n, err
		}
		digest, err := take(size)
		if err != nil {
			return nil, n, err
		}
		nameLen, err := u32()
		if err != nil {
			return nil, n, err
		}
		name, err := take(nameLen)
		if err != nil {
			return nil, n, err
		}
		if string(name) == "ima" {
			if _, err := take(20); err != nil {
				return nil, n, err
			}
		}
		dataLen, err := u32()
		if err != nil {
			return nil, n, err
		}
		if _, err := take(dataLen); err != nil {
			return nil, n, err
		}

		if bytes.Equal(digest, make([]byte, size)) {
			digest = bytes.Repeat([]byte{0xff}, size)
		}
		h := newHash()
		h.Write(pcr)
		h.Write(digest)
		pcr = h.Sum(nil)
	}
	return pcr, n, nil
}

// pcrValue finds "PCR-NN: hex" for one PCR.
func pcrValue(text []byte, pcr int) ([]byte, error) {
	prefix := fmt.Sprintf("PCR-%02d: ", pcr)
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return hex.DecodeString(strings.TrimSpace(v))
		}
	}
	return nil, fmt.Errorf("no %q line", prefix)
}

// selfSignedCert makes a throwaway RSA certificate for the KEY_CHECK
// entries (the kernel's X.509 parser has RSA built in on both kernels).
func selfSignedCert() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imans test key"},
		NotBefore:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2044, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		SubjectKeyId: []byte{1, 2, 3, 4, 5, 6, 7, 8},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
}
