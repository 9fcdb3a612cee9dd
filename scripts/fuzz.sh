#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 30s), one
# after another, and ends with a table of targets, executions and new
# corpus entries. A crash stops the run with the failing input saved under
# the package's testdata/fuzz, as go test does.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
# Minimising every new crasher candidate for the default 60 s stalls targets
# whose inputs are whole files; a few seconds keeps them exploring.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
# Targets that write files fsync them (nothing is ever left partial); on a
# memory file system that costs nothing, so they run at full speed.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
	export TMPDIR=/dev/shm
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

summary=()
while IFS=: read -r file name; do
	pkg=$(dirname "$file")
	echo "== $pkg $name ($FUZZTIME)"
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" 2>&1 | tee "$log"
	last=$(grep -E '^fuzz: elapsed' "$log" | tail -1)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	corpus=$(sed -nE 's/.*new interesting: ([0-9]+) \(total: ([0-9]+)\).*/\1 new, \2 total/p' <<<"$last")
	summary+=("$(printf '%-28s %-22s %12s execs  %s' "$pkg" "$name" "${execs:-?}" "${corpus:-}")")
done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed -E 's/:func /:/' | sort)

echo
echo "fuzz targets, $FUZZTIME each, no crashes:"
printf '%s\n' "${summary[@]}"
