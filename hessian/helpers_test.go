package hessian

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// withSpectrum returns Q diag(eigs) Qᵀ for a random orthogonal Q, exactly
// symmetric, and Q's columns as rows (the eigenvectors).
func withSpectrum(rng *rand.Rand, eigs []float64) (h, vecs *linalg.Dense64) {
	p := len(eigs)
	q := randomBlock(rng, p, p)
	if err := orthonormalizeRows(linalg.CPU(), q); err != nil {
		panic(err)
	}
	scaled := q.Clone()
	for i := 0; i < p; i++ {
		for j := range scaled.Row(i) {
			scaled.Row(i)[j] *= eigs[i]
		}
	}
	h = linalg.NewDense64(p, p, nil)
	linalg.CPU().Dgemm(linalg.Trans, linalg.NoTrans, 1, q, scaled, 0, h)
	for i := 0; i < p; i++ {
		for j := 0; j < i; j++ {
			h.Set(i, j, h.At(j, i))
		}
	}
	return h, q
}

// spread returns n values spaced geometrically from lo to hi.
func spread(lo, hi float64, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo * math.Pow(hi/lo, float64(i)/float64(max(n-1, 1)))
	}
	return v
}

func randomBlock(rng *rand.Rand, k, p int) *linalg.Dense64 {
	b := linalg.NewDense64(k, p, nil)
	for i := range b.Data {
		b.Data[i] = rng.NormFloat64()
	}
	return b
}

func mustDense(t testing.TB, h *linalg.Dense64) *Dense {
	t.Helper()
	d, err := NewDense(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// maxRelErr returns the largest ‖got_i − want_i‖/‖want_i‖ over rows.
func maxRelErr(got, want *linalg.Dense64) float64 {
	var e float64
	for i := 0; i < want.Rows; i++ {
		var d, w float64
		for j, v := range want.Row(i) {
			d += (got.At(i, j) - v) * (got.At(i, j) - v)
			w += v * v
		}
		e = max(e, math.Sqrt(d/w))
	}
	return e
}

// rowByRow hides an operator's ApplyMany, so the solvers take the
// one-vector path.
type rowByRow struct{ op Operator }

func (r rowByRow) Dim() int { return r.op.Dim() }
func (r rowByRow) Apply(ctx context.Context, v, out []float64) error {
	return r.op.Apply(ctx, v, out)
}

func bitsEqual(a, b *linalg.Dense64) bool {
	if a.Rows != b.Rows || a.Cols != b.Cols {
		return false
	}
	for i := 0; i < a.Rows; i++ {
		for j, v := range a.Row(i) {
			if math.Float64bits(v) != math.Float64bits(b.At(i, j)) {
				return false
			}
		}
	}
	return true
}
