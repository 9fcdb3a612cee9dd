#!/usr/bin/env bash
# Runs the tests again under other OpenBLAS kernels. OpenBLAS picks its
# kernels, and with them the order in which it sums, by CPU, or as
# OPENBLAS_CORETYPE says where a machine sets it. Results the design promises
# bit for bit must not depend on that choice, so every test also passes with
# the variable unset and set to other core types this CPU can run. The run
# with the environment as it is comes first, in make test; this script never
# changes the variable for that one.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
	echo "test-coretypes: no libopenblas.so.0; nothing to run under other OpenBLAS kernels"
	exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
	echo "test-coretypes: OpenBLAS core types are listed here for x86-64 only; skipped on $(uname -m)"
	exit 0
fi

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
cores=()
for c in ${OPENBLAS_CORETYPES:-Haswell:avx2 Sandybridge:avx Prescott:pni}; do
	name=${c%%:*} need=${c#*:}
	if [[ " $flags " == *" $need "* ]]; then
		cores+=("$name")
	else
		echo "test-coretypes: this CPU lacks $need; $name skipped"
	fi
done

if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
	echo "== OpenBLAS with OPENBLAS_CORETYPE unset (this machine sets $OPENBLAS_CORETYPE)"
	env -u OPENBLAS_CORETYPE "$GO" test -count=1 ./...
fi
for c in "${cores[@]}"; do
	echo "== OpenBLAS with OPENBLAS_CORETYPE=$c"
	OPENBLAS_CORETYPE=$c GOINFLUENCE_OPENBLAS_CORE=$c "$GO" test -count=1 ./...
done
