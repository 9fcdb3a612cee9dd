package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/bench"
)

// runBench dispatches 'goinfluence bench gemm|ekfac|stream|exact|attribute': flags become
// the bench package's Options, and its Result is printed as a table or JSON.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ekfac" {
		return runBenchEKFAC(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "stream" {
		return runBenchStream(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "exact" {
		return runBenchExact(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "attribute" {
		return runBenchAttribute(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "gemm" {
		return fmt.Errorf("%w: bench needs a benchmark: gemm, ekfac, stream, exact or attribute", errUsage)
	}
	fs := newFlags("bench gemm", stderr)
	sizes := fs.String("sizes", "256,512,1024,2048", "comma-separated square sizes")
	minTime := fs.Duration("time", time.Second, "minimum time per measurement")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	ns, err := parseCounts(*sizes, func(f string) error {
		return fmt.Errorf("%w: bench gemm: bad size %q", errUsage, f)
	})
	if err != nil {
		return err
	}
	res, err := bench.Gemm(ctx, bench.GemmOptions{Sizes: ns, MinTime: *minTime, Progress: stderr})
	if err != nil {
		return err
	}
	return printBench(stdout, *asJSON, res)
}

// printBench writes a benchmark's result as one line of JSON or as its table.
func printBench(stdout io.Writer, asJSON bool, res interface{ WriteTable(io.Writer) error }) error {
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.WriteTable(stdout)
}

// parseCounts parses comma-separated counts, each at least 1; a field that
// is not one is the error bad(field).
func parseCounts(s string, bad func(field string) error) ([]int, error) {
	var v []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, bad(f)
		}
		v = append(v, n)
	}
	return v, nil
}

// parseBatches parses the --batches flag of 'goinfluence <cmd>' (bench
// exact, bench attribute) with parseCounts.
func parseBatches(cmd, s string) ([]int, error) {
	return parseCounts(s, func(f string) error {
		return fmt.Errorf("%w: %s: --batches: bad count %q", errUsage, cmd, f)
	})
}
