package policy

import (
	_ "embed"
	"fmt"
	"sync"
)

//go:embed builtin.policy
var builtinText string

// builtinPolicy is parsed once, when first asked for (not at every start
// of the binary: most commands never need it); the text is fixed, so a
// failure is a build defect and panics rather than serving a broken
// policy. A test parses it, so such a build never passes.
var builtinPolicy = sync.OnceValue(func() *Policy {
	p, err := Parse(builtinText)
	if err != nil {
		panic(fmt.Sprintf("policy: built-in policy does not parse: %v", err))
	}
	return p
})

// BuiltinText returns the built-in container policy, comments included.
func BuiltinText() string { return builtinText }

// Builtin returns the built-in container policy: nothing on pseudo
// filesystems and tmpfs, every FILE_CHECK and the kernel's own reads
// measured. A fresh copy each call, so callers may keep and change it.
func Builtin() *Policy {
	b := builtinPolicy()
	p := &Policy{text: b.text, Rules: make([]*Rule, len(b.Rules))}
	for i, r := range b.Rules {
		c := *r
		c.Keyrings = append([]string(nil), r.Keyrings...)
		p.Rules[i] = &c
	}
	return p
}
