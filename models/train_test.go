package models_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// digits returns the training and test parts of the embedded digits as
// 'goinfluence train' prepares them with split seed 0.
func digits(t testing.TB) (train, test *datasets.Dataset) {
	t.Helper()
	train, test, err := datasets.LoadSplit(context.Background(), "digits", datasets.SplitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

// binary keeps the rows of d labelled 0 or 1, for the logistic model.
func binary(d *datasets.Dataset) *datasets.Dataset {
	var rows []int
	for i, y := range d.Y {
		if y < 2 {
			rows = append(rows, i)
		}
	}
	b := d.Subset(rows)
	b.Classes = 2
	return b
}

// TestTrainMatchesSteps holds Train to giving bit for bit the parameters of
// the steps it replaces in the CLI: build the model, then FitNewton on the
// backend or TrainAdam, with checkpoints at every E-th epoch.
func TestTrainMatchesSteps(t *testing.T) {
	train, _ := digits(t)
	two := binary(train)
	be := linalg.CPU()
	tests := []struct {
		name        string
		d           *datasets.Dataset
		opt         models.TrainOptions
		manual      func() (models.Model, error)
		checkpoints []int
	}{
		{"logistic", two, models.TrainOptions{Kind: models.KindLogistic, L2: 1e-3, Backend: be}, func() (models.Model, error) {
			m := models.NewLogistic(two.X.Cols, 1e-3)
			if err := models.SetBackend(m, be); err != nil {
				return nil, err
			}
			_, err := models.FitNewton(context.Background(), m, two.X, two.Y, nil, models.NewtonOptions{Backend: be})
			return m, err
		}, nil},
		{"softmax", train, models.TrainOptions{Kind: models.KindSoftmax, L2: 1e-2, Backend: be}, func() (models.Model, error) {
			m := models.NewSoftmax(train.X.Cols, 10, 1e-2)
			if err := models.SetBackend(m, be); err != nil {
				return nil, err
			}
			_, err := models.FitNewton(context.Background(), m, train.X, train.Y, nil, models.NewtonOptions{Backend: be})
			return m, err
		}, nil},
		{"mlp", train, models.TrainOptions{Kind: models.KindMLP, Hidden: []int{8}, Activation: models.Tanh, L2: 1e-3,
			Epochs: 3, BatchSize: 64, LR: 1e-2, Seed: 7, CheckpointEvery: 2}, func() (models.Model, error) {
			m, err := models.NewMLP([]int{64, 8, 10}, models.Tanh, 1e-3, 7)
			if err != nil {
				return nil, err
			}
			return m, models.TrainAdam(context.Background(), m, train.X, train.Y, nil,
				models.AdamOptions{Epochs: 3, BatchSize: 64, LR: 1e-2, Seed: 7})
		}, []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var saved []int
			var started models.Model
			opt := tc.opt
			opt.Checkpoint = func(epoch int, m models.Model) error { saved = append(saved, epoch); return nil }
			opt.Start = func(m models.Model) { started = m }
			res, err := models.Train(context.Background(), tc.d.X, tc.d.Y, tc.d.Classes, opt)
			if err != nil {
				t.Fatal(err)
			}
			want, err := tc.manual()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Model.Params(), want.Params()) {
				t.Error("parameters differ from those of the separate steps")
			}
			if started != res.Model {
				t.Error("Start was not called with the trained model")
			}
			if !slices.Equal(saved, tc.checkpoints) || !slices.Equal(res.Checkpoints, tc.checkpoints) {
				t.Errorf("checkpoints at epochs %v (result %v), want %v", saved, res.Checkpoints, tc.checkpoints)
			}
			if tc.opt.Kind != models.KindMLP && res.Newton.Iterations == 0 {
				t.Error("no Newton steps reported")
			}
		})
	}
}

func TestTrainOptionErrors(t *testing.T) {
	train, _ := digits(t)
	mlp := func(edit func(*models.TrainOptions)) models.TrainOptions {
		o := models.TrainOptions{Kind: models.KindMLP, Hidden: []int{4}, Epochs: 1, BatchSize: 8, LR: 1e-2}
		edit(&o)
		return o
	}
	nop := func(int, models.Model) error { return nil }
	for _, tc := range []struct {
		name string
		opt  models.TrainOptions
		want string
	}{
		{"no kind", models.TrainOptions{}, "Kind is empty"},
		{"bad kind", models.TrainOptions{Kind: "tree"}, `Kind "tree"`},
		{"logistic of ten classes", models.TrainOptions{Kind: models.KindLogistic}, "data have 10 classes"},
		{"NaN l2", models.TrainOptions{Kind: models.KindSoftmax, L2: math.NaN()}, "L2 NaN"},
		{"newton checkpoints", models.TrainOptions{Kind: models.KindSoftmax, CheckpointEvery: 1, Checkpoint: nop}, "CheckpointEvery 1 needs Kind mlp"},
		{"zero epochs", mlp(func(o *models.TrainOptions) { o.Epochs = 0 }), "Epochs 0"},
		{"zero batch", mlp(func(o *models.TrainOptions) { o.BatchSize = 0 }), "BatchSize 0"},
		{"negative lr", mlp(func(o *models.TrainOptions) { o.LR = -1 }), "LR -1"},
		{"zero width", mlp(func(o *models.TrainOptions) { o.Hidden = []int{4, 0} }), "Hidden[1] = 0"},
		{"bad activation", mlp(func(o *models.TrainOptions) { o.Activation = 9 }), "Activation 9"},
		{"negative checkpoint", mlp(func(o *models.TrainOptions) { o.CheckpointEvery = -1 }), "CheckpointEvery -1"},
		{"checkpoint without function", mlp(func(o *models.TrainOptions) { o.CheckpointEvery = 1 }), "without a Checkpoint function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := models.Train(context.Background(), train.X, train.Y, train.Classes, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTrainCancelled(t *testing.T) {
	train, _ := digits(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opt := models.TrainOptions{Kind: models.KindMLP, Epochs: 1, BatchSize: 8, LR: 1e-2}
	if _, err := models.Train(ctx, train.X, train.Y, train.Classes, opt); err == nil {
		t.Fatal("Train with a cancelled context succeeded")
	}
}

// ExampleTrain fits softmax regression to the embedded digits by Newton's
// method, as 'goinfluence train --dataset digits --model softmax' does.
func ExampleTrain() {
	train, test, err := datasets.LoadSplit(context.Background(), "digits", datasets.SplitOptions{Seed: 0})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := models.Train(context.Background(), train.X, train.Y, train.Classes,
		models.TrainOptions{Kind: models.KindSoftmax, L2: 1e-3})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(models.Describe(res.Model), "converged:", res.Newton.GradNorm < 1e-8)
	fmt.Println("test accuracy above 90%:", models.Accuracy(res.Model, test.X, test.Y) > 0.9)
	// Output:
	// softmax 64-10 converged: true
	// test accuracy above 90%: true
}
