package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/goinfluence/goinfluence/eval"
	"github.com/goinfluence/goinfluence/internal/progress"
	"github.com/goinfluence/goinfluence/models"
)

// taskFlags are the flags that pick and train the model of an evaluation.
type taskFlags struct {
	dataset, model, cache, mnistDir *string
	l2                              *float64
	seed                            *uint64
	nTrain, nTest, workers          *int
	noCache                         *bool
}

func addTaskFlags(fs *flag.FlagSet, dataset string) *taskFlags {
	return &taskFlags{
		dataset:  fs.String("dataset", dataset, "data set: breast-cancer, digits or mnist (5000/500, fetched at run time with the go command)"),
		model:    fs.String("model", "lr", "model: lr (logistic/softmax regression trained to its optimum) or mlp (ReLU MLP trained by Adam)"),
		l2:       fs.Float64("l2", 0, "L2 strength λ on the mean loss (0: the default of the data set and model)"),
		seed:     fs.Uint64("seed", 1, "seed of the split of the built-in data sets, the MLP's initialisation and minibatches"),
		nTrain:   fs.Int("n-train", 0, "keep only the first N training examples (0: all)"),
		nTest:    fs.Int("n-test", 0, "keep only the first N test examples (0: all)"),
		workers:  fs.Int("workers", 0, "models retrained in parallel (0: GOMAXPROCS); results do not depend on it"),
		cache:    fs.String("cache", "", "cache directory for trained models and ground truths (default $GOINFLUENCE_CACHE or the user cache directory)"),
		noCache:  fs.Bool("no-cache", false, "do not read or write the cache"),
		mnistDir: fs.String("mnist-dir", "", "directory with mnist_train.csv and mnist_test.csv instead of downloading them"),
	}
}

// spec returns the task the flags name; progress receives its stages.
func (f *taskFlags) spec(p *progress.Reporter) (eval.TaskSpec, error) {
	if *f.nTrain < 0 || *f.nTest < 0 || *f.workers < 0 {
		return eval.TaskSpec{}, fmt.Errorf("%w: --n-train, --n-test and --workers must be ≥ 0", errUsage)
	}
	return eval.TaskSpec{
		Dataset: *f.dataset, Model: *f.model, L2: *f.l2, Seed: *f.seed, NTrain: *f.nTrain, NTest: *f.nTest,
		TaskOptions: eval.TaskOptions{CacheDir: *f.cache, NoCache: *f.noCache, Workers: *f.workers, MNISTDir: *f.mnistDir, Progress: p.Stages},
	}, nil
}

// protocolFlags are the parameters of the ground truths and the methods.
type protocolFlags struct {
	output, damping                           *string
	subsets, seeds, removals, loGraK, trakDim *int
	selfMax, iterMax                          *int
	cgMaxIter, lissaDepth, lissaBatch         *int
	arnoldiIter, arnoldiTopK                  *int
	cgTol, lissaScale                         *float64
	cgTruncate                                *bool
	alpha, noise                              *float64
	trakDamping                               *string
	subsetSeed, removalSeed, noiseSeed, mSeed *uint64
}

func addProtocolFlags(fs *flag.FlagSet) *protocolFlags {
	d := eval.DefaultMethodConfig()
	return &protocolFlags{
		output:      fs.String("output", string(models.Margin), "measured output f of LDS and LOO: margin (log-odds of the true class), logit-margin or loss (−loss)"),
		subsets:     fs.Int("subsets", eval.DefaultSubsets, "LDS: number m of random training subsets retrained on"),
		alpha:       fs.Float64("alpha", eval.DefaultAlpha, "LDS: subset size as a fraction of the training set"),
		seeds:       fs.Int("seeds", 1, "LDS: trainings averaged per subset (mlp; a convex model has one optimum)"),
		subsetSeed:  fs.Uint64("subset-seed", 0, "LDS: seed drawing the subsets"),
		removals:    fs.Int("removals", eval.DefaultRemovals, "LOO: random training examples removed one at a time"),
		removalSeed: fs.Uint64("removal-seed", 0, "LOO: seed drawing the removed examples"),
		noise:       fs.Float64("noise", eval.DefaultNoise, "AUC: fraction of training labels flipped"),
		noiseSeed:   fs.Uint64("noise-seed", 0, "AUC: seed choosing the flipped labels"),
		damping:     fs.String("damping", d.Damping, "damping of diagonal, K-FAC, EK-FAC and LoGra: l2 (the model's λ), heuristic (0.1 × mean Λ) or a number"),
		loGraK:      fs.Int("logra-k", d.LoGraK, "LoGra: k_in = k_out of the Kronecker projection"),
		trakDim:     fs.Int("trak-dim", d.TRAKDim, "TRAK: SJLT projection dimension per layer"),
		trakDamping: fs.String("trak-damping", "heuristic", "TRAK: damping added to ΦᵀΦ, a number > 0 or heuristic (0.1·trace/k per model)"),
		mSeed:       fs.Uint64("method-seed", 0, "seed of sampled Fisher labels and projections (0: the task seed)"),
		selfMax:     fs.Int("iterative-self-max", d.IterativeSelfMax, "CG, LiSSA: compute self-influence (AUC) only up to this many training examples"),
		iterMax:     fs.Int("iterative-max-params", d.IterativeMaxParams, "CG, LiSSA: skip models with more parameters (-1: no limit)"),
		cgTol:       fs.Float64("cg-tol", d.CGTol, "CG: relative residual each query is solved to (missing it is an error)"),
		cgMaxIter:   fs.Int("cg-max-iter", d.CGMaxIter, "CG: iterations at most"),
		cgTruncate:  fs.Bool("cg-truncate", false, "CG: use the iterate after --cg-max-iter iterations whatever its residual (truncated CG; the residuals go in the notes)"),
		lissaDepth:  fs.Int("lissa-depth", d.LiSSADepth, "LiSSA: recursion steps"),
		lissaBatch:  fs.Int("lissa-batch", d.LiSSABatch, "LiSSA: training examples sampled per step"),
		lissaScale:  fs.Float64("lissa-scale", 0, "LiSSA: scale s (0: 2 × λ_max estimated by Lanczos)"),
		arnoldiIter: fs.Int("arnoldi-iter", d.ArnoldiIter, "Arnoldi: Lanczos iterations"),
		arnoldiTopK: fs.Int("arnoldi-topk", d.ArnoldiTopK, "Arnoldi: eigenpairs kept"),
	}
}

func (f *protocolFlags) options(methods string) (eval.QualityOptions, error) {
	o, err := models.ParseOutput(*f.output)
	if err != nil {
		return eval.QualityOptions{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	keys, err := eval.ParseMethods(methods)
	if err != nil {
		return eval.QualityOptions{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return eval.QualityOptions{
		Methods: keys,
		Output:  o,
		LDS:     eval.LDSOptions{Subsets: *f.subsets, Alpha: *f.alpha, Seeds: *f.seeds, Seed: *f.subsetSeed},
		LOO:     eval.LOOTruthOptions{Removals: *f.removals, Seed: *f.removalSeed},
		AUC:     eval.AUCOptions{Fraction: *f.noise, Seed: *f.noiseSeed},
		Config: eval.MethodConfig{Damping: *f.damping, LoGraK: *f.loGraK, TRAKDim: *f.trakDim, TRAKDamping: *f.trakDamping, Seed: *f.mSeed,
			IterativeSelfMax: *f.selfMax, IterativeMaxParams: *f.iterMax,
			CGTol: *f.cgTol, CGMaxIter: *f.cgMaxIter, CGTruncate: *f.cgTruncate, LiSSADepth: *f.lissaDepth, LiSSABatch: *f.lissaBatch, LiSSAScale: *f.lissaScale,
			ArnoldiIter: *f.arnoldiIter, ArnoldiTopK: *f.arnoldiTopK},
	}, nil
}

// runValidateLDS runs `goinfluence validate lds`.
func runValidateLDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runProtocol(ctx, "lds", args, stdout, stderr)
}

// runValidateAUC runs `goinfluence validate auc`.
func runValidateAUC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runProtocol(ctx, "auc", args, stdout, stderr)
}

// runValidateQuality runs `goinfluence validate quality`.
func runValidateQuality(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runProtocol(ctx, "quality", args, stdout, stderr)
}

func runProtocol(ctx context.Context, which string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate "+which, stderr)
	dataset := "digits"
	if which == "quality" {
		dataset = "mnist"
	}
	tf := addTaskFlags(fs, dataset)
	pf := addProtocolFlags(fs)
	defMethod := "exact"
	if which == "quality" {
		defMethod = "all"
	}
	methods := fs.String("method", defMethod, "comma-separated methods: "+eval.MethodKeys()+", or all (every method but the store-backed variants *-f16, *-i8, which are named)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	markdown := fs.Bool("markdown", false, "print the Markdown table (quality)")
	plotPath := fs.String("plot", "", "write a PNG plot: the LDS scatter of the first method for a typical test point (lds), the ROC curves (auc)")
	plotDir := fs.String("plot-dir", "", "quality: write the LDS scatter and ROC plots into this directory")
	plotMethod := fs.String("plot-method", "", "the method whose LDS scatter is plotted (default exact, else ekfac, else the first)")
	mdOut := fs.String("out-md", "", "quality: also write the Markdown table to this file")
	jsonOut := fs.String("out-json", "", "quality: also write the JSON result to this file")
	noLOO := fs.Bool("no-loo", false, "quality: leave out the LOO column (and its retraining)")
	noLDS := fs.Bool("no-lds", false, "quality: leave out the LDS column")
	noAUC := fs.Bool("no-auc", false, "quality: leave out the AUC column")
	if err := parse(fs, args); err != nil {
		return err
	}
	outputs := append(paths("--plot", *plotPath), append(paths("--out-md", *mdOut), paths("--out-json", *jsonOut)...)...)
	if err := checkOutputs("validate "+which, outputs, nil); err != nil {
		return err
	}
	opt, err := pf.options(*methods)
	if err != nil {
		return err
	}
	opt.PlotMethod = *plotMethod
	switch which {
	case "lds":
		opt.NoLOO, opt.NoAUC, opt.LDSPlot = true, true, *plotPath
	case "auc":
		opt.NoLOO, opt.NoLDS, opt.ROCPlot = true, true, *plotPath
	case "quality":
		opt.PlotDir, opt.NoLOO, opt.NoLDS, opt.NoAUC = *plotDir, *noLOO, *noLDS, *noAUC
	}
	p := progress.New(stderr)
	spec, err := tf.spec(p)
	if err != nil {
		return err
	}
	res, err := eval.RunQuality(ctx, eval.QualityRun{Task: spec, Quality: opt, MarkdownFile: *mdOut, JSONFile: *jsonOut})
	p.Done()
	switch {
	case err != nil:
		return err
	case *asJSON:
		return json.NewEncoder(stdout).Encode(res)
	case *markdown || which == "quality":
		_, err := fmt.Fprint(stdout, res.Markdown())
		return err
	}
	if err := res.WriteText(stdout, eval.Protocol(which)); err != nil {
		return err
	}
	if failed := res.Failed(); len(failed) > 0 {
		return fmt.Errorf("method(s) failed: %s", strings.Join(failed, ", "))
	}
	return nil
}
