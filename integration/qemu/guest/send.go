package main

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The wire format on the data port, one line each:
//
//	IMANS-FILE <base64 of path> <size> <sha256 hex>
//	<base64 of the content, 76 characters a line>
//	IMANS-END
//	IMANS-MISSING <base64 of path> <base64 of the error>
//	IMANS-DONE
//
// The host checks size and digest of every file, and that DONE came.

// sendCmd sends each path (a directory: each regular file under it) over
// the serial port, then DONE. Closing the port waits until the UART has
// sent everything, so poweroff after it loses nothing.
func sendCmd(args []string) error {
	if len(args) < 1 {
		return errors.New("send needs a port")
	}
	port, err := os.OpenFile(args[0], os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	if err := makeRaw(int(port.Fd())); err != nil {
		port.Close()
		return fmt.Errorf("raw mode on %s: %w", args[0], err)
	}

	paths, err := expandLists(args[1:])
	if err != nil {
		port.Close()
		return err
	}
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return sendMissing(port, path, err)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return sendFile(port, path)
		})
		if err != nil {
			port.Close()
			return err
		}
	}

	if _, err := port.WriteString("IMANS-DONE\n"); err != nil {
		port.Close()
		return err
	}
	return port.Close()
}

func sendMissing(port *os.File, path string, cause error) error {
	enc := base64.StdEncoding
	line := fmt.Sprintf("IMANS-MISSING %s %s\n",
		enc.EncodeToString([]byte(path)), enc.EncodeToString([]byte(cause.Error())))
	_, err := port.WriteString(line)
	return err
}

func sendFile(port *os.File, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return sendMissing(port, path, err)
	}

	enc := base64.StdEncoding
	sum := sha256.Sum256(data)
	text := enc.EncodeToString(data)
	buf := make([]byte, 0, len(text)+len(text)/76+128)
	buf = fmt.Appendf(buf, "IMANS-FILE %s %d %x\n",
		enc.EncodeToString([]byte(path)), len(data), sum)
	for len(text) > 76 {
		buf = append(buf, text[:76]...)
		buf = append(buf, '\n')
		text = text[76:]
	}
	if text != "" {
		buf = append(buf, text...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "IMANS-END\n"...)
	_, err = port.Write(buf)
	return err
}

// makeRaw turns off every translation of the tty (no CR added to NL).
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR |
		unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// expandLists replaces each "@FILE" argument by the paths listed in FILE,
// one a line (so that paths with spaces need no quoting in the init script).
func expandLists(args []string) ([]string, error) {
	var paths []string
	for _, arg := range args {
		if !strings.HasPrefix(arg, "@") {
			paths = append(paths, arg)
			continue
		}
		data, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line != "" {
				paths = append(paths, line)
			}
		}
	}
	return paths, nil
}
