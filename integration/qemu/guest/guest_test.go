package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpandLists(t *testing.T) {
	list := filepath.Join(t.TempDir(), "fetch")
	if err := os.WriteFile(list, []byte("/run/a b\n\n/run/c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := expandLists([]string{"/first", "@" + list})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "/first|/run/a b|/run/c" {
		t.Errorf("paths %q", got)
	}
	if _, err := expandLists([]string{"@/does/not/exist"}); err == nil {
		t.Error("missing list file: no error")
	}
}

// TestSendFileFormat checks the header (base64 path, size, sha256), the
// 76-column base64 body and the END line, on a regular file as port.
func TestSendFileFormat(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "with space")
	content := bytes.Repeat([]byte{0, 1, 2, 0xff}, 50)
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := os.Create(filepath.Join(dir, "port"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sendFile(port, src); err != nil {
		t.Fatal(err)
	}
	port.Close()

	out, _ := os.ReadFile(port.Name())
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := fmt.Sprintf("IMANS-FILE %s %d %x", base64.StdEncoding.EncodeToString([]byte(src)),
		len(content), sha256.Sum256(content))
	if lines[0] != want {
		t.Errorf("header %q, want %q", lines[0], want)
	}
	if lines[len(lines)-1] != "IMANS-END" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
	body := lines[1 : len(lines)-1]
	for i, l := range body[:len(body)-1] {
		if len(l) != 76 {
			t.Errorf("body line %d has %d characters, want 76", i, len(l))
		}
	}
	got, err := base64.StdEncoding.DecodeString(strings.Join(body, ""))
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("body decodes to %d bytes (%v), want the %d sent", len(got), err, len(content))
	}
}
