package ekfac

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// LayerScores returns score(q, t) per layer, one n_query × n_train matrix a
// layer. It works in the Kronecker eigenbasis, where
//
//	⟨P(G_q), G_t⟩ = ⟨(Q_Sᵀ G_q Q_A) ⊘ (Λ + δ), Q_Sᵀ G_t Q_A⟩,
//
// so no gradient is rotated back: with T token rows per example a rotation
// costs O(T·d²) from the factors instead of the O(d³) of rotating P(G) back.
// Training examples are taken a chunk at a time, bounding memory.
//
// With opt.Precision F32 the products are float32 (see F32), and each layer
// is scored by the algorithm PairwisePlan chooses.
func (f *Factors) LayerScores(ctx context.Context, be linalg.Backend, q, t *gradients.Batch, opt ScoreOptions) ([]*linalg.Dense64, error) {
	layers, _, err := f.LayerScoresAndSelf(ctx, be, q, t, opt, false)
	return layers, err
}

// SelfInfluence returns ⟨P(G_t), G_t⟩ for every example, summed over layers,
// computed in the eigenbasis as Σ G̃²/(Λ+δ). The rank option, which is for
// queries, does not apply.
func (f *Factors) SelfInfluence(ctx context.Context, be linalg.Backend, t *gradients.Batch, opt ScoreOptions) ([]float64, error) {
	_, self, err := f.LayerScoresAndSelf(ctx, be, nil, t, opt, true)
	return self, err
}

// LayerScoresAndSelf returns LayerScores of q against t (nil when q is nil)
// and, when withSelf is set, the SelfInfluence of t, rotating each chunk of
// training examples into the eigenbasis once for both: that rotation is most
// of the work. opt.Precision F32 applies only without self-influence:
// withSelf makes the whole call float64.
func (f *Factors) LayerScoresAndSelf(ctx context.Context, be linalg.Backend, q, t *gradients.Batch, opt ScoreOptions, withSelf bool) ([]*linalg.Dense64, []float64, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, nil, fmt.Errorf("ekfac: %w", err)
	}
	for _, b := range []*gradients.Batch{q, t} {
		if b == nil {
			continue
		}
		if err := f.Compatible(b); err != nil {
			return nil, nil, err
		}
		if err := b.Validate(); err != nil {
			return nil, nil, fmt.Errorf("ekfac: %w", err)
		}
	}
	switch opt.Precision {
	case F64:
	case F32:
		if q != nil && !withSelf {
			out, err := f.layerScores32(ctx, be, q, t, opt)
			return out, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("ekfac: unknown precision %v", opt.Precision)
	}
	var (
		xq   []*linalg.Dense64
		out  []*linalg.Dense64
		self []float64
		invs = make([][]float64, len(f.Layers))
	)
	if q != nil {
		if err := f.checkScores(q, t, opt.MemoryLimit); err != nil {
			return nil, nil, err
		}
		if opt.Rank < 0 {
			return nil, nil, fmt.Errorf("ekfac: rank %d < 0", opt.Rank)
		}
		var err error
		if xq, err = f.queryTransform(ctx, be, q, opt); err != nil {
			return nil, nil, err
		}
		out = make([]*linalg.Dense64, len(f.Layers))
		for li := range out {
			out[li] = linalg.NewDense64(q.N, t.N, nil)
			if xq[li] == nil {
				if err := f.lowRankScores(ctx, be, li, q, t, opt, out[li]); err != nil {
					return nil, nil, err
				}
			}
		}
		if !withSelf && allNil(xq) {
			return out, nil, nil
		}
	}
	if withSelf {
		self = make([]float64, t.N)
		for li := range f.Layers {
			var err error
			if invs[li], err = f.inverse(li, opt.Damping); err != nil {
				return nil, nil, err
			}
		}
	}
	chunk := max(1, min(t.N, chunkFloats/max(t.Dim(), 1)))
	for lo := 0; lo < t.N; lo += chunk {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hi := min(lo+chunk, t.N)
		tc := t.Slice(lo, hi)
		for li := range f.Layers {
			pair := q != nil && xq[li] != nil
			if !pair && !withSelf {
				continue
			}
			xt := f.transform(be, &tc.Layers[li], li)
			if pair {
				be.Dgemm(linalg.NoTrans, linalg.Trans, 1, xq[li], xt, 0, out[li].Slice(0, q.N, lo, hi))
			}
			if withSelf {
				addSelf(self[lo:hi], xt, invs[li])
			}
		}
	}
	return out, self, nil
}

func allNil[T any](s []*T) bool {
	for _, v := range s {
		if v != nil {
			return false
		}
	}
	return true
}

// checkScores refuses the per-layer scores of q against t, with the
// float64 transforms of all queries beside them, over memLimit.
func (f *Factors) checkScores(q, t *gradients.Batch, memLimit int64) error {
	scores := linalg.Float64Bytes(len(f.Layers), q.N, t.N)
	if err := linalg.CheckMemory("per-layer scores", fmt.Sprintf("%d layers × %d queries × %d training examples, float64", len(f.Layers), q.N, t.N),
		scores, memLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	if err := linalg.CheckMemory("query transforms", fmt.Sprintf("%d × %d float64", q.N, q.Dim()),
		linalg.AddBytes(scores, linalg.Float64Bytes(q.N, q.Dim())), memLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	return nil
}

// addSelf adds Σ_j x_j² · inv_j of every row of x to self (inv nil: 1).
func addSelf(self []float64, x *linalg.Dense64, inv []float64) {
	for n := range self {
		var s float64
		for j, v := range x.Row(n) {
			if inv == nil {
				s += v * v
			} else {
				s += v * v * inv[j]
			}
		}
		self[n] += s
	}
}

// chunkFloats bounds the transformed training gradients held at once.
const chunkFloats = 1 << 24

// queryTransform returns per layer the queries in the eigenbasis, already
// divided by Λ + δ; nil for a layer that opt.Rank truncates, which
// lowRankScores scores.
func (f *Factors) queryTransform(ctx context.Context, be linalg.Backend, q *gradients.Batch, opt ScoreOptions) ([]*linalg.Dense64, error) {
	out := make([]*linalg.Dense64, len(f.Layers))
	for li := range f.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if truncates(&q.Layers[li], opt.Rank) {
			continue
		}
		inv, err := f.inverse(li, opt.Damping)
		if err != nil {
			return nil, err
		}
		x := f.transform(be, &q.Layers[li], li)
		if inv != nil {
			for n := 0; n < x.Rows; n++ {
				row := x.Row(n)
				for j := range row {
					row[j] *= inv[j]
				}
			}
		}
		out[li] = x
	}
	return out, nil
}

// transform returns the n × Dim matrix of the layer's gradients in the
// factors' basis: Q_Sᵀ G Q_A for K-FAC and EK-FAC, G itself otherwise.
func (f *Factors) transform(be linalg.Backend, l *gradients.Layer, li int) *linalg.Dense64 {
	lf := &f.Layers[li]
	n := examples(l)
	x := linalg.NewDense64(n, l.Dim(), nil)
	if lf.QA == nil {
		for i := 0; i < n; i++ {
			l.Gradient(i, x.Row(i))
		}
		return x
	}
	rotated(be, l, lf.QA, lf.QS, func(i int, gt *linalg.Dense64) { copy(x.Row(i), gt.Data) })
	return x
}
