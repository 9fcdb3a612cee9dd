package gradients

import (
	"context"
	"fmt"
)

// A Projection is also the record of how stored or exported gradients were
// made: a store keeps one in its manifest, and queries must be projected by
// the same one to be scored against it. The zero Projection (Kind 0) is
// none: the full, unprojected gradients. The methods below treat it so;
// Apply, which must be given a kind, refuses it.

// None reports whether p is no projection (the zero Kind).
func (p Projection) None() bool { return p.Kind == 0 }

// String writes p as the command-line flags name it: "none",
// "rademacher k=16 seed=3" or "kronecker k_in=8 k_out=4 seed=5".
func (p Projection) String() string {
	switch {
	case p.None():
		return "none"
	case p.KIn > 0 || p.KOut > 0:
		return fmt.Sprintf("%s k_in=%d k_out=%d seed=%d", p.Kind, p.KIn, p.KOut, p.Seed)
	}
	return fmt.Sprintf("%s k=%d seed=%d", p.Kind, p.K, p.Seed)
}

// Equal reports whether p and q project the same way: the same kind, sizes
// and seed. The seed of none does not matter, as nothing is drawn from it.
func (p Projection) Equal(q Projection) bool {
	if p.Kind != q.Kind || p.K != q.K || p.KIn != q.KIn || p.KOut != q.KOut {
		return false
	}
	return p.None() || p.Seed == q.Seed
}

// Dims returns the flattened dimension of each layer of gradients with the
// given layers once projected by p: the layer's own for none, K for the
// dense kinds and KIn·KOut for Kronecker, which needs factored layers. It
// lets a caller size or check a projection's output without projecting.
func (p Projection) Dims(layers []LayerInfo) ([]int, error) {
	out := make([]int, len(layers))
	for i, l := range layers {
		switch {
		case p.None():
			out[i] = l.D
		case p.Kind == Kronecker:
			if !l.Factored {
				return nil, fmt.Errorf("layer %q is dense (grad of dimension %d), but kronecker needs factored layers (a and s)", l.Name, l.D)
			}
			out[i] = p.KIn * p.KOut
		default:
			out[i] = p.K
		}
	}
	return out, nil
}

// ApplyOrKeep is ApplyWith, except that none returns b itself: for callers
// that hold a recorded Projection, which may be none.
func (p Projection) ApplyOrKeep(ctx context.Context, b *Batch, opt ApplyOptions) (*Batch, error) {
	if p.None() {
		return b, nil
	}
	return p.ApplyWith(ctx, b, opt)
}

// LayerInfos describes b's layers as a gradient file's header would, so
// that a batch in memory is checked against a store or a projection as a
// file is. DType is left empty.
func (b *Batch) LayerInfos() []LayerInfo {
	out := make([]LayerInfo, len(b.Layers))
	for i := range b.Layers {
		l := &b.Layers[i]
		out[i] = LayerInfo{Name: l.Name, Factored: l.Factored(), TokenAxis: l.TokenAxis, Tokens: max(l.Tokens, 1),
			DIn: l.DIn, DOut: l.DOut, D: l.Dim()}
	}
	return out
}
