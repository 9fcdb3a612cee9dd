package hessian

import (
	"context"
	"fmt"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// DataInfOptions are the knobs of NewDataInf.
type DataInfOptions struct {
	// Damping is λ_l: the same absolute value (> 0) for every layer, or the
	// heuristic of the DataInf paper, λ_l = 0.1 × (1/n) Σ_i ‖g_i‖²/D_l, a tenth
	// of the mean eigenvalue of the layer's G_lᵀG_l/n.
	Damping Damping
}

// DataInf is the closed-form inverse of Kwon et al. (2023). For layer l with
// the flattened training gradients g_1 … g_n (dimension D_l) it replaces
// (G_lᵀG_l/n + λ_l I)⁻¹ by the average of the rank-one inverses,
//
//	(1/(nλ_l)) Σ_i (I − g_i g_iᵀ/(λ_l + ‖g_i‖²)),
//
// so a query gradient v becomes (1/λ_l)(v − (1/n) Σ_i c_i g_i) with
// c_i = (g_i·v)/(λ_l + ‖g_i‖²). It is exact for n = 1 (Sherman–Morrison) and
// an approximation otherwise, good when λ_l dominates or the g_i are nearly
// orthogonal. Apply runs on GEMMs over chunks of training examples.
type DataInf struct {
	train  *gradients.Batch
	lambda []float64
	sq     [][]float64 // sq[l][i] = ‖g_i‖² of layer l
}

// dataInfChunkFloats bounds the flattened training gradients held at once.
// The chunk depends only on the dimension, so results depend on nothing
// else. It is a variable so that tests can force many chunks.
var dataInfChunkFloats = 1 << 22

// NewDataInf validates the training gradients, takes the squared norm of every
// example's gradient in every layer and fixes λ_l. train is kept, not copied.
func NewDataInf(ctx context.Context, train *gradients.Batch, opts DataInfOptions) (*DataInf, error) {
	const method = "datainf"
	if train == nil || train.N < 1 || len(train.Layers) == 0 {
		return nil, newError(method, -1, 0, fmt.Errorf("need training gradients of at least one example and layer"))
	}
	if err := train.Validate(); err != nil {
		return nil, newError(method, -1, 0, fmt.Errorf("training gradients: %w", err))
	}
	d := opts.Damping
	if !d.Heuristic && (!(d.Value > 0) || !finite(d.Value)) {
		return nil, newError(method, -1, 0, fmt.Errorf("damping %v must be finite and > 0, or heuristic", d.Value))
	}
	L := len(train.Layers)
	di := &DataInf{train: train, lambda: make([]float64, L), sq: make([][]float64, L)}
	for l := range di.sq {
		di.sq[l] = make([]float64, train.N)
	}
	err := di.chunks(ctx, func(lo int, g *linalg.Dense64) {
		off := 0
		for l := range train.Layers {
			dl := train.Layers[l].Dim()
			for i := 0; i < g.Rows; i++ {
				row := g.Row(i)[off : off+dl]
				di.sq[l][lo+i] = floats.Dot(row, row)
			}
			off += dl
		}
	})
	if err != nil {
		return nil, newError(method, -1, 0, err)
	}
	for l := range train.Layers {
		lam := d.Value
		if d.Heuristic {
			var s float64
			for _, v := range di.sq[l] {
				s += v
			}
			lam = 0.1 * s / float64(train.N) / float64(train.Layers[l].Dim())
		}
		if !(lam > 0) || !finite(lam) {
			return nil, newError(method, -1, 0, fmt.Errorf("layer %q: heuristic damping is %v (all its gradients are zero?); give an absolute damping", train.Layers[l].Name, lam))
		}
		di.lambda[l] = lam
	}
	return di, nil
}

// Damping returns λ_l, one per layer.
func (di *DataInf) Damping() []float64 { return append([]float64(nil), di.lambda...) }

// Dim returns the flattened dimension, layers concatenated.
func (di *DataInf) Dim() int { return di.train.Dim() }

// Apply returns the DataInf inverse applied to every row of v, an n × Dim
// block of flattened gradients with the training batch's layers in order.
func (di *DataInf) Apply(ctx context.Context, be linalg.Backend, v *linalg.Dense64) (*linalg.Dense64, error) {
	const method = "datainf"
	if v.Cols != di.Dim() {
		return nil, newError(method, -1, 0, fmt.Errorf("gradients have dimension %d, training gradients %d", v.Cols, di.Dim()))
	}
	for i := 0; i < v.Rows; i++ {
		if j, x, bad := firstNonFinite(v.Row(i)); bad {
			return nil, newError(method, i, 0, fmt.Errorf("%w: element %d is %v", ErrNotFinite, j, x))
		}
	}
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, newError(method, -1, 0, err)
	}
	q := v.Rows
	out := linalg.NewDense64(q, v.Cols, nil)
	layers := di.train.Layers
	off := 0
	for l := range layers {
		dl := layers[l].Dim()
		for i := 0; i < q; i++ {
			src, dst := v.Row(i)[off:off+dl], out.Row(i)[off:off+dl]
			for j, x := range src {
				dst[j] = x / di.lambda[l]
			}
		}
		off += dl
	}
	if q == 0 {
		return out, nil
	}
	n := float64(di.train.N)
	err = di.chunks(ctx, func(lo int, g *linalg.Dense64) {
		c := linalg.NewDense64(q, g.Rows, nil)
		off := 0
		for l := range layers {
			dl := layers[l].Dim()
			lam := di.lambda[l]
			gl := g.Slice(0, g.Rows, off, off+dl)
			// C = V_l G_lᵀ, scaled column by column, then out_l −= C G_l.
			be.Dgemm(linalg.NoTrans, linalg.Trans, 1, v.Slice(0, q, off, off+dl), gl, 0, c)
			for r := 0; r < q; r++ {
				row := c.Row(r)
				for i := range row {
					row[i] /= n * lam * (lam + di.sq[l][lo+i])
				}
			}
			be.Dgemm(linalg.NoTrans, linalg.NoTrans, -1, c, gl, 1, out.Slice(0, q, off, off+dl))
			off += dl
		}
	})
	if err != nil {
		return nil, newError(method, -1, 0, err)
	}
	return out, nil
}

// chunks calls f with the flattened gradients of consecutive training
// examples, lo being the index of the first.
func (di *DataInf) chunks(ctx context.Context, f func(lo int, g *linalg.Dense64)) error {
	t := di.train
	rows := max(1, min(t.N, dataInfChunkFloats/max(t.Dim(), 1)))
	for lo := 0; lo < t.N; lo += rows {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+rows, t.N)
		f(lo, t.Slice(lo, hi).Flatten())
	}
	return nil
}
