package models

import (
	"context"
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// NewtonOptions configures FitNewton. Zero values take the defaults.
type NewtonOptions struct {
	// Tol is the gradient norm ‖∇R‖₂ at which to stop (default 1e-10).
	Tol float64
	// MaxIter bounds the Newton steps (default 100).
	MaxIter int
	// Backend solves the Newton systems; nil means the model's backend
	// (SetBackend), or Auto's choice when none is set. The model's own
	// methods (Objective, Curvature) run on the model's backend.
	Backend linalg.Backend
	// Progress is told after every step of the step and MaxIter, with the
	// objective and gradient norm in the stage.
	Progress progress.Func
}

// NewtonResult reports how FitNewton ended.
type NewtonResult struct {
	Iterations int
	Objective  float64
	GradNorm   float64
}

// ErrNotConverged is returned (wrapped) when FitNewton stops at MaxIter or its
// line search can make no progress before reaching the tolerance.
var ErrNotConverged = errors.New("models: optimiser did not converge")

// FitNewton minimises the objective R of a convex model (Logistic, Softmax)
// by Newton's method with the exact Hessian and a backtracking line search,
// starting from the model's current parameters (so a warm start from a
// nearby optimum takes two or three steps). Convergence is quadratic, so the
// default tolerance of 1e-10 on ‖∇R‖ costs little more than 1e-6.
//
// For a non-convex model Curvature is a Gauss–Newton matrix and the method
// becomes damped Gauss–Newton, without a guarantee.
func FitNewton(ctx context.Context, m Model, x *linalg.Dense64, y []int, w []float64, opt NewtonOptions) (NewtonResult, error) {
	if err := CheckData(m, x, y, w); err != nil {
		return NewtonResult{}, err
	}
	if opt.Tol == 0 {
		opt.Tol = 1e-10
	}
	if opt.MaxIter == 0 {
		opt.MaxIter = 100
	}
	be := opt.Backend
	if be == nil {
		var err error
		if be, err = backendOf(m); err != nil {
			return NewtonResult{}, fmt.Errorf("models: FitNewton: %w", err)
		}
	}
	theta := m.Params()
	p := len(theta)
	g := make([]float64, p)
	gNew := make([]float64, p)
	start := make([]float64, p)
	f := m.Objective(x, y, w, g)
	res := NewtonResult{Objective: f, GradNorm: floats.Norm(g, 2)}
	for res.GradNorm > opt.Tol {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if res.Iterations == opt.MaxIter {
			return res, fmt.Errorf("%w: ‖∇R‖ = %.3g after %d Newton steps (tolerance %.3g)", ErrNotConverged, res.GradNorm, res.Iterations, opt.Tol)
		}
		h := m.Curvature(x, y, w)
		d := linalg.NewDense64(p, 1, nil)
		for i := range g {
			d.Data[i] = -g[i]
		}
		if err := be.CholeskySolve(h, d); err != nil {
			return res, fmt.Errorf("models: Newton step %d: %w", res.Iterations+1, err)
		}
		slope := floats.Dot(g, d.Data)
		if !(slope < 0) {
			return res, fmt.Errorf("%w: Newton direction is not a descent direction at step %d", ErrNotConverged, res.Iterations+1)
		}
		fNew, accepted := backtrack(m, x, y, w, d.Data, g, gNew, start, f, slope, res.GradNorm, 1e-12)
		res.Iterations++
		if !accepted {
			return res, fmt.Errorf("%w: line search failed at step %d with ‖∇R‖ = %.3g", ErrNotConverged, res.Iterations, res.GradNorm)
		}
		f = fNew
		res.Objective, res.GradNorm = f, floats.Norm(g, 2)
		if opt.Progress != nil {
			opt.Progress(fmt.Sprintf("newton: objective %.6g, ‖∇R‖ = %.2g", f, res.GradNorm), res.Iterations, opt.MaxIter)
		}
	}
	return res, nil
}

// backtrack searches along d from m's parameters for the first step t = 1,
// 1/2, 1/4, … above tMin that meets Armijo's condition for the objective f
// with slope gᵀd < 0 or, near the optimum, where f changes by less than its
// rounding error, shrinks the gradient below gnorm. On success it leaves
// the parameters at the step and its gradient in g, and returns the new
// objective; otherwise it restores the parameters. gNew and start are
// scratch of the parameters' length.
func backtrack(m Model, x *linalg.Dense64, y []int, w, d, g, gNew, start []float64, f, slope, gnorm, tMin float64) (float64, bool) {
	theta := m.Params()
	copy(start, theta)
	for t := 1.0; t > tMin; t /= 2 {
		for i := range theta {
			theta[i] = start[i] + t*d[i]
		}
		fNew := m.Objective(x, y, w, gNew)
		armijo := fNew <= f+1e-4*t*slope
		flat := math.Abs(fNew-f) <= 1e-13*math.Max(1, math.Abs(f)) && floats.Norm(gNew, 2) < gnorm
		if armijo || flat {
			copy(g, gNew)
			return fNew, true
		}
	}
	copy(theta, start)
	return f, false
}
