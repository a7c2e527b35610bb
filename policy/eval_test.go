package policy

import (
	"slices"
	"testing"
)

// Filesystem magics as the kernel's statfs reports them.
const (
	ext4Magic    = 0xef53
	tmpfsMagic   = 0x01021994
	procMagic    = 0x9fa0
	overlayMagic = 0x794c7630
	ramfsMagic   = 0x858458f6
)

func TestEvaluateBuiltin(t *testing.T) {
	p := Builtin()
	tests := []struct {
		name     string
		a        Access
		measure  bool
		appraise bool
		lines    []int
	}{
		{"tmpfs read is not measured (dont_measure comes first)",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: tmpfsMagic}, false, false,
			[]int{11, 12}},
		{"ext4 read by root is measured; root's file not appraised",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: ext4Magic}, true, false,
			[]int{34, 42}},
		{"overlay read of a user's file: measured, and no appraise rule matches",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: overlayMagic, FOwner: 1000,
				UID: 1000}, true, false, []int{34}},
		{"exec on ext4 is not measured by the built-in policy",
			Access{Func: BprmCheck, Mask: MayExec, FSMagic: ext4Magic, FOwner: 1000},
			false, false, nil},
		{"mmap for exec is not measured either",
			Access{Func: MmapCheck, Mask: MayExec, FSMagic: ext4Magic, FOwner: 1000},
			false, false, nil},
		{"proc is never measured",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: procMagic}, false, false,
			[]int{2, 3}},
		{"ramfs is measured (only dont_appraise for it)",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: ramfsMagic, FOwner: 5},
			true, false, []int{14, 34}},
		{"module load measured",
			Access{Func: ModuleCheck, Mask: MayRead, FSMagic: ext4Magic, FOwner: 7},
			true, false, []int{35}},
		{"key on .ima measured",
			Access{Func: KeyCheck, Data: ".ima"}, true, false, []int{40}},
		{"key on .evm measured by the second KEY_CHECK rule",
			Access{Func: KeyCheck, Data: ".evm"}, true, false, []int{41}},
		{"key on .platform not measured",
			Access{Func: KeyCheck, Data: ".platform"}, false, false, nil},
		{"attribute change matches any func",
			Access{Func: PostSetattr, FSMagic: ext4Magic, FOwner: 3}, true, false,
			[]int{34}},
	}
	for _, tc := range tests {
		d := p.Evaluate(tc.a)
		if d.Measure != tc.measure || d.Appraise != tc.appraise || d.Audit || d.Hash ||
			d.PCR != 10 || !slices.Equal(d.Lines, tc.lines) {
			t.Errorf("%s: %+v, want measure %v appraise %v lines %v",
				tc.name, d, tc.measure, tc.appraise, tc.lines)
		}
	}
}

func TestEvaluateClasses(t *testing.T) {
	p, err := Parse(`
dont_measure fsmagic=0x1021994
measure func=BPRM_CHECK mask=MAY_EXEC pcr=11 template=ima-sig
measure func=FILE_CHECK mask=^MAY_READ euid=0
audit func=BPRM_CHECK
hash func=FILE_CHECK
appraise func=FILE_CHECK fowner=0
measure pcr=12
`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		a    Access
		want Decision
	}{
		{"exec: measure into pcr 11 with ima-sig, audit",
			Access{Func: BprmCheck, Mask: MayExec, FSMagic: ext4Magic, EUID: 1},
			Decision{Measure: true, PCR: 11, Template: "ima-sig", Audit: true,
				Lines: []int{3, 5}}},
		{"root read|write: ^MAY_READ takes any bit; appraise clears hash",
			Access{Func: FileCheck, Mask: MayRead | MayWrite, FSMagic: ext4Magic},
			Decision{Measure: true, PCR: 10, Appraise: true, Lines: []int{4, 6, 7}}},
		{"user read: falls through to the catch-all pcr=12 rule",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: ext4Magic, EUID: 1000,
				FOwner: 1000},
			Decision{Measure: true, PCR: 12, Hash: true, Lines: []int{6, 8}}},
		{"setuid-capable process: saved uid 0 counts for euid=0",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: ext4Magic, EUID: 1000,
				SUID: 0, CapSetUID: true, FOwner: 1000},
			Decision{Measure: true, PCR: 10, Hash: true, Lines: []int{4, 6}}},
		{"tmpfs: measure class stopped, hash still applies",
			Access{Func: FileCheck, Mask: MayRead, FSMagic: tmpfsMagic, FOwner: 9},
			Decision{PCR: 10, Hash: true, Lines: []int{2, 6}}},
	}
	for _, tc := range tests {
		d := p.Evaluate(tc.a)
		if d.Measure != tc.want.Measure || d.PCR != tc.want.PCR ||
			d.Template != tc.want.Template || d.Appraise != tc.want.Appraise ||
			d.Audit != tc.want.Audit || d.Hash != tc.want.Hash ||
			!slices.Equal(d.Lines, tc.want.Lines) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, d, tc.want)
		}
	}
}

func TestEvaluateIDMap(t *testing.T) {
	p, err := Parse(`measure func=FILE_CHECK uid>999
dont_appraise fowner=0
appraise func=FILE_CHECK fgroup<100
`)
	if err != nil {
		t.Fatal(err)
	}
	uidMap, err := ParseIDMap("         0     100000      65536\n")
	if err != nil {
		t.Fatal(err)
	}
	gidMap := IDMap{{ContainerID: 0, HostID: 200000, Size: 1000}}

	tests := []struct {
		name              string
		host              Access
		measure, appraise bool
	}{
		{"container uid 1000 (host 101000) is measured",
			Access{UID: 101000, FOwner: 100000, FGroup: 200000}, true, false},
		{"container root (host 100000) is not",
			Access{UID: 100000, FOwner: 100000, FGroup: 200000}, false, false},
		{"a file of container uid 5 and gid 50 is appraised",
			Access{UID: 100000, FOwner: 100005, FGroup: 200050}, false, true},
		{"a file of host root is unmapped: overflow id, not fowner=0",
			Access{UID: 101000, FOwner: 0, FGroup: 200000}, true, true},
		{"a group outside the map is the overflow gid 65534, not <100",
			Access{UID: 100000, FOwner: 100005, FGroup: 5}, false, false},
	}
	for _, tc := range tests {
		tc.host.Func, tc.host.Mask, tc.host.FSMagic = FileCheck, MayRead, ext4Magic
		d := p.Evaluate(tc.host.InContainer(uidMap, gidMap))
		if d.Measure != tc.measure || d.Appraise != tc.appraise {
			t.Errorf("%s: %+v", tc.name, d)
		}
	}

	// Without the map, host ids are compared as they are.
	d := p.Evaluate(Access{Func: FileCheck, Mask: MayRead, UID: 100000, FOwner: 100000,
		FGroup: 200000})
	if !d.Measure || d.Appraise {
		t.Errorf("unmapped evaluation: %+v", d)
	}
}

func TestIDMap(t *testing.T) {
	m, err := ParseIDMap("0 1000 1\n1 100000 65536\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ host, want uint32 }{{1000, 0}, {100000, 1}, {165535, 65536}} {
		if got, ok := m.ToContainer(c.host); !ok || got != c.want {
			t.Errorf("host %d -> %d %v, want %d", c.host, got, ok, c.want)
		}
	}
	if _, ok := m.ToContainer(165536); ok {
		t.Error("host 165536 mapped")
	}
	if h, ok := m.ToHost(0); !ok || h != 1000 {
		t.Errorf("container 0 -> host %d", h)
	}
	for _, bad := range []string{"0 1000", "0 x 1", "0 0 0", "4294967295 0 2"} {
		if _, err := ParseIDMap(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}

	// A namespace profile refuses ids its writer cannot map.
	prof := Linux612().InNamespace(NamespaceDev)
	prof.UIDMap = m
	if _, err := ParseProfile("measure uid=65536", prof); err != nil {
		t.Errorf("mapped uid refused: %v", err)
	}
	if _, err := ParseProfile("measure fowner=65537", prof); err == nil {
		t.Error("unmapped fowner accepted")
	}
}

func TestParseMaskFunc(t *testing.T) {
	m, err := ParseMask("MAY_READ|MAY_EXEC")
	if err != nil || m != MayRead|MayExec {
		t.Errorf("mask %d %v", m, err)
	}
	if m, err := ParseMask("0x6"); err != nil || m != 6 {
		t.Errorf("mask 0x6: %d %v", m, err)
	}
	if _, err := ParseMask("MAY_FLY"); err == nil {
		t.Error("MAY_FLY accepted")
	}
	if f, err := ParseFunc("PATH_CHECK"); err != nil || f != FileCheck {
		t.Errorf("PATH_CHECK: %v %v", f, err)
	}
	if _, err := ParseFunc("POST_SETATTR"); err == nil {
		t.Error("POST_SETATTR accepted in a rule")
	}
}
