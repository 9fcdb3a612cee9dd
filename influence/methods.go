package influence

import (
	"context"
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Identity is the method P = I: scores are plain gradient dot products
// (TracIn at one checkpoint, or "gradient similarity").
func Identity() Method { return identity{} }

type identity struct{}

func (identity) Name() string { return "identity" }

func (identity) Precondition(ctx context.Context, _ linalg.Backend, g *gradients.Batch) (*linalg.Dense64, error) {
	return g.Flatten(), ctx.Err()
}

// Exact is the method P = (H + δI)⁻¹ with a dense P × P curvature matrix H
// (a Hessian or Gauss–Newton matrix whose parameter order matches the
// flattened gradients), solved by Cholesky. H is not modified. It is meant
// for models of up to some ten thousand parameters, and as the reference the
// approximate methods are measured against.
func Exact(h *linalg.Dense64, damping float64) Method {
	return &exact{h: h, damping: damping}
}

type exact struct {
	h       *linalg.Dense64
	damping float64
}

func (e *exact) Name() string { return "exact" }

func (e *exact) Precondition(ctx context.Context, be linalg.Backend, g *gradients.Batch) (*linalg.Dense64, error) {
	d := g.Dim()
	if e.h.Rows != d || e.h.Cols != d {
		return nil, fmt.Errorf("curvature is %d×%d but gradients have dimension %d", e.h.Rows, e.h.Cols, d)
	}
	if e.damping < 0 || math.IsNaN(e.damping) || math.IsInf(e.damping, 0) {
		return nil, fmt.Errorf("damping %v must be finite and ≥ 0", e.damping)
	}
	for i, v := range e.h.Data {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("curvature element (%d, %d) is %v", i/e.h.Stride, i%e.h.Stride, v)
		}
	}
	a := e.h.Clone()
	for i := 0; i < d; i++ {
		a.Data[i*a.Stride+i] += e.damping
	}
	// Solve (H+δI) X = Gᵀ for all examples at once.
	x := g.Flatten().T()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := be.CholeskySolve(a, x); err != nil {
		return nil, fmt.Errorf("H + %g·I: %w (increase the damping)", e.damping, err)
	}
	return x.T(), nil
}
