package shim

import "testing"

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want Invocation
	}{
		{"containerd shim", []string{"--root", "/run/containerd/runc/default",
			"--log", "/run/x/log.json", "--log-format", "json", "create",
			"--bundle", "/run/b", "--pid-file", "/run/b/init.pid", "ctr1"},
			Invocation{"create", "/run/b", "/run/x/log.json", "json"}},
		{"equals forms", []string{"--root=/r", "--log=/l", "--log-format=text",
			"run", "-b=/b", "id"}, Invocation{"run", "/b", "/l", "text"}},
		{"single dash", []string{"-root", "/r", "-log", "/l", "create", "-bundle", "/b",
			"id"}, Invocation{"create", "/b", "/l", ""}},
		{"short bundle", []string{"create", "-b", "/b", "id"},
			Invocation{"create", "/b", "", ""}},
		{"bundle after id (crun)", []string{"create", "id", "--bundle", "/b"},
			Invocation{"create", "/b", "", ""}},
		{"no bundle", []string{"--systemd-cgroup", "create", "id"},
			Invocation{"create", "", "", ""}},
		{"value flag before bundle", []string{"create", "--console-socket", "/s",
			"--pid-file", "--bundle", "id"}, Invocation{"create", "", "", ""}},
		{"bool flags", []string{"--debug", "--systemd-cgroup", "--log", "/l",
			"run", "--detach", "--bundle", "/b", "id"}, Invocation{"run", "/b", "/l", ""}},
		{"crun globals", []string{"--cgroup-manager", "cgroupfs", "--rootless", "true",
			"--log-level", "debug", "create", "--bundle", "/b", "id"},
			Invocation{"create", "/b", "", ""}},
		{"start is no create", []string{"--root", "/r", "start", "--bundle", "/b", "id"},
			Invocation{"start", "", "", ""}},
		{"state", []string{"state", "id"}, Invocation{"state", "", "", ""}},
		{"bundle value looks like create",
			[]string{"--root", "create", "delete", "id"}, Invocation{"delete", "", "", ""}},
		{"version", []string{"--version"}, Invocation{}},
		{"empty", nil, Invocation{}},
		{"dangling log", []string{"--log"}, Invocation{}},
		{"end of options", []string{"--", "create", "-b", "/b", "x"},
			Invocation{"create", "/b", "", ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ParseArgs(c.args); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("--root\x00/r\x00create\x00--bundle\x00/b\x00id")
	f.Fuzz(func(t *testing.T, joined string) {
		args := splitNUL(joined)
		inv := ParseArgs(args)
		if inv.Bundle != "" && !inv.Creates() {
			t.Fatalf("bundle %q for command %q", inv.Bundle, inv.Command)
		}
	})
}

func splitNUL(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
