package policy

import (
	"fmt"
	"slices"
)

// Namespace names the IMA namespace support a profile checks against.
type Namespace string

// The IMA namespace variants. NoNamespace checks a rule for the host's
// policy file.
const (
	// NoNamespace: the host's policy file, no namespace restriction.
	NoNamespace Namespace = ""
	// NamespaceV15: the last posted namespace series; only audit and
	// dont_* rules are taken inside a namespace.
	NamespaceV15 Namespace = "v15"
	// NamespaceDev: the series' development tree, which also takes
	// measure rules; appraise and hash rules give EINVAL.
	NamespaceDev Namespace = "dev"
)

// MaxNamespaceRules is the most rules an IMA namespace keeps in one batch;
// over that, the kernel drops the whole batch without an error on write.
const MaxNamespaceRules = 1024

// Profile says which kernel a policy is checked for: the features of its
// version and configuration that change which rules it takes, and whether
// the rules go into an IMA namespace. The zero value is not useful; start
// from Linux61, Linux612 or DefaultProfile.
type Profile struct {
	// Name identifies the profile in messages ("6.12", "6.12/dev").
	Name string
	// ReqProt: the kernel knows func=MMAP_CHECK_REQPROT (6.3 and later).
	ReqProt bool
	// SigImpliesBlacklist: appraise_type=... turns on the blacklist
	// check by itself and appraise_flag= is accepted and ignored (6.7
	// and later). Before, appraise_flag=check_blacklist is the only way
	// and needs appraise_type=imasig|modsig.
	SigImpliesBlacklist bool
	// SuffixComments: a word starting with '#' ends the rule (kernels
	// after 6.12); before, such a word is unknown and refused.
	SuffixComments bool
	// ModSig: CONFIG_IMA_APPRAISE_MODSIG (appraise_type=imasig|modsig).
	ModSig bool
	// KeyCheck: CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS (func=KEY_CHECK,
	// keyrings=).
	KeyCheck bool
	// Templates the kernel knows by name for template=.
	Templates []string
	// HashAlgos the kernel's crypto offers, for appraise_algos=.
	HashAlgos []string
	// LSMKeys are the LSM conditions (subj_role, ...) the active LSM
	// takes. The kernel refuses the others while the boot policy is
	// still in force, that is for the first policy written.
	LSMKeys []string
	// LSMLabels, when not nil, are the only values the active LSM knows
	// for those conditions (AppArmor takes subj_role= of a loaded
	// profile only).
	LSMLabels []string
	// Namespace restricts the actions to those the namespace takes.
	Namespace Namespace
	// MaxRules is the most rules one policy may have; 0 for no limit.
	MaxRules int
	// UIDMap and GIDMap, when set, are the id maps of the user namespace
	// that writes the policy: uid= and the like must name a mapped id,
	// as the kernel reads them through that namespace.
	UIDMap, GIDMap IDMap
}

// hashAlgoNames are the kernel's hash algorithm names in the order of its
// enum, which is also the order it shows appraise_algos= in.
var hashAlgoNames = []string{"md4", "md5", "sha1", "rmd160", "sha256",
	"sha384", "sha512", "sha224", "rmd128", "rmd256", "rmd320", "wp256",
	"wp384", "wp512", "tgr128", "tgr160", "tgr192", "sm3", "streebog256",
	"streebog512", "sha3-256", "sha3-384", "sha3-512"}

// templateFormats are the kernel's built-in templates by name, with their
// formats: template= takes either, and the kernel shows the name.
var templateFormats = [][2]string{
	{"ima", "d|n"},
	{"ima-ng", "d-ng|n-ng"},
	{"ima-ngv2", "d-ngv2|n-ng"},
	{"ima-sig", "d-ng|n-ng|sig"},
	{"ima-sigv2", "d-ngv2|n-ng|sig"},
	{"ima-buf", "d-ng|n-ng|buf"},
	{"ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"},
	{"evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"},
}

// builtinTemplates are the template names every kernel of 6.1 and later
// knows.
func builtinTemplates() []string {
	var out []string
	for _, t := range templateFormats {
		out = append(out, t[0])
	}
	return out
}

// Linux61 is Debian's 6.1 kernel as a policy checker sees it, booted with
// AppArmor and without modules (the qemu harness's initramfs). What it
// takes was recorded from the kernel itself (testdata/oracle and the
// integration test TestOracleEdges): no CONFIG_IMA_APPRAISE_MODSIG, only
// md5, sha1, sha224 and sha256 available to appraise_algos= (the others
// live in modules), AppArmor's subj_role= only for loaded profiles.
func Linux61() Profile {
	return Profile{
		Name:      "6.1",
		KeyCheck:  true,
		Templates: builtinTemplates(),
		HashAlgos: []string{"md5", "sha1", "sha224", "sha256"},
		LSMKeys:   []string{"subj_role"},
		LSMLabels: []string{"unconfined"},
	}
}

// Linux612 is Debian's 6.12 kernel as a policy checker sees it, booted as
// Linux61. It adds MMAP_CHECK_REQPROT, takes any appraise_flag= (ignored),
// and offers sha384, sha512 and sha3 to appraise_algos=.
func Linux612() Profile {
	p := Linux61()
	p.Name = "6.12"
	p.ReqProt = true
	p.SigImpliesBlacklist = true
	p.HashAlgos = []string{"md5", "sha1", "sha224", "sha256", "sha384", "sha512",
		"sha3-256", "sha3-384", "sha3-512"}
	return p
}

// DefaultProfile is what Parse checks against: the 6.12 grammar with the
// namespace's rule limit and no restriction on actions (the fanotify
// backend evaluates every action itself).
func DefaultProfile() Profile {
	p := Linux612()
	p.Name = "default"
	p.MaxRules = MaxNamespaceRules
	return p
}

// InNamespace returns the profile for rules written inside an IMA
// namespace of the given variant.
func (p Profile) InNamespace(ns Namespace) Profile {
	p.Namespace = ns
	if ns != NoNamespace {
		p.Name += "/" + string(ns)
		p.MaxRules = MaxNamespaceRules
	}
	return p
}

// ProfileByName returns a profile from its name: "6.1", "6.12" or
// "default", optionally followed by "/v15" or "/dev".
func ProfileByName(name string) (Profile, error) {
	base, ns := name, ""
	for i := range name {
		if name[i] == '/' {
			base, ns = name[:i], name[i+1:]
			break
		}
	}

	var p Profile
	switch base {
	case "6.1":
		p = Linux61()
	case "6.12":
		p = Linux612()
	case "default", "":
		p = DefaultProfile()
	default:
		return Profile{}, fmt.Errorf("unknown kernel profile %q", base)
	}

	switch Namespace(ns) {
	case NoNamespace:
		return p, nil
	case NamespaceV15, NamespaceDev:
		return p.InNamespace(Namespace(ns)), nil
	}
	return Profile{}, fmt.Errorf("unknown namespace variant %q", ns)
}

// template returns the name of the template given by name or format.
func (p *Profile) template(s string) (string, bool) {
	for _, t := range templateFormats {
		if (s == t[0] || s == t[1]) && slices.Contains(p.Templates, t[0]) {
			return t[0], true
		}
	}
	return "", false
}

func (p *Profile) hasAlgo(name string) bool { return slices.Contains(p.HashAlgos, name) }

func (p *Profile) hasLSM(key, val string) bool {
	return slices.Contains(p.LSMKeys, key) &&
		(p.LSMLabels == nil || slices.Contains(p.LSMLabels, val))
}

// allowsAction reports whether the profile's namespace takes the action.
func (p *Profile) allowsAction(a Action) bool {
	switch p.Namespace {
	case NamespaceV15:
		return a == Audit || a == DontMeasure || a == DontAppraise || a == DontHash
	case NamespaceDev:
		return a != Appraise && a != Hash
	}
	return true
}
