package eval

import (
	"context"
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// preconditioner applies a fixed inverse Hessian H₀⁻¹, stored in float32:
// it only steers the iteration of fitWarm, whose fixed point ∇R = 0 does not
// depend on its precision.
type preconditioner struct {
	p   int
	inv blas32.General
}

// newPreconditioner inverts the symmetric positive definite h by Cholesky.
func newPreconditioner(ctx context.Context, be linalg.Backend, h *linalg.Dense64) (*preconditioner, error) {
	p := h.Rows
	x := linalg.NewDense64(p, p, nil)
	for i := 0; i < p; i++ {
		x.Data[i*p+i] = 1
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := be.CholeskySolve(h, x); err != nil {
		return nil, fmt.Errorf("eval: inverting the Hessian: %w", err)
	}
	inv := make([]float32, p*p)
	for i, v := range x.Data {
		inv[i] = float32(v)
	}
	return &preconditioner{p: p, inv: blas32.General{Rows: p, Cols: p, Stride: p, Data: inv}}, nil
}

// apply writes H₀⁻¹ g into dst.
func (pc *preconditioner) apply(dst, g []float64) {
	g32, d32 := make([]float32, pc.p), make([]float32, pc.p)
	for i, v := range g {
		g32[i] = float32(v)
	}
	blas32.Implementation().Sgemv(blas.NoTrans, pc.p, pc.p, 1, pc.inv.Data, pc.p, g32, 1, 0, d32, 1)
	for i, v := range d32 {
		dst[i] = float64(v)
	}
}

// warmTol is the gradient norm at which warm-started retraining stops, as
// FitNewton's default.
const warmTol = 1e-10

// fitWarm minimises the convex objective of m on (x, y, w) from m's current
// parameters. It first runs the chord method: Newton steps with the fixed
// inverse Hessian of pre and a backtracking line search, each costing a
// gradient and a matrix-vector product instead of a Hessian and its
// factorisation, and converging linearly at a rate set by how far the
// retraining Hessian is from H₀. When that stalls (a weak penalty, a
// subset far from the full data) it continues with inexact Newton steps
// solved by conjugate gradients on exact Hessian-vector products
// (models.HVP), preconditioned by H₀⁻¹, and as a last resort with
// FitNewton. Without pre it is FitNewton.
func fitWarm(ctx context.Context, m models.Model, x *linalg.Dense64, y []int, w []float64, pre *preconditioner) (models.NewtonResult, error) {
	if pre == nil {
		return models.FitNewton(ctx, m, x, y, w, models.NewtonOptions{Tol: warmTol})
	}
	if err := models.CheckData(m, x, y, w); err != nil {
		return models.NewtonResult{}, err
	}
	theta := m.Params()
	p := len(theta)
	g, gNew, d, start := make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p)
	f := m.Objective(x, y, w, g)
	res := models.NewtonResult{Objective: f, GradNorm: floats.Norm(g, 2)}
	// step searches along d from theta and reports whether it moved.
	step := func() bool {
		slope := floats.Dot(g, d)
		if !(slope < 0) {
			return false
		}
		copy(start, theta)
		for t := 1.0; t > 1e-6; t /= 2 {
			for i := range theta {
				theta[i] = start[i] + t*d[i]
			}
			fNew := m.Objective(x, y, w, gNew)
			armijo := fNew <= f+1e-4*t*slope
			flat := math.Abs(fNew-f) <= 1e-13*math.Max(1, math.Abs(f)) && floats.Norm(gNew, 2) < res.GradNorm
			if armijo || flat {
				f = fNew
				g, gNew = gNew, g
				res.Iterations++
				res.Objective, res.GradNorm = f, floats.Norm(g, 2)
				return true
			}
		}
		copy(theta, start)
		return false
	}
	// Chord steps while each shrinks the gradient by at least half.
	for chord := 0; chord < 100 && res.GradNorm > warmTol; chord++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		before := res.GradNorm
		pre.apply(d, g)
		for i := range d {
			d[i] = -d[i]
		}
		if !step() || res.GradNorm > 0.5*before {
			break
		}
	}
	// Inexact Newton–CG.
	for newton := 0; newton < 30 && res.GradNorm > warmTol; newton++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		op, err := models.NewHVP(m, x, y, w)
		if err != nil {
			break
		}
		if err := pcg(ctx, op, pre, g, d, math.Min(0.1, math.Sqrt(res.GradNorm))); err != nil {
			return res, err
		}
		if !step() {
			break
		}
	}
	if res.GradNorm <= warmTol {
		return res, nil
	}
	nr, err := models.FitNewton(ctx, m, x, y, w, models.NewtonOptions{Tol: warmTol})
	nr.Iterations += res.Iterations
	return nr, err
}

// pcg writes into d an approximate solution of H d = −g, by conjugate
// gradients preconditioned with pre, to a relative residual of tol (at most
// 200 iterations; an unfinished d is still a descent direction).
func pcg(ctx context.Context, op *models.HVP, pre *preconditioner, g, d []float64, tol float64) error {
	n := len(g)
	r, z, q, hq := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	clear(d)
	for i, v := range g {
		r[i] = -v
	}
	bnorm := floats.Norm(r, 2)
	pre.apply(z, r)
	copy(q, z)
	rz := floats.Dot(r, z)
	for it := 0; it < 200 && floats.Norm(r, 2) > tol*bnorm; it++ {
		if err := op.Apply(ctx, q, hq); err != nil {
			return err
		}
		qhq := floats.Dot(q, hq)
		if !(qhq > 0) {
			break
		}
		a := rz / qhq
		for i := range d {
			d[i] += a * q[i]
			r[i] -= a * hq[i]
		}
		pre.apply(z, r)
		rzNew := floats.Dot(r, z)
		b := rzNew / rz
		rz = rzNew
		for i := range q {
			q[i] = z[i] + b*q[i]
		}
	}
	if floats.Norm(d, 2) == 0 { // no progress at all: fall back to the preconditioned gradient
		pre.apply(d, g)
		for i := range d {
			d[i] = -d[i]
		}
	}
	return nil
}

// ErrSkipped marks a method that does not apply to a task (too many
// parameters for a dense curvature, a method not built): test it with
// errors.Is; the quality table shows the reason instead of numbers.
var ErrSkipped = errors.New("skipped")
