package hessian

import (
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/linalg"
)

// LowRank is a symmetric approximation H ≈ U diag(Values) Uᵀ with k
// orthonormal eigenvectors, as Arnoldi and Nystrom return it.
type LowRank struct {
	// Values holds the eigenvalues of H (without damping), largest
	// magnitude first.
	Values []float64
	// Vectors is k × Dim; row i is the unit eigenvector of Values[i].
	Vectors *linalg.Dense64
}

// Dim returns the dimension of the vectors.
func (l *LowRank) Dim() int { return l.Vectors.Cols }

// ProjectedInverse returns Σ_i (g·u_i) u_i / (λ_i + δ) for every row g of the
// n × Dim block g: the inverse of H + δI on the span of the eigenvectors,
// zero outside it (Schioppa et al. 2022). It fails with ErrIndefinite when
// some λ_i + δ ≤ 0.
func (l *LowRank) ProjectedInverse(be linalg.Backend, g *linalg.Dense64, damping float64) (*linalg.Dense64, error) {
	inv, err := l.inverseValues("projected inverse", damping)
	if err != nil {
		return nil, err
	}
	return l.apply(be, g, inv, 0)
}

// ShiftedInverse returns (U diag(λ) Uᵀ + δI)⁻¹ g for every row g of the
// n × Dim block g: 1/(λ_i + δ) along u_i and 1/δ on the rest. δ must be > 0
// unless the vectors span the whole space.
func (l *LowRank) ShiftedInverse(be linalg.Backend, g *linalg.Dense64, damping float64) (*linalg.Dense64, error) {
	inv, err := l.inverseValues("shifted inverse", damping)
	if err != nil {
		return nil, err
	}
	full := len(l.Values) == l.Dim()
	if !full && !(damping > 0) {
		return nil, newError("shifted inverse", -1, 0, fmt.Errorf("%w: rank %d < dimension %d needs damping > 0, have %g", ErrIndefinite, len(l.Values), l.Dim(), damping))
	}
	if full {
		return l.apply(be, g, inv, 0)
	}
	// (Ĥ+δI)⁻¹g = g/δ + U diag(1/(λ+δ) − 1/δ) Uᵀg.
	for i := range inv {
		inv[i] -= 1 / damping
	}
	return l.apply(be, g, inv, 1/damping)
}

func (l *LowRank) inverseValues(what string, damping float64) ([]float64, error) {
	if err := checkDamping(what, damping); err != nil {
		return nil, err
	}
	inv := make([]float64, len(l.Values))
	for i, v := range l.Values {
		d := v + damping
		if !(d > 0) || math.IsInf(d, 0) {
			return nil, newError(what, -1, 0, fmt.Errorf("%w: eigenvalue %d is %g, and λ+δ = %g (increase the damping)", ErrIndefinite, i, v, d))
		}
		inv[i] = 1 / d
	}
	return inv, nil
}

// apply returns c·G + (G Uᵀ diag(w)) U.
func (l *LowRank) apply(be linalg.Backend, g *linalg.Dense64, w []float64, c float64) (*linalg.Dense64, error) {
	if g.Cols != l.Dim() {
		return nil, fmt.Errorf("hessian: gradients have dimension %d, eigenvectors %d", g.Cols, l.Dim())
	}
	for i := 0; i < g.Rows; i++ {
		if j, v, bad := firstNonFinite(g.Row(i)); bad {
			return nil, newError("inverse", i, 0, fmt.Errorf("%w: element %d is %v", ErrNotFinite, j, v))
		}
	}
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("hessian: %w", err)
	}
	k := len(w)
	out := linalg.NewDense64(g.Rows, g.Cols, nil)
	if c != 0 {
		for i := 0; i < g.Rows; i++ {
			dst := out.Row(i)
			for j, v := range g.Row(i) {
				dst[j] = c * v
			}
		}
	}
	if k == 0 || g.Rows == 0 {
		return out, nil
	}
	coef := linalg.NewDense64(g.Rows, k, nil)
	be.Dgemm(linalg.NoTrans, linalg.Trans, 1, g, l.Vectors, 0, coef)
	for i := 0; i < g.Rows; i++ {
		row := coef.Row(i)
		for j := range row {
			row[j] *= w[j]
		}
	}
	be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, coef, l.Vectors, 1, out)
	return out, nil
}
