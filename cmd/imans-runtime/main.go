// Command imans-runtime is the imans runtime wrapper on its own: a drop-in
// for runc or crun that adds the imans hooks to a bundle's config.json on
// create and run, and hands every command to the real runtime untouched.
// It is `imans runtime` in a binary that holds nothing else, because an
// engine starts it for every runtime command; the hooks it adds run the
// imans binary installed beside it.
package main

import (
	"os"

	"github.com/imans-project/imans/internal/wrapper"
)

func main() {
	os.Exit(wrapper.Main(os.Args, wrapper.Beside))
}
