package policy

import (
	"errors"
	"fmt"
	"strings"
)

// The errno names the kernel's policy file gives.
const (
	errEINVAL = "EINVAL"
	errERANGE = "ERANGE"
)

// Parse reads policy text and checks every rule against DefaultProfile.
// On failure the error is an ErrorList naming each bad rule's line and
// word; the policy is nil then.
func Parse(text string) (*Policy, error) {
	return ParseProfile(text, DefaultProfile())
}

// ParseProfile reads policy text and checks every rule as the kernel of
// the profile would.
func ParseProfile(text string, prof Profile) (*Policy, error) {
	p := &Policy{text: text}
	var errs ErrorList

	for i, line := range strings.Split(text, "\n") {
		r, err := parseLine(line, i+1, &prof)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r == nil {
			continue
		}
		p.Rules = append(p.Rules, r)
		if prof.MaxRules > 0 && len(p.Rules) == prof.MaxRules+1 {
			errs = append(errs, &Error{Line: r.Line, Reason: fmt.Sprintf(
				"more than %d rules: the namespace drops the whole batch when "+
					"the policy file is closed, without an error to the writer",
				prof.MaxRules)})
		}
	}

	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// ParseRule reads one rule, as one write() of a line to the kernel's policy
// file. It returns nil and no error for a comment or a blank line.
func ParseRule(line string, prof Profile) (*Rule, error) {
	r, err := parseLine(line, 1, &prof)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// parseLine parses and checks one line. A nil rule with a nil error is a
// comment or a blank line.
func parseLine(line string, n int, prof *Profile) (*Rule, *Error) {
	text := strings.TrimLeft(line, " \t")
	if text == "" || text[0] == '#' {
		return nil, nil
	}
	if strings.IndexByte(text, 0) >= 0 {
		return nil, &Error{Line: n, Reason: "NUL byte in rule", Errno: errEINVAL}
	}

	r := &Rule{Line: n, PCR: -1, Text: strings.TrimRight(text, " \t")}
	p := ruleParser{r: r, prof: prof}
	for _, w := range strings.FieldsFunc(text, func(c rune) bool {
		return c == ' ' || c == '\t'
	}) {
		if prof.SuffixComments && w[0] == '#' {
			break
		}
		if reason, errno := p.word(w); reason != "" {
			return nil, &Error{Line: n, Word: w, Reason: reason, Errno: errno}
		}
	}
	if r.Action == 0 {
		return nil, &Error{Line: n, Reason: "rule has no action", Errno: errEINVAL}
	}

	if reason := validate(r, prof); reason != "" {
		return nil, &Error{Line: n, Reason: reason, Errno: errEINVAL}
	}
	if !prof.allowsAction(r.Action) {
		return nil, &Error{Line: n, Word: r.Action.String(), Errno: errEINVAL,
			Reason: fmt.Sprintf("action not allowed inside an IMA namespace (%s)",
				prof.Namespace)}
	}
	return r, nil
}

// ruleParser holds the state of one rule while its words are read, as the
// kernel's parser does: some checks depend on the words before.
type ruleParser struct {
	r    *Rule
	prof *Profile
	// uidSet and friends say a valid id was taken (the kernel checks the
	// id for validity rather than a flag).
	uidSet, gidSet, fownerSet, fgroupSet bool
}

// word handles one word of a rule. It returns a reason and an errno when
// the kernel would refuse the word.
func (p *ruleParser) word(w string) (reason, errno string) {
	for _, an := range actionNames {
		if w == an.name {
			if p.r.Action != 0 {
				return "second action in one rule", errEINVAL
			}
			p.r.Action = an.a
			return "", ""
		}
	}
	if w == "permit_directio" {
		p.r.Flags |= OptPermitDirect
		return "", ""
	}

	key, op, val := splitWord(w)
	if key == "" || val == "" {
		return "unknown word", errEINVAL
	}
	if op != OpEq && !isIDKey(key) {
		return "unknown word", errEINVAL
	}

	switch key {
	case "func":
		return p.fn(val)
	case "mask":
		return p.mask(val)
	case "fsmagic":
		return p.fsmagic(val)
	case "fsname":
		p.r.FSName = val
		p.r.Flags |= CondFSName
		return "", ""
	case "fsuuid":
		return p.fsuuid(val)
	case "uid", "euid", "gid", "egid", "fowner", "fgroup":
		return p.id(key, op, val)
	case "obj_user", "obj_role", "obj_type", "subj_user", "subj_role", "subj_type":
		return p.lsm(key, val)
	case "keyrings":
		if !p.prof.KeyCheck {
			return "kernel built without key measurement", errEINVAL
		}
		if p.r.Flags&CondKeyrings != 0 {
			return "keyrings given twice", errEINVAL
		}
		return p.list(&p.r.Keyrings, CondKeyrings, val)
	case "label":
		if p.r.Flags&CondLabel != 0 {
			return "label given twice", errEINVAL
		}
		return p.list(&p.r.Labels, CondLabel, val)
	case "digest_type":
		return p.digestType(val)
	case "appraise_type":
		return p.appraiseType(val)
	case "appraise_flag":
		return p.appraiseFlag(val)
	case "appraise_algos":
		return p.algos(val)
	case "pcr":
		return p.pcr(val)
	case "template":
		return p.template(val)
	}
	return "unknown word", errEINVAL
}

// splitWord splits "key=value", "key<value" and "key>value" at the first
// operator.
func splitWord(w string) (key string, op Op, val string) {
	i := strings.IndexAny(w, "=<>")
	if i <= 0 {
		return "", 0, ""
	}
	return w[:i], Op(w[i]), w[i+1:]
}

func isIDKey(k string) bool {
	switch k {
	case "uid", "euid", "gid", "egid", "fowner", "fgroup":
		return true
	}
	return false
}

func (p *ruleParser) fn(val string) (string, string) {
	dup := p.r.Func != None
	f, err := ParseFunc(val)
	switch {
	case err != nil:
		return "unknown func", errEINVAL
	case f == MmapCheckReqprot && !p.prof.ReqProt:
		return "func unknown to kernel " + p.prof.Name, errEINVAL
	case f == KeyCheck && !p.prof.KeyCheck:
		return "kernel built without key measurement", errEINVAL
	case dup:
		return "func given twice", errEINVAL
	}
	p.r.Func = f
	p.r.Flags |= CondFunc
	return "", ""
}

func (p *ruleParser) mask(val string) (string, string) {
	if p.r.Mask != 0 {
		return "mask given twice", errEINVAL
	}
	name, flag := val, CondMask
	if strings.HasPrefix(val, "^") {
		name, flag = val[1:], CondInMask
	}
	for _, mn := range maskNames {
		if mn.name == name {
			p.r.Mask = mn.bit
			p.r.Flags |= flag
			return "", ""
		}
	}
	return "unknown mask", errEINVAL
}

func (p *ruleParser) fsmagic(val string) (string, string) {
	if p.r.FSMagic != 0 {
		return "fsmagic given twice", errEINVAL
	}
	v, err := kstrtoul(val, 16)
	if err != nil {
		return "fsmagic is not a hexadecimal number: " + err.reason, err.errno
	}
	p.r.FSMagic = v
	p.r.Flags |= CondFSMagic
	return "", ""
}

func (p *ruleParser) fsuuid(val string) (string, string) {
	if p.r.FSUUID != [16]byte{} {
		return "fsuuid given twice", errEINVAL
	}
	u, ok := parseUUID(val)
	if !ok {
		return "fsuuid is not a UUID", errEINVAL
	}
	p.r.FSUUID = u
	p.r.Flags |= CondFSUUID
	return "", ""
}

// id handles uid, euid, gid, egid, fowner and fgroup. As in the kernel,
// uid and euid share one value, and so do gid and egid: a rule has at most
// one of each pair. The comparison is set before the duplicate check, so a
// refused duplicate still changes it; that does not matter since the rule
// is refused.
func (p *ruleParser) id(key string, op Op, val string) (string, string) {
	var (
		set   *bool
		dst   *uint32
		dstOp *Op
		flag  Flag
		m     IDMap
	)
	switch key {
	case "uid", "euid":
		set, dst, dstOp, flag, m = &p.uidSet, &p.r.UID, &p.r.UIDOp, CondUID, p.prof.UIDMap
		if key == "euid" {
			flag = CondEUID
		}
	case "gid", "egid":
		set, dst, dstOp, flag, m = &p.gidSet, &p.r.GID, &p.r.GIDOp, CondGID, p.prof.GIDMap
		if key == "egid" {
			flag = CondEGID
		}
	case "fowner":
		set, dst, dstOp, flag, m = &p.fownerSet, &p.r.FOwner, &p.r.FOwnerOp, CondFOwner,
			p.prof.UIDMap
	default:
		set, dst, dstOp, flag, m = &p.fgroupSet, &p.r.FGroup, &p.r.FGroupOp, CondFGroup,
			p.prof.GIDMap
	}
	if *set {
		return key + " given twice (uid and euid, gid and egid share one value)",
			errEINVAL
	}

	v, err := kstrtoul(val, 10)
	if err != nil {
		return key + " is not a decimal number: " + err.reason, err.errno
	}
	if v >= 1<<32-1 {
		return key + " out of range (at most 4294967294)", errEINVAL
	}
	if len(m) > 0 {
		if _, ok := m.ToHost(uint32(v)); !ok {
			return key + " is not mapped in the writer's user namespace", errEINVAL
		}
	}
	*set, *dst, *dstOp = true, uint32(v), op
	p.r.Flags |= flag
	return "", ""
}

func (p *ruleParser) lsm(key, val string) (string, string) {
	slot := 0
	for i, k := range lsmKeys {
		if k == key {
			slot = i
		}
	}
	if p.r.LSM[slot] != "" {
		return key + " given twice", errEINVAL
	}
	if !p.prof.hasLSM(key, val) {
		return "the active LSM takes no " + key + " rule with this value", errEINVAL
	}
	p.r.LSM[slot] = val
	return "", ""
}

// list reads a '|'-separated list; empty items are refused.
func (p *ruleParser) list(dst *[]string, flag Flag, val string) (string, string) {
	items := strings.Split(val, "|")
	for _, it := range items {
		if it == "" {
			return "empty item in list", errEINVAL
		}
	}
	*dst = items
	p.r.Flags |= flag
	return "", ""
}

func (p *ruleParser) digestType(val string) (string, string) {
	if p.r.Flags&OptDigsig != 0 {
		return "digest_type must come before appraise_type", errEINVAL
	}
	if val != "verity" {
		return "unknown digest_type (only verity)", errEINVAL
	}
	p.r.Flags |= OptVerity
	return "", ""
}

func (p *ruleParser) appraiseType(val string) (string, string) {
	verity := p.r.Flags&OptVerity != 0
	var add Flag
	switch {
	case val == "imasig":
		if verity {
			return "imasig does not go with digest_type=verity (use sigv3)", errEINVAL
		}
		add = OptDigsig
	case val == "sigv3":
		if !verity {
			return "sigv3 needs digest_type=verity before it", errEINVAL
		}
		add = OptDigsig
	case val == "imasig|modsig" && p.prof.ModSig:
		if verity {
			return "imasig|modsig does not go with digest_type=verity", errEINVAL
		}
		add = OptDigsig | OptModsig
	default:
		return "unknown appraise_type", errEINVAL
	}
	if p.prof.SigImpliesBlacklist {
		add |= OptBlacklist
	}
	p.r.Flags |= add
	return "", ""
}

func (p *ruleParser) appraiseFlag(val string) (string, string) {
	if p.prof.SigImpliesBlacklist {
		return "", ""
	}
	if !p.prof.ModSig || !strings.Contains(val, "blacklist") {
		return "unknown appraise_flag (only check_blacklist)", errEINVAL
	}
	p.r.Flags |= OptBlacklist
	return "", ""
}

func (p *ruleParser) algos(val string) (string, string) {
	if p.r.Flags&OptAlgos != 0 {
		return "appraise_algos given twice", errEINVAL
	}
	var algos []string
	for _, a := range strings.Split(val, ",") {
		known := false
		for _, n := range hashAlgoNames {
			known = known || n == a
		}
		if !known {
			return fmt.Sprintf("unknown hash algorithm %q", ShortWord(a)), errEINVAL
		}
		if !p.prof.hasAlgo(a) {
			return fmt.Sprintf("hash algorithm %q not available in kernel %s",
				a, p.prof.Name), errEINVAL
		}
		algos = append(algos, a)
	}
	p.r.Algos = algos
	p.r.Flags |= OptAlgos
	return "", ""
}

func (p *ruleParser) pcr(val string) (string, string) {
	v, ok := kstrtoint(val)
	if !ok || v < 0 || v >= 64 {
		return "pcr must be a number from 0 to 63", errEINVAL
	}
	p.r.PCR = v
	p.r.Flags |= OptPCR
	return "", ""
}

func (p *ruleParser) template(val string) (string, string) {
	if p.r.Action != Measure {
		return "template= needs the measure action before it", errEINVAL
	}
	name, ok := p.prof.template(val)
	if !ok {
		return "unknown template", errEINVAL
	}
	if p.r.Template != "" {
		return "template given twice", errEINVAL
	}
	p.r.Template = name
	return "", ""
}

// numError is a refused number with the kernel's errno.
type numError struct{ reason, errno string }

// kstrtoul reads an unsigned long as the kernel's kstrtoul does: an
// optional '+', for base 16 an optional 0x, at least one digit, nothing
// after; ERANGE on overflow (checked before trailing garbage).
func kstrtoul(s string, base uint64) (uint64, *numError) {
	s = strings.TrimPrefix(s, "+")
	if base == 16 && len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}

	var v uint64
	n, overflow := 0, false
	for ; n < len(s); n++ {
		d, ok := digitVal(s[n])
		if !ok || d >= base {
			break
		}
		if v > (^uint64(0)-d)/base {
			overflow = true
		}
		v = v*base + d
	}

	switch {
	case overflow:
		return 0, &numError{"too large", errERANGE}
	case n == 0:
		return 0, &numError{"no digits", errEINVAL}
	case n < len(s):
		return 0, &numError{"trailing characters", errEINVAL}
	}
	return v, nil
}

// kstrtoint reads a signed int in base 10, as kstrtoint does.
func kstrtoint(s string) (int, bool) {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		return 0, false
	}
	v, err := kstrtoul(s, 10)
	if err != nil || v > 1<<31 || (!neg && v == 1<<31) {
		return 0, false
	}
	if neg {
		return -int(v), true
	}
	return int(v), true
}

func digitVal(c byte) (uint64, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0'), true
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10, true
	}
	return 0, false
}

// parseUUID reads a UUID as the kernel's uuid_parse: the first 36
// characters must be the 8-4-4-4-12 form; anything after is ignored.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) < 36 {
		return u, false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return u, false
			}
			continue
		}
		if _, ok := digitVal(s[i]); !ok {
			return u, false
		}
	}
	idx := [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}
	for i, j := range idx {
		hi, _ := digitVal(s[j])
		lo, _ := digitVal(s[j+1])
		u[i] = byte(hi<<4 | lo)
	}
	return u, true
}

// splitNonEmpty splits s at sep and drops empty parts.
func splitNonEmpty(s string, sep byte) []string {
	var out []string
	for _, part := range strings.Split(s, string(sep)) {
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseUint reads an unsigned number in the given base (0: by prefix).
func parseUint(s string, base int, bits int) (uint64, error) {
	var v uint64
	var err error
	switch {
	case base == 0 && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")):
		var ne *numError
		v, ne = kstrtoul(s, 16)
		if ne != nil {
			err = errors.New(ne.reason)
		}
	default:
		var ne *numError
		v, ne = kstrtoul(s, 10)
		if ne != nil {
			err = errors.New(ne.reason)
		}
	}
	if err != nil {
		return 0, err
	}
	if bits < 64 && v >= 1<<bits {
		return 0, errors.New("out of range")
	}
	return v, nil
}
