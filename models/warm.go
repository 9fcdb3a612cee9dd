package models

import (
	"context"
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// Preconditioner is a fixed inverse Hessian H₀⁻¹, stored in float32, that
// steers FitWarm from one optimum to a nearby one: retraining without an
// example, or with reweighted examples. Its precision does not matter to
// the result, only to the speed: FitWarm's fixed point ∇R = 0 does not
// depend on it. It is a hessian.Operator and is safe for concurrent use.
type Preconditioner struct {
	p   int
	inv blas32.General
}

// NewPreconditioner inverts the symmetric positive definite Hessian h (of a
// model at an optimum, λI included) by Cholesky on be (nil: linalg.Auto()).
func NewPreconditioner(ctx context.Context, be linalg.Backend, h *linalg.Dense64) (*Preconditioner, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, err
	}
	p := h.Rows
	x := linalg.NewDense64(p, p, nil)
	for i := 0; i < p; i++ {
		x.Data[i*p+i] = 1
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := be.CholeskySolve(h, x); err != nil {
		return nil, fmt.Errorf("models: inverting the Hessian: %w", err)
	}
	inv := make([]float32, p*p)
	for i, v := range x.Data {
		inv[i] = float32(v)
	}
	return &Preconditioner{p: p, inv: blas32.General{Rows: p, Cols: p, Stride: p, Data: inv}}, nil
}

// Dim returns the number of parameters.
func (pc *Preconditioner) Dim() int { return pc.p }

// Apply writes H₀⁻¹ g into dst.
func (pc *Preconditioner) Apply(_ context.Context, g, dst []float64) error {
	g32, d32 := make([]float32, pc.p), make([]float32, pc.p)
	for i, v := range g {
		g32[i] = float32(v)
	}
	blas32.Implementation().Sgemv(blas.NoTrans, pc.p, pc.p, 1, pc.inv.Data, pc.p, g32, 1, 0, d32, 1)
	for i, v := range d32 {
		dst[i] = float64(v)
	}
	return nil
}

// warmTol is the gradient norm at which FitWarm stops, as FitNewton's
// default.
const warmTol = 1e-10

// FitWarm minimises the convex objective of m on (x, y, w) from m's current
// parameters, typically the optimum of a nearby problem whose inverse
// Hessian pre holds. It first runs the chord method: Newton steps with the
// fixed H₀⁻¹ and a backtracking line search, each costing a gradient and a
// matrix-vector product instead of a Hessian and its factorisation, and
// converging linearly at a rate set by how far the new Hessian is from H₀.
// When that stalls (a weak penalty, a subset far from the full data) it
// continues with inexact Newton steps solved by conjugate gradients
// (hessian.CG) on exact Hessian-vector products (NewHVP), preconditioned by
// H₀⁻¹, and as a last resort with FitNewton. Without pre it is FitNewton.
// It stops at ‖∇R‖ ≤ 1e-10.
func FitWarm(ctx context.Context, m Model, x *linalg.Dense64, y []int, w []float64, pre *Preconditioner) (NewtonResult, error) {
	if pre == nil {
		return FitNewton(ctx, m, x, y, w, NewtonOptions{Tol: warmTol})
	}
	if err := CheckData(m, x, y, w); err != nil {
		return NewtonResult{}, err
	}
	theta := m.Params()
	p := len(theta)
	if pre.Dim() != p {
		return NewtonResult{}, fmt.Errorf("models: FitWarm: preconditioner of dimension %d for %d parameters", pre.Dim(), p)
	}
	g, gNew, d, start := make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p)
	f := m.Objective(x, y, w, g)
	res := NewtonResult{Objective: f, GradNorm: floats.Norm(g, 2)}
	// step searches along d from theta and reports whether it moved.
	step := func() bool {
		slope := floats.Dot(g, d)
		if !(slope < 0) {
			return false
		}
		fNew, ok := backtrack(m, x, y, w, d, g, gNew, start, f, slope, res.GradNorm, 1e-6)
		if ok {
			f = fNew
			res.Iterations++
			res.Objective, res.GradNorm = f, floats.Norm(g, 2)
		}
		return ok
	}
	// descent sets d to the preconditioned steepest descent −H₀⁻¹g.
	descent := func() {
		pre.Apply(ctx, g, d)
		floats.Scale(-1, d)
	}
	// Chord steps while each shrinks the gradient by at least half.
	for chord := 0; chord < 100 && res.GradNorm > warmTol; chord++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		before := res.GradNorm
		descent()
		if !step() || res.GradNorm > 0.5*before {
			break
		}
	}
	// Inexact Newton–CG: H d = −g to a relative residual of min(0.1, √‖g‖),
	// at most 200 iterations; an unfinished d is still a descent direction.
	for newton := 0; newton < 30 && res.GradNorm > warmTol; newton++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		op, err := NewHVP(m, x, y, w)
		if err != nil {
			break
		}
		b := linalg.NewDense64(1, p, floats.ScaleTo(make([]float64, p), -1, g))
		sol, _, err := hessian.CG(ctx, op, 0, b, hessian.CGOptions{
			Tol: math.Min(0.1, math.Sqrt(res.GradNorm)), MaxIter: 200, Truncate: true, Precondition: pre})
		switch {
		case err == nil:
			copy(d, sol.Data)
		case errors.Is(err, hessian.ErrIndefinite) || errors.Is(err, hessian.ErrNotFinite):
			descent()
		default:
			return res, err
		}
		if floats.Norm(d, 2) == 0 {
			descent()
		}
		if !step() {
			break
		}
	}
	if res.GradNorm <= warmTol {
		return res, nil
	}
	nr, err := FitNewton(ctx, m, x, y, w, NewtonOptions{Tol: warmTol})
	nr.Iterations += res.Iterations
	return nr, err
}
