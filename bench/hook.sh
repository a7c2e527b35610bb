#!/bin/sh
# The hooks' cost on the harshest case: `runc run` of a busybox container
# that runs /bin/true, with the imans hooks (fanotify backend, a swtpm per
# container, the report at poststop) against plain runc. Both are run
# alternately, N times each; the ratio of the medians is printed.
# Usage: bench/hook.sh [N]   (root; builds bin/imans if missing)
# With IMANS_TRACE=FILE, the hooks, the collector and this script append
# "microseconds pid step" lines to FILE, to see where the time goes.
set -eu
export CGO_ENABLED=0  # the static binary, as make build makes it

n=${1:-40}
top=$(cd "$(dirname "$0")/.." && pwd)
imans=$top/bin/imans
[ "$(id -u)" = 0 ] || { echo "bench/hook.sh: needs root" >&2; exit 1; }
[ -x "$imans" ] || (cd "$top" && go build -o bin/imans ./cmd/imans)

work=$(mktemp -d "$top/out.bench.XXXXXX" 2>/dev/null || mktemp -d)
rundir=$(mktemp -d /run/imb.XXXXXX)
trap 'rm -rf "$work" "$rundir"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/true"

# config DIR WITH_HOOKS writes a bundle in DIR sharing the rootfs.
config() {
	mkdir -p "$1"
	hooks=""
	ann='"io.imans.enable": "false"'
	if [ "$2" = yes ]; then
		env='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		  "IMANS_RUN_DIR='$rundir'", "IMANS_STATE_DIR='$work/state'"'"${IMANS_TRACE:+, \"IMANS_TRACE=$IMANS_TRACE\"}"']'
		hooks='"hooks": {
		  "createRuntime": [{"path": "'$imans'", "args": ["imans", "hook", "create-runtime"],
		    "env": '$env'}],
		  "poststop": [{"path": "'$imans'", "args": ["imans", "hook", "poststop"],
		    "env": '$env'}]},'
		ann='"io.imans.enable": "true"'
	fi
	cat >"$1/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
    "env": ["PATH=/bin"], "cwd": "/"},
  "root": {"path": "$rootfs", "readonly": true},
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  $hooks
  "annotations": {$ann},
  "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
    {"type": "mount"}, {"type": "network"}]}
}
EOF
}
config "$work/plain" no
config "$work/hooked" yes

# one BUNDLE ID prints the run's wall time in microseconds.
one() {
	s=$(date +%s%N)
	[ -z "${IMANS_TRACE:-}" ] || echo "$((s / 1000)) sh runc run $2" >>"$IMANS_TRACE"
	runc run --bundle "$1" "$2" >/dev/null 2>"$work/err" </dev/null || {
		cat "$work/err" >&2
		echo "bench/hook.sh: runc run $2 failed" >&2
		exit 1
	}
	e=$(date +%s%N)
	[ -z "${IMANS_TRACE:-}" ] || echo "$((e / 1000)) sh runc done $2" >>"$IMANS_TRACE"
	echo $(((e - s) / 1000))
}

# create BUNDLE ID prints the wall time of `runc create` alone: everything
# up to the container's first instruction, createRuntime hook included.
# The container is then deleted (its poststop runs, untimed).
create() {
	s=$(date +%s%N)
	runc create --bundle "$1" "$2" >/dev/null 2>"$work/err" </dev/null || {
		cat "$work/err" >&2
		echo "bench/hook.sh: runc create $2 failed" >&2
		exit 1
	}
	e=$(date +%s%N)
	runc delete -f "$2" >/dev/null 2>&1
	echo $(((e - s) / 1000))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Warm up both paths once.
one "$work/plain" imb-warm-plain >/dev/null
one "$work/hooked" imb-warm-hooked >/dev/null

: >"$work/plain.txt"
: >"$work/hooked.txt"
i=0
while [ $i -lt "$n" ]; do
	one "$work/plain" imb-plain-$i >>"$work/plain.txt"
	one "$work/hooked" imb-hooked-$i >>"$work/hooked.txt"
	i=$((i + 1))
done

i=0
while [ $i -lt "$n" ]; do
	create "$work/plain" imb-cplain-$i >>"$work/cplain.txt"
	create "$work/hooked" imb-chooked-$i >>"$work/chooked.txt"
	i=$((i + 1))
done

p=$(median <"$work/plain.txt")
h=$(median <"$work/hooked.txt")
cp=$(median <"$work/cplain.txt")
ch=$(median <"$work/chooked.txt")
verdicts=$(cat "$work"/state/reports/imb-hooked-*.json | grep -c '"verdict": "incomplete"' || true)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runc run (whole life, /bin/true), $n each: plain ${p} us, with hooks ${h} us," \
	"ratio $(ratio "$h" "$p")"
echo "runc create (to the first instruction), $n each: plain ${cp} us, with hooks ${ch} us," \
	"ratio $(ratio "$ch" "$cp")"
echo "incomplete reports among the hooked runs: $verdicts (want 0)"
