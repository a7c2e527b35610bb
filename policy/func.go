package policy

import "fmt"

// Func is the kernel hook an access comes from (the func= condition of a
// rule). The zero value, None, means no func= condition.
type Func int

// The kernel's hooks. PostSetattr cannot be named in a rule; it is the hook
// of an attribute change and matches any func= and mask= condition.
const (
	None Func = iota
	FileCheck
	MmapCheck
	MmapCheckReqprot
	BprmCheck
	CredsCheck
	PostSetattr
	ModuleCheck
	FirmwareCheck
	KexecKernelCheck
	KexecInitramfsCheck
	PolicyCheck
	KexecCmdline
	KeyCheck
	CriticalData
	SetxattrCheck
	maxFunc
)

// funcNames holds the name the kernel shows for each hook.
var funcNames = [...]string{
	None:                "NONE",
	FileCheck:           "FILE_CHECK",
	MmapCheck:           "MMAP_CHECK",
	MmapCheckReqprot:    "MMAP_CHECK_REQPROT",
	BprmCheck:           "BPRM_CHECK",
	CredsCheck:          "CREDS_CHECK",
	PostSetattr:         "POST_SETATTR",
	ModuleCheck:         "MODULE_CHECK",
	FirmwareCheck:       "FIRMWARE_CHECK",
	KexecKernelCheck:    "KEXEC_KERNEL_CHECK",
	KexecInitramfsCheck: "KEXEC_INITRAMFS_CHECK",
	PolicyCheck:         "POLICY_CHECK",
	KexecCmdline:        "KEXEC_CMDLINE",
	KeyCheck:            "KEY_CHECK",
	CriticalData:        "CRITICAL_DATA",
	SetxattrCheck:       "SETXATTR_CHECK",
}

// funcAliases are the names a rule may use for a hook besides its own.
var funcAliases = map[string]Func{
	"PATH_CHECK": FileCheck,
	"FILE_MMAP":  MmapCheck,
}

// String returns the kernel's name of the hook.
func (f Func) String() string {
	if f >= 0 && f < maxFunc {
		return funcNames[f]
	}
	return fmt.Sprintf("Func(%d)", int(f))
}

// ParseFunc returns the hook of a func= value, aliases included
// (PATH_CHECK is FILE_CHECK, FILE_MMAP is MMAP_CHECK). It knows every hook of
// the newest kernel; which of them a given kernel takes is the checker's
// business.
func ParseFunc(s string) (Func, error) {
	if f, ok := funcAliases[s]; ok {
		return f, nil
	}
	for f := FileCheck; f < maxFunc; f++ {
		if f != PostSetattr && funcNames[f] == s {
			return f, nil
		}
	}
	return None, fmt.Errorf("unknown func %q", s)
}

// The access mask bits, with the kernel's values.
const (
	MayExec   uint32 = 1
	MayWrite  uint32 = 2
	MayRead   uint32 = 4
	MayAppend uint32 = 8
)

// maskNames are the mask= values in the kernel's order of display.
var maskNames = []struct {
	name string
	bit  uint32
}{
	{"MAY_EXEC", MayExec},
	{"MAY_WRITE", MayWrite},
	{"MAY_READ", MayRead},
	{"MAY_APPEND", MayAppend},
}

// ParseMask reads a mask as the eval command and tests name it: kernel
// names joined with '|' (MAY_READ|MAY_EXEC) or a number.
func ParseMask(s string) (uint32, error) {
	var m uint32
	for _, part := range splitNonEmpty(s, '|') {
		found := false
		for _, mn := range maskNames {
			if mn.name == part {
				m |= mn.bit
				found = true
			}
		}
		if found {
			continue
		}
		v, err := parseUint(part, 0, 32)
		if err != nil {
			return 0, fmt.Errorf("unknown mask %q", part)
		}
		m |= uint32(v)
	}
	return m, nil
}
