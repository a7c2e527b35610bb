package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestBuiltinParses(t *testing.T) {
	p := Builtin()
	if len(p.Rules) != 30 {
		t.Fatalf("built-in policy has %d rules, want 30", len(p.Rules))
	}
	if !strings.HasPrefix(BuiltinText(), "# PROC_SUPER_MAGIC\ndont_measure fsmagic=0x9fa0\n") {
		t.Errorf("built-in text starts %q", BuiltinText()[:40])
	}
	last := p.Rules[len(p.Rules)-1]
	if last.Line != 42 || last.Action != DontAppraise || !last.Has(CondFOwner) ||
		last.FOwner != 0 {
		t.Errorf("last rule: line %d %s flags %#x", last.Line, last.Action, last.Flags)
	}
	key := p.Rules[27]
	if key.Func != KeyCheck || strings.Join(key.Keyrings, ",") != ".builtin_trusted_keys,.ima" {
		t.Errorf("rule 28: %s", key)
	}

	// A copy each call: changing one does not change the next.
	p.Rules[0].FSMagic = 1
	if Builtin().Rules[0].FSMagic != 0x9fa0 {
		t.Error("Builtin shares its rules between calls")
	}
}

func TestRenderBuiltin(t *testing.T) {
	got := Builtin().Render()
	lines := strings.Split(got, "\n")
	if len(lines) != 31 || lines[30] != "" {
		t.Fatalf("rendered %d lines", len(lines))
	}
	want := map[int]string{
		0:  "dont_measure fsmagic=0x9fa0 ",
		6:  "dont_measure fsmagic=0x1021994 ",
		8:  "dont_appraise fsmagic=0x858458f6 ",
		17: "dont_measure fsmagic=0x27e0eb ",
		21: "measure func=FILE_CHECK ",
		27: "measure func=KEY_CHECK keyrings=.builtin_trusted_keys|.ima ",
		29: "dont_appraise fowner=0 ",
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d: got %q, want %q", i+1, lines[i], w)
		}
	}
}

func TestRender(t *testing.T) {
	tests := []struct{ in, want string }{
		{"measure uid<1000 func=BPRM_CHECK mask=MAY_EXEC fsmagic=0xEF53 pcr=11 template=ima-ng",
			"measure func=BPRM_CHECK mask=MAY_EXEC fsmagic=0xef53 pcr=11 uid<1000 template=ima-ng "},
		{"measure mask=^MAY_READ func=PATH_CHECK", "measure func=FILE_CHECK mask=^MAY_READ "},
		{"dont_measure fsmagic=ef53", "dont_measure fsmagic=0xef53 "},
		{"measure func=FILE_MMAP mask=MAY_EXEC", "measure func=MMAP_CHECK mask=MAY_EXEC "},
		{"measure euid=+5 fowner>4294967294", "measure euid=5 fowner>-2 "},
		{"measure fsuuid=6A5E4C8B-2D9A-4A5E-9C71-0F2D6E7B8A90xyz",
			"measure fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a90 "},
		{"appraise func=MODULE_CHECK appraise_algos=sha512,sha1,sha256,sha1 appraise_type=imasig",
			"appraise func=MODULE_CHECK appraise_algos=sha1,sha256,sha512 appraise_type=imasig "},
		{"measure func=FILE_CHECK template=d-ng|n-ng|sig", "measure func=FILE_CHECK template=ima-sig "},
		{"appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3 permit_directio",
			"appraise func=BPRM_CHECK appraise_type=sigv3 digest_type=verity permit_directio "},
		{"measure func=CRITICAL_DATA label=selinux|kernel_info pcr=12",
			"measure func=CRITICAL_DATA label=selinux|kernel_info pcr=12 "},
		{"audit\tgid>10 fgroup<5  egid=7", "audit gid>10 fgroup<5 "},
		{"hash", "hash "},
		{"measure fsname=overlay subj_role=unconfined", "measure fsname=overlay subj_role=unconfined "},
	}
	for _, tc := range tests {
		p, err := Parse(tc.in)
		if tc.in == "audit\tgid>10 fgroup<5  egid=7" {
			// gid and egid share one value, as in the kernel.
			if err == nil {
				t.Errorf("%q: accepted", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := p.Render(); got != tc.want+"\n" {
			t.Errorf("%q rendered\n %q, want\n %q", tc.in, got, tc.want+"\n")
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in    string
		line  int
		word  string
		errno string
	}{
		{"measure func=FOO", 1, "func=FOO", "EINVAL"},
		{"# fine\n\nmeasure func=FILE_CHECK func=BPRM_CHECK", 3, "func=BPRM_CHECK", "EINVAL"},
		{"dont_measure fsmagic=0x1ffffffffffffffff", 1, "fsmagic=0x1ffffffffffffffff", "ERANGE"},
		{"dont_measure fsmagic=0xzz", 1, "fsmagic=0xzz", "EINVAL"},
		{"dont_measure fsmagic=0x", 1, "fsmagic=0x", "EINVAL"},
		{"measure uid=0 euid=0", 1, "euid=0", "EINVAL"},
		{"measure uid=4294967295", 1, "uid=4294967295", "EINVAL"},
		{"measure uid=4294967296", 1, "uid=4294967296", "EINVAL"},
		{"measure uid=-1", 1, "uid=-1", "EINVAL"},
		{"measure uid=99999999999999999999", 1, "uid=99999999999999999999", "ERANGE"},
		{"measure pcr=64", 1, "pcr=64", "EINVAL"},
		{"dont_measure pcr=11", 1, "", "EINVAL"},
		{"template=ima-ng measure", 1, "template=ima-ng", "EINVAL"},
		{"measure template=ima-foo", 1, "template=ima-foo", "EINVAL"},
		{"appraise appraise_type=sigv3", 1, "appraise_type=sigv3", "EINVAL"},
		{"appraise func=BPRM_CHECK appraise_type=sigv3 digest_type=verity", 1,
			"appraise_type=sigv3", "EINVAL"},
		{"measure appraise_type=imasig", 1, "", "EINVAL"},
		{"measure func=KEY_CHECK mask=MAY_READ", 1, "", "EINVAL"},
		{"audit func=KEXEC_CMDLINE", 1, "", "EINVAL"},
		{"appraise func=SETXATTR_CHECK", 1, "", "EINVAL"},
		{"appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0", 1, "", "EINVAL"},
		{"appraise appraise_algos=sha256,", 1, "appraise_algos=sha256,", "EINVAL"},
		{"appraise appraise_algos=crc32", 1, "appraise_algos=crc32", "EINVAL"},
		{"measure func=KEY_CHECK keyrings=a||b", 1, "keyrings=a||b", "EINVAL"},
		{"measure keyrings=.ima", 1, "", "EINVAL"},
		{"measure func=FILE_CHECK # comment", 1, "#", "EINVAL"},
		{"measure mask=MAY_READ|MAY_EXEC", 1, "mask=MAY_READ|MAY_EXEC", "EINVAL"},
		{"measure mask=^", 1, "mask=^", "EINVAL"},
		{"measure func=", 1, "func=", "EINVAL"},
		{"measure measure", 1, "measure", "EINVAL"},
		{"func=FILE_CHECK", 1, "", "EINVAL"},
		{"measure fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a9", 1,
			"fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a9", "EINVAL"},
		{"measure func<FILE_CHECK", 1, "func<FILE_CHECK", "EINVAL"},
		{"measure obj_type=tmp_t", 1, "obj_type=tmp_t", "EINVAL"},
		{"measure\r", 1, "measure\r", "EINVAL"},
		{"dont_measure func=POST_SETATTR", 1, "func=POST_SETATTR", "EINVAL"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.in)
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 {
			t.Errorf("%q: error %v, want one rule error", tc.in, err)
			continue
		}
		e := list[0]
		if e.Line != tc.line || e.Word != tc.word || e.Errno != tc.errno {
			t.Errorf("%q: line %d word %q errno %s (%s), want line %d word %q errno %s",
				tc.in, e.Line, e.Word, e.Errno, e.Reason, tc.line, tc.word, tc.errno)
		}
		if !strings.Contains(e.Error(), fmt.Sprintf("line %d", tc.line)) {
			t.Errorf("%q: message %q names no line", tc.in, e.Error())
		}
	}
}

func TestParseAccepts(t *testing.T) {
	good := []string{
		"  # indented comment",
		"dont_measure fsmagic=0 fsmagic=0x9fa0", // the kernel checks the value
		"measure fsname=a fsname=b",             // no duplicate check either
		"appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3",
		"measure func=BPRM_CHECK digest_type=verity template=ima-ngv2",
		"appraise func=SETXATTR_CHECK appraise_algos=sha256,sha384",
		"appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig",
		"measure subj_role=unconfined",
		"measure func=MMAP_CHECK_REQPROT mask=MAY_EXEC",
		"appraise func=FILE_CHECK appraise_type=imasig appraise_flag=anything",
		"measure func=KEXEC_CMDLINE pcr=11",
		"dont_hash fsmagic=0x9fa0",
		"measure fsuuid=00000000-0000-0000-0000-000000000000 " +
			"fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a90",
		"measure pcr=+8 pcr=-0",
		"measure uid=+0",
	}
	for _, g := range good {
		if _, err := Parse(g); err != nil {
			t.Errorf("%q: %v", g, err)
		}
	}
}

// TestProfiles checks what differs between the 6.1 and 6.12 kernels, and
// with CONFIG_IMA_APPRAISE_MODSIG (which Debian's kernels lack).
func TestProfiles(t *testing.T) {
	tests := []struct {
		rule        string
		modsig      bool
		ok61, ok612 bool
		render61    string
	}{
		{"measure func=MMAP_CHECK_REQPROT", false, false, true, ""},
		{"appraise func=BPRM_CHECK appraise_algos=sha256,sha512", false, false, true, ""},
		{"appraise func=MODULE_CHECK appraise_type=imasig|modsig", false, false, false, ""},
		{"appraise func=MODULE_CHECK appraise_type=imasig|modsig appraise_flag=check_blacklist",
			true, true, true,
			"appraise func=MODULE_CHECK appraise_type=imasig|modsig " +
				"appraise_flag=check_blacklist \n"},
		{"appraise func=FILE_CHECK appraise_type=imasig|modsig", true, false, false, ""},
		{"appraise func=FILE_CHECK appraise_type=imasig appraise_flag=check_blacklist",
			true, false, true, ""},
		{"appraise func=MODULE_CHECK appraise_flag=nonsense appraise_type=imasig|modsig",
			true, false, true, ""},
		{"measure func=FILE_CHECK appraise_flag=check_blacklist", false, false, true, ""},
		{"measure subj_role=system_r", false, false, false, ""},
	}
	for _, tc := range tests {
		k61, k612 := Linux61(), Linux612()
		k61.ModSig, k612.ModSig = tc.modsig, tc.modsig
		p61, err61 := ParseProfile(tc.rule, k61)
		_, err612 := ParseProfile(tc.rule, k612)
		if (err61 == nil) != tc.ok61 || (err612 == nil) != tc.ok612 {
			t.Errorf("%q: 6.1 %v, 6.12 %v", tc.rule, err61, err612)
		}
		if tc.render61 != "" && err61 == nil {
			if got := p61.RenderFor(k61); got != tc.render61 {
				t.Errorf("%q: 6.1 renders %q", tc.rule, got)
			}
		}
	}
}

func TestNamespaceProfiles(t *testing.T) {
	v15 := Linux612().InNamespace(NamespaceV15)
	dev := Linux612().InNamespace(NamespaceDev)
	tests := []struct {
		rule         string
		okV15, okDev bool
	}{
		{"measure func=FILE_CHECK", false, true},
		{"dont_measure fsmagic=0x9fa0", true, true},
		{"dont_appraise fowner=0", true, true},
		{"audit func=BPRM_CHECK", true, true},
		{"dont_hash", true, true},
		{"appraise func=FILE_CHECK", false, false},
		{"hash", false, false},
	}
	for _, tc := range tests {
		_, e1 := ParseProfile(tc.rule, v15)
		_, e2 := ParseProfile(tc.rule, dev)
		if (e1 == nil) != tc.okV15 || (e2 == nil) != tc.okDev {
			t.Errorf("%q: v15 %v, dev %v", tc.rule, e1, e2)
		}
	}

	if _, err := ParseProfile(BuiltinText(), dev); err != nil {
		t.Errorf("built-in policy refused by the development tree: %v", err)
	}
	_, err := ParseProfile(BuiltinText(), v15)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 8 || list[0].Line != 34 ||
		list[0].Word != "measure" {
		t.Errorf("built-in policy under v15: %v", err)
	}
}

func TestMaxRules(t *testing.T) {
	text := strings.Repeat("dont_measure fsmagic=0x9fa0\n", MaxNamespaceRules)
	if _, err := Parse(text); err != nil {
		t.Fatalf("%d rules: %v", MaxNamespaceRules, err)
	}
	_, err := Parse("# header\n" + text + "audit\n")
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Line != MaxNamespaceRules+2 {
		t.Fatalf("%d rules: %v", MaxNamespaceRules+1, err)
	}
	if _, err := ParseProfile(text+"audit\n", Linux612()); err != nil {
		t.Errorf("host kernel profile has no rule limit: %v", err)
	}
}

func TestProfileByName(t *testing.T) {
	p, err := ProfileByName("6.1/dev")
	if err != nil || p.ReqProt || p.Namespace != NamespaceDev || p.MaxRules != 1024 {
		t.Errorf("6.1/dev: %+v %v", p, err)
	}
	for _, bad := range []string{"5.4", "6.12/v16"} {
		if _, err := ProfileByName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRuleString(t *testing.T) {
	p, err := Parse("measure  func=BPRM_CHECK   mask=MAY_EXEC # no suffix comments in 6.12")
	if err == nil {
		t.Fatalf("suffix comment accepted: %v", p.Rules)
	}
	p, err = Parse("measure  func=BPRM_CHECK   mask=MAY_EXEC  ")
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Rules[0].String(); s != "measure func=BPRM_CHECK mask=MAY_EXEC" {
		t.Errorf("String: %q", s)
	}
	if p.Rules[0].Text != "measure  func=BPRM_CHECK   mask=MAY_EXEC" {
		t.Errorf("Text: %q", p.Rules[0].Text)
	}
}

func TestErrorShortensLongWords(t *testing.T) {
	// A word of 100,000 bytes is named by its start, not printed whole.
	for _, text := range []string{
		"measure func=" + strings.Repeat("A", 100000),
		"measure " + strings.Repeat("x", 100000),
		"appraise appraise_algos=" + strings.Repeat("s", 100000),
	} {
		_, err := Parse("# c\n" + text)
		if err == nil {
			t.Fatalf("%.30q accepted", text)
		}
		msg := err.Error()
		if len(msg) > 300 || !strings.HasPrefix(msg, "line 2: ") || !strings.Contains(msg, "...") {
			t.Errorf("%.30q: message of %d bytes: %.120q", text, len(msg), msg)
		}
		var list ErrorList
		if errors.As(err, &list) && len(list[0].Word) < 100000 {
			t.Errorf("%.30q: Word cut to %d bytes, want it whole", text, len(list[0].Word))
		}
	}
}
