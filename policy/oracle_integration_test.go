//go:build integration

package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/imans-project/imans/integration/qemu"
	"github.com/imans-project/imans/policy"
)

// edgeRules are corner cases of the kernel's parser that the shared corpus
// (testdata/oracle) does not hold: number forms, duplicates the kernel
// lets through, value lists, options per func.
var edgeRules = []string{
	"dont_measure fsmagic=0 fsmagic=0x9fa0",
	"measure fsname=ext4 fsname=tmpfs",
	"dont_measure fsmagic=0x1ffffffffffffffff",
	"dont_measure fsmagic=+0x9fa0",
	"dont_measure fsmagic=0X9FA0",
	"dont_measure fsmagic=9fa0",
	"dont_measure fsmagic=0x",
	"measure uid=+0",
	"measure uid=00",
	"measure uid=4294967295",
	"measure uid=4294967294",
	"measure uid=4294967296",
	"measure uid=99999999999999999999",
	"measure uid=0 euid=0",
	"measure gid=0 egid=0",
	"measure euid>0 uid<5",
	"measure uid==0",
	"measure uid=0 fowner=0 gid=0 fgroup=0",
	"measure func=FILE_CHECK uid<0",
	"measure pcr=+8",
	"measure pcr=-0",
	"measure pcr=63",
	"measure pcr=64",
	"measure func=FILE_CHECK # trailing comment",
	"measure fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a90xyz",
	"measure fsuuid=6A5E4C8B-2D9A-4A5E-9C71-0F2D6E7B8A90",
	"measure fsuuid=6a5e4c8b2d9a-4a5e-9c71-0f2d6e7b8a90",
	"measure fsuuid=00000000-0000-0000-0000-000000000000 fsuuid=6a5e4c8b-2d9a-4a5e-9c71-0f2d6e7b8a90",
	"measure template=d-ng|n-ng|sig",
	"measure template=d|n",
	"measure template=ima-ng template=ima-ng",
	"audit template=ima-ng",
	"measure mask=^MAY_APPEND",
	"measure mask=^",
	"measure mask=may_read",
	"measure func=PATH_CHECK",
	"measure func=FILE_MMAP",
	"measure func=POST_SETATTR",
	"measure func=NONE",
	"measure func=CREDS_CHECK",
	"measure func=POLICY_CHECK",
	"measure func=FILE_CHECK=x",
	"appraise func=SETXATTR_CHECK appraise_algos=sha256",
	"appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0",
	"appraise func=SETXATTR_CHECK",
	"appraise appraise_algos=sha224",
	"appraise appraise_algos=sha384",
	"appraise appraise_algos=md5",
	"appraise appraise_algos=md4",
	"appraise appraise_algos=rmd160",
	"appraise appraise_algos=sm3",
	"appraise appraise_algos=streebog256",
	"appraise appraise_algos=wp512",
	"appraise appraise_algos=tgr192",
	"appraise appraise_algos=sha3-256",
	"appraise appraise_algos=sha3-384,sha3-512",
	"appraise appraise_algos=sha512,sm3",
	"appraise appraise_algos=sha256,sha256",
	"appraise appraise_algos=sha256,",
	"appraise appraise_algos=sha256 appraise_algos=sha1",
	"appraise appraise_type=imasig appraise_type=imasig",
	"appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3",
	"appraise func=BPRM_CHECK digest_type=verity",
	"measure func=MODULE_CHECK digest_type=verity",
	"measure digest_type=verity digest_type=verity",
	"appraise appraise_type=imasig appraise_flag=check_blacklist",
	"measure appraise_flag=check_blacklist",
	"measure func=KEY_CHECK keyrings=a||b",
	"measure func=KEY_CHECK keyrings=|a",
	"measure func=KEY_CHECK keyrings=.ima keyrings=.evm",
	"measure func=CRITICAL_DATA label=a label=b",
	"measure func=KEY_CHECK uid=0 pcr=11",
	"measure func=KEY_CHECK fowner=0",
	"measure func=KEXEC_CMDLINE fowner=0 pcr=12",
	"measure func=KEXEC_CMDLINE mask=MAY_READ",
	"audit func=KEY_CHECK",
	"dont_measure func=KEY_CHECK keyrings=.ima",
	"hash func=MODULE_CHECK",
	"dont_hash func=KEXEC_CMDLINE",
	"measure subj_role=unconfined subj_role=unconfined",
	"measure func=KEY_CHECK subj_role=unconfined",
	"measure obj_type=unconfined",
	"measure permit_directio permit_directio",
	"measure func=MMAP_CHECK_REQPROT mask=MAY_EXEC",
	"dont_appraise func=FILE_CHECK permit_directio",
	"measure measure",
	"MEASURE",
}

// TestOracleEdges writes edgeRules to the policy file of Debian's 6.1 and
// 6.12 kernels in qemu and compares each verdict with the checker's.
func TestOracleEdges(t *testing.T) {
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			verdicts, err := qemu.Oracle(ctx, series, edgeRules, "")
			if err != nil {
				t.Fatal(err)
			}
			prof, err := policy.ProfileByName(series)
			if err != nil {
				t.Fatal(err)
			}

			for i, rule := range edgeRules {
				got := "OK"
				if _, err := policy.ParseRule(rule, prof); err != nil {
					got = err.(*policy.Error).Errno
				}
				if got != verdicts[i] {
					t.Errorf("%q: kernel %s %s, checker %s", rule, series, verdicts[i], got)
				}
			}
		})
	}
}
