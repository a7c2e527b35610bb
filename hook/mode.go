package hook

import (
	"fmt"

	"github.com/imans-project/imans/policy"
)

// Enforced says whether a container is refused when its measurement cannot
// start. A missing mode annotation means audit. A value other than audit or
// enforce is taken as enforce and returned with an error naming the key, so
// a typo for enforce fails closed rather than running the container in
// audit mode.
func Enforced(ann map[string]string) (bool, error) {
	v, ok := ann[policy.AnnotationMode]
	switch {
	case !ok || v == string(policy.ModeAudit):
		return false, nil
	case v == string(policy.ModeEnforce):
		return true, nil
	}
	return true, fmt.Errorf("%s: want audit or enforce, have %q (taken as enforce)",
		policy.AnnotationMode, v)
}
