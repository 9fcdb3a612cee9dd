package models

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// Model kinds accepted by TrainOptions.Kind, as Model.Kind names them.
const (
	KindLogistic = "logistic"
	KindSoftmax  = "softmax"
	KindMLP      = "mlp"
)

// TrainOptions configures Train: which model to build and how to fit it.
// The regressions are fitted by Newton's method, which needs no epochs, step
// size or seed: they are convex and it converges to their unique optimum.
// The MLP is fitted by Adam, and only it uses Hidden, Activation, Epochs,
// BatchSize, LR, Seed and CheckpointEvery.
type TrainOptions struct {
	Kind       string     // KindLogistic (two classes), KindSoftmax or KindMLP
	Hidden     []int      // mlp: hidden-layer widths, possibly none
	Activation Activation // mlp: hidden-layer nonlinearity
	L2         float64    // L2 strength λ on the mean loss; finite and ≥ 0

	Epochs    int     // mlp: passes of Adam over the data; ≥ 1
	BatchSize int     // mlp: examples per Adam step; ≥ 1
	LR        float64 // mlp: Adam step size; positive and finite
	Seed      uint64  // mlp: seed of the initial weights and of the shuffle

	// Backend runs the Newton fit of the regressions; nil means
	// linalg.Auto's choice.
	Backend linalg.Backend

	// CheckpointEvery, when positive, calls Checkpoint after every
	// CheckpointEvery-th epoch of Adam with the model as it stands, so that
	// TracIn-CP and TRAK can use the trajectory. Setting it for a
	// regression is an error: Newton's method has no epochs.
	CheckpointEvery int
	Checkpoint      func(epoch int, m Model) error

	// Start, if not nil, is called with the built model just before
	// fitting starts, for instance to describe it to the user.
	Start func(m Model)
	// Progress is told after every Newton step or Adam epoch (see
	// NewtonOptions and AdamOptions).
	Progress progress.Func
}

// TrainResult reports the trained model and how fitting ended.
type TrainResult struct {
	Model Model
	// Newton holds the end of the Newton fit of a regression; zero for
	// the MLP.
	Newton NewtonResult
	// Checkpoints lists the epochs after which Checkpoint was called.
	Checkpoints []int
}

// Train builds a model of the kind opt asks for, with features inputs and
// classes outputs, and fits it to (x, y). It is the whole of
// 'goinfluence train' but for loading the data and saving the result; with
// the same options and data it gives the same parameters bit for bit.
//
// Invalid options are reported before any work, as errors naming the field.
func Train(ctx context.Context, x *linalg.Dense64, y []int, classes int, opt TrainOptions) (*TrainResult, error) {
	if x == nil {
		return nil, fmt.Errorf("models: train: nil data")
	}
	m, err := NewModel(x.Cols, classes, opt)
	if err != nil {
		return nil, err
	}
	if opt.Kind != KindMLP && opt.CheckpointEvery != 0 {
		return nil, fmt.Errorf("models: train: CheckpointEvery %d needs Kind %s (Newton's method has no epochs)", opt.CheckpointEvery, KindMLP)
	}
	res := &TrainResult{Model: m}
	if opt.Kind != KindMLP {
		be := opt.Backend
		if be == nil {
			if be, err = linalg.Auto(); err != nil {
				return nil, fmt.Errorf("models: train: %w", err)
			}
		}
		if err := SetBackend(m, be); err != nil {
			return nil, err
		}
		if opt.Start != nil {
			opt.Start(m)
		}
		res.Newton, err = FitNewton(ctx, m, x, y, nil, NewtonOptions{Backend: be, Progress: opt.Progress})
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	adam := AdamOptions{Epochs: opt.Epochs, BatchSize: opt.BatchSize, LR: opt.LR, Seed: opt.Seed, Progress: opt.Progress}
	if opt.CheckpointEvery > 0 && opt.Checkpoint != nil {
		adam.EpochEnd = func(epoch int) error {
			if epoch%opt.CheckpointEvery != 0 {
				return nil
			}
			res.Checkpoints = append(res.Checkpoints, epoch)
			return opt.Checkpoint(epoch, m)
		}
	}
	if opt.Start != nil {
		opt.Start(m)
	}
	if err := TrainAdam(ctx, m, x, y, nil, adam); err != nil {
		return nil, err
	}
	return res, nil
}

// NewModel validates opt and returns the untrained model it describes, with
// features inputs and classes outputs; an MLP starts from weights drawn
// with opt.Seed. Errors name the offending field of TrainOptions.
func NewModel(features, classes int, opt TrainOptions) (Model, error) {
	if math.IsNaN(opt.L2) || math.IsInf(opt.L2, 0) || opt.L2 < 0 {
		return nil, fmt.Errorf("models: train: L2 %v must be finite and non-negative", opt.L2)
	}
	switch opt.Kind {
	case KindLogistic:
		if classes != 2 {
			return nil, fmt.Errorf("models: train: Kind %s is binary, but the data have %d classes", KindLogistic, classes)
		}
		return NewLogistic(features, opt.L2), nil
	case KindSoftmax:
		return NewSoftmax(features, classes, opt.L2), nil
	case KindMLP:
	case "":
		return nil, fmt.Errorf("models: train: Kind is empty (want %s, %s or %s)", KindMLP, KindSoftmax, KindLogistic)
	default:
		return nil, fmt.Errorf("models: train: Kind %q: want %s, %s or %s", opt.Kind, KindMLP, KindSoftmax, KindLogistic)
	}
	switch {
	case opt.Epochs < 1:
		return nil, fmt.Errorf("models: train: Epochs %d must be at least 1", opt.Epochs)
	case opt.BatchSize < 1:
		return nil, fmt.Errorf("models: train: BatchSize %d must be at least 1", opt.BatchSize)
	case !(opt.LR > 0) || math.IsInf(opt.LR, 1):
		return nil, fmt.Errorf("models: train: LR %v must be positive and finite", opt.LR)
	case opt.CheckpointEvery < 0:
		return nil, fmt.Errorf("models: train: CheckpointEvery %d must be ≥ 0", opt.CheckpointEvery)
	case opt.CheckpointEvery > 0 && opt.Checkpoint == nil:
		return nil, fmt.Errorf("models: train: CheckpointEvery %d without a Checkpoint function", opt.CheckpointEvery)
	}
	for i, w := range opt.Hidden {
		if w < 1 {
			return nil, fmt.Errorf("models: train: Hidden[%d] = %d must be at least 1", i, w)
		}
	}
	if !opt.Activation.valid() {
		return nil, fmt.Errorf("models: train: Activation %d: want ReLU or Tanh", int(opt.Activation))
	}
	sizes := append(append([]int{features}, opt.Hidden...), classes)
	return NewMLP(sizes, opt.Activation, opt.L2, opt.Seed)
}

// Describe names a model with its shape, e.g. "mlp 64-32-10 relu" or
// "softmax 64-10", as the CLI reports it.
func Describe(m Model) string {
	if mlp, ok := m.(*MLP); ok {
		w := make([]string, len(mlp.Sizes()))
		for i, s := range mlp.Sizes() {
			w[i] = strconv.Itoa(s)
		}
		return fmt.Sprintf("mlp %s %v", strings.Join(w, "-"), mlp.Activation())
	}
	return fmt.Sprintf("%s %d-%d", m.Kind(), m.Layers()[0].DIn-1, m.Classes())
}
