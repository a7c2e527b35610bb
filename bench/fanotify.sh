#!/bin/sh
# bench/fanotify.sh: the cost of the fanotify collector on an exec- and
# open-heavy workload (2,000 distinct small scripts executed and 2,000
# distinct small files read, in a busybox root filesystem, in new mount
# and pid namespaces), as the ratio of the median workload time with and
# without the collector, measured in one run. The collector runs with a
# swtpm TPM, and without one; fapolicyd runs on the same workload when it
# is installed (permissive, sha256 integrity, every file in its trust
# database). Needs root.
#
#   bench/fanotify.sh [RUNS]     RUNS of each variant, alternating (5)
set -eu
export CGO_ENABLED=0  # the static binary, as make build makes it
cd "$(dirname "$0")/.."
runs=${1:-5}

fapolicyd=0
if command -v fapolicyd >/dev/null 2>&1; then
	fapolicyd=1
fi

IMANS_BENCH_NOTPM=1 IMANS_BENCH_FAPOLICYD=$fapolicyd \
	go test -count=1 -run '^$' -bench '^BenchmarkFanotifyWorkload$' \
	-benchtime "${runs}x" -timeout 60m ./measure/ |
	awk -v runs="$runs" '
	function line(name, t, r) {
		printf "%-30s %6.2f s  ratio %.2f\n", name, v["s/" t], v[r]
	}
	/^BenchmarkFanotifyWorkload/ {
		print
		for (i = 3; i < NF; i++) v[$(i+1)] = $i
		printf "%-30s %6.2f s  (median of %d)\n", "plain workload:", v["s/plain"], runs
		line("collector with swtpm:", "collector", "collector/plain")
		line("collector without TPM:", "collector-notpm", "collector-notpm/plain")
		if ("s/fapolicyd" in v)
			line("fapolicyd (sha256 integrity):", "fapolicyd", "fapolicyd/plain")
	}'
