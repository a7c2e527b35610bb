#!/bin/sh
# The imans demo: one busybox container, run three times under runc with the
# imans hooks.
#   1. a learning run: its report gives the script's digest and PCR 10;
#   2. those values become the container's annotations: the run passes;
#   3. the script is changed: the run fails, naming the script, its new
#      digest, and PCR 10's expected and actual values.
# Run as root from the checkout (`make demo` builds bin/imans first).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
imans=$top/bin/imans
work=$top/out/demo
bundle=$work/bundle
rootfs=$bundle/rootfs

die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (runc and the hooks run as root)"
[ -x "$imans" ] || die "$imans missing: run make build"
for p in runc swtpm busybox; do
	command -v $p >/dev/null || die "$p missing: run make deps"
done

# The built-in policy does not measure tmpfs: the rootfs must be on a
# measured filesystem.
case $(stat -f -c %T "$top") in
tmpfs) die "$top is on $(stat -f -c %T "$top"), which the policy does not measure" ;;
esac

echo "== building a busybox rootfs in $bundle"
rm -rf "$work"
mkdir -p "$rootfs/bin" "$rootfs/app" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" \
	"$rootfs/tmp" "$rootfs/etc"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
	[ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
echo "root:x:0:0:root:/:/bin/sh" >"$rootfs/etc/passwd"
cat >"$rootfs/app/demo.sh" <<'EOF'
echo "hello from the demo container"
EOF

# The hooks run with the env of their config entry only: pass the folders.
hookenv='"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'
for v in IMANS_STATE_DIR IMANS_RUN_DIR; do
	eval "val=\${$v:-}"
	[ -z "$val" ] || hookenv="$hookenv, \"$v=$val\""
done

# config writes the bundle's config.json with the imans hooks and the given
# annotations (a JSON object).
config() {
	cat >"$bundle/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/bin/sh", "/app/demo.sh"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "imans-demo",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
  ],
  "hooks": {
    "createRuntime": [{"path": "$imans", "args": ["imans", "hook", "create-runtime"],
      "env": [$hookenv]}],
    "poststop": [{"path": "$imans", "args": ["imans", "hook", "poststop"],
      "env": [$hookenv]}]
  },
  "annotations": $1,
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
      {"type": "network"}]
  }
}
EOF
}

reports=${IMANS_STATE_DIR:-/var/lib/imans}/reports

# run runs the bundle as container $1 and shows its report. The report of
# an earlier demo is removed first: a run whose hooks failed must not show
# the last one's verdict.
run() {
	runc delete -f "$1" >/dev/null 2>&1 || true
	rm -f "$reports/$1.json" "$reports/$1.log.bin" "$reports/$1.log.txt"
	echo "-- runc run $1"
	status=0
	runc run --bundle "$bundle" "$1" </dev/null >"$work/$1.out" 2>&1 || status=$?
	sed 's/^/   container: /' "$work/$1.out"
	[ "$status" = 0 ] || die "runc run $1 failed (exit status $status)"
	"$imans" report show "$1" >"$work/$1.report" || die "no report for $1"
	sed 's/^/   /' "$work/$1.report"
}

echo "== 1. learning run: no expectations yet (so every measured file is unexpected: fail)"
config '{"io.imans.enable": "true"}'
run imans-demo-learn

echo "== the annotations learnt from it (imans expect --from-report imans-demo-learn)"
"$imans" expect --from-report imans-demo-learn | sed 's/^/   /'
learnt=$("$imans" expect --from-report imans-demo-learn --json)

echo "== 2. the same container with those expectations"
config "$learnt"
run imans-demo-pass

echo "== 3. the script is changed"
cp "$rootfs/app/demo.sh" "$work/demo.sh.learnt"
echo 'echo "someone was here"' >>"$rootfs/app/demo.sh"
run imans-demo-changed
# The rootfs is left as the learning run saw it, for docs/engines.md.
mv "$work/demo.sh.learnt" "$rootfs/app/demo.sh"

verdict() { "$imans" report show --json "$1" | sed -n 's/^  "verdict": "\(.*\)",$/\1/p'; }
echo
echo "== verdicts"
for id in imans-demo-learn imans-demo-pass imans-demo-changed; do
	printf '   %-20s %-10s %s\n' "$id" "$(verdict $id)" "$reports/$id.json"
done
