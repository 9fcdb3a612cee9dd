package influence

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// ProjectedHessian returns the "raw" curvature of a store of projected
// gradients, (1/N) ΦᵀΦ with Φ the N × k matrix of its rows, in float64.
// Rows are summed in fixed blocks of 1024 store rows, in order, so the result
// does not depend on chunkRows or on how the store is sharded.
// Use it with Exact(h, δ) to precondition projected queries; RawDamping gives
// the heuristic δ = 0.1·trace(H)/k.
func ProjectedHessian(ctx context.Context, be linalg.Backend, s *store.Store, chunkRows int) (*linalg.Dense64, error) {
	if chunkRows < 1 {
		chunkRows = DefaultChunkRows
	}
	dim, n := s.Dim(), s.Count()
	if n == 0 {
		return nil, fmt.Errorf("influence: ProjectedHessian: the store %s is empty", s.Dir())
	}
	h := linalg.NewDense64(dim, dim, nil)
	block := linalg.NewDense64(gemmBlock, dim, nil)
	filled := 0
	flush := func() {
		if filled > 0 {
			be.CovAccumulate(h, block.Slice(0, filled, 0, dim))
			filled = 0
		}
	}
	it := s.Chunks(chunkRows)
	defer it.Close()
	for it.Next(ctx) {
		c := it.Chunk()
		for i := 0; i < c.Rows.Rows; i++ {
			dst := block.Row(filled)
			for j, v := range c.Rows.Row(i) {
				dst[j] = float64(v)
			}
			if filled++; filled == gemmBlock {
				flush()
			}
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("influence: ProjectedHessian: %w", err)
	}
	flush()
	for i := range h.Data {
		h.Data[i] /= float64(n)
	}
	return h, nil
}

// RawDamping returns δ for the projected Hessian h: d's value, or the
// heuristic a tenth of h's mean eigenvalue, 0.1 × trace(h)/k
// (hessian.DampingFromTrace).
func RawDamping(h *linalg.Dense64, d hessian.Damping) float64 {
	if !d.Heuristic {
		return d.Value
	}
	var tr float64
	for i := 0; i < h.Rows; i++ {
		tr += h.At(i, i)
	}
	return d.Resolve(tr, h.Rows)
}
