package ekfac

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// lowRank returns U (d_out × r) and V (d_in × r) such that U·Vᵀ is the best
// rank-r approximation of m (d_out × d_in), r < min(d_out, d_in). It
// projects m onto the top r eigenvectors of the Gram matrix of its smaller
// side: U·Vᵀ = W·Wᵀ·m with W those of m·mᵀ (V = mᵀW), or m·W·Wᵀ with W
// those of mᵀm (U = mW), which is the truncated SVD. The Gram matrix
// squares m's singular values, so directions below √ε of the largest are
// resolved only to √ε; they are the ones truncation drops.
func lowRank(be linalg.Backend, m *linalg.Dense64, r int) (u, v *linalg.Dense64, err error) {
	rows, cols := m.Rows, m.Cols
	side := min(rows, cols)
	gram := linalg.NewDense64(side, side, nil)
	if rows <= cols {
		be.Dgemm(linalg.NoTrans, linalg.Trans, 1, m, m, 0, gram)
	} else {
		be.Dgemm(linalg.Trans, linalg.NoTrans, 1, m, m, 0, gram)
	}
	_, vecs, err := be.Eigh(gram)
	if err != nil {
		return nil, nil, fmt.Errorf("rank-%d approximation: %w", r, err)
	}
	w := vecs.Slice(0, side, side-r, side) // ascending order: the top r last
	if rows <= cols {
		u = w.Clone()
		v = linalg.NewDense64(cols, r, nil)
		be.Dgemm(linalg.Trans, linalg.NoTrans, 1, m, u, 0, v)
		return u, v, nil
	}
	v = w.Clone()
	u = linalg.NewDense64(rows, r, nil)
	be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, m, v, 0, u)
	return u, v, nil
}

// lowRankSide is the width (queries × rank) of the factors of one block of
// queries: wide enough that the products with the training rows run at
// the GEMM rate.
const lowRankSide = 4096

// lowRankScores sets out (Q × N) to the scores of the queries q against the
// training examples t in layer li with each query's P(G_q) replaced by its
// rank-r truncation U_q·V_qᵀ, r = opt.Rank, without forming it:
//
//	score(q, t) = Σ_τ s_τᵀ U_q V_qᵀ a_τ = Σ_τ Σ_k (S_t U_q)[τ, k] · (A_t V_q)[τ, k]
//
// two GEMMs of the raw training rows with the stacked U and V of a block
// of queries, then a reduction over k and the tokens: 2·N·T·Q·r·(d_in +
// d_out) flops instead of 2·N·T·Q·d_out·d_in, and no training row is
// rotated. opt.Precision F32 makes those products float32; P(G_q) and its
// truncation are formed in float64 either way.
func (f *Factors) lowRankScores(ctx context.Context, be linalg.Backend, li int, q, t *gradients.Batch, opt ScoreOptions, out *linalg.Dense64) error {
	l := &t.Layers[li]
	r, tok, din, dout := opt.Rank, l.Tokens, l.DIn, l.DOut
	nq, nt := q.N, t.N
	limit := chunkFloats32
	if opt.chunkFloats > 0 {
		limit = opt.chunkFloats
	}
	qb := max(1, min(nq, lowRankSide/r, limit/(r*tok)))
	nc := max(1, min(nt, limit/(tok*qb*r), limit/(tok*max(din, dout))))
	if err := checkWork(l.Name, "low-rank products", 2*nc*tok, qb*r, opt.MemoryLimit); err != nil {
		return err
	}
	if err := linalg.CheckMemory(fmt.Sprintf("layer %s: preconditioned queries", l.Name), fmt.Sprintf("%d × %d float64", qb, l.Dim()),
		linalg.Float64Bytes(qb, l.Dim()), opt.MemoryLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	for q0 := 0; q0 < nq; q0 += qb {
		q1 := min(q0+qb, nq)
		w := (q1 - q0) * r
		p := linalg.NewDense64(q1-q0, l.Dim(), nil)
		if err := f.preconditionLayer(be, &q.Slice(q0, q1).Layers[li], li, opt, p.Row); err != nil {
			return err
		}
		us, vs := linalg.NewDense64(dout, w, nil), linalg.NewDense64(din, w, nil)
		for n := 0; n < q1-q0; n++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			u, v, err := lowRank(be, linalg.NewDense64(dout, din, p.Row(n)), r)
			if err != nil {
				return fmt.Errorf("ekfac: layer %q: query %d: %w", l.Name, q0+n, err)
			}
			for i := 0; i < dout; i++ {
				copy(us.Row(i)[n*r:(n+1)*r], u.Row(i))
			}
			for i := 0; i < din; i++ {
				copy(vs.Row(i)[n*r:(n+1)*r], v.Row(i))
			}
		}
		var reduce func(lo, hi int)
		if opt.Precision == F32 {
			us32, vs32 := us.To32(), vs.To32()
			su, av := linalg.NewDense32(nc*tok, w, nil), linalg.NewDense32(nc*tok, w, nil)
			reduce = func(lo, hi int) {
				rows := (hi - lo) * tok
				a := narrow(rows, din, l.A[lo*tok*din:hi*tok*din])
				s := narrow(rows, dout, l.S[lo*tok*dout:hi*tok*dout])
				suc, avc := su.Slice(0, rows, 0, w), av.Slice(0, rows, 0, w)
				be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, s, us32, 0, suc)
				be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, vs32, 0, avc)
				sumRows(hi-lo, tok, q1-q0, r, func(row, qi int) float64 {
					return float64(linalg.Dot32(suc.Row(row)[qi*r:(qi+1)*r], avc.Row(row)[qi*r:(qi+1)*r]))
				}, out, q0, lo)
			}
		} else {
			su, av := linalg.NewDense64(nc*tok, w, nil), linalg.NewDense64(nc*tok, w, nil)
			reduce = func(lo, hi int) {
				rows := (hi - lo) * tok
				suc, avc := su.Slice(0, rows, 0, w), av.Slice(0, rows, 0, w)
				be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, linalg.NewDense64(rows, dout, l.S[lo*tok*dout:hi*tok*dout]), us, 0, suc)
				be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, linalg.NewDense64(rows, din, l.A[lo*tok*din:hi*tok*din]), vs, 0, avc)
				sumRows(hi-lo, tok, q1-q0, r, func(row, qi int) float64 {
					var d float64
					x, y := suc.Row(row)[qi*r:(qi+1)*r], avc.Row(row)[qi*r:(qi+1)*r]
					for k, v := range x {
						d += v * y[k]
					}
					return d
				}, out, q0, lo)
			}
		}
		for lo := 0; lo < nt; lo += nc {
			if err := ctx.Err(); err != nil {
				return err
			}
			reduce(lo, min(lo+nc, nt))
		}
	}
	return nil
}

// sumRows sets out[q0+qi, lo+n] = Σ_τ dot(n·tok+τ, qi) for the n examples
// of a chunk and the nq queries of a block, the examples split between
// goroutines and each score summed by one of them in token order, so that
// the split changes no result.
func sumRows(n, tok, nq, r int, dot func(row, qi int) float64, out *linalg.Dense64, q0, lo int) {
	linalg.ParallelChunks(n, max(1, 4096/max(tok*nq*r, 1)), func(a, b int) {
		for e := a; e < b; e++ {
			for qi := 0; qi < nq; qi++ {
				var s float64
				for row := e * tok; row < (e+1)*tok; row++ {
					s += dot(row, qi)
				}
				out.Data[(q0+qi)*out.Stride+lo+e] = s
			}
		}
	})
}
