package shim

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

const testImans = "/usr/local/bin/imans"

// wantCreateRuntime and wantPoststop are the entries the wrapper must add,
// spelled out by hand.
const (
	wantCreateRuntime = `{"path":"/usr/local/bin/imans","args":["imans","hook",` +
		`"create-runtime"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:` +
		`/usr/bin:/sbin:/bin"],"timeout":30}`
	wantPoststop = `{"path":"/usr/local/bin/imans","args":["imans","hook","poststop"],` +
		`"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],` +
		`"timeout":60}`
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode reads a JSON document generically, numbers as their text.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode: %v\n%s", err, b)
	}
	return m
}

func TestInjectUntouchedWithoutAnnotation(t *testing.T) {
	plain := readTestdata(t, "runc-spec.json")
	variants := map[string][]byte{
		"runc spec": plain,
		"enable false": bytes.Replace(plain, []byte(`"ociVersion"`),
			[]byte(`"annotations":{"io.imans.enable":"false"},"ociVersion"`), 1),
		"enable TRUE": bytes.Replace(plain, []byte(`"ociVersion"`),
			[]byte(`"annotations":{"io.imans.enable":"TRUE"},"ociVersion"`), 1),
		"other key": bytes.Replace(plain, []byte(`"ociVersion"`),
			[]byte(`"annotations":{"io.imans.enabled":"true"},"ociVersion"`), 1),
		"null annotations": bytes.Replace(plain, []byte(`"ociVersion"`),
			[]byte(`"annotations":null,"ociVersion"`), 1),
	}
	for name, in := range variants {
		t.Run(name, func(t *testing.T) {
			orig := bytes.Clone(in)
			out, changed, err := InjectHooks(in, testImans)
			if err != nil {
				t.Fatal(err)
			}
			if changed {
				t.Fatal("changed = true for a container without io.imans.enable=true")
			}
			if !bytes.Equal(out, orig) || !bytes.Equal(in, orig) {
				t.Fatal("config.json bytes differ")
			}
		})
	}
}

func TestInjectAddsEntriesAndKeepsEverythingElse(t *testing.T) {
	in := readTestdata(t, "imans-enabled.json")

	out, changed, err := InjectHooks(in, testImans)
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatal("changed = false for io.imans.enable=true")
	}

	before, after := decode(t, in), decode(t, out)
	hooks := after["hooks"].(map[string]any)
	cr := hooks["createRuntime"].([]any)
	ps := hooks["poststop"].([]any)
	if len(cr) != 2 || len(ps) != 1 {
		t.Fatalf("createRuntime has %d entries, poststop %d; want 2 and 1", len(cr), len(ps))
	}
	for _, c := range []struct {
		got  any
		want string
	}{{cr[1], wantCreateRuntime}, {ps[0], wantPoststop}} {
		if !reflect.DeepEqual(c.got, decode(t, []byte(c.want))) {
			t.Errorf("entry %v, want %s", c.got, c.want)
		}
	}

	// Take the two new entries away: what is left must be the input.
	hooks["createRuntime"] = cr[:1]
	delete(hooks, "poststop")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("fields changed:\nbefore %v\nafter  %v", before, after)
	}

	// Values a typed round trip would lose or respell.
	for _, s := range []string{
		`"big":12345678901234567890`,
		`"a<b && c>d"`,
		`"x-runtime-extension":"keep me"`,
		`"ioPriority":{"class":"IOPRIO_CLASS_IDLE","priority":7}`,
	} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("output lacks %s", s)
		}
	}
}

func TestInjectIdempotent(t *testing.T) {
	once, changed, err := InjectHooks(readTestdata(t, "imans-enabled.json"), testImans)
	if err != nil || !changed {
		t.Fatalf("first injection: changed %v, err %v", changed, err)
	}

	twice, changed, err := InjectHooks(once, testImans)
	if err != nil {
		t.Fatal(err)
	}
	if changed || !bytes.Equal(once, twice) {
		t.Fatal("second injection changed the document")
	}

	// An entry added from hooks.d under another path counts as there.
	other, _, err := InjectHooks(readTestdata(t, "imans-enabled.json"), "/opt/imans/bin/imans")
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, _ := InjectHooks(other, testImans); changed {
		t.Fatal("entries with another imans path were added a second time")
	}
}

func TestInjectOnlyMissingStage(t *testing.T) {
	in := []byte(`{"annotations":{"io.imans.enable":"true"},"hooks":{"poststop":[` +
		wantPoststop + `]}}`)

	out, changed, err := InjectHooks(in, testImans)
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	want := `{"annotations":{"io.imans.enable":"true"},"hooks":{"createRuntime":[` +
		wantCreateRuntime + `],"poststop":[` + wantPoststop + `]}}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}

func TestInjectEscapedKey(t *testing.T) {
	// \u0065 is 'e': the runtime reads io.imans.enable, so must the shim.
	in := []byte(`{"annotations":{"io.imans.\u0065nable":"true"}}`)
	if _, changed, err := InjectHooks(in, testImans); err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
}

func TestInjectErrors(t *testing.T) {
	for _, c := range []struct {
		name, in, path, want string
	}{
		{"relative path", `{}`, "imans", "not absolute"},
		{"not json", `{"io.imans.enable": `, testImans, "config.json: annotations"},
		{"annotations not strings",
			`{"annotations":{"io.imans.enable":true}}`, testImans, "annotations"},
		{"hooks not an object",
			`{"annotations":{"io.imans.enable":"true"},"hooks":[]}`, testImans,
			"config.json: hooks"},
		{"bad entry", `{"annotations":{"io.imans.enable":"true"},` +
			`"hooks":{"poststop":[{"args":"x"}]}}`, testImans, "hooks.poststop: entry 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, changed, err := InjectHooks([]byte(c.in), c.path)
			if err == nil || changed || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, changed %v; want an error with %q", err, changed, c.want)
			}
		})
	}
	if _, _, err := InjectHooks([]byte(`{}`), "bin/imans"); !errors.Is(err, ErrNotAbsolute) {
		t.Fatalf("err %v, want ErrNotAbsolute", err)
	}
}

func FuzzInjectHooks(f *testing.F) {
	f.Add([]byte(`{"annotations":{"io.imans.enable":"true"}}`))
	f.Add([]byte(`{"annotations":{"io.imans.enable":"true"},"hooks":{"poststop":[]}}`))
	f.Add([]byte(`{"annotations":{"io.imans.enable":"false"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, changed, err := InjectHooks(in, testImans)
		if err != nil {
			return
		}
		if !changed {
			if !bytes.Equal(out, in) {
				t.Fatal("unchanged output differs from input")
			}
			return
		}
		again, changed, err := InjectHooks(out, testImans)
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: changed %v err %v", changed, err)
		}
	})
}

// The wrapper passes its own IMANS_STATE_DIR and IMANS_RUN_DIR to the hooks,
// which runtimes run with the entry's environment only.
func TestInjectHooksEnv(t *testing.T) {
	config := []byte(`{"annotations":{"io.imans.enable":"true"}}`)
	out, changed, err := InjectHooksEnv(config, "/usr/bin/imans",
		[]string{"IMANS_STATE_DIR=/srv/imans"})
	if err != nil || !changed {
		t.Fatalf("changed %v, %v", changed, err)
	}
	var doc struct {
		Hooks map[string][]Hook `json:"hooks"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{StageCreateRuntime, StagePoststop} {
		got := doc.Hooks[stage]
		if len(got) != 1 || len(got[0].Env) != 2 || got[0].Env[0] != HookPATH ||
			got[0].Env[1] != "IMANS_STATE_DIR=/srv/imans" {
			t.Errorf("%s: %+v", stage, got)
		}
	}
}
