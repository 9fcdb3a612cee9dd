package models

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// AdamOptions configures TrainAdam. Zero fields take the defaults noted.
type AdamOptions struct {
	Epochs    int     // passes over the data; default 10
	BatchSize int     // examples per step; default 32, capped at N
	LR        float64 // step size; default 1e-3
	Beta1     float64 // first-moment decay; default 0.9
	Beta2     float64 // second-moment decay; default 0.999
	Eps       float64 // denominator floor; default 1e-8
	Seed      uint64  // shuffling seed
	// Progress is told after every epoch of the epoch (from 1) and
	// Epochs, with the full objective and gradient norm in the stage, which
	// costs one extra pass over the data when Progress is set.
	Progress progress.Func
	// EpochEnd, if not nil, is called after every epoch with the epoch
	// number (from 1), for instance to save a checkpoint; an error stops
	// training and is returned.
	EpochEnd func(epoch int) error
}

// SGDOptions configures TrainSGD. Zero fields take the defaults noted.
type SGDOptions struct {
	Epochs    int                   // passes over the data; default 10
	BatchSize int                   // examples per step; default 32, capped at N
	LR        float64               // step size; default 0.01
	Momentum  float64               // heavy-ball momentum in [0, 1); default 0 (plain SGD)
	Seed      uint64                // shuffling seed
	Progress  progress.Func         // as for AdamOptions
	EpochEnd  func(epoch int) error // as for AdamOptions
}

func (o *AdamOptions) defaults() error {
	if o.Epochs < 0 || o.BatchSize < 0 {
		return fmt.Errorf("models: adam: negative epochs (%d) or batch size (%d)", o.Epochs, o.BatchSize)
	}
	for _, f := range []struct {
		name string
		v    *float64
		def  float64
		max  float64 // exclusive upper bound
	}{
		{"learning rate", &o.LR, 1e-3, math.Inf(1)},
		{"beta1", &o.Beta1, 0.9, 1},
		{"beta2", &o.Beta2, 0.999, 1},
		{"eps", &o.Eps, 1e-8, math.Inf(1)},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if !(*f.v > 0 && *f.v < f.max) {
			return fmt.Errorf("models: adam: %s %v out of range", f.name, *f.v)
		}
	}
	if o.Epochs == 0 {
		o.Epochs = 10
	}
	if o.BatchSize == 0 {
		o.BatchSize = 32
	}
	return nil
}

func (o *SGDOptions) defaults() error {
	if o.Epochs < 0 || o.BatchSize < 0 {
		return fmt.Errorf("models: sgd: negative epochs (%d) or batch size (%d)", o.Epochs, o.BatchSize)
	}
	if o.LR == 0 {
		o.LR = 0.01
	}
	if !(o.LR > 0 && !math.IsInf(o.LR, 1)) {
		return fmt.Errorf("models: sgd: learning rate %v out of range", o.LR)
	}
	if !(o.Momentum >= 0 && o.Momentum < 1) {
		return fmt.Errorf("models: sgd: momentum %v outside [0, 1)", o.Momentum)
	}
	if o.Epochs == 0 {
		o.Epochs = 10
	}
	if o.BatchSize == 0 {
		o.BatchSize = 32
	}
	return nil
}

// TrainAdam minimises R(θ) of m on (x, y, w) with Adam, starting from m's
// current parameters. Each step uses the objective of a minibatch, the
// minibatch's own size taking the place of N, which keeps it an unbiased
// estimate of R. Examples are shuffled every epoch by a generator seeded by
// opt.Seed: the same seed and data give bit-identical parameters.
//
// The context is checked before every step; on cancellation TrainAdam
// returns ctx.Err() leaving m at the last completed step.
func TrainAdam(ctx context.Context, m Model, x *linalg.Dense64, y []int, w []float64, opt AdamOptions) error {
	if err := opt.defaults(); err != nil {
		return err
	}
	if err := checkTrain("adam", m, x, y, w); err != nil {
		return err
	}
	mom, vel := make([]float64, NumParams(m)), make([]float64, NumParams(m))
	t := 0
	return minibatches(ctx, "adam", m, x, y, w, opt.Epochs, opt.BatchSize, opt.Seed, opt.Progress, opt.EpochEnd, func(g []float64) {
		t++
		c1 := 1 - math.Pow(opt.Beta1, float64(t))
		c2 := 1 - math.Pow(opt.Beta2, float64(t))
		theta := m.Params()
		for i, gi := range g {
			mom[i] = opt.Beta1*mom[i] + (1-opt.Beta1)*gi
			vel[i] = opt.Beta2*vel[i] + (1-opt.Beta2)*gi*gi
			theta[i] -= opt.LR * (mom[i] / c1) / (math.Sqrt(vel[i]/c2) + opt.Eps)
		}
	})
}

// TrainSGD minimises R(θ) of m with minibatch stochastic gradient descent
// and optional heavy-ball momentum, v ← μv + g, θ ← θ − ηv. Minibatches,
// shuffling, determinism and cancellation are as for TrainAdam.
func TrainSGD(ctx context.Context, m Model, x *linalg.Dense64, y []int, w []float64, opt SGDOptions) error {
	if err := opt.defaults(); err != nil {
		return err
	}
	if err := checkTrain("sgd", m, x, y, w); err != nil {
		return err
	}
	vel := make([]float64, NumParams(m))
	return minibatches(ctx, "sgd", m, x, y, w, opt.Epochs, opt.BatchSize, opt.Seed, opt.Progress, opt.EpochEnd, func(g []float64) {
		theta := m.Params()
		for i, gi := range g {
			vel[i] = opt.Momentum*vel[i] + gi
			theta[i] -= opt.LR * vel[i]
		}
	})
}

// checkTrain validates the model, its starting point and the data.
func checkTrain(name string, m Model, x *linalg.Dense64, y []int, w []float64) error {
	if m == nil || x == nil {
		return errors.New("models: " + name + ": nil model or data")
	}
	if err := CheckData(m, x, y, w); err != nil {
		return err
	}
	if x.Rows == 0 {
		return fmt.Errorf("models: %s: no training examples", name)
	}
	if !isFiniteVec(m.Params()) {
		return fmt.Errorf("models: %s: initial parameters are not finite", name)
	}
	return nil
}

// minibatches runs the shuffled epochs shared by the first-order trainers,
// calling step with the gradient of each minibatch objective. The arguments
// have passed checkTrain.
func minibatches(ctx context.Context, name string, m Model, x *linalg.Dense64, y []int, w []float64,
	epochs, batch int, seed uint64, prog progress.Func, epochEnd func(int) error, step func(g []float64)) error {
	N := x.Rows
	batch = min(batch, N)
	P := NumParams(m)
	g := make([]float64, P)
	perm := make([]int, N)
	for i := range perm {
		perm[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, 0x73687566666c65)) // "shuffle"
	xb := linalg.NewDense64(batch, x.Cols, nil)
	yb := make([]int, batch)
	var wb []float64
	if w != nil {
		wb = make([]float64, batch)
	}
	for epoch := 1; epoch <= epochs; epoch++ {
		rng.Shuffle(N, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for b0 := 0; b0 < N; b0 += batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			idx := perm[b0:min(b0+batch, N)]
			xs := xb.Slice(0, len(idx), 0, x.Cols)
			for k, i := range idx {
				copy(xs.Row(k), x.Row(i))
				yb[k] = y[i]
				if w != nil {
					wb[k] = w[i]
				}
			}
			var ws []float64
			if w != nil {
				ws = wb[:len(idx)]
			}
			f := m.Objective(xs, yb[:len(idx)], ws, g)
			if math.IsNaN(f) || math.IsInf(f, 0) || !isFiniteVec(g) {
				return fmt.Errorf("models: %s: epoch %d, minibatch %d: objective %v or its gradient is not finite (learning rate too large?)",
					name, epoch, b0/batch+1, f)
			}
			step(g)
		}
		if prog != nil {
			f := m.Objective(x, y, w, g)
			prog(fmt.Sprintf("%s: objective %.6g, ‖∇R‖ = %.2g", name, f, floats.Norm(g, 2)), epoch, epochs)
		}
		if epochEnd != nil {
			if err := epochEnd(epoch); err != nil {
				return fmt.Errorf("models: %s: after epoch %d: %w", name, epoch, err)
			}
		}
	}
	return nil
}

func isFiniteVec(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}
