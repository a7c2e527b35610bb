#!/bin/sh
# The hooks' cost on the harshest case: `runc run` of a busybox container
# that runs /bin/true, with the imans hooks (fanotify backend, a swtpm per
# container, the report at poststop) against plain runc, and against
# floors that show what any hook costs. The runs are taken round by round
# in a shuffled order, N rounds; the medians, their ratios and a 95%
# interval for each ratio are printed, for wall time and for the CPU time
# of runc and everything it waited for.
# Usage: bench/hook.sh [N]   (root; builds imans from this tree as make
# build does; N=100)
# With IMANS_TRACE=FILE, the hooks and the collector append
# "microseconds pid step" lines to FILE, to see where the time goes.
set -eu
export CGO_ENABLED=0  # the static binary, as make build makes it

n=${1:-100}
top=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "bench/hook.sh: needs root" >&2; exit 1; }

work=$(mktemp -d "$top/out.bench.XXXXXX" 2>/dev/null || mktemp -d)
# The run folders go to a tmpfs, as /run is on a systemd host (on these
# machines /run is on the root disk); the reports go to the disk.
rundir=$(mktemp -d /run/imb.XXXXXX)
mount -t tmpfs -o mode=0700 imans-bench "$rundir"
trap 'umount -l "$rundir"; rm -rf "$work" "$rundir"' EXIT
imans=$work/imans
(cd "$top" && go build -tags urfave_cli_no_docs -o "$imans" ./cmd/imans)
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/true"

# config DIR WITH_HOOKS writes a bundle in DIR sharing the rootfs.
config() {
	mkdir -p "$1"
	hooks=""
	ann='"io.imans.enable": "false"'
	if [ "$2" != no ]; then
		env='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		  "IMANS_RUN_DIR='$rundir'", "IMANS_STATE_DIR='$work/state'"'"${IMANS_TRACE:+, \"IMANS_TRACE=$IMANS_TRACE\"}"']'
		hooks='"hooks": {
		  "createRuntime": [{"path": "'$imans'", "args": ["imans", "hook", "create-runtime"],
		    "env": '$env'}],
		  "poststop": [{"path": "'$imans'", "args": ["imans", "hook", "poststop"],
		    "env": '$env'}]},'
		ann='"io.imans.enable": "true"'
		[ "$2" != enforce ] || ann="$ann"', "io.imans.mode": "enforce"'
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
config "$work/enforced" enforce
# Three floors under the hooks' cost: the same two hook entries running
# /bin/true (what a hook costs runc at all), a Go program that exits at
# once (bench/nop: what any hook written in Go costs), and imans on a
# container that does not ask for it (imans reads the state and exits:
# the price of starting the imans binary).
(cd "$top" && go build -o "$work/nop" ./bench/nop)
mkdir -p "$work/true-hooks" "$work/nop-hooks" "$work/imans-off"
sed "s#\"path\": \"$imans\"#\"path\": \"/bin/true\"#" \
	"$work/hooked/config.json" >"$work/true-hooks/config.json"
sed -e "s#\"path\": \"$imans\"#\"path\": \"$work/nop\"#" \
	-e 's#"args": \["imans", "hook", "[a-z-]*"\]#"args": ["nop"]#' \
	"$work/hooked/config.json" >"$work/nop-hooks/config.json"
sed 's#"io.imans.enable": "true"#"io.imans.enable": "false"#' \
	"$work/hooked/config.json" >"$work/imans-off/config.json"
grep -q '"path": "/bin/true"' "$work/true-hooks/config.json"
grep -q "\"path\": \"$work/nop\"" "$work/nop-hooks/config.json"
! grep -q '"hook"' "$work/nop-hooks/config.json"
grep -q '"io.imans.enable": "false"' "$work/imans-off/config.json"

# The runs are timed round by round in a shuffled order (bench/alternate),
# each after an untimed plain run: a run that follows a hooked container
# waits about 6 ms longer than one that follows a plain container (no more
# CPU; docs/hook.md), and a plain run after a hooked one would make the
# hooks look cheaper than they are. Arms: plain runc, plain runc again
# (to see the noise: its ratio should be 1), the three floors above, the
# hooks in audit mode (the default: the hook hands the container's
# fanotify marks to the collector and returns), and in enforce mode (the
# hook also waits for the collector to say ready).
alternate=$work/alternate
(cd "$top" && go build -o "$alternate" ./bench/alternate)
echo "runc run of /bin/true, load $(cut -d' ' -f1 /proc/loadavg) on $(nproc) cores;" \
	"goal: hooks/plain < 1.25"
"$alternate" -n "$n" -settle \
	-- "plain runc" runc run --bundle "$work/plain" {} \
	-- "plain runc, again" runc run --bundle "$work/plain" {} \
	-- "hooks: /bin/true" runc run --bundle "$work/true-hooks" {} \
	-- "hooks: Go, exit at once" runc run --bundle "$work/nop-hooks" {} \
	-- "hooks: imans, not asked" runc run --bundle "$work/imans-off" {} \
	-- "hooks (audit)" runc run --bundle "$work/hooked" {} \
	-- "hooks (enforce)" runc run --bundle "$work/enforced" {} </dev/null

# What a hooked container leaves to the next one: two containers in a
# row, the first plain or hooked, the second plain. The difference of
# the two pairs is the hooks' cost above plus what the second run waits.
echo
echo "two runs in a row, the second plain ($((n / 2)) rounds)"
"$alternate" -n $((n / 2)) \
	-- "plain, then plain" sh -c "runc run --bundle '$work/plain' {}a && runc run --bundle '$work/plain' {}b" \
	-- "hooks, then plain" sh -c "runc run --bundle '$work/hooked' {}a && runc run --bundle '$work/plain' {}b" </dev/null

verdicts=$(cat "$work"/state/reports/*.json | grep -c '"verdict": "incomplete"' || true)
echo "incomplete reports among the hooked runs: $verdicts (want 0)"
