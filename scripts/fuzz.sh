#!/bin/sh
# Runs every fuzz target of the module for the given time each (default 5s).
#
# Go's fuzzer sometimes ends a short run with "context deadline exceeded"
# when the time runs out while a worker is busy, without any failing
# input: such a run is taken again, once. A run that found a failing
# input (it says "Failing input written") always fails.
set -eu
time=${1:-5s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

fuzz() { # fuzz PKG TARGET: one run, its output in $out and on stdout
	go test -run "^$" -fuzz "^$2\$" -fuzztime "$time" -fuzzminimizetime 2s "$1" \
		>"$out" 2>&1 && status=0 || status=$?
	cat "$out"
	return "$status"
}

for file in $(grep -rl --include='*_test.go' '^func Fuzz' .); do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "fuzz $pkg $target ($time)"
		fuzz "$pkg" "$target" && continue
		if grep -q 'context deadline exceeded' "$out" &&
			! grep -q 'Failing input written' "$out"; then
			echo "fuzz $pkg $target: the fuzzer's deadline, no failing input; again"
			fuzz "$pkg" "$target" && continue
		fi
		exit 1
	done
done
