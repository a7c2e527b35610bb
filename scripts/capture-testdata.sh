#!/bin/sh
# Recapture the real-kernel test data: boots Debian's 6.1 and 6.12 kernels
# in qemu (TCG) with a swtpm TPM and writes ima/testdata/kernel/<set>/ and
# policy/testdata/oracle/verdicts-<kernel>.txt. Kernels are downloaded
# with apt-get into integration/cache/ (git-ignored) on first use.
#
#   scripts/capture-testdata.sh                  # every set and the oracle
#   scripts/capture-testdata.sh -only oracle     # only the policy oracle
#   scripts/capture-testdata.sh -list            # the sets
#
# See docs/harness.md.
set -eu
cd "$(dirname "$0")/.."
exec go run ./integration/qemu/cmd/capture -root . "$@"
