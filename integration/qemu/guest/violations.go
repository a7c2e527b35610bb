package main

import (
	"errors"
	"os"
	"path/filepath"
)

// violationsCmd causes the two kinds of IMA violations on files in dir
// (which must be on a measured filesystem, such as the ramfs root):
// open-writers, a measured read of a file that is open for write, and
// ToMToU, a write open of a file that is open for a measured read.
func violationsCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("violations needs a folder")
	}
	dir := args[0]

	writer, err := os.Create(filepath.Join(dir, "open-writers"))
	if err != nil {
		return err
	}
	if _, err := writer.WriteString("written while read\n"); err != nil {
		return err
	}
	reader, err := os.Open(writer.Name())
	if err != nil {
		return err
	}
	reader.Close()
	writer.Close()

	name := filepath.Join(dir, "tomtou")
	if err := os.WriteFile(name, []byte("read then written\n"), 0o644); err != nil {
		return err
	}
	reader, err = os.Open(name)
	if err != nil {
		return err
	}
	writer, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := writer.WriteString("changed\n"); err != nil {
		return err
	}
	writer.Close()
	reader.Close()
	return nil
}
