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

# EK-FAC stages on a synthetic 2048×2048 layer with 64 tokens per example.
bench/out/goinfluence bench ekfac --json > "$out/ekfac-$day.json"
{
	echo "# EK-FAC fit and score, $day"
	echo
	echo "Machine: $cpu, $(nproc) CPUs, $(go version | cut -d' ' -f3-)."
	echo "Command: \`make bench\` (\`goinfluence bench ekfac\`). GEMM share: flops of the stage's GEMM-like calls"
	echo "(Dgemm, covariance XᵀX counted as a full product) over the time inside them, as a ratio to the same"
	echo "backend's Sgemm and Dgemm rates on 2048³ measured in the same run. All EK-FAC arithmetic is float64."
	echo
	echo '```'
	bench/out/goinfluence bench ekfac 2>/dev/null
	echo '```'
} > "$out/ekfac-$day.md"
cat "$out/ekfac-$day.md"

# Streamed scoring: a 200000×4096 f16 store against 512 queries (OpenBLAS),
# 20000×4096 on the pure-Go backend, and a 2000000×1024 f16 store (4 GB) for
# the bounded-memory check. Stores are built once under $BENCH_STORES
# (default /tmp) and reused.
stores=${BENCH_STORES:-/tmp}
{
	echo "["
	bench/out/goinfluence bench stream --dir "$stores/bs200k" --json
	echo ","
	bench/out/goinfluence bench stream --rows 20000 --backend cpu --dir "$stores/bs20k" --json
	echo ","
	bench/out/goinfluence bench stream --rows 2000000 --dim 1024 --dir "$stores/bs2m" --json
	echo "]"
} > "$out/stream-$day.json"
echo "stream results: $out/stream-$day.json"

# Exact integer scoring of i8 stores (bench/results/exact-*.md explains the
# table) and attribution under load, on stores built once under
# $stores/exact and reused by both.
bench/out/goinfluence bench exact --dir "$stores/exact" --repeats 5 --json > "$out/exact-$day.json"
bench/out/goinfluence bench exact --dir "$stores/exact" --repeats 5 > "$out/exact-$day.txt"
bench/out/goinfluence bench attribute --dir "$stores/exact" --repeats 3 --json > "$out/attribute-$day.json"
echo "exact and attribute results: $out/exact-$day.json, $out/attribute-$day.json"
