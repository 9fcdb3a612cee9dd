package main

import (
	"context"
	"testing"

	"github.com/goinfluence/goinfluence/datasets"
)

// TestAgreement trains the gorgonia MLP and requires its factors, gradients
// and influence scores to match goinfluence's native MLP with the same
// weights, and gorgonia's own weight gradients, to float64 rounding.
func TestAgreement(t *testing.T) {
	r, err := run(context.Background(), options{Hidden: 32, Steps: 300, LR: 0.02, L2: 1e-4, Queries: 3, Singles: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.TrainAcc < 0.95 || r.NativeAcc != r.TrainAcc {
		t.Errorf("training accuracy: gorgonia %.3f, native %.3f with the same weights; want ≥ 0.95 and equal", r.TrainAcc, r.NativeAcc)
	}
	for _, c := range []struct {
		name string
		err  float64
	}{
		{"losses", r.LossErr},
		{"activations", r.AErr},
		{"output gradients", r.SErr},
		{"sampled-label activations", r.FitAErr},
		{"sampled-label output gradients", r.FitSErr},
		{"summed weight gradient", r.SumErr},
		{"single-example weight gradient", r.SingleErr},
		{"EK-FAC scores", r.EKFACErr},
		{"EK-FAC self-influence", r.EKFACSelfErr},
		{"identity scores", r.IdentErr},
	} {
		if !(c.err <= tolerance) {
			t.Errorf("%s: error %.3g > %.0e", c.name, c.err, tolerance)
		} else {
			t.Logf("%-32s %.2e", c.name, c.err)
		}
	}
}

// TestChecksSeeDifferences makes sure the comparisons are not vacuous: a
// batch whose output gradients are off by 1e-6 in one entry fails the
// factor and weight-gradient checks.
func TestChecksSeeDifferences(t *testing.T) {
	train, _, err := datasets.LoadSplit(context.Background(), "digits", datasets.SplitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nt := newNet([]int{train.X.Cols, 8, train.Classes}, 3)
	x := train.X.Slice(0, 20, 0, train.X.Cols)
	g, err := nt.gradients(x, train.Y[:20])
	if err != nil {
		t.Fatal(err)
	}
	if e := sumErr(g); e > tolerance {
		t.Fatalf("unperturbed: summed weight gradient error %.3g", e)
	}
	want := clone(g.Batch.Layers[0].S)
	g.Batch.Layers[0].S[5] += 1e-6
	if e := sumErr(g); e <= tolerance {
		t.Errorf("perturbed S: summed weight gradient error %.3g, want > %.0e", e, tolerance)
	}
	if e := relErr(g.Batch.Layers[0].S, want); e <= tolerance {
		t.Errorf("perturbed S: factor error %.3g, want > %.0e", e, tolerance)
	}
}

// TestBadOptions checks that options gorgonia would panic on are errors.
func TestBadOptions(t *testing.T) {
	good := options{Hidden: 4, Steps: 1, LR: 0.02, L2: 1e-4, Queries: 1, Singles: 1, Seed: 1}
	for _, c := range []struct {
		name string
		edit func(*options)
	}{
		{"no hidden units", func(o *options) { o.Hidden = 0 }},
		{"no queries", func(o *options) { o.Queries = 0 }},
		{"negative steps", func(o *options) { o.Steps = -1 }},
		{"zero learning rate", func(o *options) { o.LR = 0 }},
		{"negative l2", func(o *options) { o.L2 = -1 }},
		{"negative singles", func(o *options) { o.Singles = -1 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := good
			c.edit(&o)
			if _, err := run(context.Background(), o); err == nil {
				t.Errorf("%+v: no error", o)
			}
		})
	}
	if err := good.check(); err != nil {
		t.Errorf("%+v: %v", good, err)
	}
}
