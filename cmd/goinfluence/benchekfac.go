package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/goinfluence/goinfluence/bench"
)

// runBenchEKFAC is 'goinfluence bench ekfac': see bench.EKFAC. A size left
// at 0 takes the model's default.
func runBenchEKFAC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench ekfac", stderr)
	model := fs.String("model", bench.ModelLayer, "model: layer (one synthetic layer with tokens) or mlp (an MLP with biases, no token axis)")
	layers := fs.String("layers", "784,512,512,10", "mlp: widths, input first")
	dim := fs.Int("dim", 2048, "layer size: d_in = d_out (mlp: the yardsticks' n)")
	tokens := fs.Int("tokens", 64, "token rows per example (layer only)")
	nFit := fs.Int("fit", 0, "fit examples (0: 32 for layer; the training examples for mlp)")
	nQuery := fs.Int("queries", 0, "query examples (0: 8 for layer, 500 for mlp)")
	nTrain := fs.Int("train", 0, "training examples scored (0: 32 for layer, 5000 for mlp)")
	chunk := fs.Int("chunk", 0, "examples per fit batch (0: as many as 64 MiB of float64 values hold, as 'goinfluence fit')")
	minTime := fs.Duration("time", time.Second, "least time measuring each yardstick (Sgemm, Dgemm)")
	precision := fs.String("precision", bench.PrecisionBoth, "precision of the fit and scoring stages: f64, f32 or both (each timed end to end)")
	backend := fs.String("backend", "auto", "backend: auto, cpu or openblas")
	asJSON := fs.Bool("json", false, "print JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed stages (not the yardsticks or the gradients' making) to `file`")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dim < 2 || *tokens < 1 || *nFit < 0 || *nQuery < 0 || *nTrain < 0 || *chunk < 0 {
		return fmt.Errorf("%w: bench ekfac: sizes must be positive", errUsage)
	}
	opt := bench.EKFACOptions{Model: *model, Dim: *dim, Tokens: *tokens,
		Fit: *nFit, Queries: *nQuery, Train: *nTrain, Chunk: *chunk,
		Precision: *precision, YardstickTime: *minTime, Progress: stderr}
	switch *precision {
	case bench.PrecisionF64, bench.PrecisionF32, bench.PrecisionBoth:
	default:
		return fmt.Errorf("%w: bench ekfac: --precision %q: want f64, f32 or both", errUsage, *precision)
	}
	switch *model {
	case bench.ModelLayer:
	case bench.ModelMLP:
		w, err := parseWidths(*layers)
		if err != nil || len(w) < 2 {
			return fmt.Errorf("%w: bench ekfac: --layers %q: want at least two widths, input first", errUsage, *layers)
		}
		opt.Layers = w
	default:
		return fmt.Errorf("%w: bench ekfac: --model %q: want layer or mlp", errUsage, *model)
	}
	if err := checkOutputs("bench ekfac", paths("--cpuprofile", *cpuProfile), nil); err != nil {
		return err
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	opt.Backend = be
	var res *bench.EKFACResult
	if err := withProfile(*cpuProfile, func(prof io.Writer) (err error) {
		opt.CPUProfile = prof
		res, err = bench.EKFAC(ctx, opt)
		return err
	}); err != nil {
		return err
	}
	return printBench(stdout, *asJSON, res)
}
