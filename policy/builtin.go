package policy

import (
	_ "embed"
	"fmt"
)

//go:embed builtin.policy
var builtinText string

// builtinPolicy is parsed once at start; the text is fixed, so a failure
// is a build defect and init panics rather than serving a broken policy.
var builtinPolicy = func() *Policy {
	p, err := Parse(builtinText)
	if err != nil {
		panic(fmt.Sprintf("policy: built-in policy does not parse: %v", err))
	}
	return p
}()

// BuiltinText returns the built-in container policy, comments included.
func BuiltinText() string { return builtinText }

// Builtin returns the built-in container policy: nothing on pseudo
// filesystems and tmpfs, every FILE_CHECK and the kernel's own reads
// measured. A fresh copy each call, so callers may keep and change it.
func Builtin() *Policy {
	p := &Policy{text: builtinPolicy.text, Rules: make([]*Rule, len(builtinPolicy.Rules))}
	for i, r := range builtinPolicy.Rules {
		c := *r
		c.Keyrings = append([]string(nil), r.Keyrings...)
		p.Rules[i] = &c
	}
	return p
}
