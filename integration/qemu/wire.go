package qemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parseWire reads what imans-guest send wrote on the data port: for each
// file a header line "IMANS-FILE <base64 path> <size> <sha256>", its
// content in base64 lines and "IMANS-END"; "IMANS-MISSING <base64 path>
// <base64 error>" for a path that could not be read; "IMANS-DONE" last.
// Size and digest of each file are checked; a missing path or a missing
// DONE is an error.
func parseWire(data []byte) (map[string][]byte, error) {
	data = bytes.ReplaceAll(data, []byte("\r"), nil)
	lines := strings.Split(string(data), "\n")
	files := map[string][]byte{}
	var missing []string

	for i := 0; i < len(lines); i++ {
		fields := strings.Fields(lines[i])
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "IMANS-DONE":
			if len(missing) > 0 {
				return files, fmt.Errorf("guest could not read %s", strings.Join(missing, "; "))
			}
			return files, nil

		case "IMANS-MISSING":
			if len(fields) != 3 {
				return files, fmt.Errorf("data line %d: bad MISSING line", i+1)
			}
			p, _ := base64.StdEncoding.DecodeString(fields[1])
			why, _ := base64.StdEncoding.DecodeString(fields[2])
			missing = append(missing, fmt.Sprintf("%s (%s)", p, why))

		case "IMANS-FILE":
			name, content, next, err := parseFile(lines, i)
			if err != nil {
				return files, err
			}
			files[name] = content
			i = next
		}
	}
	return files, errors.New("guest data ended before IMANS-DONE (guest died or hung?)")
}

// parseFile decodes one file starting at the header line i and returns
// the index of its END line.
func parseFile(lines []string, i int) (string, []byte, int, error) {
	fields := strings.Fields(lines[i])
	if len(fields) != 4 {
		return "", nil, 0, fmt.Errorf("data line %d: bad FILE header", i+1)
	}
	name, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return "", nil, 0, fmt.Errorf("data line %d: path: %w", i+1, err)
	}
	size, err := strconv.Atoi(fields[2])
	if err != nil {
		return "", nil, 0, fmt.Errorf("data line %d: size: %w", i+1, err)
	}
	want, err := hex.DecodeString(fields[3])
	if err != nil {
		return "", nil, 0, fmt.Errorf("data line %d: digest: %w", i+1, err)
	}

	var b64 strings.Builder
	j := i + 1
	for ; j < len(lines) && lines[j] != "IMANS-END"; j++ {
		b64.WriteString(lines[j])
	}
	if j == len(lines) {
		return "", nil, 0, fmt.Errorf("guest file %s: no IMANS-END", name)
	}
	content, err := base64.StdEncoding.DecodeString(b64.String())
	if err != nil {
		return "", nil, 0, fmt.Errorf("guest file %s: %w", name, err)
	}
	sum := sha256.Sum256(content)
	if len(content) != size || !bytes.Equal(sum[:], want) {
		return "", nil, 0, fmt.Errorf("guest file %s: got %d bytes with sha256 %x, "+
			"header says %d bytes and %x", name, len(content), sum, size, want)
	}
	return string(name), content, j, nil
}
