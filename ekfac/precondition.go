package ekfac

import (
	"context"
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/accel"
)

// ScoreOptions are the choices made at score time, not fit time.
type ScoreOptions struct {
	Damping hessian.Damping
	// Rank > 0 replaces each layer's P(G) by its rank-Rank truncated SVD
	// (meant for query gradients, to cut memory and time).
	Rank int
	// MemoryLimit bounds, in bytes, the score and preconditioned-gradient
	// matrices sized from the batches (n_query × n_train per layer,
	// n × Dim): 0 means linalg.DefaultMemoryLimit(), a negative value no
	// limit.
	MemoryLimit int64
	// Precision is the floating-point type of pairwise scores: F64 (the
	// zero value) or F32, which LayerScores honours and self-influence
	// does not (see F32). Precondition takes it for its rotations (K-FAC,
	// EK-FAC).
	Precision Precision

	// algorithm, when set, overrides PairwisePlan's choice for every
	// factored layer, and chunkFloats > 0 the F32 work-buffer bound
	// (tests).
	algorithm   Algorithm
	chunkFloats int
}

// LayerDamping returns the δ used for layer i: the absolute value, or
// 0.1 × mean(Λ) of the layer for the heuristic (0 for Identity).
func (f *Factors) LayerDamping(i int, d hessian.Damping) float64 {
	lam := f.Layers[i].Lambda
	if !d.Heuristic || lam == nil {
		return d.Resolve(0, 0)
	}
	var s float64
	for _, v := range lam.Data {
		s += v
	}
	return d.Resolve(s, len(lam.Data))
}

// Precondition returns P(G) for every example of g as an N × Dim matrix,
// layers concatenated in order:
//
//	P(G) = Q_S [ (Q_Sᵀ G Q_A) ⊘ (Λ + δ) ] Q_Aᵀ
//
// for K-FAC and EK-FAC, G ⊘ (Λ + δ) for the diagonal method and G for
// Identity, with the reciprocal taken in float64.
func (f *Factors) Precondition(ctx context.Context, be linalg.Backend, g *gradients.Batch, opt ScoreOptions) (*linalg.Dense64, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("ekfac: %w", err)
	}
	if err := f.Compatible(g); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("ekfac: %w", err)
	}
	if opt.Rank < 0 {
		return nil, fmt.Errorf("ekfac: rank %d < 0", opt.Rank)
	}
	if err := checkPrecision(opt.Precision); err != nil {
		return nil, err
	}
	if err := linalg.CheckMemory("preconditioned gradients", fmt.Sprintf("%d × %d float64", g.N, g.Dim()),
		linalg.Float64Bytes(g.N, g.Dim()), opt.MemoryLimit); err != nil {
		return nil, fmt.Errorf("ekfac: %w", err)
	}
	out := linalg.NewDense64(g.N, g.Dim(), nil)
	off := 0
	for li := range g.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &g.Layers[li]
		d := l.Dim()
		view := func(n int) []float64 { return out.Row(n)[off : off+d] }
		if err := f.preconditionLayer(be, l, li, opt, view); err != nil {
			return nil, err
		}
		if truncates(l, opt.Rank) {
			for n := 0; n < g.N; n++ {
				v := linalg.NewDense64(l.DOut, l.DIn, view(n))
				u, w, err := lowRank(be, v, opt.Rank)
				if err != nil {
					return nil, fmt.Errorf("ekfac: layer %q: example %d: %w", l.Name, n, err)
				}
				be.Dgemm(linalg.NoTrans, linalg.Trans, 1, u, w, 0, v)
			}
		}
		off += d
	}
	return out, nil
}

// examples returns the number of examples layer l holds.
func examples(l *gradients.Layer) int {
	if l.Factored() {
		return len(l.A) / max(l.Tokens*l.DIn, 1)
	}
	return len(l.Grad) / max(l.D, 1)
}

// truncates reports whether a rank limit changes P(G) of layer l: it
// applies to factored layers of rank above it.
func truncates(l *gradients.Layer, rank int) bool {
	return rank > 0 && l.Factored() && rank < min(l.DIn, l.DOut)
}

// preconditionLayer writes P(G) of every example of layer l (index li)
// into view(n), without a rank limit; opt.Precision F32 makes the K-FAC
// and EK-FAC rotations float32.
func (f *Factors) preconditionLayer(be linalg.Backend, l *gradients.Layer, li int, opt ScoreOptions, view func(n int) []float64) error {
	lf := &f.Layers[li]
	n := examples(l)
	inv, err := f.inverse(li, opt.Damping)
	if err != nil {
		return err
	}
	switch {
	case f.Method == Identity:
		for i := 0; i < n; i++ {
			l.Gradient(i, view(i))
		}
	case f.Method == Diagonal:
		for i := 0; i < n; i++ {
			v := view(i)
			l.Gradient(i, v)
			for j := range v {
				v[j] *= inv[j]
			}
		}
	case opt.Precision == F32:
		f.precondition32(be, l, li, inv, view)
	default:
		tmp := linalg.NewDense64(l.DOut, l.DIn, nil)
		back := func(i int, gt *linalg.Dense64) {
			be.Dgemm(linalg.NoTrans, linalg.Trans, 1, gt, lf.QA, 0, tmp)
			be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, lf.QS, tmp, 0, linalg.NewDense64(l.DOut, l.DIn, view(i)))
		}
		if sc, ok := be.(accel.EKFACScaler); ok {
			return scaleOn(sc, be, l, lf, f.LayerDamping(li, opt.Damping), inv, back, opt.MemoryLimit)
		}
		rotated(be, l, lf.QA, lf.QS, func(i int, gt *linalg.Dense64) {
			for j := range gt.Data {
				gt.Data[j] *= inv[j]
			}
			back(i, gt)
		})
	}
	return nil
}

// precondition32 writes P(G) of every example of the factored layer l into
// view(n) with float32 products: each example's G̃ ⊘ (Λ + δ) as the F32
// scoring forms it (queryRows32), rotated back, Q_S G̃' Q_Aᵀ, by Sgemm and
// widened to float64.
func (f *Factors) precondition32(be linalg.Backend, l *gradients.Layer, li int, inv []float64, view func(n int) []float64) {
	lf := &f.Layers[li]
	qa, qs := lf.QA.To32(), lf.QS.To32()
	rows := f.queryRows32(be, l, li, inv, qa, qs)
	gt := linalg.NewDense32(l.DOut, l.DIn, nil)
	tmp := linalg.NewDense32(l.DOut, l.DIn, nil)
	for i := range examples(l) {
		rows(i, i+1, linalg.NewDense32(1, len(gt.Data), gt.Data))
		be.Sgemm(linalg.NoTrans, linalg.Trans, 1, gt, qa, 0, tmp)
		be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, qs, tmp, 0, gt)
		dst := view(i)
		for j, v := range gt.Data {
			dst[j] = float64(v)
		}
	}
}

// scaleOn is the scaling step of Precondition for the examples of layer l
// on a backend that scales (accel.EKFACScaler): the rotated gradients of
// all examples are scaled in one call, which computes what the host does
// bit for bit, then rotated back by back. A call the backend fails is made
// on the host with inv.
func scaleOn(sc accel.EKFACScaler, be linalg.Backend, l *gradients.Layer, lf *LayerFactors, delta float64, inv []float64,
	back func(n int, gt *linalg.Dense64), limit int64) error {
	n, d := len(l.A)/(l.Tokens*l.DIn), l.DOut*l.DIn
	if err := linalg.CheckMemory("rotated gradients", fmt.Sprintf("%d × %d float64", n, d), linalg.Float64Bytes(n, d), limit); err != nil {
		return fmt.Errorf("ekfac: layer %q: %w", l.Name, err)
	}
	buf := make([]float64, n*d)
	rotated(be, l, lf.QA, lf.QS, func(i int, gt *linalg.Dense64) { copy(buf[i*d:], gt.Data) })
	if sc.ScaleEKFAC(buf, lf.Lambda.Data, delta) != nil {
		for i := range buf {
			buf[i] *= inv[i%d]
		}
	}
	for i := range n {
		back(i, linalg.NewDense64(l.DOut, l.DIn, buf[i*d:(i+1)*d]))
	}
	return nil
}

// inverse returns 1/(Λ+δ) of layer i, or an error naming the layer when an
// entry is not positive (no damping on a singular factor) or not finite.
func (f *Factors) inverse(i int, d hessian.Damping) ([]float64, error) {
	lf := &f.Layers[i]
	if f.Method == Identity {
		return nil, nil
	}
	delta := f.LayerDamping(i, d)
	inv := make([]float64, len(lf.Lambda.Data))
	for j, v := range lf.Lambda.Data {
		x := v + delta
		if !(x > 0) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%w: layer %q: Λ + δ = %v at entry %d (δ = %g); use a larger damping", hessian.ErrDamping, lf.Name, x, j, delta)
		}
		inv[j] = 1 / x
	}
	return inv, nil
}

// Compatible checks that the batch has the factors' layers, in order and
// with the same shapes.
func (f *Factors) Compatible(g *gradients.Batch) error {
	if len(g.Layers) != len(f.Layers) {
		return fmt.Errorf("%w: gradients have %d layers, the factors %d", ErrIncompatible, len(g.Layers), len(f.Layers))
	}
	for i := range g.Layers {
		l, lf := &g.Layers[i], &f.Layers[i]
		if l.Name != lf.Name {
			return fmt.Errorf("%w: layer %d is %q in the gradients, %q in the factors", ErrIncompatible, i, l.Name, lf.Name)
		}
		if l.Factored() {
			if l.DIn != lf.DIn || l.DOut != lf.DOut {
				return fmt.Errorf("%w: layer %q: gradients are %d×%d, factors %d×%d", ErrIncompatible, l.Name, l.DOut, l.DIn, lf.DOut, lf.DIn)
			}
			continue
		}
		if lf.D != l.D {
			return fmt.Errorf("%w: layer %q: gradients are dense of dimension %d, factors are for %s", ErrIncompatible, l.Name, l.D, lf.describe())
		}
	}
	return nil
}

func (lf *LayerFactors) describe() string {
	if lf.D > 0 {
		return fmt.Sprintf("dense dimension %d", lf.D)
	}
	return fmt.Sprintf("factored %d×%d", lf.DOut, lf.DIn)
}
