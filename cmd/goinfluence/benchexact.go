package main

import (
	"context"
	"fmt"
	"io"

	"github.com/goinfluence/goinfluence/bench"
)

// runBenchExact is 'goinfluence bench exact': see bench.Exact.
func runBenchExact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench exact", stderr)
	singleRows := fs.Int("single-rows", 1_000_000, "rows of the store of the one-query and throughput measurements")
	singleDim := fs.Int("single-dim", 1024, "row dimension of that store")
	batchRows := fs.Int("batch-rows", 200_000, "rows of the store of the batch measurement")
	batchDim := fs.Int("batch-dim", 4096, "row dimension of that store")
	batchQueries := fs.Int("batch-queries", 512, "queries of the batch measurement")
	batches := fs.String("batches", "1,8,64,512", "comma-separated query counts of the throughput table")
	topk := fs.Int("topk", 10, "helpful and harmful entries kept per query")
	repeats := fs.Int("repeats", 3, "timed runs of each measurement, after an untimed one")
	dir := fs.String("dir", "", "directory of the benchmark's stores, reused when they have the shapes (default: a temporary directory, removed after)")
	backend := fs.String("backend", "auto", "backend of the f16 streams: auto, cpu or openblas")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *singleRows < 1 || *singleDim < 1 || *batchRows < 1 || *batchDim < 1 || *batchQueries < 1 || *topk < 1 || *repeats < 1 {
		return fmt.Errorf("%w: bench exact: sizes must be positive", errUsage)
	}
	bs, err := parseBatches("bench exact", *batches)
	if err != nil {
		return err
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	res, err := bench.Exact(ctx, bench.ExactOptions{Backend: be, SingleRows: *singleRows, SingleDim: *singleDim,
		BatchRows: *batchRows, BatchDim: *batchDim, BatchQueries: *batchQueries, Batches: bs, TopK: *topk,
		Repeats: *repeats, Dir: *dir, Progress: stderr})
	if err != nil {
		return err
	}
	return printBench(stdout, *asJSON, res)
}
