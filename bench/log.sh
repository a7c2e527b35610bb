#!/bin/sh
# Times `imans log verify` against `evmctl ima_measurement` on one
# synthetic ima-ng list of N entries (default 1,000,000), in one run, and
# prints the ratio and the peak memory of both. A second, 100 times
# shorter list shows whether the peak memory of imans grows with the list.
# Each tool runs 3 times, alternating; the best wall time of each counts.
set -eu
export CGO_ENABLED=0  # the static binary, as make build makes it
n=${1:-1000000}
cd "$(dirname "$0")/.."
command -v evmctl >/dev/null ||
	{ echo "evmctl not found (apt-get install ima-evm-utils)"; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (apt-get install time)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -tags urfave_cli_no_docs -o "$tmp/imans" ./cmd/imans
mkdir "$tmp/big" "$tmp/small"
go run ./bench/genlist -n "$n" -violation-every 10000 -o "$tmp/big/list" -pcrs "$tmp/big"
go run ./bench/genlist -n $((n / 100)) -violation-every 10000 -o "$tmp/small/list" \
	-pcrs "$tmp/small"
echo "list: $n ima-ng entries, $(wc -c <"$tmp/big/list") bytes;" \
	"load: $(cut -d' ' -f1-3 /proc/loadavg)"

# measure NAME DIR CMD...: runs CMD under /usr/bin/time, which must exit 0,
# and appends "NAME wall user+sys maxrss_kb" to $tmp/times.
measure() {
	name=$1 dir=$2
	shift 2
	if ! /usr/bin/time -f "$name %e %U %S %M" -o "$tmp/t" "$@" >"$tmp/out" 2>&1; then
		echo "$name failed:"; cat "$tmp/out"; exit 1
	fi
	awk '{ printf "%s %s %.2f %s\n", $1, $2, $3 + $4, $5 }' "$tmp/t" >>"$tmp/times"
}

for i in 1 2 3; do
	measure imans big "$tmp/imans" log verify --pcrs "sha1,$tmp/big/pcr-sha1.txt" \
		--pcrs "sha256,$tmp/big/pcr-sha256.txt" "$tmp/big/list"
	measure evmctl big evmctl ima_measurement --ignore-violations \
		--pcrs "sha1,$tmp/big/pcr-sha1.txt" --pcrs "sha256,$tmp/big/pcr-sha256.txt" \
		"$tmp/big/list"
done
measure imans-small small "$tmp/imans" log verify --pcrs "sha1,$tmp/small/pcr-sha1.txt" \
	--pcrs "sha256,$tmp/small/pcr-sha256.txt" "$tmp/small/list"

awk -v n="$n" '
	{ if (!($1 in wall) || $2 < wall[$1]) { wall[$1] = $2; cpu[$1] = $3 }
	  if ($4 > rss[$1]) rss[$1] = $4 }
	END {
		printf "%-12s %8s %10s %10s\n", "", "wall s", "cpu s", "peak MiB"
		split("imans evmctl imans-small", names, " ")
		for (i = 1; i <= 3; i++) { k = names[i]
			printf "%-12s %8.2f %10.2f %10.1f\n", k, wall[k], cpu[k], rss[k] / 1024 }
		printf "imans is %.1f times faster than evmctl (wall), %.1f times (cpu)\n",
			wall["evmctl"] / wall["imans"], cpu["evmctl"] / cpu["imans"]
		printf "imans peak memory: %.1f MiB for %d entries, %.1f MiB for %d\n",
			rss["imans"] / 1024, n, rss["imans-small"] / 1024, n / 100
	}' "$tmp/times"
