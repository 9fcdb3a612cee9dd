package main

import (
	"context"
	"fmt"
	"io"

	"github.com/goinfluence/goinfluence/bench"
)

// runBenchEKFAC is 'goinfluence bench ekfac': see bench.EKFAC.
func runBenchEKFAC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench ekfac", stderr)
	dim := fs.Int("dim", 2048, "layer size: d_in = d_out")
	tokens := fs.Int("tokens", 64, "token rows per example")
	nFit := fs.Int("fit", 32, "fit examples")
	nQuery := fs.Int("queries", 8, "query examples")
	nTrain := fs.Int("train", 32, "training examples scored")
	chunk := fs.Int("chunk", 8, "examples per fit batch")
	backend := fs.String("backend", "auto", "backend: auto, cpu or openblas")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dim < 2 || *tokens < 1 || *nFit < 1 || *nQuery < 1 || *nTrain < 1 || *chunk < 1 {
		return fmt.Errorf("%w: bench ekfac: sizes must be positive", errUsage)
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	res, err := bench.EKFAC(ctx, bench.EKFACOptions{Backend: be, Dim: *dim, Tokens: *tokens,
		Fit: *nFit, Queries: *nQuery, Train: *nTrain, Chunk: *chunk, Progress: stderr})
	if err != nil {
		return err
	}
	return printBench(stdout, *asJSON, res)
}
