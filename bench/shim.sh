#!/usr/bin/env bash
# The runtime wrapper's cost: `runc run` of a busybox container that runs
# /bin/true, through imans-runtime (no imans annotation, so the wrapper
# only reads config.json and execs runc) against plain runc, alternated
# run by run in one session. Prints the medians and their ratio, for the
# binary as `make build` makes it and for one built with the tag
# urfave_cli_no_docs (which drops the CLI library's man-page generator and
# its markdown package, whose initialisation runs at every start). Also
# times the wrapper alone, with /bin/true as its runtime.
# Needs root, runc and busybox-static. N runs of each (default 60).
set -euo pipefail
export CGO_ENABLED=0  # static, as make build makes it

N=${N:-60}
GO=${GO:-go}
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/imans-bench-shim.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/default" "$work/nodocs"
"$GO" build -o "$work/default/imans" ./cmd/imans
"$GO" build -tags urfave_cli_no_docs -o "$work/nodocs/imans" ./cmd/imans
ln -s imans "$work/default/imans-runtime"
ln -s imans "$work/nodocs/imans-runtime"

# For comparison only: what a binary holding nothing but the wrapper
# (standard library and package shim, no cgo) would cost. It does the
# wrapper's work (parse, read config.json, inject, find the runtime,
# exec) without its logging; it is not a product.
mkdir -p "$work/mini/src"
repo=$(pwd)
cat >"$work/mini/src/go.mod" <<MOD
module imansbenchmini
go 1.26
require github.com/imans-project/imans v0.0.0
replace github.com/imans-project/imans => $repo
MOD
cat >"$work/mini/src/main.go" <<'SRC'
package main

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/imans-project/imans/shim"
)

func main() {
	inv := shim.ParseArgs(os.Args[1:])
	if inv.Creates() {
		config, err := os.ReadFile(inv.ConfigPath())
		if err != nil {
			os.Exit(1)
		}
		self, _ := os.Executable()
		if out, changed, err := shim.InjectHooks(config, self); err != nil {
			os.Exit(1)
		} else if changed && shim.WriteFileAtomic(inv.ConfigPath(), out, 0o644) != nil {
			os.Exit(1)
		}
	}
	list, err := shim.Candidates(os.Getenv(shim.RuntimeEnv), shim.RuntimeConf)
	if err != nil {
		os.Exit(1)
	}
	runtime, err := shim.FindRuntime(list, "/proc/self/exe")
	if err != nil {
		os.Exit(1)
	}
	argv := append([]string{filepath.Base(runtime)}, os.Args[1:]...)
	syscall.Exec(runtime, argv, os.Environ())
	os.Exit(1)
}
SRC
(cd "$work/mini/src" && CGO_ENABLED=0 "$GO" build -mod=mod -o "$work/mini/imans-runtime" .)

bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/true"
(cd "$bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' \
	-e 's/"sh"$/"\/bin\/true"/' "$bundle/config.json"
grep -q '"/bin/true"' "$bundle/config.json"

# usec CMD...: run CMD, print its wall time in microseconds
usec() {
	local t0 t1
	t0=$EPOCHREALTIME
	"$@" >/dev/null
	t1=$EPOCHREALTIME
	echo $(( ${t1/./} - ${t0/./} ))
}

median() {
	sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2];
		else print (v[NR/2]+v[NR/2+1])/2}'
}

wrapped_true() {
	IMANS_RUNTIME=/bin/true "$1" run --bundle "$bundle" x
}

# warm the page cache and runc's first start
usec runc run --bundle "$bundle" warm-plain >/dev/null
usec "$work/default/imans-runtime" run --bundle "$bundle" warm-wrapped >/dev/null

load=$(cut -d' ' -f1 /proc/loadavg)
for f in plain default nodocs mini true wdefault wnodocs wmini; do : >"$work/$f.us"; done
for i in $(seq "$N"); do
	usec runc run --bundle "$bundle" "p-$$-$i" >>"$work/plain.us"
	usec "$work/default/imans-runtime" run --bundle "$bundle" "d-$$-$i" >>"$work/default.us"
	usec "$work/nodocs/imans-runtime" run --bundle "$bundle" "n-$$-$i" >>"$work/nodocs.us"
	usec "$work/mini/imans-runtime" run --bundle "$bundle" "m-$$-$i" >>"$work/mini.us"
	usec /bin/true run --bundle "$bundle" x >>"$work/true.us"
	usec wrapped_true "$work/default/imans-runtime" >>"$work/wdefault.us"
	usec wrapped_true "$work/nodocs/imans-runtime" >>"$work/wnodocs.us"
	usec wrapped_true "$work/mini/imans-runtime" >>"$work/wmini.us"
done

for f in plain default nodocs mini true wdefault wnodocs wmini; do
	eval "m_$f=$(median <"$work/$f.us")"
done
awk -v p="$m_plain" -v d="$m_default" -v n="$m_nodocs" -v t="$m_true" \
	-v wd="$m_wdefault" -v wn="$m_wnodocs" -v m="$m_mini" -v wm="$m_wmini" \
	-v runs="$N" -v load="$load" \
	-v cores="$(nproc)" 'BEGIN {
	printf "runc run /bin/true, %d runs each, medians (load %s on %d cores)\n", runs,
		load, cores
	printf "  plain runc:                      %7.2f ms\n", p / 1000
	printf "  imans-runtime (make build):      %7.2f ms  ratio %.3f (goal < 1.10)\n",
		d / 1000, d / p
	printf "  imans-runtime (no_docs tag):     %7.2f ms  ratio %.3f\n", n / 1000, n / p
	printf "  wrapper-only binary (no cgo):    %7.2f ms  ratio %.3f\n", m / 1000, m / p
	printf "the wrapper alone, its runtime /bin/true\n"
	printf "  /bin/true:                       %7.2f ms\n", t / 1000
	printf "  imans-runtime (make build):      %7.2f ms  adds %.2f ms\n", wd / 1000,
		(wd - t) / 1000
	printf "  imans-runtime (no_docs tag):     %7.2f ms  adds %.2f ms\n", wn / 1000,
		(wn - t) / 1000
	printf "  wrapper-only binary (no cgo):    %7.2f ms  adds %.2f ms\n", wm / 1000,
		(wm - t) / 1000
}'

# CPU time, which waits for no other process: perf stat counts the task
# clock of the runtime and all its children, in blocks of 10 runs,
# alternated; medians of the blocks' means.
if command -v perf >/dev/null; then
	cpu() { # cpu CMD...: mean task-clock in ms of 10 runs
		perf stat -x, -r 10 -e task-clock "$@" 2>&1 >/dev/null | cut -d, -f1 | tail -1
	}
	: >"$work/cpu-plain"
	: >"$work/cpu-wrapped"
	: >"$work/cpu-mini"
	for i in $(seq $(( (N + 9) / 10 ))); do
		cpu runc run --bundle "$bundle" "cp-$$-$i" >>"$work/cpu-plain"
		cpu "$work/default/imans-runtime" run --bundle "$bundle" "cw-$$-$i" \
			>>"$work/cpu-wrapped"
		cpu "$work/mini/imans-runtime" run --bundle "$bundle" "cm-$$-$i" >>"$work/cpu-mini"
	done
	cp=$(median <"$work/cpu-plain")
	cw=$(median <"$work/cpu-wrapped")
	cm=$(median <"$work/cpu-mini")
	awk -v p="$cp" -v w="$cw" -v m="$cm" 'BEGIN {
		printf "CPU time with children (perf stat task-clock), median of 10-run means\n"
		printf "  plain runc:                      %7.2f ms\n", p
		printf "  imans-runtime (make build):      %7.2f ms  ratio %.3f\n", w, w / p
		printf "  wrapper-only binary (no cgo):    %7.2f ms  ratio %.3f\n", m, m / p
	}'
fi
