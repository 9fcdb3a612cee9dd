package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/goinfluence/goinfluence/eval"
)

func runValidateCurvature(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate curvature", stderr)
	tests := fs.Int("test-points", eval.CurvatureTestPoints, "test points to explain")
	seed := fs.Uint64("seed", 0, "seed for the train/test split, the initial weights, the minibatch shuffle and the choice of test points")
	samples := fs.Int("samples", 0, "fit the approximations on the true Fisher at this many labels drawn from the model per training example (0: its exact expectation over labels)")
	sampleSeed := fs.Uint64("sample-seed", 0, "seed for the labels drawn with --samples")
	epochs := fs.Int("epochs", eval.CurvatureEpochs, "passes of Adam over the training data")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	markdown := fs.Bool("markdown", false, "print Markdown tables")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tests < 1 || *epochs < 1 || *samples < 0 {
		return fmt.Errorf("%w: validate curvature: --test-points and --epochs must be at least 1, --samples at least 0", errUsage)
	}
	progress := newProgress(stderr)
	res, err := eval.CurvatureAccuracy(ctx, eval.CurvatureOptions{
		Seed: *seed, TestPoints: *tests, Epochs: *epochs,
		Samples: *samples, SampleSeed: *sampleSeed,
		Progress: progress.stage,
	})
	progress.done()
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return json.NewEncoder(stdout).Encode(res)
	case *markdown:
		_, err := fmt.Fprint(stdout, res.Markdown())
		return err
	}
	fitted := "true Fisher in expectation"
	if res.Fisher == "sampled" {
		fitted = fmt.Sprintf("true Fisher, %d sampled label(s) per example", res.Samples)
	}
	fmt.Fprintf(stdout, "%s (%d parameters, λ = %g) on %s: %d train, %d test, seed %d; train accuracy %.2f%%, test accuracy %.2f%%\n",
		res.Model, res.Params, res.L2, res.Dataset, res.NTrain, res.NTest, res.Seed, 100*res.TrainAccuracy, 100*res.TestAccuracy)
	fmt.Fprintf(stdout, "approximations fitted on the %s; correlations with exact influence, mean over %d test points (backend %s, %.1f s)\n",
		fitted, len(res.TestIndex), res.Backend, res.Seconds)
	fmt.Fprintf(stdout, "%-9s %8s %-6s %9s %9s %9s %9s %9s\n",
		"method", "δ", "GGN", "Pearson", "Spearman", "min P", "pooled P", "pooled S")
	for _, r := range res.Rows {
		fmt.Fprintf(stdout, "%-9s %8g %-6s %9.4f %9.4f %9.4f %9.4f %9.4f\n",
			r.Method, r.Damping, r.Reference, r.Pearson, r.Spearman, r.MinPearson, r.PooledPearson, r.PooledSpearman)
	}
	return nil
}

func runValidateProjection(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate projection", stderr)
	tests := fs.Int("test-points", eval.CurvatureTestPoints, "test points to explain")
	seed := fs.Uint64("seed", 0, "seed for the split, the model and the choice of test points")
	projSeed := fs.Uint64("projection-seed", 0, "seed of the Kronecker projections")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	progress := newProgress(stderr)
	res, err := eval.ProjectionAccuracy(ctx, eval.CurvatureOptions{TestPoints: *tests, Seed: *seed, Progress: progress.stage},
		[]int{16, 32, 64}, *projSeed)
	progress.done()
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprint(stdout, res.Markdown())
	return nil
}
