// Package policy is the IMA policy language and the container's measurement
// spec.
//
// It parses policy text the way the kernel's policy file does (one rule per
// line, actions, conditions and options, comments), checks each rule as the
// kernel would before accepting it, for a given kernel and, optionally, inside
// an IMA namespace, renders a policy as the kernel shows it back, and
// evaluates an access against it with the kernel's first-match-per-action
// semantics. It also turns a container's io.imans.* OCI annotations into a
// Spec: the policy, the backend, the mode and the expectations (file digests,
// Keylime runtime policies, PCR 10 values) the report checks at stop.
package policy
