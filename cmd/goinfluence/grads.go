package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/progress"
	"github.com/goinfluence/goinfluence/models"
)

func runGrads(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grads", stderr)
	ckpt := fs.String("checkpoint", "", "model checkpoint written by 'goinfluence train' (required)")
	dataset := fs.String("dataset", "", "data set the model was trained on: digits, breast-cancer or mnist (required)")
	split := fs.String("split", "", "examples: train, test or all (training rows, then test rows) (required)")
	labels := fs.String("labels", "true", "labels of the loss: true, or sampled from the model (for curvature fits)")
	sampleSeed := fs.Uint64("sample-seed", 0, "seed of the sampled labels")
	splitSeed := fs.Uint64("split-seed", 0, "seed of the 80/20 train/test split, as given to train")
	first := fs.Int("first", 0, "only the first `N` examples of the split (default all)")
	dtype := fs.String("dtype", "f32", "element type of the file: f32, f64, f16 or bf16")
	out := fs.String("out", "", "write the gradients to this safetensors file (required)")
	probsOut := fs.String("probs-out", "", "also write p(y) of each example's true label (probs F64 [n], ids I64 [n]) to this file: TRAK's weights for 'store score --hessian trak --trak-probs'")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *out == "":
		return fmt.Errorf("%w: grads: --out is required", errUsage)
	case *ckpt == "":
		return fmt.Errorf("%w: grads: --checkpoint is required", errUsage)
	case *split == "":
		return fmt.Errorf("%w: grads: --split is required (train, test or all)", errUsage)
	case *split != "train" && *split != "test" && *split != "all":
		return fmt.Errorf("%w: grads: --split %q: want train, test or all", errUsage, *split)
	case *labels != "true" && *labels != "sampled":
		return fmt.Errorf("%w: grads: --labels %q: want true or sampled", errUsage, *labels)
	}
	outputs := append(paths("--out", *out), paths("--probs-out", *probsOut)...)
	if err := checkOutputs("grads", outputs, paths("--checkpoint", *ckpt)); err != nil {
		return err
	}
	dt := gradients.DType(strings.ToUpper(*dtype))
	switch dt {
	case gradients.F32, gradients.F64, gradients.F16, gradients.BF16:
	default:
		return fmt.Errorf("%w: grads: --dtype %q: want f32, f64, f16 or bf16", errUsage, *dtype)
	}
	limit := isSet(fs, "first")
	if limit && *first < 1 {
		return fmt.Errorf("%w: grads: --first %d must be at least 1", errUsage, *first)
	}
	train, test, err := prepareData(ctx, *dataset, *splitSeed)
	if err != nil {
		return err
	}
	prog := progress.New(stderr)
	m, err := models.Load(*ckpt)
	if err != nil {
		return err
	}
	if err := checkProvenance(*ckpt, train, test, *dataset, *splitSeed, stderr); err != nil {
		return err
	}
	prog.Stage(fmt.Sprintf("loaded %s from %s", models.Describe(m), *ckpt))

	d := train
	switch *split {
	case "test":
		d = test
	case "all":
		d = datasets.Concat(train, test)
	}
	if limit && *first > d.Len() {
		return fmt.Errorf("%w: grads: --first %d, but the %s split of %s has %d examples",
			errUsage, *first, *split, d.Name, d.Len())
	}
	opt := models.GradOptions{Seed: *sampleSeed, First: *first, IDs: d.Index, Probs: *probsOut != ""}
	if *labels == "sampled" {
		opt.Labels = models.SampledLabels
	}
	// A checkpoint of another data set, or a split of the wrong width, shows
	// up here as a feature-count or label-range error.
	b, probs, err := models.ExampleGradients(ctx, m, d.X, d.Y, opt)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("grads: checkpoint %s does not fit --dataset %s: %w", *ckpt, d.Name, err)
	}
	meta := map[string]string{
		"checkpoint": *ckpt,
		"model":      m.Kind(),
		"dataset":    d.Name,
		"split":      *split,
		"split_seed": strconv.FormatUint(*splitSeed, 10),
	}
	pm := maps.Clone(meta) // the labels of the loss do not apply to p(y)
	meta["labels"] = *labels
	if *labels == "sampled" {
		meta["sample_seed"] = strconv.FormatUint(*sampleSeed, 10)
	}
	if err := gradients.WriteFile(*out, b, dt, meta); err != nil {
		return err
	}
	prog.Stage(fmt.Sprintf("wrote %s: %d %s examples of %s, %s labels, %d parameters, %s",
		*out, b.N, *split, d.Name, *labels, b.Dim(), dt))
	if *probsOut != "" {
		if err := influence.WriteProbs(*probsOut, b.IDs, probs, pm); err != nil {
			return err
		}
		prog.Stage(fmt.Sprintf("wrote %s: p(y) of the true labels of %d examples", *probsOut, len(probs)))
	}
	return nil
}

// checkProvenance refuses a checkpoint whose recorded training data are not
// the data set and split the flags ask for, naming the flag that differs. A
// checkpoint without a record (from before it, or saved by a library user)
// is accepted with a warning.
func checkProvenance(ckpt string, train, test *datasets.Dataset, dataset string, splitSeed uint64, stderr io.Writer) error {
	meta, err := models.ReadMetadata(ckpt)
	if err != nil {
		return err
	}
	want, err := datasets.SplitProvenance(train, test, splitSeed)
	if err != nil {
		return fmt.Errorf("grads: %w", err)
	}
	var perr *datasets.ProvenanceError
	err = datasets.CheckProvenance(meta, want)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, datasets.ErrNoProvenance):
		fmt.Fprintf(stderr, "grads: warning: checkpoint %s records no training data (saved before provenance records, or not by 'goinfluence train'); cannot check that --dataset %s --split-seed %d are the data it was trained on\n",
			ckpt, dataset, splitSeed)
		return nil
	case !errors.As(err, &perr):
		return fmt.Errorf("grads: checkpoint %s: %w", ckpt, err)
	}
	have := perr.Have
	var asks string
	switch {
	case have.Dataset != want.Dataset:
		asks = fmt.Sprintf("--dataset %s asks for another data set", want.Dataset)
	case have.SplitSeed != want.SplitSeed:
		asks = fmt.Sprintf("--split-seed %d asks for another split", want.SplitSeed)
	case have.Features != want.Features:
		asks = fmt.Sprintf("--dataset %s has %d features, the checkpoint's data %d", want.Dataset, want.Features, have.Features)
	default:
		asks = "this build prepares it otherwise: " + strings.Join(have.Differences(want), ", ")
	}
	return fmt.Errorf("grads: checkpoint %s was trained on %s; %s", ckpt, have, asks)
}
