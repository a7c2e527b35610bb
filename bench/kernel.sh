#!/bin/sh
# bench/kernel.sh: what the kernel backend's probe adds to a container's
# start. Times, in one run and alternating, N times each: `runc run` of a
# busybox container running /bin/true; `imans ima-namespace probe` (a
# fresh probe: a child in new user and mount namespaces); and the same
# with --cache (the per-boot answer read from a file, what each hook
# pays). Prints the medians and their ratios to runc. Needs root, runc,
# busybox.
#
#   bench/kernel.sh [N]     (default 30)
set -eu
export CGO_ENABLED=0  # the static binary, as make build makes it
cd "$(dirname "$0")/.."
n=${1:-30}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -tags urfave_cli_no_docs -o "$work/imans" ./cmd/imans

chmod 755 "$work"
mkdir -p "$work/b/rootfs/bin" "$work/b/rootfs/proc" "$work/b/rootfs/dev" "$work/b/rootfs/sys"
cp "$(command -v busybox)" "$work/b/rootfs/bin/busybox"
ln -s busybox "$work/b/rootfs/bin/true"
(cd "$work/b" && runc spec &&
	sed -i 's/"sh"/"\/bin\/true"/; s/"terminal": true/"terminal": false/' config.json)
"$work/imans" ima-namespace probe --cache "$work/probe.json" >/dev/null 2>&1 || true

now() { date +%s%N; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

i=0
: >"$work/runc"; : >"$work/probe"; : >"$work/cached"
while [ $i -lt "$n" ]; do
	t0=$(now); runc run --bundle "$work/b" "kbench-$$-$i" >/dev/null 2>&1; t1=$(now)
	echo $((t1 - t0)) >>"$work/runc"
	t0=$(now); "$work/imans" ima-namespace probe >/dev/null 2>&1 || true; t1=$(now)
	echo $((t1 - t0)) >>"$work/probe"
	t0=$(now); "$work/imans" ima-namespace probe --cache "$work/probe.json" >/dev/null 2>&1 || true
	t1=$(now)
	echo $((t1 - t0)) >>"$work/cached"
	i=$((i + 1))
done

r=$(median <"$work/runc"); p=$(median <"$work/probe"); c=$(median <"$work/cached")
echo "median of $n, in ms (each includes starting the imans binary):"
awk -v r="$r" -v p="$p" -v c="$c" 'BEGIN {
	printf "runc run /bin/true:            %6.1f\n", r / 1e6
	printf "imans probe, fresh:            %6.1f  ratio to runc %.2f\n", p / 1e6, p / r
	printf "imans probe, per-boot cache:   %6.1f  ratio to runc %.2f\n", c / 1e6, c / r
	printf "the probe itself (fresh - cached): %4.1f  ratio to runc %.2f\n", (p - c) / 1e6, (p - c) / r
}'
