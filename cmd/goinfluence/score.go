package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/progress"
)

func runScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("score", stderr)
	factorsPath := fs.String("factors", "", "factors file from 'goinfluence fit'")
	trainPath := fs.String("train", "", "gradient file of the training examples (true labels)")
	queryPath := fs.String("query", "", "gradient file of the query examples (true labels)")
	dampingFlag := fs.String("damping", "heuristic", "damping δ added to Λ: a number ≥ 0, or heuristic (0.1 × mean Λ per layer)")
	self := fs.Bool("self", false, "also write self-influence of the training examples (tensor self)")
	topk := fs.Int("topk", 0, "also write the K most helpful training examples per query (topk.indices, topk.scores) and the K most harmful (bottomk.*)")
	rank := fs.Int("rank", 0, "replace each query's preconditioned gradient by its rank-R SVD per layer (0: exact)")
	perLayer := fs.Bool("per-layer", false, "also write the per-layer breakdown (scores.<layer>)")
	out := fs.String("out", "", "scores file to write (safetensors)")
	dtypeFlag := fs.String("dtype", "f32", "element type of the scores written (scores, scores.<layer>, self, topk.scores, bottomk.scores): f32, or f64 for the float64 scores as computed, to the bit (twice the bytes)")
	backend := fs.String("backend", "auto", "linear-algebra backend: auto, cpu, openblas or cuda")
	precisionFlag := fs.String("precision", "f64", "pairwise products in f64 or f32 (the division by Λ + δ stays f64; f32 prints each layer's algorithm and flops to stderr; --self keeps everything f64). f64 is the default: its scores differ between backends, kernels and thread counts by float64 rounding only, far below the float32 step of the scores written, and equal the float64 reference to that step; f32 is several times faster and within 1e-4 relative")
	mem := addMemLimit(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *factorsPath == "" || *trainPath == "" || *out == "" {
		return fmt.Errorf("%w: score needs --factors, --train and --out", errUsage)
	}
	if *queryPath == "" && !*self {
		return fmt.Errorf("%w: score needs --query, or --self for self-influence only", errUsage)
	}
	if *topk < 0 || *rank < 0 {
		return fmt.Errorf("%w: score: --topk and --rank must be ≥ 0", errUsage)
	}
	if *topk > 0 && *queryPath == "" {
		return fmt.Errorf("%w: score: --topk needs --query", errUsage)
	}
	dtype, err := influence.ParseScoresDType(*dtypeFlag)
	if err != nil {
		return fmt.Errorf("%w: score: --dtype: %v", errUsage, err)
	}
	inputs := append(paths("--factors", *factorsPath), append(paths("--train", *trainPath), paths("--query", *queryPath)...)...)
	if err := checkOutputs("score", paths("--out", *out), inputs); err != nil {
		return err
	}
	damping, err := hessian.ParseDamping(*dampingFlag)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	precision, err := ekfac.ParsePrecision(*precisionFlag)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	start := time.Now()
	prog := progress.New(stderr)
	factors, err := ekfac.Load(*factorsPath)
	if err != nil {
		return err
	}
	prog.Stage("score: reading " + *trainPath)
	train, err := gradients.ReadFileLimit(*trainPath, mem.bytes())
	if err != nil {
		return withMemFlag("score", err)
	}
	if err := factors.Compatible(train); err != nil {
		return fmt.Errorf("%s: %w", *trainPath, err)
	}

	meta := map[string]string{
		"method":  string(factors.Method),
		"damping": damping.String(),
		"factors": *factorsPath,
		"train":   *trainPath,
		"query":   *queryPath,
		"backend": be.Name(),
		"sign":    influence.SignNote,
		"rank":    strconv.Itoa(*rank),
	}
	var query *gradients.Batch
	if *queryPath != "" {
		if query, err = gradients.ReadFileLimit(*queryPath, mem.bytes()); err != nil {
			return withMemFlag("score", err)
		}
		if err := factors.Compatible(query); err != nil {
			return fmt.Errorf("%s: %w", *queryPath, err)
		}
		prog.Stage(fmt.Sprintf("score: %d queries × %d training examples, %s, δ = %s", query.N, train.N, factors.Method, damping))
	}
	opt := ekfac.ScoreOptions{Damping: damping, Rank: *rank, MemoryLimit: mem.bytes(), Precision: precision}
	if precision == ekfac.F32 {
		meta["precision"] = precision.String()
		switch {
		case query == nil:
		case *self:
			prog.Stage("score: --precision f32 does not apply with --self: scoring in f64")
			meta["precision"] = ekfac.F64.String()
		default:
			printPlan(prog, factors.PairwisePlan(query, train, opt))
		}
	}
	if *self {
		prog.Stage(fmt.Sprintf("score: self-influence of %d training examples", train.N))
	}
	file, err := influence.FactorScores(ctx, be, factors, query, train, influence.FactorScoresOptions{
		ScoreOptions: opt,
		TopK:         *topk, PerLayer: *perLayer, Self: *self, DType: dtype})
	var nonFinite *influence.NonFiniteError
	switch {
	case errors.As(err, &nonFinite):
		// Scores, top-k and whatever is paid from them must not skip an
		// example whose score overflowed.
		return fmt.Errorf("score: not writing %s: %w", *out, err)
	case err != nil:
		return withMemFlag("score", err)
	}
	file.Metadata = meta
	if err := influence.WriteScores(*out, file); err != nil {
		return err
	}
	prog.Stage(fmt.Sprintf("score: wrote %s in %.1f s on %s", *out, time.Since(start).Seconds(), be.Name()))
	return nil
}

// printPlan reports the algorithm the f32 path uses for each layer, with
// the estimated flops of both (GFLOP) and of the shared rotation.
func printPlan(prog *progress.Reporter, plan []ekfac.LayerPlan) {
	for _, p := range plan {
		bil := "n/a"
		if p.Bilinear > 0 {
			bil = fmt.Sprintf("%.3g", p.Bilinear/1e9)
		}
		low := ""
		if p.Algorithm == ekfac.LowRank {
			low = fmt.Sprintf("low-rank %.3g, ", p.LowRank/1e9)
		}
		prog.Stage(fmt.Sprintf("score: f32 layer %s: %s (GFLOP: %sbilinear %s, materialise %.3g, rotation %.3g)",
			p.Layer, p.Algorithm, low, bil, p.Materialise/1e9, p.Rotation/1e9))
	}
}
