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

// rotateTraining reports whether lowRankScores rotates the training rows
// into the eigenbasis (2·N·T·(d_in² + d_out²) flops) rather than the
// queries' rank-r factors out of it (2·Q·r·(d_in² + d_out²)).
func rotateTraining(nq, nt, tok, r int) bool { return nt*tok <= nq*r }

// lowRankScores sets out (Q × N) to the scores of the queries q against the
// training examples t in layer li with each query's P(G_q) replaced by its
// rank-r truncation, r = opt.Rank, without forming it. The truncation is
// taken in the eigenbasis, where P(G_q) is M̃_q = (Q_Sᵀ G_q Q_A) ⊘ (Λ + δ)
// and the rotations keep singular values: M̃_q ≈ U_q·V_qᵀ, and
//
//	score(q, t) = Σ_τ s̃_τᵀ U_q V_qᵀ ã_τ = Σ_τ Σ_k (S̃_t U_q)[τ, k] · (Ã_t V_q)[τ, k]
//
// two GEMMs of the training rows with the stacked U and V of a block of
// queries, then a reduction over k and the tokens: 2·N·T·Q·r·(d_in +
// d_out) flops instead of 2·N·T·Q·d_out·d_in. Either the training rows are
// rotated into the eigenbasis or the factors out of it (Q_S·U, Q_A·V),
// whichever costs less (rotateTraining). opt.Precision F32 makes the
// rotations and products float32; M̃_q and its truncation are float64.
func (f *Factors) lowRankScores(ctx context.Context, be linalg.Backend, li int, q, t *gradients.Batch, opt ScoreOptions, out *linalg.Dense64) error {
	l, lf := &t.Layers[li], &f.Layers[li]
	r, tok, din, dout := opt.Rank, l.Tokens, l.DIn, l.DOut
	nq, nt := q.N, t.N
	limit, size := chunkFloats32, 1 // the values of a work buffer; their size in float32s
	if opt.chunkFloats > 0 {
		limit = opt.chunkFloats
	}
	if opt.Precision != F32 {
		limit, size = max(1, limit/2), 2
	}
	qb := max(1, min(nq, lowRankSide/r, limit/(r*tok)))
	nc := max(1, min(nt, limit/(tok*qb*r), limit/(tok*max(din, dout))))
	if err := checkWork(l.Name, "low-rank factors (float64, and float32 copies)", 3*nq*r, din+dout, opt.MemoryLimit); err != nil {
		return err
	}
	if err := checkWork(l.Name, "low-rank products", size*2*nc*tok, qb*r, opt.MemoryLimit); err != nil {
		return err
	}
	// The queries' M̃ are formed in float64 a block of tb at a time, at
	// most limit values.
	tb := max(1, min(nq, limit/max(l.Dim(), 1)))
	if err := linalg.CheckMemory(fmt.Sprintf("layer %s: query transforms", l.Name), fmt.Sprintf("%d × %d float64", tb, l.Dim()),
		linalg.Float64Bytes(tb, l.Dim()), opt.MemoryLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	inv, err := f.inverse(li, opt.Damping)
	if err != nil {
		return err
	}
	// The factors of every query, U (d_out × Q·r) and V (d_in × Q·r), in
	// the eigenbasis or, when the training rows stay put, rotated out.
	us, vs := linalg.NewDense64(dout, nq*r, nil), linalg.NewDense64(din, nq*r, nil)
	for q0 := 0; q0 < nq; q0 += tb {
		q1 := min(q0+tb, nq)
		x := f.transform(be, &q.Slice(q0, q1).Layers[li], li)
		for n := 0; n < q1-q0; n++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			row := x.Row(n)
			if inv != nil {
				for j := range row {
					row[j] *= inv[j]
				}
			}
			u, v, err := lowRank(be, linalg.NewDense64(dout, din, row), r)
			if err != nil {
				return fmt.Errorf("ekfac: layer %q: query %d: %w", l.Name, q0+n, err)
			}
			c := (q0 + n) * r
			for i := 0; i < dout; i++ {
				copy(us.Row(i)[c:c+r], u.Row(i))
			}
			for i := 0; i < din; i++ {
				copy(vs.Row(i)[c:c+r], v.Row(i))
			}
		}
	}
	var qa, qs *linalg.Dense64
	if lf.QA != nil {
		if rotateTraining(nq, nt, tok, r) {
			qa, qs = lf.QA, lf.QS
		} else {
			uo, vo := linalg.NewDense64(dout, nq*r, nil), linalg.NewDense64(din, nq*r, nil)
			be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, lf.QS, us, 0, uo)
			be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, lf.QA, vs, 0, vo)
			us, vs = uo, vo
		}
	}
	var chunk func(lo, hi int)
	if opt.Precision == F32 {
		f32 := lowRankBlocks[float32]{us: us.To32(), vs: vs.To32(), r: r, qb: qb, tok: tok, out: out,
			su: linalg.NewDense32(nc*tok, qb*r, nil), av: linalg.NewDense32(nc*tok, qb*r, nil),
			gemm: func(a, b, c *linalg.Dense32) { be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, b, 0, c) },
			dot:  func(x, y []float32) float64 { return float64(linalg.Dot32(x, y)) }}
		var qa32, qs32 *linalg.Dense32
		if qa != nil {
			qa32, qs32 = qa.To32(), qs.To32()
		}
		var w work32 // the chunks' rotated rows, in the same buffers
		chunk = func(lo, hi int) {
			a, s := rotated32(be, &w, l, lo, hi, qa32, qs32)
			f32.score(a, s, lo)
		}
	} else {
		f64 := lowRankBlocks[float64]{us: us, vs: vs, r: r, qb: qb, tok: tok, out: out,
			su: linalg.NewDense64(nc*tok, qb*r, nil), av: linalg.NewDense64(nc*tok, qb*r, nil),
			gemm: func(a, b, c *linalg.Dense64) { be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, a, b, 0, c) },
			dot: func(x, y []float64) float64 {
				var d float64
				for k, v := range x {
					d += v * y[k]
				}
				return d
			}}
		chunk = func(lo, hi int) {
			rows := (hi - lo) * tok
			a := linalg.NewDense64(rows, din, l.A[lo*tok*din:hi*tok*din])
			s := linalg.NewDense64(rows, dout, l.S[lo*tok*dout:hi*tok*dout])
			if qa != nil {
				a, s = rotateRows(be, &gradients.Layer{DIn: din, DOut: dout, A: a.Data, S: s.Data}, qa, qs)
			}
			f64.score(a, s, lo)
		}
	}
	for lo := 0; lo < nt; lo += nc {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk(lo, min(lo+nc, nt))
	}
	return nil
}

// lowRankBlocks holds the stacked factors of all queries (us, vs), the
// product buffers of one chunk (su, av) and the products of one precision.
type lowRankBlocks[T linalg.Float] struct {
	us, vs, su, av *linalg.Dense[T]
	r, qb, tok     int
	out            *linalg.Dense64
	gemm           func(a, b, c *linalg.Dense[T])
	dot            func(x, y []T) float64
}

// score sets the scores of every query against the chunk of training
// examples starting at lo, whose token rows are a and s: for each block of
// queries, S·U and A·V, then the reduction.
func (b *lowRankBlocks[T]) score(a, s *linalg.Dense[T], lo int) {
	rows, nq, r := a.Rows, b.out.Rows, b.r
	for q0 := 0; q0 < nq; q0 += b.qb {
		q1 := min(q0+b.qb, nq)
		w := (q1 - q0) * r
		su, av := b.su.Slice(0, rows, 0, w), b.av.Slice(0, rows, 0, w)
		b.gemm(s, b.us.Slice(0, b.us.Rows, q0*r, q1*r), su)
		b.gemm(a, b.vs.Slice(0, b.vs.Rows, q0*r, q1*r), av)
		sumRows(rows/b.tok, b.tok, q1-q0, r, func(row, qi int) float64 {
			return b.dot(su.Row(row)[qi*r:(qi+1)*r], av.Row(row)[qi*r:(qi+1)*r])
		}, b.out, q0, lo)
	}
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
