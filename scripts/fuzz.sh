#!/bin/sh
# Runs every fuzz target of the module for the given time each (default 5s).
set -eu
time=${1:-5s}
for file in $(grep -rl --include='*_test.go' '^func Fuzz' .); do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "fuzz $pkg $target ($time)"
		go test -run "^$" -fuzz "^$target\$" -fuzztime "$time" -fuzzminimizetime 2s "$pkg"
	done
done
