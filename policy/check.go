package policy

// This file is the kernel's last look at a parsed rule: which conditions
// and options go with which action and func.

// condsFile are the flags a rule on a file hook may carry, besides the
// options for signatures.
const condsFile = CondFunc | CondMask | CondFSMagic | CondUID | CondFOwner |
	CondFSUUID | CondInMask | CondEUID | OptPCR | CondFSName | CondGID |
	CondEGID | CondFGroup | OptDigsig | OptPermitDirect | OptAlgos

// validate returns why the kernel would refuse the whole rule, or "".
func validate(r *Rule, prof *Profile) string {
	if r.Action != Measure && r.Flags&OptPCR != 0 {
		return "pcr= goes only with measure"
	}
	if r.Action != Appraise && r.Flags&(OptDigsig|OptModsig|OptBlacklist|OptAlgos) != 0 {
		return "appraise_type, appraise_flag and appraise_algos go only with appraise"
	}

	if reason := validateFunc(r, prof); reason != "" {
		return reason
	}

	if r.Flags&OptBlacklist != 0 {
		if prof.SigImpliesBlacklist && r.Flags&OptDigsig == 0 {
			return "the blacklist check needs an appraise_type"
		}
		if !prof.SigImpliesBlacklist && r.Flags&OptModsig == 0 {
			return "appraise_flag=check_blacklist needs appraise_type=imasig|modsig"
		}
	}
	if r.Action == Appraise && r.Flags&OptVerity != 0 && r.Flags&OptDigsig == 0 {
		return "appraise with digest_type=verity needs appraise_type=sigv3"
	}
	return ""
}

// validateFunc checks the rule's conditions against its func.
func validateFunc(r *Rule, prof *Profile) string {
	measureOnly := "func=" + r.Func.String() + " goes only with measure and dont_measure"
	notWith := "condition or option does not go with func=" + r.Func.String()

	switch r.Func {
	case None, FileCheck, MmapCheck, MmapCheckReqprot, BprmCheck, CredsCheck,
		PostSetattr, FirmwareCheck, PolicyCheck:
		allowed := condsFile | OptVerity
		if prof.SigImpliesBlacklist {
			allowed |= OptBlacklist
		}
		if r.Flags&^allowed != 0 {
			return notWith
		}
	case ModuleCheck, KexecKernelCheck, KexecInitramfsCheck:
		if r.Flags&^(condsFile|OptModsig|OptBlacklist) != 0 {
			return notWith
		}
	case KexecCmdline:
		if r.Action != Measure && r.Action != DontMeasure {
			return measureOnly
		}
		if r.Flags&^(CondFunc|CondFSMagic|CondUID|CondFOwner|CondFSUUID|CondEUID|
			OptPCR|CondFSName|CondGID|CondEGID|CondFGroup) != 0 {
			return notWith
		}
	case KeyCheck, CriticalData:
		if r.Action != Measure && r.Action != DontMeasure {
			return measureOnly
		}
		list := CondKeyrings
		if r.Func == CriticalData {
			list = CondLabel
		}
		if r.Flags&^(CondFunc|CondUID|CondGID|OptPCR|list) != 0 || r.hasLSM() {
			return notWith
		}
	case SetxattrCheck:
		if r.Action != Appraise {
			return "func=SETXATTR_CHECK goes only with appraise"
		}
		if r.Flags&OptAlgos == 0 {
			return "func=SETXATTR_CHECK needs appraise_algos="
		}
		if r.Flags&^(CondFunc|OptAlgos) != 0 {
			return notWith
		}
	default:
		return "unknown func"
	}
	return ""
}
