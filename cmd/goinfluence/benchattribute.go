package main

import (
	"context"
	"fmt"
	"io"

	"github.com/goinfluence/goinfluence/bench"
)

// runBenchAttribute is 'goinfluence bench attribute': see bench.Attribute.
func runBenchAttribute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench attribute", stderr)
	rows := fs.Int("rows", 1_000_000, "rows of the i8 store")
	dim := fs.Int("dim", 1024, "row dimension of the store")
	batches := fs.String("batches", "1,64,512", "comma-separated inferences per batch")
	contributors := fs.Int("contributors", 1000, "contributors of the generated registry")
	datanets := fs.Int("datanets", 10, "DataNets of the generated registry")
	topk := fs.Int("topk", 10, "distinct examples credited per inference")
	repeats := fs.Int("repeats", 3, "timed runs of each batch size, after an untimed one")
	dir := fs.String("dir", "", "directory of the store, shared with 'bench exact' (I8-<rows>x<dim>), reused when there (default: a temporary directory, removed after)")
	backend := fs.String("backend", "auto", "backend: auto, cpu or openblas")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rows < 1 || *dim < 1 || *contributors < 1 || *datanets < 1 || *topk < 1 || *repeats < 1 {
		return fmt.Errorf("%w: bench attribute: sizes must be positive", errUsage)
	}
	bs, err := parseBatches("bench attribute", *batches)
	if err != nil {
		return err
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	res, err := bench.Attribute(ctx, bench.AttributeOptions{Backend: be, Rows: *rows, Dim: *dim, Batches: bs,
		Contributors: *contributors, DataNets: *datanets, TopK: *topk, Repeats: *repeats, Dir: *dir, Progress: stderr})
	if err != nil {
		return err
	}
	return printBench(stdout, *asJSON, res)
}
