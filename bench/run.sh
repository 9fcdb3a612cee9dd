#!/usr/bin/env bash
# Measures every backend's GEMM rates and the linalg benchmarks and records
# them with the machine and date in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
day=$(date -u +%Y-%m-%d)
out=bench/results
mkdir -p "$out"
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown)
go build -o bench/out/goinfluence ./cmd/goinfluence
bench/out/goinfluence bench gemm --json > "$out/gemm-$day.json"
{
	echo "# GEMM rates, $day"
	echo
	echo "Machine: $cpu, $(nproc) CPUs, $(go version | cut -d' ' -f3-)."
	echo "Command: \`make bench\` (\`goinfluence bench gemm\`: square n×n×n products, best of repeats over ≥ 1 s)."
	echo
	echo '```'
	bench/out/goinfluence bench gemm
	echo '```'
	echo
	echo "linalg benchmarks (\`go test -bench . ./linalg\`):"
	echo
	echo '```'
	go test -run '^$' -bench . -benchtime 3x ./linalg | grep -E '^(Benchmark|ok)'
	echo '```'
} > "$out/gemm-$day.md"
cat "$out/gemm-$day.md"
