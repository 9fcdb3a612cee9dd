package hessian

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"

	"github.com/goinfluence/goinfluence/linalg"
)

// NystromOptions are the knobs of Nystrom.
type NystromOptions struct {
	// Rank is the sketch size r, one Hessian-vector product each; 0 means
	// min(Dim, 100). It must not exceed Dim.
	Rank int
	// Seed seeds the Gaussian test matrix.
	Seed uint64
}

const nystromStream = 0x6e7973747230 // "nystr0"

// Nystrom returns the randomised rank-r Nyström approximation of the
// positive semidefinite H,
//
//	Ĥ = (HΩ)(ΩᵀHΩ)⁺(HΩ)ᵀ = U diag(λ) Uᵀ,
//
// for a seeded Gaussian test matrix Ω (P × r, orthonormalised). It is
// computed stably as Tropp et al. (2017) and Frangella et al. (2023) do:
// shift Y = HΩ by ν = √P·ε·‖Y‖_F, factor ΩᵀY_ν = CCᵀ, take the SVD of
// B = Y_ν C⁻ᵀ and set λ = max(σ² − ν, 0). With r = P it is H to rounding.
// Use LowRank.ShiftedInverse for (Ĥ + δI)⁻¹.
//
// A Cholesky failure means H is not positive semidefinite (a Hessian with
// negative eigenvalues); the error wraps ErrIndefinite. Results are
// bit-identical for one seed and backend.
func Nystrom(ctx context.Context, be linalg.Backend, op Operator, opts NystromOptions) (*LowRank, *Report, error) {
	const method = "nystrom"
	if op == nil || op.Dim() < 1 {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("need an operator of dimension ≥ 1"))
	}
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, nil, newError(method, -1, 0, err)
	}
	dim := op.Dim()
	r := opts.Rank
	if r == 0 {
		r = min(dim, 100)
	}
	if r < 1 || r > dim {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("rank %d must be in [1, %d]", r, dim))
	}
	rng := rand.New(rand.NewPCG(opts.Seed, nystromStream))
	omega := linalg.NewDense64(r, dim, nil) // Ωᵀ: one test vector a row
	for i := range omega.Data {
		omega.Data[i] = rng.NormFloat64()
	}
	if err := orthonormalizeRows(be, omega); err != nil {
		return nil, nil, newError(method, -1, 0, err)
	}
	y := linalg.NewDense64(r, dim, nil)
	if err := ApplyMany(ctx, op, omega, y); err != nil {
		return nil, nil, newError(method, -1, 0, err)
	}
	for i := 0; i < r; i++ {
		if j, v, bad := firstNonFinite(y.Row(i)); bad {
			return nil, nil, newError(method, -1, 0, fmt.Errorf("%w: element %d of H·ω_%d is %v", ErrNotFinite, j, i, v))
		}
	}
	nu := math.Sqrt(float64(dim)) * 0x1p-52 * floats.Norm(y.Data, 2)
	axpy(nu, omega.Data, y.Data)

	// M = Ωᵀ Y_ν, symmetrised, and its Cholesky factor C.
	m := linalg.NewDense64(r, r, nil)
	be.Dgemm(linalg.NoTrans, linalg.Trans, 1, omega, y, 0, m)
	sym := mat.NewSymDense(r, nil)
	for i := 0; i < r; i++ {
		for j := i; j < r; j++ {
			sym.SetSym(i, j, (m.At(i, j)+m.At(j, i))/2)
		}
	}
	var chol mat.Cholesky
	if !chol.Factorize(sym) {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("%w: Ωᵀ(H+νI)Ω has no Cholesky factor, so H has negative eigenvalues (use a Gauss–Newton operator, or Arnoldi)", ErrIndefinite))
	}
	var c mat.TriDense
	chol.LTo(&c)
	// Bᵀ = C⁻¹ Y_νᵀ, in place over the rows of y.
	blas64.Trsm(blas.Left, blas.NoTrans, 1, c.RawTriangular(),
		blas64.General{Rows: r, Cols: dim, Stride: y.Stride, Data: y.Data})

	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(r, dim, y.Data), mat.SVDThin) {
		return nil, nil, newError(method, -1, 0, fmt.Errorf("%w: SVD of the sketch did not converge", ErrNotConverged))
	}
	sigma := svd.Values(nil)
	var v mat.Dense
	svd.VTo(&v) // dim × r: the left singular vectors of B
	lr := &LowRank{Values: make([]float64, r), Vectors: linalg.NewDense64(r, dim, nil)}
	for i, s := range sigma {
		lr.Values[i] = max(s*s-nu, 0)
	}
	for j := 0; j < dim; j++ {
		for i := 0; i < r; i++ {
			lr.Vectors.Set(i, j, v.At(j, i))
		}
	}
	rep := &Report{Method: method, Eigenvalues: append([]float64(nil), lr.Values...), HVPs: r}
	return lr, rep, nil
}

// orthonormalizeRows makes the rows of a orthonormal by classical
// Gram–Schmidt applied twice, row by row.
func orthonormalizeRows(be linalg.Backend, a *linalg.Dense64) error {
	for i := 0; i < a.Rows; i++ {
		row := a.Slice(i, i+1, 0, a.Cols)
		n0 := floats.Norm(row.Row(0), 2)
		if i > 0 {
			prev := a.Slice(0, i, 0, a.Cols)
			c := linalg.NewDense64(1, i, nil)
			for pass := 0; pass < 2; pass++ {
				be.Dgemm(linalg.NoTrans, linalg.Trans, 1, row, prev, 0, c)
				be.Dgemm(linalg.NoTrans, linalg.NoTrans, -1, c, prev, 1, row)
			}
		}
		n := floats.Norm(row.Row(0), 2)
		if !(n > 1e-8*n0) {
			return fmt.Errorf("test vector %d is linearly dependent on the others", i)
		}
		scaleTo(row.Row(0), 1/n)
	}
	return nil
}
