package hessian

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
)

// ArnoldiOptions are the knobs of Arnoldi.
type ArnoldiOptions struct {
	// Iterations is the Krylov dimension n, one Hessian-vector product each;
	// 0 means min(Dim, 100). Values above Dim are cut to Dim.
	Iterations int
	// TopK is the number of eigenpairs kept, largest magnitude first; 0
	// means all n. The extreme Ritz values converge first, so n ≈ 2–4·TopK
	// gives accurate top pairs.
	TopK int
	// Seed seeds the Gaussian start vector.
	Seed uint64
}

// arnoldiStream tells the start vector's generator apart from others seeded
// with the same seed.
const arnoldiStream = 0x61726e6f6c6469 // "arnoldi"

// Arnoldi runs the Arnoldi iteration (Lanczos with full
// reorthogonalisation, H being symmetric) on op from a seeded Gaussian start
// vector for n steps, and returns the top-k Ritz pairs of H by magnitude;
// use LowRank.ProjectedInverse for Schioppa et al.'s influence
// preconditioner. The iteration stops early when the Krylov space becomes
// invariant (its next vector under 1e-10·‖H‖), which happens at the latest
// after Dim steps; then the Ritz pairs are exact eigenpairs. A Krylov space
// holds one vector per distinct eigenvalue, so an eigenvalue of multiplicity
// m is found once, with the eigenvector nearest the start vector (softmax
// regression's λI on its redundant directions is one such).
//
// The Report lists the kept eigenvalues and the Krylov dimension reached.
// Results are bit-identical for one seed and backend.
func Arnoldi(ctx context.Context, be linalg.Backend, op Operator, opts ArnoldiOptions) (*LowRank, *Report, error) {
	const method = "arnoldi"
	if op == nil || op.Dim() < 1 {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("need an operator of dimension ≥ 1"))
	}
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, nil, newError(method, -1, 0, err)
	}
	dim := op.Dim()
	n := opts.Iterations
	if n == 0 {
		n = 100
	}
	if n < 0 || opts.TopK < 0 {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("iterations %d and top-k %d must be ≥ 0", n, opts.TopK))
	}
	n = min(n, dim)

	q := linalg.NewDense64(n+1, dim, nil)
	t := linalg.NewDense64(n+1, n, nil)
	rng := rand.New(rand.NewPCG(opts.Seed, arnoldiStream))
	q0 := q.Row(0)
	for i := range q0 {
		q0[i] = rng.NormFloat64()
	}
	scaleTo(q0, 1/floats.Norm(q0, 2))

	var hnorm float64
	m := 0 // vectors of the basis in use
	for j := 0; j < n; j++ {
		w := q.Slice(j+1, j+2, 0, dim)
		if err := ctx.Err(); err != nil {
			return nil, nil, newError(method, -1, j+1, err)
		}
		if err := ApplyMany(ctx, op, q.Slice(j, j+1, 0, dim), w); err != nil {
			return nil, nil, newError(method, -1, j+1, err)
		}
		wr := w.Row(0)
		if i, v, bad := firstNonFinite(wr); bad {
			return nil, nil, newError(method, -1, j+1, fmt.Errorf("%w: element %d of H·q is %v", ErrNotFinite, i, v))
		}
		hnorm = max(hnorm, floats.Norm(wr, 2))
		// Classical Gram–Schmidt twice ("twice is enough") keeps the basis
		// orthonormal to rounding; the coefficients are column j of T.
		basis := q.Slice(0, j+1, 0, dim)
		c := linalg.NewDense64(1, j+1, nil)
		for pass := 0; pass < 2; pass++ {
			be.Dgemm(linalg.NoTrans, linalg.Trans, 1, w, basis, 0, c)
			be.Dgemm(linalg.NoTrans, linalg.NoTrans, -1, c, basis, 1, w)
			for i, v := range c.Row(0) {
				t.Data[i*t.Stride+j] += v
			}
		}
		m = j + 1
		beta := floats.Norm(wr, 2)
		if j+1 == n || beta <= 1e-10*hnorm {
			break
		}
		t.Set(j+1, j, beta)
		scaleTo(wr, 1/beta)
	}

	// T = QᵀHQ is symmetric tridiagonal up to rounding when H is symmetric.
	sym := linalg.NewDense64(m, m, nil)
	var tmax, asym float64
	for i := 0; i < m; i++ {
		for j := 0; j < m; j++ {
			tmax = max(tmax, math.Abs(t.At(i, j)))
			asym = max(asym, math.Abs(t.At(i, j)-t.At(j, i)))
			sym.Set(i, j, (t.At(i, j)+t.At(j, i))/2)
		}
	}
	if asym > 1e-6*tmax {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("operator is not symmetric: QᵀHQ departs from its transpose by %.3g (of %.3g)", asym, tmax))
	}
	vals, vecs, err := be.Eigh(sym)
	if err != nil {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("eigendecomposition of the %d×%d projection: %w", m, m, err))
	}
	keep := topByMagnitude(vals, opts.TopK)
	lr := &LowRank{Values: make([]float64, len(keep)), Vectors: linalg.NewDense64(len(keep), dim, nil)}
	y := linalg.NewDense64(len(keep), m, nil) // selected Ritz coordinates, one a row
	for a, i := range keep {
		lr.Values[a] = vals[i]
		for r := 0; r < m; r++ {
			y.Set(a, r, vecs.At(r, i))
		}
	}
	be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, y, q.Slice(0, m, 0, dim), 0, lr.Vectors)
	rep := &Report{Method: method, Iterations: []int{m}, Eigenvalues: append([]float64(nil), lr.Values...), HVPs: m}
	return lr, rep, nil
}

// topByMagnitude returns the indices of the k values of largest magnitude
// (all when k is 0 or too large), largest first; ties keep index order.
func topByMagnitude(vals []float64, k int) []int {
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return math.Abs(vals[idx[a]]) > math.Abs(vals[idx[b]]) })
	if k > 0 && k < len(idx) {
		idx = idx[:k]
	}
	return idx
}

func scaleTo(v []float64, c float64) {
	for i := range v {
		v[i] *= c
	}
}
