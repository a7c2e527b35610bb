package policy

import (
	"fmt"
	"strings"
)

// Render returns the policy as the kernel's policy file shows it (6.12):
// one rule per line, words in the kernel's order and number forms
// (fsmagic=0x1021994 for 0x01021994), each word followed by a space, as
// the kernel prints them.
func (p *Policy) Render() string {
	return p.RenderFor(Linux612())
}

// RenderFor renders the policy as the kernel of the profile shows it.
func (p *Policy) RenderFor(prof Profile) string {
	var b strings.Builder
	for _, r := range p.Rules {
		r.render(&b, &prof)
	}
	return b.String()
}

// String returns the rule in the kernel's form, without the trailing space
// and newline.
func (r *Rule) String() string {
	var b strings.Builder
	prof := Linux612()
	r.render(&b, &prof)
	return strings.TrimRight(b.String(), " \n")
}

// render writes one rule as the kernel's ima_policy_show does.
func (r *Rule) render(b *strings.Builder, prof *Profile) {
	w := func(format string, args ...any) {
		fmt.Fprintf(b, format, args...)
		b.WriteByte(' ')
	}

	b.WriteString(r.Action.String())
	b.WriteByte(' ')
	if r.Flags&CondFunc != 0 {
		w("func=%s", r.Func)
	}
	if r.Flags&(CondMask|CondInMask) != 0 {
		caret := "^"
		if r.Flags&CondMask != 0 {
			caret = ""
		}
		for _, mn := range maskNames {
			if r.Mask&mn.bit != 0 {
				fmt.Fprintf(b, "mask=%s%s", caret, mn.name)
			}
		}
		b.WriteByte(' ')
	}
	if r.Flags&CondFSMagic != 0 {
		w("fsmagic=0x%x", r.FSMagic)
	}
	if r.Flags&CondFSName != 0 {
		w("fsname=%s", r.FSName)
	}
	if r.Flags&CondKeyrings != 0 {
		w("keyrings=%s", strings.Join(r.Keyrings, "|"))
	}
	if r.Flags&CondLabel != 0 {
		w("label=%s", strings.Join(r.Labels, "|"))
	}
	if r.Flags&OptPCR != 0 {
		w("pcr=%d", r.PCR)
	}
	if r.Flags&CondFSUUID != 0 {
		u := r.FSUUID
		w("fsuuid=%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	// Ids are printed as signed ints, as the kernel's "%d" does.
	idWord := func(flag Flag, key string, op Op, v uint32) {
		if r.Flags&flag != 0 {
			w("%s%c%d", key, op, int32(v))
		}
	}
	idWord(CondUID, "uid", r.UIDOp, r.UID)
	idWord(CondEUID, "euid", r.UIDOp, r.UID)
	idWord(CondGID, "gid", r.GIDOp, r.GID)
	idWord(CondEGID, "egid", r.GIDOp, r.GID)
	idWord(CondFOwner, "fowner", r.FOwnerOp, r.FOwner)
	idWord(CondFGroup, "fgroup", r.FGroupOp, r.FGroup)
	if r.Flags&OptAlgos != 0 {
		w("appraise_algos=%s", strings.Join(r.sortedAlgos(), ","))
	}
	for i, v := range r.LSM {
		if v != "" {
			w("%s=%s", lsmKeys[i], v)
		}
	}
	if r.Template != "" {
		w("template=%s", r.Template)
	}
	if r.Flags&OptDigsig != 0 {
		switch {
		case r.Flags&OptVerity != 0:
			w("appraise_type=sigv3")
		case r.Flags&OptModsig != 0:
			w("appraise_type=imasig|modsig")
		default:
			w("appraise_type=imasig")
		}
	}
	if r.Flags&OptVerity != 0 {
		w("digest_type=verity")
	}
	if r.Flags&OptBlacklist != 0 && !prof.SigImpliesBlacklist {
		w("appraise_flag=check_blacklist")
	}
	if r.Flags&OptPermitDirect != 0 {
		w("permit_directio")
	}
	b.WriteByte('\n')
}

// sortedAlgos lists the rule's appraise_algos once each, in the kernel's
// order (it keeps them as a bit set).
func (r *Rule) sortedAlgos() []string {
	var out []string
	for _, n := range hashAlgoNames {
		for _, a := range r.Algos {
			if a == n {
				out = append(out, n)
				break
			}
		}
	}
	return out
}
