#!/bin/sh
# The cost of a container's TPM: a swtpm from nothing to its first answer
# (state on the disk's temporary folder and on tmpfs, as under /run), a
# restart on an existing state, and one PCR 10 extend in all four banks,
# each beside a baseline measured in the same run: starting /bin/true, and
# reading a PCR. Prints each figure and its ratio to the baseline.
# Usage: bench/tpm.sh [BENCHTIME]   (default 3s; needs swtpm)
set -eu
export CGO_ENABLED=0  # the static binary, as make build makes it

benchtime=${1:-3s}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

out=$(go test -run '^$' -bench 'SwtpmStart|SwtpmRestart|ExecTrue|Extend|ReadPCR|Quote' \
	-benchtime "$benchtime" ./tpm)
echo "$out" | grep '^Benchmark'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "$out" | awk '
/^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); ns[name] = $3 }
END {
	t = ns["BenchmarkExecTrue"]; r = ns["BenchmarkReadPCR"]
	printf "swtpm start to first answer (tmp):   %6.2f ms  = %5.1f x exec of /bin/true\n",
		ns["BenchmarkSwtpmStart"] / 1e6, ns["BenchmarkSwtpmStart"] / t
	printf "swtpm start to first answer (tmpfs): %6.2f ms  = %5.1f x exec of /bin/true\n",
		ns["BenchmarkSwtpmStartShm"] / 1e6, ns["BenchmarkSwtpmStartShm"] / t
	printf "swtpm restart on existing state:     %6.2f ms  = %5.1f x exec of /bin/true\n",
		ns["BenchmarkSwtpmRestart"] / 1e6, ns["BenchmarkSwtpmRestart"] / t
	printf "extend PCR 10, four banks:           %6.3f ms  = %5.2f x a PCR read\n",
		ns["BenchmarkExtend"] / 1e6, ns["BenchmarkExtend"] / r
	printf "quote sha1+sha256 PCR 10 (ECC):      %6.3f ms  = %5.2f x a PCR read\n",
		ns["BenchmarkQuote"] / 1e6, ns["BenchmarkQuote"] / r
}'
