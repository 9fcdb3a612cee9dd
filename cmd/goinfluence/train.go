package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/internal/progress"
	"github.com/goinfluence/goinfluence/models"
)

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("train", stderr)
	dataset := fs.String("dataset", "", "data set: digits, breast-cancer or mnist (MNIST is fetched through the Go module proxy the first time; required)")
	kind := fs.String("model", "", "model: mlp, softmax or logistic (required; logistic needs two classes)")
	hidden := fs.String("hidden", "32", "mlp: comma-separated hidden-layer widths, e.g. 32,16 (empty: none)")
	activation := fs.String("activation", "relu", "mlp: hidden-layer nonlinearity, relu or tanh")
	l2 := fs.Float64("l2", 1e-3, "L2 strength λ on the mean loss")
	epochs := fs.Int("epochs", 200, "mlp: passes of Adam over the training data")
	batch := fs.Int("batch", 64, "mlp: examples per Adam step")
	lr := fs.Float64("lr", 1e-2, "mlp: Adam step size")
	seed := fs.Uint64("seed", 0, "mlp: seed of the initial weights and of the minibatch shuffle")
	splitSeed := fs.Uint64("split-seed", 0, "seed of the 80/20 train/test split (mnist comes split 5000/500)")
	out := fs.String("out", "", "write the checkpoint to this safetensors file (required)")
	every := fs.Int("checkpoint-every", 0, "mlp: also save a checkpoint every `E` epochs, as OUT-epochNNNN.safetensors next to --out (for TracIn-CP and TRAK)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: train: --out is required", errUsage)
	}
	if err := checkOutputs("train", paths("--out", *out), nil); err != nil {
		return err
	}
	if math.IsNaN(*l2) || math.IsInf(*l2, 0) || *l2 < 0 {
		return fmt.Errorf("%w: train: --l2 %v must be finite and non-negative", errUsage, *l2)
	}
	opt := models.TrainOptions{Kind: *kind, L2: *l2, Epochs: *epochs, BatchSize: *batch, LR: *lr, Seed: *seed, CheckpointEvery: *every}
	switch *kind {
	case models.KindLogistic, models.KindSoftmax:
		if *every != 0 {
			return fmt.Errorf("%w: train: --checkpoint-every needs --model mlp (Newton's method has no epochs)", errUsage)
		}
	case models.KindMLP:
		if *epochs < 1 || *batch < 1 {
			return fmt.Errorf("%w: train: --epochs and --batch must be at least 1", errUsage)
		}
		if *every < 0 {
			return fmt.Errorf("%w: train: --checkpoint-every %d must be ≥ 0", errUsage, *every)
		}
		if !(*lr > 0) || math.IsInf(*lr, 1) {
			return fmt.Errorf("%w: train: --lr %v must be positive and finite", errUsage, *lr)
		}
		var err error
		if opt.Hidden, err = parseWidths(*hidden); err != nil {
			return fmt.Errorf("%w: train: --hidden: %v", errUsage, err)
		}
		if opt.Activation, err = models.ParseActivation(*activation); err != nil {
			return fmt.Errorf("%w: train: --activation %q: want relu or tanh", errUsage, *activation)
		}
	case "":
		return fmt.Errorf("%w: train: --model is required (mlp, softmax or logistic)", errUsage)
	default:
		return fmt.Errorf("%w: train: --model %q: want mlp, softmax or logistic", errUsage, *kind)
	}
	train, test, err := prepareData(ctx, *dataset, *splitSeed)
	if err != nil {
		return err
	}
	if *kind == models.KindLogistic && train.Classes != 2 {
		return fmt.Errorf("%w: train: --model logistic is binary, but %s has %d classes (use softmax or mlp)",
			errUsage, train.Name, train.Classes)
	}
	// Every checkpoint records its training data, so that grads can refuse
	// another data set or split.
	prov, err := datasets.SplitProvenance(train, test, *splitSeed)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	provMeta := prov.Metadata()

	prog := progress.New(stderr)
	var saved []string
	opt.Checkpoint = func(epoch int, m models.Model) error {
		path := epochCheckpoint(*out, epoch)
		saved = append(saved, path)
		return models.SaveWithMetadata(path, m, provMeta)
	}
	var tick func(done, total int)
	opt.Progress = func(_ string, epoch, epochs int) {
		if tick != nil {
			tick(epoch, epochs)
		}
	}
	opt.Start = func(m models.Model) {
		if *kind == models.KindMLP {
			tick = prog.Counter(fmt.Sprintf("training %s on %d examples with Adam", models.Describe(m), train.Len()))
		} else {
			prog.Stage(fmt.Sprintf("training %s on %d examples by Newton's method", models.Describe(m), train.Len()))
		}
	}
	res, err := models.Train(ctx, train.X, train.Y, train.Classes, opt)
	prog.Done()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	m := res.Model
	if *kind != models.KindMLP {
		prog.Stage(fmt.Sprintf("converged after %d Newton steps, ‖∇R‖ = %.2g", res.Newton.Iterations, res.Newton.GradNorm))
	} else if len(saved) > 0 {
		// TracIn-CP weighs checkpoint c by its learning rate η_c; Adam's
		// step size is constant here.
		fmt.Fprintf(stdout, "%d checkpoints during training (Adam step size η = %g at each): %s\n",
			len(saved), *lr, strings.Join(saved, ", "))
	}
	if err := models.SaveWithMetadata(*out, m, provMeta); err != nil {
		return err
	}
	prog.Stage("wrote " + *out)

	// The checkpoint records its data and split, and grads refuses others;
	// say which flags give them.
	fmt.Fprintf(stdout, "%s (λ = %g) on %s, split seed %d: %d training, %d test examples\n",
		models.Describe(m), m.L2(), train.Name, *splitSeed, train.Len(), test.Len())
	fmt.Fprintf(stdout, "train accuracy %.2f%%, test accuracy %.2f%%, objective %.6g\n",
		100*models.Accuracy(m, train.X, train.Y), 100*models.Accuracy(m, test.X, test.Y),
		m.Objective(train.X, train.Y, nil, nil))
	fmt.Fprintf(stdout, "checkpoint %s: use with --dataset %s --split-seed %d\n", *out, train.Name, *splitSeed)
	return nil
}

// epochCheckpoint names the checkpoint saved after an epoch: out without
// its .safetensors extension, then -epochNNNN.safetensors.
func epochCheckpoint(out string, epoch int) string {
	return fmt.Sprintf("%s-epoch%04d.safetensors", strings.TrimSuffix(out, ".safetensors"), epoch)
}

// prepareData returns the training and test parts of a data set, prepared
// exactly as validate prepares them (datasets.LoadSplit), so that train,
// grads and validate see the same rows for the same split seed.
func prepareData(ctx context.Context, name string, splitSeed uint64) (train, test *datasets.Dataset, err error) {
	switch name {
	case "digits", "breast-cancer", "mnist":
	case "":
		return nil, nil, fmt.Errorf("%w: --dataset is required (digits, breast-cancer or mnist)", errUsage)
	default:
		return nil, nil, fmt.Errorf("%w: --dataset: unknown dataset %q (have digits, breast-cancer, mnist)", errUsage, name)
	}
	return datasets.LoadSplit(ctx, name, datasets.SplitOptions{Seed: splitSeed})
}

// parseWidths parses comma-separated positive layer widths; "" means none.
func parseWidths(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var v []int
	for _, f := range strings.Split(s, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || w < 1 || w > 1<<20 {
			return nil, fmt.Errorf("%q is not a width in [1, %d]", f, 1<<20)
		}
		v = append(v, w)
	}
	return v, nil
}

// isSet reports whether the flag was given on the command line, to tell an
// explicit value from the default.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
