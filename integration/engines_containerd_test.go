//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imans-project/imans/internal/testenv"
	"github.com/imans-project/imans/shim"
)

// engContainerdConfig is the test's containerd configuration: its own
// root, state and sockets, and the drop-in folder `imans install
// containerd --destdir` writes to.
const engContainerdConfig = `version = 2
root = "%[1]s/root"
state = "%[1]s/state"
imports = ["%[1]s/etc/containerd/conf.d/*.toml"]

[grpc]
  address = "%[1]s/containerd.sock"

[ttrpc]
  address = "%[1]s/containerd.sock.ttrpc"
`

// engStartContainerd starts containerd with config and stops it when the
// test ends; it returns the socket's address.
func engStartContainerd(t *testing.T, dir, config string) string {
	t.Helper()
	sock := filepath.Join(dir, "containerd.sock")
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	must(t, err)
	cmd := exec.Command("containerd", "--config", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen on %s within 30s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEnginesContainerd writes the runtime handler with `imans install
// containerd`, checks that containerd reads it, and runs the demo
// container with `ctr run --runc-binary imans-runtime` and the
// annotations: learn, pass, then fail after the script changed.
func TestEnginesContainerd(t *testing.T) {
	testenv.Root(t)
	testenv.Command(t, "containerd", "ctr", "containerd-shim-runc-v2", "runc", "swtpm",
		"busybox")
	imans, wrapper := engWrapper(t)
	dir := engWorkDir(t)

	config := filepath.Join(dir, "etc/containerd/config.toml")
	must(t, os.MkdirAll(filepath.Dir(config), 0o755))
	must(t, os.WriteFile(config, []byte(fmt.Sprintf(engContainerdConfig, dir)), 0o644))
	out, err := engRun(t, time.Minute, imans, "install", "containerd", "--destdir", dir)
	if err != nil {
		t.Fatalf("imans install containerd: %v\n%s", err, out)
	}
	dropIn := filepath.Join(dir, "etc/containerd/conf.d/imans.toml")
	if !strings.Contains(out, "wrote "+dropIn) {
		t.Fatalf("install did not write the drop-in:\n%s", out)
	}

	// containerd itself reads the handler from the drop-in.
	dump, err := engRun(t, time.Minute, "containerd", "--config", config, "config", "dump")
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, dump)
	}
	for _, want := range []string{
		`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.imans]`,
		`container_annotations = ["io.imans.*"]`,
		`pod_annotations = ["io.imans.*"]`,
		`runtime_type = "io.containerd.runc.v2"`,
		`BinaryName = "` + wrapper + `"`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("containerd's configuration lacks %s", want)
		}
	}

	sock := engStartContainerd(t, dir, config)
	rootfs := engRootfs(t, filepath.Join(dir, "demo"), engScript)
	ctrRun := func(t *testing.T, name string, changed bool, ann map[string]string) (
		string, string) {
		t.Helper()
		script := engScript
		if changed {
			script = engChangedScript
		}
		engWriteScript(t, rootfs, script)
		id := fmt.Sprintf("imans-eng-ctr-%d-%s", os.Getpid(), name)
		args := []string{"--address", sock, "--namespace", "imans-test", "run", "--rm",
			"--rootfs", "--runc-binary", wrapper}
		for k, v := range ann {
			args = append(args, "--annotation", k+"="+v)
		}
		args = append(args, rootfs, id, "/bin/sh", "/app/demo.sh")
		out, err := engRun(t, 2*time.Minute, "ctr", args...)
		if err != nil {
			t.Fatalf("ctr run (%s): %v\n%s", name, err, out)
		}
		return id, out
	}
	engThreeVerdicts(t, imans, ctrRun)

	// Without the annotation the wrapper adds nothing: no report.
	id, _ := ctrRun(t, "off", false, map[string]string{"io.imans.mode": "audit"})
	time.Sleep(time.Second)
	if _, err := os.Stat(filepath.Join(engReports, id+".json")); err == nil {
		t.Errorf("a report for a container without %s=true", shim.AnnotationEnable)
	}
}
