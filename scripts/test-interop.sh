#!/usr/bin/env bash
# make test-interop: the PyTorch exporter (python/goinfluence_torch.py)
# against torch autograd and the goinfluence CLI (python/test_interop.py).
# Installs Debian's python3-torch and python3-numpy with apt-get when
# /usr/bin/python3 cannot import them (no other Python package is needed),
# builds the CLI, runs the test with /usr/bin/python3 and prints the errors
# measured.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PY=/usr/bin/python3

start=$(date +%s)
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	echo "installing python3-torch and python3-numpy with apt-get" >&2
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends python3-torch python3-numpy >/dev/null
	echo "apt-get install: $(($(date +%s) - start)) s" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$GO build -o "$tmp/goinfluence" ./cmd/goinfluence
GOINFLUENCE_BIN="$tmp/goinfluence" "$PY" python/test_interop.py
echo "test-interop: $(($(date +%s) - start)) s in all"
