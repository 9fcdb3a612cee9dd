package models

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// blobs returns n points in 2-D around k well separated centres on a circle,
// labelled by centre: a problem a small network separates easily.
func blobs(n, k int, seed uint64) (*linalg.Dense64, []int) {
	rng := rand.New(rand.NewPCG(seed, 17))
	x := linalg.NewDense64(n, 2, nil)
	y := make([]int, n)
	for i := range y {
		c := rng.IntN(k)
		y[i] = c
		a := 2 * math.Pi * float64(c) / float64(k)
		x.Set(i, 0, 3*math.Cos(a)+0.5*rng.NormFloat64())
		x.Set(i, 1, 3*math.Sin(a)+0.5*rng.NormFloat64())
	}
	return x, y
}

func TestTrainers(t *testing.T) {
	x, y := blobs(300, 3, 1)
	for _, tc := range []struct {
		name  string
		train func(m Model, p progress.Func) error
	}{
		{"adam", func(m Model, p progress.Func) error {
			return TrainAdam(context.Background(), m, x, y, nil, AdamOptions{Epochs: 30, LR: 0.01, Seed: 1, Progress: p})
		}},
		{"sgd", func(m Model, p progress.Func) error {
			return TrainSGD(context.Background(), m, x, y, nil, SGDOptions{Epochs: 30, LR: 0.05, Seed: 1, Progress: p})
		}},
		{"sgd-momentum", func(m Model, p progress.Func) error {
			return TrainSGD(context.Background(), m, x, y, nil, SGDOptions{Epochs: 30, LR: 0.01, Momentum: 0.9, Seed: 1, Progress: p})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustMLP([]int{2, 16, 3}, ReLU, 1e-4, 1)
			before := m.Objective(x, y, nil, nil)
			var iters []int
			last := math.Inf(1)
			err := tc.train(m, func(stage string, iter, total int) {
				var name string
				var f, gn float64
				if _, err := fmt.Sscanf(stage, "%s objective %g, ‖∇R‖ = %g", &name, &f, &gn); err != nil || total != 30 {
					t.Fatalf("progress %q %d/%d: %v", stage, iter, total, err)
				}
				iters = append(iters, iter)
				last = f
				if math.IsNaN(f) || math.IsNaN(gn) {
					t.Errorf("epoch %d: objective %v, gradient norm %v", iter, f, gn)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(iters) != 30 || iters[0] != 1 || iters[29] != 30 {
				t.Errorf("progress called for epochs %v", iters)
			}
			after := m.Objective(x, y, nil, nil)
			if math.Abs(after-last) > 1e-5*after { // the stage prints 6 digits
				t.Errorf("last progress objective %v, final objective %v", last, after)
			}
			if after >= before/2 {
				t.Errorf("objective went from %v to %v", before, after)
			}
			if acc := Accuracy(m, x, y); acc <= 0.9 {
				t.Errorf("training accuracy %v, want > 0.9", acc)
			}
		})
	}
}

// TestTrainAdamModels trains every kind of model on weighted data, checking
// that the trainers work through the Model interface alone.
func TestTrainAdamModels(t *testing.T) {
	x, y := blobs(200, 2, 3)
	w := make([]float64, len(y))
	for i := range w {
		w[i] = 0.5 + float64(i%3)
	}
	for _, m := range []Model{
		NewLogistic(2, 1e-3),
		NewSoftmax(2, 2, 1e-3),
		mustMLP([]int{2, 2}, Tanh, 1e-3, 1),
		mustMLP([]int{2, 8, 8, 2}, Tanh, 1e-3, 1),
	} {
		t.Run(m.Kind(), func(t *testing.T) {
			before := m.Objective(x, y, w, nil)
			if err := TrainAdam(context.Background(), m, x, y, w, AdamOptions{Epochs: 20, LR: 0.05, BatchSize: 16}); err != nil {
				t.Fatal(err)
			}
			if after := m.Objective(x, y, w, nil); !(after < before) {
				t.Errorf("objective went from %v to %v", before, after)
			}
			if acc := Accuracy(m, x, y); acc <= 0.9 {
				t.Errorf("training accuracy %v", acc)
			}
		})
	}
}

func TestTrainersDeterministic(t *testing.T) {
	x, y := blobs(100, 3, 2)
	run := func(seed uint64, adam bool) []float64 {
		m := mustMLP([]int{2, 8, 3}, Tanh, 1e-3, 4)
		var err error
		if adam {
			err = TrainAdam(context.Background(), m, x, y, nil, AdamOptions{Epochs: 3, BatchSize: 7, Seed: seed})
		} else {
			err = TrainSGD(context.Background(), m, x, y, nil, SGDOptions{Epochs: 3, BatchSize: 7, Momentum: 0.5, Seed: seed})
		}
		if err != nil {
			t.Fatal(err)
		}
		return m.Params()
	}
	for _, adam := range []bool{true, false} {
		a, b, c := run(1, adam), run(1, adam), run(2, adam)
		for i := range a {
			if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
				t.Fatalf("adam=%v: same seed, parameter %d differs: %v vs %v", adam, i, a[i], b[i])
			}
		}
		if slices.Equal(a, c) {
			t.Errorf("adam=%v: different shuffling seeds gave identical parameters", adam)
		}
	}
}

func TestTrainersCancel(t *testing.T) {
	x, y := blobs(100, 3, 2)
	m := mustMLP([]int{2, 4, 3}, ReLU, 0, 1)
	start := slices.Clone(m.Params())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := TrainAdam(ctx, m, x, y, nil, AdamOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("adam with a cancelled context: %v", err)
	}
	if err := TrainSGD(ctx, m, x, y, nil, SGDOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("sgd with a cancelled context: %v", err)
	}
	if !slices.Equal(m.Params(), start) {
		t.Error("parameters changed although training was cancelled before the first step")
	}

	// Cancelled during training: stops before the next step.
	ctx, cancel = context.WithCancel(context.Background())
	epochs := 0
	err := TrainAdam(ctx, m, x, y, nil, AdamOptions{Epochs: 50, Progress: func(string, int, int) {
		epochs++
		if epochs == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || epochs != 2 {
		t.Errorf("cancelled after epoch 2: err %v after %d epochs", err, epochs)
	}
}

func TestTrainersBadInput(t *testing.T) {
	x, y := blobs(20, 3, 2)
	m := mustMLP([]int{2, 4, 3}, ReLU, 0, 1)
	nanX := x.Clone()
	nanX.Set(3, 1, math.NaN())
	badY := slices.Clone(y)
	badY[5] = 3
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"label out of range", TrainAdam(ctx, m, x, badY, nil, AdamOptions{}), "example 5"},
		{"NaN feature", TrainSGD(ctx, m, nanX, y, nil, SGDOptions{}), "example 3"},
		{"short labels", TrainAdam(ctx, m, x, y[:5], nil, AdamOptions{}), "labels"},
		{"short weights", TrainAdam(ctx, m, x, y, []float64{1}, AdamOptions{}), "weights"},
		{"negative weight", TrainAdam(ctx, m, x, y, slices.Repeat([]float64{-1}, 20), AdamOptions{}), "weight"},
		{"wrong features", TrainAdam(ctx, m, linalg.NewDense64(20, 3, nil), y, nil, AdamOptions{}), "features"},
		{"no examples", TrainAdam(ctx, m, linalg.NewDense64(0, 2, nil), nil, nil, AdamOptions{}), "no training examples"},
		{"nil model", TrainAdam(ctx, nil, x, y, nil, AdamOptions{}), "nil"},
		{"nil data", TrainSGD(ctx, m, nil, y, nil, SGDOptions{}), "nil"},
		{"negative lr", TrainAdam(ctx, m, x, y, nil, AdamOptions{LR: -1}), "learning rate"},
		{"NaN lr", TrainSGD(ctx, m, x, y, nil, SGDOptions{LR: math.NaN()}), "learning rate"},
		{"beta1 = 1", TrainAdam(ctx, m, x, y, nil, AdamOptions{Beta1: 1}), "beta1"},
		{"beta2 > 1", TrainAdam(ctx, m, x, y, nil, AdamOptions{Beta2: 1.5}), "beta2"},
		{"negative eps", TrainAdam(ctx, m, x, y, nil, AdamOptions{Eps: -1}), "eps"},
		{"negative epochs", TrainAdam(ctx, m, x, y, nil, AdamOptions{Epochs: -1}), "epochs"},
		{"negative batch", TrainSGD(ctx, m, x, y, nil, SGDOptions{BatchSize: -1}), "batch"},
		{"momentum 1", TrainSGD(ctx, m, x, y, nil, SGDOptions{Momentum: 1}), "momentum"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, tc.err, tc.want)
		}
	}
}

func TestTrainersDiverge(t *testing.T) {
	x, y := blobs(64, 3, 2)
	m := mustMLP([]int{2, 4, 3}, ReLU, 0.1, 1)
	err := TrainSGD(context.Background(), m, x, y, nil, SGDOptions{Epochs: 5, BatchSize: 16, LR: 1e200})
	if err == nil || !strings.Contains(err.Error(), "epoch 1") {
		t.Errorf("diverging SGD: %v, want an error naming epoch 1", err)
	}
	m.Params()[0] = math.Inf(1)
	if err := TrainAdam(context.Background(), m, x, y, nil, AdamOptions{}); err == nil {
		t.Error("no error for non-finite initial parameters")
	}
}

func ExampleTrainAdam() {
	x, y := blobs(300, 3, 1)
	m, err := NewMLP([]int{2, 16, 3}, ReLU, 1e-4, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = TrainAdam(context.Background(), m, x, y, nil, AdamOptions{Epochs: 30, LR: 0.01, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("accuracy above 90%:", Accuracy(m, x, y) > 0.9)
	// Output: accuracy above 90%: true
}

// TestEpochEnd checks that the hook sees the parameters of every epoch, the
// same as training for that many epochs, and that its error stops training.
func TestEpochEnd(t *testing.T) {
	x, y := blobs(60, 3, 5)
	for _, adam := range []bool{true, false} {
		train := func(m *MLP, epochs int, end func(int) error) (*MLP, error) {
			var err error
			if adam {
				err = TrainAdam(context.Background(), m, x, y, nil, AdamOptions{Epochs: epochs, BatchSize: 8, Seed: 3, EpochEnd: end})
			} else {
				err = TrainSGD(context.Background(), m, x, y, nil, SGDOptions{Epochs: epochs, BatchSize: 8, Seed: 3, EpochEnd: end})
			}
			return m, err
		}
		newMLP := func() *MLP { return mustMLP([]int{2, 6, 3}, ReLU, 1e-3, 9) }
		var seen [][]float64
		m := newMLP()
		_, err := train(m, 3, func(epoch int) error {
			if epoch != len(seen)+1 {
				t.Fatalf("adam=%v: hook called for epoch %d after %d calls", adam, epoch, len(seen))
			}
			seen = append(seen, slices.Clone(m.Params()))
			return nil
		})
		if err != nil || len(seen) != 3 {
			t.Fatalf("adam=%v: %d hook calls, error %v", adam, len(seen), err)
		}
		for e := 1; e <= 3; e++ {
			ref, err := train(newMLP(), e, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seen[e-1], ref.Params()) {
				t.Errorf("adam=%v: parameters seen after epoch %d differ from %d epochs of training", adam, e, e)
			}
		}
		stop := errors.New("disk full")
		if _, err := train(newMLP(), 3, func(epoch int) error {
			if epoch == 2 {
				return stop
			}
			return nil
		}); !errors.Is(err, stop) || !strings.Contains(err.Error(), "epoch 2") {
			t.Errorf("adam=%v: hook error gave %v", adam, err)
		}
	}
}
