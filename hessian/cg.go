package hessian

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// CGOptions are the knobs of CG. The zero value is usable.
type CGOptions struct {
	// Tol is the relative residual ‖b − (H+δI)x‖/‖b‖ at which a right-hand
	// side stops; 0 means 1e-10.
	Tol float64
	// MaxIter bounds the iterations of each right-hand side; 0 means 1000.
	// In exact arithmetic CG needs at most Dim.
	MaxIter int
	// Truncate, when set, makes a right-hand side that misses Tol after
	// MaxIter iterations no error: its iterate is returned as it stands and
	// the Report's Residuals say how far each got. This is truncated CG, as
	// influence libraries commonly run it with a small fixed MaxIter.
	Truncate bool
	// Progress is told after every iteration of the iteration and
	// MaxIter, with the stage "N right-hand sides above tolerance": a solve
	// on a large model can take many minutes.
	Progress progress.Func
	// Precondition, when set, is M⁻¹ ≈ (H + δI)⁻¹, symmetric positive
	// definite, applied to every residual (preconditioned CG): the
	// iterations needed fall with the condition number of M⁻¹(H + δI).
	Precondition Operator
}

// CG solves (H + δI)x = b by conjugate gradients for every row b of the
// k × Dim block b, all rows sharing one block product per iteration and each
// stopping on its own. It returns the k × Dim solutions and a Report with the
// iterations and true final relative residual of every row.
//
// H + δI must be symmetric positive definite. A direction of non-positive
// curvature pᵀ(H+δI)p ≤ 0 stops the solve with an error wrapping
// ErrIndefinite; a row that misses Tol in MaxIter iterations gives an error
// wrapping ErrNotConverged, returned with the solutions and report reached so
// far so that the caller may still use them.
func CG(ctx context.Context, op Operator, damping float64, b *linalg.Dense64, opts CGOptions) (*linalg.Dense64, *Report, error) {
	const method = "cg"
	if err := checkRHS(method, op, b); err != nil {
		return nil, nil, err
	}
	if err := checkDamping(method, damping); err != nil {
		return nil, nil, err
	}
	tol, maxIter := opts.Tol, opts.MaxIter
	if tol == 0 {
		tol = 1e-10
	}
	if maxIter == 0 {
		maxIter = 1000
	}
	if !(tol > 0) || maxIter < 0 {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("tolerance %v must be > 0 and iterations %d ≥ 0", tol, maxIter))
	}
	k, dim := b.Rows, b.Cols
	if m := opts.Precondition; m != nil && m.Dim() != dim {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("preconditioner of dimension %d for an operator of %d", m.Dim(), dim))
	}
	rep := &Report{Method: method, Iterations: make([]int, k), Residuals: make([]float64, k)}
	x := linalg.NewDense64(k, dim, nil)
	r := b.Clone()
	// z is the preconditioned residual M⁻¹r; without a preconditioner it is
	// r itself, and rz = rᵀz the squared residual norm.
	z := r
	if opts.Precondition != nil {
		z = linalg.NewDense64(k, dim, nil)
		if err := ApplyMany(ctx, opts.Precondition, r, z); err != nil {
			return nil, nil, newError(method, -1, 0, err)
		}
	}
	p := z.Clone()
	bnorm := make([]float64, k)
	rs := make([]float64, k)
	var act []int
	for i := 0; i < k; i++ {
		bnorm[i] = floats.Norm(b.Row(i), 2)
		rs[i] = floats.Dot(r.Row(i), z.Row(i))
		if bnorm[i] > 0 {
			act = append(act, i)
		}
	}
	blk := newBlock(op, damping, k, dim)
	for it := 1; it <= maxIter && len(act) > 0; it++ {
		ap, err := blk.apply(ctx, p, act)
		if err != nil {
			return nil, nil, newError(method, -1, it, err)
		}
		rep.HVPs += len(act)
		next := act[:0:0]
		for a, i := range act {
			pi, ri, api := p.Row(i), r.Row(i), ap.Row(a)
			curv := floats.Dot(pi, api)
			if !finite(curv) {
				return nil, nil, newError(method, i, it, fmt.Errorf("%w: pᵀ(H+δI)p = %v", ErrNotFinite, curv))
			}
			if curv <= 0 {
				return nil, nil, newError(method, i, it, fmt.Errorf("%w: pᵀ(H+δI)p = %.3g ≤ 0 with δ = %g (increase the damping, or use a Gauss–Newton operator)", ErrIndefinite, curv, damping))
			}
			alpha := rs[i] / curv
			axpy(alpha, pi, x.Row(i))
			axpy(-alpha, api, ri)
			rep.Iterations[i] = it
			rr := floats.Dot(ri, ri)
			if math.Sqrt(rr) <= tol*bnorm[i] {
				continue
			}
			// z = M⁻¹r; without a preconditioner z aliases r and rᵀz = rᵀr.
			zi, rz := ri, rr
			if opts.Precondition != nil {
				zi = z.Row(i)
				if err := opts.Precondition.Apply(ctx, ri, zi); err != nil {
					return nil, nil, newError(method, i, it, err)
				}
				rz = floats.Dot(ri, zi)
			}
			beta := rz / rs[i]
			rs[i] = rz
			for j, v := range zi {
				pi[j] = v + beta*pi[j]
			}
			next = append(next, i)
		}
		act = next
		if opts.Progress != nil {
			opts.Progress(fmt.Sprintf("%d right-hand sides above tolerance", len(act)), it, maxIter)
		}
	}
	// The recurrence drifts from the true residual; report the true one.
	all := make([]int, 0, k)
	for i := 0; i < k; i++ {
		if bnorm[i] > 0 {
			all = append(all, i)
		}
	}
	ax, err := blk.apply(ctx, x, all)
	if err != nil {
		return nil, nil, newError(method, -1, 0, err)
	}
	rep.HVPs += len(all)
	var failed error
	for a, i := range all {
		res := ax.Row(a)
		for j, v := range b.Row(i) {
			res[j] = v - res[j]
		}
		rep.Residuals[i] = floats.Norm(res, 2) / bnorm[i]
		if !finite(rep.Residuals[i]) {
			return nil, nil, newError(method, i, 0, fmt.Errorf("%w: residual is %v", ErrNotFinite, rep.Residuals[i]))
		}
		if failed == nil && !opts.Truncate && len(act) > 0 && contains(act, i) {
			failed = newError(method, i, 0, fmt.Errorf("%w: relative residual %.3g > %g after %d iterations (raise MaxIter or the damping)", ErrNotConverged, rep.Residuals[i], tol, maxIter))
		}
	}
	return x, rep, failed
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// block applies H + δI to a subset of the rows of a k × Dim matrix, gathering
// them into a compact block so that an operator sees one product per step.
type block struct {
	op      Operator
	damping float64
	in, out *linalg.Dense64
}

func newBlock(op Operator, damping float64, k, dim int) *block {
	return &block{op: op, damping: damping, in: linalg.NewDense64(k, dim, nil), out: linalg.NewDense64(k, dim, nil)}
}

// apply returns (H+δI)·v[rows[a]] in row a of the result, which stays valid
// until the next call.
func (b *block) apply(ctx context.Context, v *linalg.Dense64, rows []int) (*linalg.Dense64, error) {
	return b.applyOp(ctx, b.op, v, rows)
}

func (b *block) applyOp(ctx context.Context, op Operator, v *linalg.Dense64, rows []int) (*linalg.Dense64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n, dim := len(rows), v.Cols
	in, out := b.in.Slice(0, n, 0, dim), b.out.Slice(0, n, 0, dim)
	for a, i := range rows {
		copy(in.Row(a), v.Row(i))
	}
	if err := ApplyMany(ctx, op, in, out); err != nil {
		return nil, err
	}
	if b.damping != 0 {
		for a := 0; a < n; a++ {
			axpy(b.damping, in.Row(a), out.Row(a))
		}
	}
	return out, nil
}
