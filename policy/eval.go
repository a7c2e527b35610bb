package policy

import "slices"

// DefaultPCR is the PCR a measurement extends unless a rule says pcr=.
const DefaultPCR = 10

// Access is one file access (or key, or buffer) the policy decides on.
// Ids are as the container sees them: map host ids first (IDMap).
type Access struct {
	// Func is the hook the access comes from.
	Func Func
	// Mask is the access's mask: MayExec, MayWrite, MayRead, MayAppend.
	Mask uint32
	// FSMagic, FSUUID and FSName describe the file's filesystem (statfs
	// magic, superblock UUID, filesystem type name).
	FSMagic uint64
	FSUUID  [16]byte
	FSName  string

	// UID, EUID, GID and EGID are the process's real and effective ids.
	UID, EUID, GID, EGID uint32
	// FOwner and FGroup are the file's owner and group.
	FOwner, FGroup uint32
	// SUID and SGID are the saved ids; they count for euid= and egid=
	// only when the process holds CAP_SETUID (CAP_SETGID), as in the
	// kernel: CapSetUID and CapSetGID say it does.
	SUID, SGID           uint32
	CapSetUID, CapSetGID bool

	// Data is the keyring of a KEY_CHECK access or the label of a
	// CRITICAL_DATA one.
	Data string
}

// Decision is what the policy says about an access, per action class.
type Decision struct {
	// Measure: the access is to be measured.
	Measure bool
	// PCR is the PCR to extend: DefaultPCR unless a matching rule said
	// pcr=.
	PCR int
	// Template is the template a matching measure rule named; empty for
	// the default one.
	Template string
	// Appraise, Audit and Hash are the decisions of the other classes.
	Appraise, Audit, Hash bool
	// Lines are the lines of the rules that decided, in policy order.
	Lines []int
}

// The "do" actions; each one's dont_ twin is the next bit up.
const doMask = Measure | Appraise | Audit | Hash

// Evaluate decides on an access as the kernel's ima_match_policy does:
// the rules are walked in order and the first matching rule of each action
// class (measure, appraise, audit, hash) decides that class.
//
// Rules with an LSM condition (subj_*, obj_*) never match here: an access
// carries no security labels to compare them with.
func (p *Policy) Evaluate(a Access) Decision {
	d := Decision{PCR: DefaultPCR}
	actmask := doMask | doMask<<1
	var action Action

	for _, r := range p.Rules {
		if r.Action&actmask == 0 || !r.matches(&a) {
			continue
		}

		action |= r.Action & doMask
		if r.Action&Appraise != 0 {
			action &^= Hash
		}
		if r.Action&doMask != 0 {
			actmask &^= r.Action | r.Action<<1
		} else {
			actmask &^= r.Action | r.Action>>1
		}
		if r.Flags&OptPCR != 0 {
			d.PCR = r.PCR
		}
		if r.Template != "" {
			d.Template = r.Template
		}
		d.Lines = append(d.Lines, r.Line)

		if actmask == 0 {
			break
		}
	}

	d.Measure = action&Measure != 0
	d.Appraise = action&Appraise != 0
	d.Audit = action&Audit != 0
	d.Hash = action&Hash != 0
	return d
}

// matches reports whether the access meets every condition of the rule,
// as the kernel's ima_match_rules.
func (r *Rule) matches(a *Access) bool {
	if r.Flags&CondFunc != 0 && r.Func != a.Func && a.Func != PostSetattr {
		return false
	}
	if a.Func == KeyCheck || a.Func == CriticalData {
		return r.Func == a.Func && r.matchesData(a)
	}

	if r.Flags&CondMask != 0 && r.Mask != a.Mask && a.Func != PostSetattr {
		return false
	}
	if r.Flags&CondInMask != 0 && r.Mask&a.Mask == 0 && a.Func != PostSetattr {
		return false
	}
	if r.Flags&CondFSMagic != 0 && r.FSMagic != a.FSMagic {
		return false
	}
	if r.Flags&CondFSName != 0 && r.FSName != a.FSName {
		return false
	}
	if r.Flags&CondFSUUID != 0 && r.FSUUID != a.FSUUID {
		return false
	}

	if r.Flags&CondUID != 0 && !r.UIDOp.holds(a.UID, r.UID) {
		return false
	}
	if r.Flags&CondEUID != 0 && !effective(r.UIDOp, r.UID, a.EUID, a.SUID, a.UID,
		a.CapSetUID) {
		return false
	}
	if r.Flags&CondGID != 0 && !r.GIDOp.holds(a.GID, r.GID) {
		return false
	}
	if r.Flags&CondEGID != 0 && !effective(r.GIDOp, r.GID, a.EGID, a.SGID, a.GID,
		a.CapSetGID) {
		return false
	}
	if r.Flags&CondFOwner != 0 && !r.FOwnerOp.holds(a.FOwner, r.FOwner) {
		return false
	}
	if r.Flags&CondFGroup != 0 && !r.FGroupOp.holds(a.FGroup, r.FGroup) {
		return false
	}

	return !r.hasLSM()
}

// effective compares an effective id: a process that may change its id
// matches on any of effective, saved and real.
func effective(op Op, want, eff, saved, real uint32, capable bool) bool {
	if capable {
		return op.holds(eff, want) || op.holds(saved, want) || op.holds(real, want)
	}
	return op.holds(eff, want)
}

// matchesData matches a KEY_CHECK or CRITICAL_DATA access: the uid and
// the keyring or label list.
func (r *Rule) matchesData(a *Access) bool {
	if r.Flags&CondUID != 0 && !r.UIDOp.holds(a.UID, r.UID) {
		return false
	}
	list := r.Keyrings
	if r.Func == CriticalData {
		list = r.Labels
	}
	if list == nil {
		return true
	}
	return a.Data != "" && slices.Contains(list, a.Data)
}
