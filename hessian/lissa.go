package hessian

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// LiSSAOptions are the knobs of LiSSA.
type LiSSAOptions struct {
	// Scale s divides H + δI so that I − (H+δI)/s is a contraction: every
	// eigenvalue of H + δI must lie in (0, 2s); a value at or above
	// λ_max(H+δI) is safe. 0 means LiSSAScale's estimate, 2·λ_max(H+δI),
	// made on Backend with Seed.
	Scale float64
	// Backend computes the estimate of the default Scale (nil:
	// linalg.Auto()).
	Backend linalg.Backend
	// Depth is the number of recursion steps J; 0 means 1000. The residual
	// after J steps is ‖(I − (H+δI)/s)^{J+1} b‖, so J ≈ (s/λ_min)·ln(1/tol).
	Depth int
	// Repeats averages that many independent recursions; 0 means 1. Only
	// sampled steps (Sample) make repeats differ; with a full-batch operator
	// one recursion is run whatever Repeats says.
	Repeats int
	// Tol, when > 0, stops a right-hand side once its step
	// ‖x_{j+1} − x_j‖/‖b‖ is ≤ Tol (for a full-batch operator the step bounds
	// the relative residual of the result), and makes missing it an
	// ErrNotConverged error.
	Tol float64
	// Sample, when set, returns the operator of one step: typically the
	// Hessian-vector product of a mini-batch drawn with a generator seeded by
	// seed. Step j of repeat r gets a seed drawn from a PCG seeded by
	// (Seed, r), so a run is reproducible. The operator passed to LiSSA then
	// only fixes the dimension.
	Sample func(seed uint64) (Operator, error)
	// Seed seeds Sample's per-step seeds.
	Seed uint64
	// Progress is told after every step of the step and Depth, with the
	// stage "repeat R, N right-hand sides iterating".
	Progress progress.Func
}

// divergeSlack is how far beyond the contraction bounds an iterate may go
// before LiSSA calls it divergent; the bounds are exact, so rounding needs
// little room.
const divergeSlack = 1.5

// LiSSA estimates (H + δI)⁻¹b for every row b of the k × Dim block b by the
// stochastic Neumann recursion of Agarwal et al. (2017) as Koh & Liang (2017)
// use it:
//
//	x_0 = b,  x_{j+1} = b + (I − (H+δI)/s) x_j,  result x_J / s,
//
// averaged over repeats. δ enters H + δI directly (Koh & Liang's damping d is
// δ = d·s here).
//
// While every step is a contraction, ‖x_j‖ ≤ (j+1)‖b‖ and, for a full-batch
// operator, ‖x_{j+1} − x_j‖ ≤ ‖b‖; an iterate beyond either bound (×1.5), or
// a non-finite one, proves the scale too small and stops the solve with an
// error wrapping ErrDiverged that says so.
func LiSSA(ctx context.Context, op Operator, damping float64, b *linalg.Dense64, opts LiSSAOptions) (*linalg.Dense64, *Report, error) {
	const method = "lissa"
	if err := checkRHS(method, op, b); err != nil {
		return nil, nil, err
	}
	if err := checkDamping(method, damping); err != nil {
		return nil, nil, err
	}
	s := opts.Scale
	if s == 0 {
		var err error
		if s, err = LiSSAScale(ctx, opts.Backend, op, damping, opts.Seed); err != nil {
			return nil, nil, newError(method, -1, 0, err)
		}
	}
	if !(s > 0) || !finite(s) {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("scale %v must be finite and > 0 (above λ_max(H+δI)/2; Arnoldi estimates λ_max)", s))
	}
	depth, repeats := opts.Depth, opts.Repeats
	if depth == 0 {
		depth = 1000
	}
	if repeats == 0 || opts.Sample == nil {
		repeats = 1
	}
	if depth < 0 || repeats < 0 || opts.Tol < 0 || !finite(opts.Tol) {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("depth %d, repeats %d and tolerance %v must be ≥ 0", depth, repeats, opts.Tol))
	}
	k, dim := b.Rows, b.Cols
	rep := &Report{Method: method, Iterations: make([]int, k), Residuals: make([]float64, k)}
	sum := linalg.NewDense64(k, dim, nil)
	x := linalg.NewDense64(k, dim, nil)
	bnorm := make([]float64, k)
	for i := range bnorm {
		bnorm[i] = floats.Norm(b.Row(i), 2)
	}
	blk := newBlock(op, damping, k, dim)
	var notConverged error
	for r := 0; r < repeats; r++ {
		var seeds *rand.Rand
		if opts.Sample != nil {
			seeds = rand.New(rand.NewPCG(opts.Seed, uint64(r)))
		}
		for i := 0; i < k; i++ {
			copy(x.Row(i), b.Row(i))
		}
		var act []int
		for i := 0; i < k; i++ {
			if bnorm[i] > 0 {
				act = append(act, i)
			}
		}
		for j := 1; j <= depth && len(act) > 0; j++ {
			stepOp := op
			if seeds != nil {
				var err error
				if stepOp, err = opts.Sample(seeds.Uint64()); err != nil {
					return nil, nil, newError(method, -1, j, fmt.Errorf("sampling the operator: %w", err))
				}
				if stepOp == nil || stepOp.Dim() != dim {
					return nil, nil, newError(method, -1, j, errors.New("sampled operator is nil or of another dimension"))
				}
			}
			ax, err := blk.applyOp(ctx, stepOp, x, act)
			if err != nil {
				return nil, nil, newError(method, -1, j, err)
			}
			rep.HVPs += len(act)
			next := act[:0:0]
			for a, i := range act {
				xi, bi, axi := x.Row(i), b.Row(i), ax.Row(a)
				// step = x_{j} − x_{j−1} = b − (H+δI)x_{j−1}/s, in axi.
				for t, v := range axi {
					axi[t] = bi[t] - v/s
				}
				stepNorm := floats.Norm(axi, 2) / bnorm[i]
				axpy(1, axi, xi)
				xNorm := floats.Norm(xi, 2) / bnorm[i]
				rep.Iterations[i] = max(rep.Iterations[i], j)
				rep.Residuals[i] = stepNorm
				switch {
				case !finite(stepNorm) || !finite(xNorm):
					return nil, nil, newError(method, i, j, fmt.Errorf("%w: %w: the iterate is not finite (scale %g is too small, or H has NaNs)", ErrDiverged, ErrNotFinite, s))
				case xNorm > divergeSlack*float64(j+1) || (opts.Sample == nil && stepNorm > divergeSlack):
					return nil, nil, newError(method, i, j, fmt.Errorf("%w: ‖x‖/‖b‖ = %.3g, step/‖b‖ = %.3g: scale %g is too small; use one above λ_max(H+δI)/2, e.g. the top eigenvalue from Arnoldi", ErrDiverged, xNorm, stepNorm, s))
				case opts.Tol > 0 && stepNorm <= opts.Tol:
					continue
				}
				next = append(next, i)
			}
			act = next
			if opts.Progress != nil {
				opts.Progress(fmt.Sprintf("repeat %d, %d right-hand sides iterating", r, len(act)), j, depth)
			}
		}
		if opts.Tol > 0 && len(act) > 0 && notConverged == nil {
			i := act[0]
			notConverged = newError(method, i, 0, fmt.Errorf("%w: relative step %.3g > %g after %d steps (raise Depth)", ErrNotConverged, rep.Residuals[i], opts.Tol, depth))
		}
		for i := 0; i < k; i++ {
			axpy(1, x.Row(i), sum.Row(i))
		}
	}
	c := 1 / (s * float64(repeats))
	for i := range sum.Data {
		sum.Data[i] *= c
	}
	return sum, rep, notConverged
}

// LiSSAScale returns the default scale of LiSSA for H + δI: 2·(λ_max(H) + δ),
// with λ_max estimated by 30 iterations of Arnoldi seeded by seed, on be
// (nil: linalg.Auto()). Twice the estimate leaves room for its error: the
// recursion needs every eigenvalue below twice the scale.
func LiSSAScale(ctx context.Context, be linalg.Backend, op Operator, damping float64, seed uint64) (float64, error) {
	lr, _, err := Arnoldi(ctx, be, op, ArnoldiOptions{Iterations: 30, TopK: 1, Seed: seed})
	if err != nil {
		return 0, fmt.Errorf("estimating λ_max for the LiSSA scale: %w", err)
	}
	return 2 * (lr.Values[0] + damping), nil
}
