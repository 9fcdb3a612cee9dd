package hessian

import (
	"context"
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/linalg"
)

// Operator is a symmetric linear map v ↦ Hv on R^Dim: a Hessian, a
// Gauss–Newton matrix or an estimate of one. models.HVP implements it.
type Operator interface {
	// Dim returns the dimension P of the vectors.
	Dim() int
	// Apply writes Hv into out; both have length Dim and do not overlap.
	Apply(ctx context.Context, v, out []float64) error
}

// BlockOperator is an Operator that multiplies many vectors in one pass,
// faster than one Apply each. The solvers use it when present.
type BlockOperator interface {
	Operator
	// ApplyMany writes H vᵢ into row i of out for every row vᵢ of v; both are
	// k × Dim.
	ApplyMany(ctx context.Context, v, out *linalg.Dense64) error
}

// ApplyMany multiplies every row of v (k × Dim) by op into out (k × Dim),
// through BlockOperator.ApplyMany when op has it and row by row otherwise.
func ApplyMany(ctx context.Context, op Operator, v, out *linalg.Dense64) error {
	if v.Cols != op.Dim() || out.Cols != op.Dim() || out.Rows != v.Rows {
		return fmt.Errorf("hessian: ApplyMany: %d×%d into %d×%d with an operator of dimension %d", v.Rows, v.Cols, out.Rows, out.Cols, op.Dim())
	}
	if v.Rows == 0 {
		return nil
	}
	if b, ok := op.(BlockOperator); ok {
		return b.ApplyMany(ctx, v, out)
	}
	for i := 0; i < v.Rows; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := op.Apply(ctx, v.Row(i), out.Row(i)); err != nil {
			return err
		}
	}
	return nil
}

// Dense is the Operator of an explicit symmetric P × P matrix, multiplied on
// a Backend (one GEMM per block of vectors).
type Dense struct {
	h  *linalg.Dense64
	be linalg.Backend
}

// NewDense wraps h, which must be square, finite and symmetric (to a relative
// 1e-10 of its largest element; Hv is computed from the rows of h). h is
// kept, not copied. A nil be means Auto's choice, resolved here (a forced
// backend that cannot open is the error).
func NewDense(h *linalg.Dense64, be linalg.Backend) (*Dense, error) {
	if h.Rows != h.Cols {
		return nil, fmt.Errorf("hessian: matrix is %d×%d, not square", h.Rows, h.Cols)
	}
	var amax float64
	for i := 0; i < h.Rows; i++ {
		for j, v := range h.Row(i) {
			if !finite(v) {
				return nil, fmt.Errorf("hessian: matrix element (%d, %d) is %v", i, j, v)
			}
			amax = max(amax, math.Abs(v))
		}
	}
	for i := 0; i < h.Rows; i++ {
		for j := 0; j < i; j++ {
			if d := math.Abs(h.At(i, j) - h.At(j, i)); d > 1e-10*amax {
				return nil, fmt.Errorf("hessian: matrix is not symmetric: (%d, %d) = %v but (%d, %d) = %v", i, j, h.At(i, j), j, i, h.At(j, i))
			}
		}
	}
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("hessian: %w", err)
	}
	return &Dense{h: h, be: be}, nil
}

// Dim returns P.
func (d *Dense) Dim() int { return d.h.Rows }

// Matrix returns the wrapped matrix.
func (d *Dense) Matrix() *linalg.Dense64 { return d.h }

// Apply writes Hv into out.
func (d *Dense) Apply(ctx context.Context, v, out []float64) error {
	p := d.h.Rows
	return d.ApplyMany(ctx, linalg.NewDense64(1, p, v[:p]), linalg.NewDense64(1, p, out[:p]))
}

// ApplyMany computes out = V·H (H symmetric, so each row is H vᵢ).
func (d *Dense) ApplyMany(ctx context.Context, v, out *linalg.Dense64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.be.Dgemm(linalg.NoTrans, linalg.Trans, 1, v, d.h, 0, out)
	return nil
}

// Trace returns the exact trace of H.
func (d *Dense) Trace() float64 {
	var t float64
	for i := 0; i < d.h.Rows; i++ {
		t += d.h.At(i, i)
	}
	return t
}

// Solve returns (H + δI)⁻¹ applied to every row of b (k × P) by a Cholesky
// factorisation: the exact reference the iterative methods approximate.
func (d *Dense) Solve(b *linalg.Dense64, damping float64) (*linalg.Dense64, error) {
	if err := checkRHS("cholesky", d, b); err != nil {
		return nil, err
	}
	if err := checkDamping("cholesky", damping); err != nil {
		return nil, err
	}
	a := d.h.Clone()
	for i := 0; i < a.Rows; i++ {
		a.Data[i*a.Stride+i] += damping
	}
	x := b.T()
	if err := d.be.CholeskySolve(a, x); err != nil {
		return nil, newError("cholesky", -1, 0, fmt.Errorf("H + %g·I: %w (%w; increase the damping)", damping, err, ErrIndefinite))
	}
	return x.T(), nil
}
