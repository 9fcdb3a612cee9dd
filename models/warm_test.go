package models

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// TestFitWarm retrains regressions without some of their examples, warm
// from the full optimum with its inverse Hessian, and holds the result to a
// cold Newton fit of the same problem.
func TestFitWarm(t *testing.T) {
	ctx := context.Background()
	for _, c := range gcCases[:2] { // the convex regressions
		m, x, y, _ := hvpSetup(c, 120, 9)
		if _, err := FitNewton(ctx, m, x, y, nil, NewtonOptions{}); err != nil {
			t.Fatal(err)
		}
		pre, err := NewPreconditioner(ctx, linalg.CPU(), m.Curvature(x, y, nil))
		if err != nil {
			t.Fatal(err)
		}
		full := slices.Clone(m.Params())
		w := make([]float64, x.Rows)
		for i := range w {
			w[i] = 1
			if i%7 == 0 {
				w[i] = 0 // left out
			}
		}
		for _, p := range []*Preconditioner{pre, nil} {
			copy(m.Params(), full)
			res, err := FitWarm(ctx, m, x, y, w, p)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			warm := slices.Clone(m.Params())
			copy(m.Params(), full)
			if _, err := FitNewton(ctx, m, x, y, w, NewtonOptions{Tol: 1e-12}); err != nil {
				t.Fatal(err)
			}
			if e := relErr(warm, m.Params()); e > 1e-8 || res.GradNorm > 1e-10 {
				t.Errorf("%s (preconditioned %v): relative distance %.3g to the cold fit, ‖∇R‖ = %.3g", c.name, p != nil, e, res.GradNorm)
			}
			if math.IsNaN(res.Objective) {
				t.Errorf("%s: objective NaN", c.name)
			}
		}
	}
	m, x, y, _ := hvpSetup(gcCases[0], 10, 1)
	small, err := NewPreconditioner(ctx, nil, linalg.NewDense64(2, 2, []float64{2, 0, 0, 2}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FitWarm(ctx, m, x, y, nil, small); err == nil {
		t.Error("a preconditioner of another dimension was accepted")
	}
}
