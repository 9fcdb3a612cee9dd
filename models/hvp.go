package models

import (
	"context"
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
)

// HVP is the matrix-free product v ↦ Cv with the curvature C that Curvature
// returns, λI included: the exact Hessian of R for the regressions, the
// Gauss–Newton matrix for the MLP,
//
//	C v = (1/N) Σ_n w_n J_nᵀ K_n J_n v + λv,   K_n = diag(p_n) − p_n p_nᵀ
//
// (K_n = p(1−p) for binary logistic regression), with J_n the Jacobian of
// example n's logits. J_n v is a forward tangent pass through the network and
// J_nᵀ u the ordinary backward pass, so a product costs about three forward
// passes over the data and no P × P matrix is formed.
//
// HVP satisfies hessian.Operator and hessian.BlockOperator. It is evaluated
// at the parameters the model held when NewHVP was called and keeps the
// forward activations; x must not change while it is in use.
type HVP struct {
	dim int
	l2  float64
	n   int
	be  linalg.Backend // the model's, resolved by NewHVP

	// Regressions.
	lin  *linear
	a    *linalg.Dense64 // [x, 1], N × din
	coef *linalg.Dense64 // probabilities (N × out), or p(1−p) when binary
	wn   []float64       // w_n / N

	// MLP, in blocks of at most blockRows examples.
	mlp    *MLP
	blocks []hvpBlock
}

type hvpBlock struct {
	lo int
	hs []*linalg.Dense64 // layer inputs
	p  *linalg.Dense64   // softmax probabilities
}

// NewHVP returns the curvature-vector product of m on the examples (x, y)
// with weights w (nil for ones). y is checked but, as in Curvature, not
// used. m must be a *Logistic, *Softmax or *MLP.
func NewHVP(m Model, x *linalg.Dense64, y []int, w []float64) (*HVP, error) {
	if err := CheckData(m, x, y, w); err != nil {
		return nil, err
	}
	if x.Rows == 0 {
		return nil, fmt.Errorf("models: HVP: no examples")
	}
	be, err := backendOf(m)
	if err != nil {
		return nil, fmt.Errorf("models: HVP: %w", err)
	}
	h := &HVP{dim: NumParams(m), l2: m.L2(), n: x.Rows, be: be, wn: make([]float64, x.Rows)}
	for i := range h.wn {
		h.wn[i] = weight(w, i) / float64(x.Rows)
	}
	switch m := m.(type) {
	case *Logistic:
		h.initLinear(&m.linear, x)
	case *Softmax:
		h.initLinear(&m.linear, x)
	case *MLP:
		h.mlp = m
		for r0 := 0; r0 < x.Rows; r0 += blockRows {
			r1 := min(r0+blockRows, x.Rows)
			hs, z := m.forward(x.Slice(r0, r1, 0, x.Cols))
			softmaxRows(z, nil)
			h.blocks = append(h.blocks, hvpBlock{lo: r0, hs: hs, p: z})
		}
	default:
		return nil, fmt.Errorf("models: HVP: no Hessian-vector product for %T", m)
	}
	return h, nil
}

func (h *HVP) initLinear(m *linear, x *linalg.Dense64) {
	h.lin = m
	z, a := m.logits(x)
	h.a = a
	h.coef = linalg.NewDense64(x.Rows, m.out, nil)
	for i := 0; i < x.Rows; i++ {
		if m.out == 1 {
			p := sigmoid(z.At(i, 0))
			h.coef.Set(i, 0, p*(1-p))
		} else {
			softmax(h.coef.Row(i), z.Row(i))
		}
	}
}

// Dim returns the number of parameters.
func (h *HVP) Dim() int { return h.dim }

// Apply writes Cv into out.
func (h *HVP) Apply(ctx context.Context, v, out []float64) error {
	return h.ApplyMany(ctx, linalg.NewDense64(1, h.dim, v[:h.dim]), linalg.NewDense64(1, h.dim, out[:h.dim]))
}

// ApplyMany writes C vᵢ into row i of out for every row vᵢ of v (k × P).
func (h *HVP) ApplyMany(ctx context.Context, v, out *linalg.Dense64) error {
	if v.Cols != h.dim || out.Cols != h.dim || out.Rows != v.Rows {
		return fmt.Errorf("models: HVP: %d×%d into %d×%d, dimension %d", v.Rows, v.Cols, out.Rows, out.Cols, h.dim)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if h.lin != nil {
		h.applyLinear(v, out)
	} else if err := h.applyMLP(ctx, v, out); err != nil {
		return err
	}
	for i := 0; i < v.Rows; i++ {
		dst := out.Row(i)
		for j, x := range v.Row(i) {
			dst[j] += h.l2 * x
		}
	}
	return nil
}

// applyLinear computes the data term for groups of linearGroup(out)
// vectors with two GEMMs per group: each vector is an out × din matrix V_j,
// its logit tangents are A V_jᵀ, and the pulled-back output gradients U_j
// give U_jᵀ A. OpenBLAS chooses its kernels, and with them the order of
// summation, by the shape of a call (with OPENBLAS_CORETYPE=Haswell a
// vector's product changed in the last bit with the size of its block), so
// every call has the same shape: a short group is padded with zero vectors.
// Within one shape, each column of the product is summed the same way
// wherever it lies, so a vector's product does not depend on the others of
// its block or on its place in it.
func (h *HVP) applyLinear(v, out *linalg.Dense64) {
	m := h.lin
	c := m.out
	g := linearGroup(c)
	be := h.be
	vs := linalg.NewDense64(g*c, m.din, nil)
	z := linalg.NewDense64(h.n, g*c, nil)
	res := linalg.NewDense64(g*c, m.din, nil)
	for j0 := 0; j0 < v.Rows; j0 += g {
		nj := min(g, v.Rows-j0)
		for j := 0; j < nj; j++ {
			copy(vs.Data[j*h.dim:(j+1)*h.dim], v.Row(j0+j))
		}
		clear(vs.Data[nj*h.dim:])
		be.Dgemm(linalg.NoTrans, linalg.Trans, 1, h.a, vs, 0, z)
		for i := 0; i < h.n; i++ {
			row, p := z.Row(i), h.coef.Row(i)
			for j := 0; j < nj; j++ {
				t := row[j*c : (j+1)*c]
				if c == 1 {
					t[0] *= h.wn[i] * p[0]
					continue
				}
				kv := floats.Dot(p, t)
				for o := range t {
					t[o] = h.wn[i] * p[o] * (t[o] - kv)
				}
			}
		}
		be.Dgemm(linalg.Trans, linalg.NoTrans, 1, z, h.a, 0, res)
		for j := 0; j < nj; j++ {
			copy(out.Row(j0+j), res.Data[j*h.dim:(j+1)*h.dim])
		}
	}
}

// linearGroup returns the number of vectors applyLinear multiplies at once
// for a model with c outputs: the fewest that give the GEMMs at least 32
// columns, in a multiple of 8 so that no column falls in the narrower edge
// kernels BLAS libraries use for a remainder of columns. A single vector
// then costs a GEMM of 32 or more columns where it needs c (what that costs:
// bench/results/hvp-2026-12-02.md).
func linearGroup(c int) int {
	g := (32 + c - 1) / c
	for g*c%8 != 0 {
		g++
	}
	return g
}

// applyMLP pushes each vector's tangent through the network (the R-operator),
// applies K_n to the logit tangents and backpropagates the result.
func (h *HVP) applyMLP(ctx context.Context, v, out *linalg.Dense64) error {
	m := h.mlp
	// The products run on the model's backend (by default Auto's choice,
	// OpenBLAS where present), as the regressions' do; each vector is pushed through on its own, so its
	// result does not depend on the other vectors of the block.
	gemm := gemmOn(h.be)
	for i := 0; i < v.Rows; i++ {
		clear(out.Row(i))
	}
	for _, b := range h.blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		for j := 0; j < v.Rows; j++ {
			u := m.tangent(gemm, b.hs, v.Row(j))
			for i := 0; i < u.Rows; i++ {
				t, p := u.Row(i), b.p.Row(i)
				kv := floats.Dot(p, t)
				s := h.wn[b.lo+i]
				for o := range t {
					t[o] = s * p[o] * (t[o] - kv)
				}
			}
			m.accumulateWith(gemm, out.Row(j), b.hs, m.backwardWith(gemm, b.hs, u))
		}
	}
	return nil
}

// tangent returns the directional derivative of the logits of the examples
// whose layer inputs are hs, along the parameter direction v.
func (m *MLP) tangent(gemm gemmFunc, hs []*linalg.Dense64, v []float64) *linalg.Dense64 {
	n := hs[0].Rows
	var dh *linalg.Dense64 // tangent of the current layer's input; zero for x
	for l, ls := range m.layers {
		dz := linalg.NewDense64(n, ls.DOut, nil)
		// dz = [h, 1]·V_lᵀ + dh·W_lᵀ, the bias columns left out of W_l.
		vl := v[m.offs[l] : m.offs[l]+ls.DOut*ls.DIn]
		vv := blas64.General{Rows: ls.DOut, Cols: ls.DIn - 1, Stride: ls.DIn, Data: vl}
		gemm(blas.NoTrans, blas.Trans, 1, general(hs[l]), vv, 0, general(dz))
		for i := 0; i < n; i++ {
			row := dz.Row(i)
			for o := range row {
				row[o] += vl[o*ls.DIn+ls.DIn-1]
			}
		}
		if dh != nil {
			wv := blas64.General{Rows: ls.DOut, Cols: ls.DIn - 1, Stride: ls.DIn, Data: m.weights(l)}
			gemm(blas.NoTrans, blas.Trans, 1, general(dh), wv, 1, general(dz))
		}
		if l+1 == len(m.layers) {
			return dz
		}
		m.throughActivation(dz, hs[l+1])
		dh = dz
	}
	panic("unreachable")
}
