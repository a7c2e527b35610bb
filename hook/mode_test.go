package hook

import (
	"strings"
	"testing"
)

func TestEnforced(t *testing.T) {
	for _, tc := range []struct {
		ann     map[string]string
		enforce bool
		bad     bool
	}{
		{nil, false, false},
		{map[string]string{"io.imans.enable": "true"}, false, false},
		{map[string]string{"io.imans.mode": "audit"}, false, false},
		{map[string]string{"io.imans.mode": "enforce"}, true, false},
		{map[string]string{"io.imans.mode": "enforced"}, true, true},
		{map[string]string{"io.imans.mode": "Audit"}, true, true},
		{map[string]string{"io.imans.mode": ""}, true, true},
	} {
		enforce, err := Enforced(tc.ann)
		if enforce != tc.enforce || (err != nil) != tc.bad {
			t.Errorf("%v: enforce %v err %v, want %v bad %v",
				tc.ann, enforce, err, tc.enforce, tc.bad)
		}
		if err != nil && !strings.Contains(err.Error(), "io.imans.mode") {
			t.Errorf("%v: error %q does not name the key", tc.ann, err)
		}
	}
}
