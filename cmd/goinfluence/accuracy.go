package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/eval"
	"github.com/goinfluence/goinfluence/internal/progress"
	"github.com/goinfluence/goinfluence/models"
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
	prog := progress.New(stderr)
	res, err := eval.CurvatureAccuracy(ctx, eval.CurvatureOptions{
		Seed: *seed, TestPoints: *tests, Epochs: *epochs,
		Samples: *samples, SampleSeed: *sampleSeed,
		Progress: prog.Stages,
	})
	prog.Done()
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
	return res.WriteText(stdout)
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
	prog := progress.New(stderr)
	res, err := eval.ProjectionAccuracy(ctx, eval.CurvatureOptions{TestPoints: *tests, Seed: *seed, Progress: prog.Stages},
		nil, *projSeed)
	prog.Done()
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.WriteText(stdout)
}

// runValidateRank is 'goinfluence validate rank': see eval.RankAccuracy.
func runValidateRank(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate rank", stderr)
	tf := addTaskFlags(fs, "digits")
	if m := fs.Lookup("model"); m != nil { // an MLP: truncating an lr's one-layer gradient is not the question
		m.DefValue = "mlp"
		m.Usage = "model: mlp (the only one: query ranks of a ReLU MLP trained by Adam)"
		*tf.model = "mlp"
	}
	ranks := fs.String("ranks", "8,16,32,64", "comma-separated query ranks r ≥ 1")
	output := fs.String("output", string(models.Margin), "query output f: margin, logit-margin or loss (−loss)")
	damping := fs.String("damping", eval.DefaultMethodConfig().Damping, "EK-FAC damping: l2 (the model's λ), heuristic (0.1 × mean Λ) or a number")
	precision := fs.String("precision", "f64", "scoring precision: f64 or f32")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tf.model != "mlp" {
		return fmt.Errorf("%w: validate rank: --model %q: want mlp", errUsage, *tf.model)
	}
	rs, err := parseWidths(*ranks)
	if err != nil || len(rs) == 0 {
		return fmt.Errorf("%w: validate rank: --ranks %q: want ranks ≥ 1, comma-separated", errUsage, *ranks)
	}
	out, err := models.ParseOutput(*output)
	if err != nil {
		return fmt.Errorf("%w: validate rank: %v", errUsage, err)
	}
	prec, err := ekfac.ParsePrecision(*precision)
	if err != nil {
		return fmt.Errorf("%w: validate rank: %v", errUsage, err)
	}
	prog := progress.New(stderr)
	defer prog.Done()
	spec, err := tf.spec(prog)
	if err != nil {
		return err
	}
	task, err := eval.OpenTask(ctx, spec)
	if err != nil {
		return err
	}
	res, err := eval.RankAccuracy(ctx, task, eval.RankOptions{Ranks: rs, Output: out, Precision: prec,
		Config: eval.MethodConfig{Damping: *damping}})
	prog.Done()
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.WriteText(stdout)
}
