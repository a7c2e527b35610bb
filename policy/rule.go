package policy

import (
	"fmt"
	"strings"
)

// Action is what a rule does when it matches. Each action belongs to a
// class (measure, appraise, audit, hash); the dont_ actions stop their
// class.
type Action int

// The actions, with the kernel's values.
const (
	Measure      Action = 0x0001
	DontMeasure  Action = 0x0002
	Appraise     Action = 0x0004
	DontAppraise Action = 0x0008
	Audit        Action = 0x0040
	Hash         Action = 0x0100
	DontHash     Action = 0x0200
)

var actionNames = []struct {
	name string
	a    Action
}{
	{"measure", Measure},
	{"dont_measure", DontMeasure},
	{"appraise", Appraise},
	{"dont_appraise", DontAppraise},
	{"audit", Audit},
	{"hash", Hash},
	{"dont_hash", DontHash},
}

// String returns the action's keyword.
func (a Action) String() string {
	for _, an := range actionNames {
		if an.a == a {
			return an.name
		}
	}
	return fmt.Sprintf("Action(%#x)", int(a))
}

// Op is the comparison of an id condition: '=', '<' or '>'.
type Op byte

// The id comparisons.
const (
	OpEq Op = '='
	OpLt Op = '<'
	OpGt Op = '>'
)

func (o Op) holds(have, want uint32) bool {
	switch o {
	case OpLt:
		return have < want
	case OpGt:
		return have > want
	default:
		return have == want
	}
}

// Flag records which conditions and options a rule carries, as the
// kernel's rule flags do.
type Flag uint32

// The rule flags. Cond* are conditions, the rest options.
const (
	CondFunc Flag = 1 << iota
	CondMask
	CondInMask // mask=^MAY_...: any of the bits
	CondFSMagic
	CondFSName
	CondFSUUID
	CondUID
	CondEUID
	CondGID
	CondEGID
	CondFOwner
	CondFGroup
	CondKeyrings
	CondLabel
	OptPCR
	OptDigsig       // appraise_type=imasig (or sigv3, imasig|modsig)
	OptModsig       // appraise_type=imasig|modsig
	OptBlacklist    // check_blacklist
	OptVerity       // digest_type=verity
	OptAlgos        // appraise_algos=
	OptPermitDirect // permit_directio
)

// LSM condition slots, in the kernel's order.
const (
	ObjUser = iota
	ObjRole
	ObjType
	SubjUser
	SubjRole
	SubjType
	numLSM
)

var lsmKeys = [numLSM]string{"obj_user", "obj_role", "obj_type",
	"subj_user", "subj_role", "subj_type"}

// Rule is one policy rule. Fields are meaningful only when the matching
// flag is set.
type Rule struct {
	// Line is the rule's line in the policy text (1-based).
	Line int
	// Action is the rule's action.
	Action Action
	// Flags says which conditions and options are present.
	Flags Flag

	// Func is the hook of func=; None when absent.
	Func Func
	// Mask is the bit of mask= (CondMask: exactly it; CondInMask: the
	// ^ form, any access holding it).
	Mask uint32
	// FSMagic is fsmagic=, FSName fsname=, FSUUID fsuuid=.
	FSMagic uint64
	FSName  string
	FSUUID  [16]byte

	// UID is the value of uid= or euid= (one of them at most, as in the
	// kernel, which keeps a single field for both); UIDOp its comparison.
	UID   uint32
	UIDOp Op
	// GID is the value of gid= or egid=; GIDOp its comparison.
	GID   uint32
	GIDOp Op
	// FOwner is fowner=, FOwnerOp its comparison.
	FOwner   uint32
	FOwnerOp Op
	// FGroup is fgroup=, FGroupOp its comparison.
	FGroup   uint32
	FGroupOp Op

	// LSM holds subj_user, subj_role, ... values by slot (ObjUser...);
	// empty when absent.
	LSM [numLSM]string

	// Keyrings is the list of keyrings=, Labels that of label=.
	Keyrings []string
	Labels   []string

	// Algos lists appraise_algos= in the order given.
	Algos []string
	// PCR is pcr= (-1 when absent).
	PCR int
	// Template is the name of the template=; empty when absent.
	Template string
	// Text is the rule as written (comment removed, blanks trimmed).
	Text string
}

// Has reports whether every flag in f is set on the rule.
func (r *Rule) Has(f Flag) bool { return r.Flags&f == f }

// hasLSM reports whether the rule carries any LSM condition.
func (r *Rule) hasLSM() bool {
	for _, v := range r.LSM {
		if v != "" {
			return true
		}
	}
	return false
}

// Policy is a parsed, checked IMA policy.
type Policy struct {
	// Rules in order; comments and blank lines are not kept.
	Rules []*Rule
	text  string
}

// Text returns the text the policy was parsed from.
func (p *Policy) Text() string { return p.text }

// Error is one rejected rule: where, which word and why.
type Error struct {
	// Line is the 1-based line of the rule.
	Line int
	// Word is the word of the rule that was refused; empty when the rule
	// as a whole is refused (an action that does not go with its func,
	// a missing action).
	Word string
	// Reason says why, in words.
	Reason string
	// Errno is the error the kernel's policy file gives for the rule's
	// write(): "EINVAL", "ERANGE", or "" where the kernel takes the
	// write and drops the batch later (the rule limit).
	Errno string
}

// Error formats the error as "line N: word "W": reason".
func (e *Error) Error() string {
	if e.Word == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %q: %s", e.Line, ShortWord(e.Word), e.Reason)
}

// ShortWord returns a word of a rule, or any value, cut to its first 64
// bytes followed by "..." when it is longer: for naming it in a message.
func ShortWord(w string) string {
	if len(w) <= 64 {
		return w
	}
	return w[:64] + "..."
}

// ErrorList is every rule error of a policy, in line order.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap gives the single errors to errors.As and errors.Is.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
