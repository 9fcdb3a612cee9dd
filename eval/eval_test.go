package eval

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestCorrelations(t *testing.T) {
	tests := []struct {
		name              string
		x, y              []float64
		pearson, spearman float64
	}{
		{"linear", []float64{1, 2, 3, 4}, []float64{2, 4, 6, 8}, 1, 1},
		{"anti", []float64{1, 2, 3}, []float64{3, 2, 1}, -1, -1},
		// Monotone but not linear: Spearman 1, Pearson below.
		{"monotone", []float64{1, 2, 3, 4, 5}, []float64{1, 4, 9, 16, 100}, 0.7952035738296035, 1},
		// Ties take average ranks: ranks of y are 1.5 1.5 3.
		{"ties", []float64{1, 2, 3}, []float64{5, 5, 7}, 0.8660254037844386, 0.8660254037844386},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Pearson(tc.x, tc.y); math.Abs(got-tc.pearson) > 1e-9 {
				t.Errorf("Pearson = %v, want %v", got, tc.pearson)
			}
			if got := Spearman(tc.x, tc.y); math.Abs(got-tc.spearman) > 1e-9 {
				t.Errorf("Spearman = %v, want %v", got, tc.spearman)
			}
		})
	}
	if !math.IsNaN(Pearson([]float64{1, 1}, []float64{1, 2})) {
		t.Error("Pearson of a constant is not NaN")
	}
}

// TestLOO holds exact influence to the thresholds on real data:
// Pearson ≥ 0.98 for breast-cancer logistic regression over 3 test points ×
// 40 removals, ≥ 0.99 for digits softmax regression.
func TestLOO(t *testing.T) {
	tests := []struct {
		dataset       string
		points, k     int
		minPearson    float64
		skipWithShort bool
	}{
		{"breast-cancer", 3, 40, 0.98, false},
		{"digits", 3, 12, 0.99, true},
	}
	for _, tc := range tests {
		t.Run(tc.dataset, func(t *testing.T) {
			if tc.skipWithShort && testing.Short() {
				t.Skip("retrains softmax regression 36 times; skipped with -short")
			}
			ctx := context.Background()
			p, err := NewProblem(ctx, tc.dataset, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			if p.Fit.GradNorm > 1e-8 {
				t.Fatalf("model not at its optimum: ‖∇R‖ = %g", p.Fit.GradNorm)
			}
			before := append([]float64(nil), p.Model.Params()...)
			r, err := LOO(ctx, p, LOOOptions{TestPoints: tc.points, Remove: tc.k, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: Pearson %.4f Spearman %.4f over %d removals (%.1f s)", tc.dataset, r.Pearson, r.Spearman, r.NPoints, r.Seconds)
			if r.NPoints != tc.points*tc.k || len(r.PerTest) != tc.points {
				t.Fatalf("%d removals over %d test points", r.NPoints, len(r.PerTest))
			}
			if r.Pearson < tc.minPearson || math.IsNaN(r.Pearson) {
				t.Errorf("Pearson %.4f < %.2f", r.Pearson, tc.minPearson)
			}
			if r.GradNorm > 1e-8 {
				t.Errorf("a retrained model stopped at ‖∇R‖ = %g", r.GradNorm)
			}
			// Removing a helpful point must raise the loss: the sign
			// convention, checked on the largest predicted changes.
			for _, pt := range r.Points {
				if math.Abs(pt.Predicted) > 0.5*maxAbsPredicted(r) && pt.Predicted*pt.Actual <= 0 {
					t.Errorf("removal of %d for test %d: predicted %g, actual %g", pt.Train, pt.Test, pt.Predicted, pt.Actual)
				}
			}
			for i, v := range p.Model.Params() {
				if v != before[i] {
					t.Fatal("LOO did not restore the model's parameters")
				}
			}
			if tc.dataset == "breast-cancer" {
				out := filepath.Join(t.TempDir(), "loo.png")
				if err := PlotLOO(out, r); err != nil {
					t.Fatal(err)
				}
				if st, err := os.Stat(out); err != nil || st.Size() < 1000 {
					t.Fatalf("plot not written: %v", err)
				}
			}
		})
	}
}

func maxAbsPredicted(r *LOOResult) float64 {
	m := 0.0
	for _, pt := range r.Points {
		m = math.Max(m, math.Abs(pt.Predicted))
	}
	return m
}

func TestLOOBadOptions(t *testing.T) {
	p, err := NewProblem(context.Background(), "breast-cancer", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []LOOOptions{{TestPoints: 10000}, {Remove: 1}, {Remove: 100000}, {TestPoints: -1}} {
		if _, err := LOO(context.Background(), p, opt); err == nil {
			t.Errorf("%+v: no error", opt)
		}
	}
	if _, err := NewProblem(context.Background(), "mnist-huge", 0, 1); err == nil {
		t.Error("unknown data set accepted")
	}
}
