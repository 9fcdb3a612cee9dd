package models

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
)

// blobs returns n points in d dimensions from k overlapping Gaussian
// clusters, so that no class is separable and the optimum is finite even
// with a tiny penalty.
func newtonBlobs(seed uint64, n, d, k int) (*linalg.Dense64, []int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	centres := make([]float64, k*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	x := linalg.NewDense64(n, d, nil)
	y := make([]int, n)
	for i := range y {
		y[i] = rng.IntN(k)
		for j := 0; j < d; j++ {
			x.Set(i, j, centres[y[i]*d+j]+1.5*rng.NormFloat64())
		}
	}
	return x, y
}

func TestFitNewtonReachesOptimum(t *testing.T) {
	tests := []struct {
		name  string
		model Model
		k     int
	}{
		{"logistic", NewLogistic(5, 1e-3), 2},
		{"softmax", NewSoftmax(5, 4, 1e-3), 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, y := newtonBlobs(1, 300, 5, tc.k)
			res, err := FitNewton(context.Background(), tc.model, x, y, nil, NewtonOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := make([]float64, NumParams(tc.model))
			tc.model.Objective(x, y, nil, g)
			if n := floats.Norm(g, 2); n > 1e-10 || res.GradNorm > 1e-10 {
				t.Fatalf("‖∇R‖ = %g (reported %g) after %d steps", n, res.GradNorm, res.Iterations)
			}
			if res.Iterations > 30 {
				t.Errorf("%d Newton steps", res.Iterations)
			}
			// A warm start at the optimum needs no step; one after a
			// small perturbation converges in a few.
			again, err := FitNewton(context.Background(), tc.model, x, y, nil, NewtonOptions{})
			if err != nil || again.Iterations != 0 {
				t.Fatalf("restart at the optimum: %d steps, %v", again.Iterations, err)
			}
			w := make([]float64, x.Rows)
			for i := range w {
				w[i] = 1
			}
			w[7] = 0
			warm, err := FitNewton(context.Background(), tc.model, x, y, w, NewtonOptions{})
			if err != nil || warm.Iterations > 5 {
				t.Fatalf("warm start after removing one point: %d steps, %v", warm.Iterations, err)
			}
		})
	}
}

func TestFitNewtonErrors(t *testing.T) {
	x, y := newtonBlobs(2, 50, 3, 2)
	m := NewLogistic(3, 1e-2)
	bad := append([]int(nil), y...)
	bad[4] = 2
	if _, err := FitNewton(context.Background(), m, x, bad, nil, NewtonOptions{}); err == nil || !strings.Contains(err.Error(), "example 4: label 2") {
		t.Errorf("bad label: %v", err)
	}
	if _, err := FitNewton(context.Background(), NewLogistic(4, 1e-2), x, y, nil, NewtonOptions{}); err == nil || !strings.Contains(err.Error(), "3 features, model expects 4") {
		t.Errorf("feature count: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FitNewton(ctx, NewLogistic(3, 1e-2), x, y, nil, NewtonOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, err := FitNewton(context.Background(), NewLogistic(3, 1e-2), x, y, nil, NewtonOptions{MaxIter: 1}); !errors.Is(err, ErrNotConverged) {
		t.Errorf("MaxIter 1: %v", err)
	}
}
