package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/goinfluence/goinfluence/eval"
	"github.com/goinfluence/goinfluence/linalg"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	queries := fs.Int("queries", 4, "test digits to explain")
	k := fs.Int("k", 3, "helpful and harmful training digits to show per test digit")
	l2 := fs.Float64("l2", 1e-2, "L2 strength λ on the mean loss")
	seed := fs.Uint64("seed", 0, "seed of the train/test split")
	pngPath := fs.String("png", "", "also write the grid of digits to this PNG file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *queries < 1 || *k < 1 {
		return fmt.Errorf("%w: demo: --queries and --k must be at least 1", errUsage)
	}
	if err := checkOutputs("demo", paths("--png", *pngPath), nil); err != nil {
		return err
	}
	start := time.Now()
	be, err := linalg.Auto()
	if err != nil {
		return err
	}
	res, err := eval.Demo(ctx, eval.DemoOptions{Queries: *queries, K: *k, L2: *l2, Seed: *seed, Backend: be})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "trained softmax regression on %d digits (λ = %g, ‖∇R‖ = %.1g, %d Newton steps, backend %s)\n",
		res.Train, res.L2, res.GradNorm, res.NewtonIterations, res.Backend)
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if *pngPath != "" {
		if err := res.WritePNG(*pngPath); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *pngPath)
	}
	fmt.Fprintf(stderr, "done in %.1f s\n", time.Since(start).Seconds())
	return nil
}
