package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/linalg"
)

// gemmRate is one measured rate, as printed by 'goinfluence bench gemm --json'.
type gemmRate struct {
	Backend string  `json:"backend"`
	Op      string  `json:"op"` // sgemm or dgemm
	N       int     `json:"n"`
	GFLOPS  float64 `json:"gflops"`
	Ratio   float64 `json:"ratio_to_cpu"` // rate over the pure-Go backend's on the same shape
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ekfac" {
		return runBenchEKFAC(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "stream" {
		return runBenchStream(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "gemm" {
		return fmt.Errorf("%w: bench needs a benchmark: gemm, ekfac or stream", errUsage)
	}
	fs := newFlags("bench gemm", stderr)
	sizes := fs.String("sizes", "256,512,1024,2048", "comma-separated square sizes")
	minTime := fs.Duration("time", time.Second, "minimum time per measurement")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("%w: bench gemm: bad size %q", errUsage, s)
		}
		ns = append(ns, n)
	}
	var rates []gemmRate
	cpuRate := map[string]float64{}
	for _, name := range linalg.Backends() {
		be, err := linalg.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "backend %s not available: %v\n", name, err)
			continue
		}
		for _, op := range []string{"sgemm", "dgemm"} {
			for _, n := range ns {
				if err := ctx.Err(); err != nil {
					return err
				}
				g := linalg.MeasureGemm(be, n, op == "dgemm", *minTime)
				rates = append(rates, gemmRate{Backend: name, Op: op, N: n, GFLOPS: g})
				if name == "cpu" {
					cpuRate[fmt.Sprint(op, n)] = g
				}
			}
		}
	}
	for i := range rates {
		if c := cpuRate[fmt.Sprint(rates[i].Op, rates[i].N)]; c > 0 {
			rates[i].Ratio = rates[i].GFLOPS / c
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Date   string     `json:"date"`
			CPUs   int        `json:"cpus"`
			GOARCH string     `json:"goarch"`
			Rates  []gemmRate `json:"rates"`
		}{time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.GOARCH, rates})
	}
	fmt.Fprintf(stdout, "GEMM rates, %d CPUs, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(stdout, "%-10s %-6s %6s %10s %8s\n", "backend", "op", "n", "GFLOP/s", "vs cpu")
	for _, r := range rates {
		fmt.Fprintf(stdout, "%-10s %-6s %6d %10.1f %8.2f\n", r.Backend, r.Op, r.N, r.GFLOPS, r.Ratio)
	}
	return nil
}
