#!/usr/bin/env bash
# The runtime wrapper's cost: `runc run` of a busybox container that runs
# /bin/true, through imans-runtime (no imans annotation, so the wrapper
# only reads config.json and execs runc) against plain runc, alternated
# run by run in one session. Prints both medians and their ratio.
# Needs root, runc and busybox-static. N runs of each (default 60).
set -euo pipefail

N=${N:-60}
GO=${GO:-go}
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/imans-bench-shim.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$GO" build -o "$work/imans" ./cmd/imans
ln -s imans "$work/imans-runtime"

bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/true"
(cd "$bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' \
	-e 's/"sh"$/"\/bin\/true"/' "$bundle/config.json"
grep -q '"/bin/true"' "$bundle/config.json"

# once RUNTIME ID: run the container once, print the wall time in us
once() {
	local t0 t1
	t0=$EPOCHREALTIME
	"$1" run --bundle "$bundle" "$2" >/dev/null
	t1=$EPOCHREALTIME
	echo $(( (${t1/./} - ${t0/./}) ))
}

# wrapper_only: the wrapper's own cost, with /bin/true as its runtime:
# parse the line, read config.json, find the runtime, exec it.
wrapper_only() {
	local t0 t1
	t0=$EPOCHREALTIME
	IMANS_RUNTIME=/bin/true "$work/imans-runtime" run --bundle "$bundle" x
	t1=$EPOCHREALTIME
	echo $(( (${t1/./} - ${t0/./}) ))
}

true_only() {
	local t0 t1
	t0=$EPOCHREALTIME
	/bin/true run --bundle "$bundle" x
	t1=$EPOCHREALTIME
	echo $(( (${t1/./} - ${t0/./}) ))
}

median() {
	sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2];
		else print (v[NR/2]+v[NR/2+1])/2}'
}

# warm the page cache and runc's first start
once runc warm-plain >/dev/null
once "$work/imans-runtime" warm-wrapped >/dev/null

: >"$work/plain"
: >"$work/wrapped"
: >"$work/true"
: >"$work/wonly"
for i in $(seq "$N"); do
	once runc "plain-$$-$i" >>"$work/plain"
	once "$work/imans-runtime" "wrapped-$$-$i" >>"$work/wrapped"
	true_only >>"$work/true"
	wrapper_only >>"$work/wonly"
done

plain=$(median <"$work/plain")
wrapped=$(median <"$work/wrapped")
tru=$(median <"$work/true")
wonly=$(median <"$work/wonly")
awk -v p="$plain" -v w="$wrapped" -v t="$tru" -v o="$wonly" -v n="$N" 'BEGIN {
	printf "runc run /bin/true, %d runs each (median)\n", n
	printf "  plain runc:            %8.2f ms\n", p / 1000
	printf "  through imans-runtime: %8.2f ms\n", w / 1000
	printf "  ratio wrapper/plain:   %8.3f (goal < 1.10)\n", w / p
	printf "the wrapper alone (its runtime /bin/true), median\n"
	printf "  /bin/true:             %8.2f ms\n", t / 1000
	printf "  imans-runtime:         %8.2f ms (adds %.2f ms)\n", o / 1000, (o - t) / 1000
}'
