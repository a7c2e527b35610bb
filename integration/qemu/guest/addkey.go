package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// addKeyCmd adds an X.509 certificate (DER) as an asymmetric key to a
// keyring (@u, @s or a number), which a KEY_CHECK policy rule measures as
// an ima-buf entry named after the keyring.
func addKeyCmd(args []string) error {
	if len(args) != 2 {
		return errors.New("addkey needs a DER certificate file and a keyring")
	}
	der, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}

	var ring int
	switch args[1] {
	case "@u":
		ring = unix.KEY_SPEC_USER_KEYRING
	case "@s":
		ring = unix.KEY_SPEC_SESSION_KEYRING
	default:
		if _, err := fmt.Sscanf(args[1], "%d", &ring); err != nil {
			return fmt.Errorf("keyring %q: want @u, @s or a number", args[1])
		}
	}

	id, err := unix.AddKey("asymmetric", "", der, ring)
	if err != nil {
		return fmt.Errorf("add_key asymmetric to %s: %w", args[1], err)
	}
	fmt.Println(id)
	return nil
}
