#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (the first
# argument, default 10s). An input that fails is written to the package's
# testdata/fuzz/<target>/ by go test: commit it with the fix, and every later
# go test runs it as a regression seed.
#
# Go's fuzzing coordinator can fail a run bounded by time with a bare
# "context deadline exceeded" as -fuzztime runs out, having found and written
# nothing: its deadline races its workers' stop, more often on a loaded
# machine. Such a run is tried once more. A failure that writes an input, or
# fails a second time, fails.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${1:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# inputs counts the failing inputs kept for target $2 of package $1.
inputs() { (ls "$1/testdata/fuzz/$2" 2>/dev/null || true) | wc -l; }

for dir in $(grep -l '^func Fuzz' $(find . -name '*_test.go') | xargs -n1 dirname | sort -u); do
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //'); do
		for try in 1 2; do
			echo "fuzz $dir $f ($FUZZTIME)"
			before=$(inputs "$dir" "$f")
			set +e
			"$GO" test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" "$dir" 2>&1 | tee "$log"
			status=${PIPESTATUS[0]}
			set -e
			[ "$status" = 0 ] && break
			if [ "$try" = 1 ] && [ "$(inputs "$dir" "$f")" = "$before" ] &&
				grep -qx '    context deadline exceeded' "$log"; then
				echo "fuzz $dir $f: stopped by Go's fuzzing deadline race, no input written; once more"
				continue
			fi
			exit 1
		done
	done
done
