#!/usr/bin/env bash
# The runtime wrapper's cost: `runc run` of a busybox container that runs
# /bin/true (no imans annotation, so the wrapper reads config.json, finds
# the runtime and execs it) through the imans-runtime binary against
# plain runc, taken round by round in a shuffled order (bench/alternate),
# as the ratio of medians with its 95% interval: wall time, and CPU time
# of the runtime with every child it waited for. Also measured, for
# comparison: the whole imans binary started by the name imans-runtime
# (the same wrapper, inside the binary that holds everything else too),
# a Go program that only execs runc (bench/nop: the floor of any wrapper
# written in Go), and both wrappers alone with /bin/true as their runtime.
# Needs root, runc and busybox-static. N runs of each (default 200).
set -euo pipefail
export CGO_ENABLED=0  # static, as make build makes them

N=${N:-200}
GO=${GO:-go}
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/imans-bench-shim.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/bin" "$work/multi"
"$GO" build -tags urfave_cli_no_docs -o "$work/bin/imans" ./cmd/imans
"$GO" build -o "$work/bin/imans-runtime" ./cmd/imans-runtime
"$GO" build -o "$work/alternate" ./bench/alternate
"$GO" build -o "$work/bin/nop" ./bench/nop
ln -s ../bin/imans "$work/multi/imans-runtime"

bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/true"
(cd "$bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' \
	-e 's/"sh"$/"\/bin\/true"/' "$bundle/config.json"
grep -q '"/bin/true"' "$bundle/config.json"
cp "$bundle/config.json" "$work/config.before"

echo "runc run /bin/true (load $(cut -d' ' -f1 /proc/loadavg) on $(nproc) cores)," \
	"goal for imans-runtime: ratio < 1.10"
"$work/alternate" -n "$N" \
	-- "plain runc" runc run --bundle "$bundle" {} \
	-- "imans-runtime" "$work/bin/imans-runtime" run --bundle "$bundle" {} \
	-- "imans as imans-runtime" "$work/multi/imans-runtime" run --bundle "$bundle" {} \
	-- "Go, exec runc at once" "$work/bin/nop" runc run --bundle "$bundle" {}

echo
echo "the wrappers alone, their runtime /bin/true"
IMANS_RUNTIME=/bin/true "$work/alternate" -n "$N" \
	-- "/bin/true" /bin/true run --bundle "$bundle" {} \
	-- "imans-runtime" "$work/bin/imans-runtime" run --bundle "$bundle" {} \
	-- "imans as imans-runtime" "$work/multi/imans-runtime" run --bundle "$bundle" {} \
	-- "Go, exec at once" "$work/bin/nop" /bin/true run --bundle "$bundle" {}

# A config.json without the annotation is never rewritten.
cmp -s "$bundle/config.json" "$work/config.before" ||
	{ echo "bench/shim.sh: config.json changed" >&2; exit 1; }
