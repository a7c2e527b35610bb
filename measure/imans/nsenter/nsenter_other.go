//go:build !linux || !cgo

package nsenter

import (
	"errors"
	"os"
)

// Available reports whether this binary carries the constructor: not when
// built without cgo.
const Available = false

// Result reports that the constructor is missing whenever the environment
// asked for it.
func Result() (asked bool, err error, uidErr error) {
	if !requested() {
		return false, nil, nil
	}
	return true, errors.New("this binary was built without cgo: " +
		"it cannot enter a user namespace (rebuild with CGO_ENABLED=1)"), nil
}

func requested() bool {
	_, ok := os.LookupEnv(EnvUserNSFD)
	return ok
}
