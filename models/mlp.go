package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Activation is the nonlinearity applied after every hidden layer of an MLP.
type Activation int

const (
	ReLU Activation = iota
	Tanh
)

// String returns the activation's name as ParseActivation accepts it.
func (a Activation) String() string {
	switch a {
	case ReLU:
		return "relu"
	case Tanh:
		return "tanh"
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// ParseActivation returns the activation named s ("relu" or "tanh", any case).
func ParseActivation(s string) (Activation, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "relu":
		return ReLU, nil
	case "tanh":
		return Tanh, nil
	}
	return 0, fmt.Errorf("models: unknown activation %q (want relu or tanh)", s)
}

func (a Activation) valid() bool { return a == ReLU || a == Tanh }

// MLP is a fully connected network with softmax cross-entropy output. Hidden
// layers apply the activation; the last layer produces the logits.
//
// The objective is not convex, so Curvature returns the Gauss–Newton matrix,
// which is positive semidefinite (definite when λ > 0) and equals the Fisher
// information of the softmax output.
type MLP struct {
	sizes  []int
	act    Activation
	l2     float64
	theta  []float64
	layers []LayerSpec
	offs   []int          // offs[l] is the start of layer l in theta
	be     linalg.Backend // nil: linalg.Default() (SetBackend)
}

// backend returns the backend the model's methods run on.
func (m *MLP) backend() linalg.Backend {
	if m.be != nil {
		return m.be
	}
	return linalg.Default()
}

// NewMLP returns an MLP with layer widths sizes = [inputs, hidden…, classes]
// (no hidden layer gives multinomial logistic regression), penalty l2 and
// weights drawn from a generator seeded by seed: He-uniform for ReLU layers,
// Glorot-uniform for tanh and output layers, biases zero. The layers are named
// fc1, fc2, ….
func NewMLP(sizes []int, act Activation, l2 float64, seed uint64) (*MLP, error) {
	if len(sizes) < 2 {
		return nil, fmt.Errorf("models: mlp: %d sizes, need at least inputs and classes", len(sizes))
	}
	for i, s := range sizes {
		if s < 1 {
			return nil, fmt.Errorf("models: mlp: size %d is %d, must be positive", i, s)
		}
	}
	if c := sizes[len(sizes)-1]; c < 2 {
		return nil, fmt.Errorf("models: mlp: %d classes, need at least 2", c)
	}
	if !act.valid() {
		return nil, fmt.Errorf("models: mlp: invalid activation %v", act)
	}
	if math.IsNaN(l2) || math.IsInf(l2, 0) || l2 < 0 {
		return nil, fmt.Errorf("models: mlp: l2 penalty %v, must be finite and non-negative", l2)
	}
	m := &MLP{sizes: append([]int(nil), sizes...), act: act, l2: l2}
	p := 0
	for l := 0; l+1 < len(sizes); l++ {
		din, dout := sizes[l]+1, sizes[l+1]
		if din > math.MaxInt32 || dout > math.MaxInt32 || p > math.MaxInt/2-din*dout {
			return nil, fmt.Errorf("models: mlp: layer %d of %d×%d is too large", l+1, dout, din)
		}
		m.layers = append(m.layers, LayerSpec{Name: fmt.Sprintf("fc%d", l+1), DIn: din, DOut: dout})
		m.offs = append(m.offs, p)
		p += din * dout
	}
	m.theta = make([]float64, p)

	rng := rand.New(rand.NewPCG(seed, 0x6d6c70696e6974)) // "mlpinit"
	for l, ls := range m.layers {
		fanIn, fanOut := float64(ls.DIn-1), float64(ls.DOut)
		limit := math.Sqrt(6 / (fanIn + fanOut))
		if act == ReLU && l+1 < len(m.layers) {
			limit = math.Sqrt(6 / fanIn)
		}
		w := m.weights(l)
		for o := 0; o < ls.DOut; o++ {
			for i := 0; i < ls.DIn-1; i++ {
				w[o*ls.DIn+i] = limit * (2*rng.Float64() - 1)
			}
		}
	}
	return m, nil
}

// Kind returns "mlp".
func (m *MLP) Kind() string { return "mlp" }

// Layers lists fc1, fc2, … in parameter order.
func (m *MLP) Layers() []LayerSpec { return append([]LayerSpec(nil), m.layers...) }

// Classes returns the width of the output layer.
func (m *MLP) Classes() int { return m.sizes[len(m.sizes)-1] }

// Params returns the parameter vector; it aliases the model.
func (m *MLP) Params() []float64 { return m.theta }

// L2 returns λ.
func (m *MLP) L2() float64 { return m.l2 }

// Sizes returns the layer widths [inputs, hidden…, classes].
func (m *MLP) Sizes() []int { return append([]int(nil), m.sizes...) }

// Hidden returns the widths of the hidden layers (empty when there are none).
func (m *MLP) Hidden() []int { return append([]int{}, m.sizes[1:len(m.sizes)-1]...) }

// Activation returns the hidden-layer nonlinearity.
func (m *MLP) Activation() Activation { return m.act }

// weights returns layer l's DOut × DIn matrix, row-major, bias last.
func (m *MLP) weights(l int) []float64 {
	ls := m.layers[l]
	return m.theta[m.offs[l] : m.offs[l]+ls.DOut*ls.DIn]
}

// blockRows bounds the rows pushed through the network at once, and with it
// the memory for hidden activations, whatever the size of the data.
const blockRows = 1024

func general(d *linalg.Dense64) blas64.General {
	return blas64.General{Rows: d.Rows, Cols: d.Cols, Stride: d.Stride, Data: d.Data}
}

// forward returns the inputs of every layer (hs[0] aliases x) and the logits.
// x must have at least one row.
func (m *MLP) forward(x *linalg.Dense64) (hs []*linalg.Dense64, logits *linalg.Dense64) {
	n := x.Rows
	hs = []*linalg.Dense64{x}
	h := x
	for l, ls := range m.layers {
		z := linalg.NewDense64(n, ls.DOut, nil)
		w := m.weights(l)
		// Z = H·W[:, :DIn-1]ᵀ, then the bias column.
		wv := blas64.General{Rows: ls.DOut, Cols: ls.DIn - 1, Stride: ls.DIn, Data: w}
		blas64.Gemm(blas.NoTrans, blas.Trans, 1, general(h), wv, 0, general(z))
		last := l+1 == len(m.layers)
		for i := 0; i < n; i++ {
			row := z.Row(i)
			for o := range row {
				v := row[o] + w[o*ls.DIn+ls.DIn-1]
				if !last {
					switch m.act {
					case ReLU:
						v = max(v, 0)
					case Tanh:
						v = math.Tanh(v)
					}
				}
				row[o] = v
			}
		}
		if last {
			return hs, z
		}
		hs = append(hs, z)
		h = z
	}
	panic("unreachable")
}

// backward returns ∂/∂z_l for every layer l given delta = ∂/∂(logits), row by
// row: deltas[len-1] is delta itself.
func (m *MLP) backward(hs []*linalg.Dense64, delta *linalg.Dense64) []*linalg.Dense64 {
	return m.backwardWith(blas64.Gemm, hs, delta)
}

// gemmFunc is a GEMM: blas64.Gemm (pure Go, the same bits on every machine:
// training uses it) or a linalg backend's (gemmOn).
type gemmFunc func(tA, tB blas.Transpose, alpha float64, a, b blas64.General, beta float64, c blas64.General)

// gemmOn returns be's Dgemm as a gemmFunc.
func gemmOn(be linalg.Backend) gemmFunc {
	return func(tA, tB blas.Transpose, alpha float64, a, b blas64.General, beta float64, c blas64.General) {
		be.Dgemm(linalg.Transpose(tA != blas.NoTrans), linalg.Transpose(tB != blas.NoTrans), alpha, dense(a), dense(b), beta, dense(c))
	}
}

func dense(g blas64.General) *linalg.Dense64 {
	return &linalg.Dense64{Rows: g.Rows, Cols: g.Cols, Stride: g.Stride, Data: g.Data}
}

func (m *MLP) backwardWith(gemm gemmFunc, hs []*linalg.Dense64, delta *linalg.Dense64) []*linalg.Dense64 {
	L := len(m.layers)
	ds := make([]*linalg.Dense64, L)
	ds[L-1] = delta
	for l := L - 1; l > 0; l-- {
		ls := m.layers[l]
		wv := blas64.General{Rows: ls.DOut, Cols: ls.DIn - 1, Stride: ls.DIn, Data: m.weights(l)}
		d := linalg.NewDense64(delta.Rows, ls.DIn-1, nil)
		gemm(blas.NoTrans, blas.NoTrans, 1, general(ds[l]), wv, 0, general(d))
		m.throughActivation(d, hs[l])
		ds[l-1] = d
	}
	return ds
}

// throughActivation multiplies d element by element by the derivative of the
// activation, taken from its output h: h > 0 for ReLU (0 at the kink),
// 1 − h² for tanh.
func (m *MLP) throughActivation(d, h *linalg.Dense64) {
	for i := 0; i < d.Rows; i++ {
		dr, hr := d.Row(i), h.Row(i)
		for j, hv := range hr {
			switch m.act {
			case ReLU:
				if hv <= 0 {
					dr[j] = 0
				}
			case Tanh:
				dr[j] *= 1 - hv*hv
			}
		}
	}
}

// softmaxRows replaces each row of z by its probabilities and, when lse is not
// nil, stores the row's log-sum-exp in lse. Shifting by the row maximum keeps
// exp from overflowing.
func softmaxRows(z *linalg.Dense64, lse []float64) {
	for i := 0; i < z.Rows; i++ {
		row := z.Row(i)
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, v)
		}
		s := 0.0
		for j, v := range row {
			e := math.Exp(v - mx)
			row[j] = e
			s += e
		}
		for j := range row {
			row[j] /= s
		}
		if lse != nil {
			lse[i] = mx + math.Log(s)
		}
	}
}

// logits returns the n × Classes matrix of pre-softmax outputs.
func (m *MLP) logits(x *linalg.Dense64) *linalg.Dense64 {
	out := linalg.NewDense64(x.Rows, m.Classes(), nil)
	for r0 := 0; r0 < x.Rows; r0 += blockRows {
		r1 := min(r0+blockRows, x.Rows)
		_, z := m.forward(x.Slice(r0, r1, 0, x.Cols))
		for i := 0; i < z.Rows; i++ {
			copy(out.Row(r0+i), z.Row(i))
		}
	}
	return out
}

// Probs returns the n × Classes softmax probabilities.
func (m *MLP) Probs(x *linalg.Dense64) *linalg.Dense64 {
	p := m.logits(x)
	softmaxRows(p, nil)
	return p
}

// Losses returns ℓ_n = log Σ_c exp z_c − z_{y_n}. Labels must be in range.
func (m *MLP) Losses(x *linalg.Dense64, y []int) []float64 {
	z := m.logits(x)
	loss := make([]float64, x.Rows)
	for i := range loss {
		row := z.Row(i)
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, v)
		}
		s := 0.0
		for _, v := range row {
			s += math.Exp(v - mx)
		}
		loss[i] = mx + math.Log(s) - row[y[i]]
	}
	return loss
}

// Objective returns R(θ) and, when grad is not nil, writes ∇R(θ) computed by
// backpropagation. Data must be valid (see the trainers, which check it).
func (m *MLP) Objective(x *linalg.Dense64, y []int, w []float64, grad []float64) float64 {
	if grad != nil {
		clear(grad[:len(m.theta)])
	}
	N := x.Rows
	sum := 0.0
	for r0 := 0; r0 < N; r0 += blockRows {
		r1 := min(r0+blockRows, N)
		hs, z := m.forward(x.Slice(r0, r1, 0, x.Cols))
		lse := make([]float64, z.Rows)
		zy := make([]float64, z.Rows)
		for i := range zy {
			zy[i] = z.At(i, y[r0+i])
		}
		softmaxRows(z, lse) // z now holds p
		for i := range lse {
			wi := 1.0
			if w != nil {
				wi = w[r0+i]
			}
			if wi != 0 { // a zero weight removes the example, even an infinite loss
				sum += wi * (lse[i] - zy[i])
			}
			if grad != nil {
				// ∂(w_n ℓ_n/N)/∂z = (w_n/N)(p − e_y).
				row := z.Row(i)
				row[y[r0+i]] -= 1
				s := wi / float64(N)
				for j := range row {
					row[j] *= s
				}
			}
		}
		if grad != nil {
			m.accumulate(grad, hs, m.backward(hs, z))
		}
	}
	obj := 0.0
	if N > 0 {
		obj = sum / float64(N)
	}
	sq := 0.0
	for i, t := range m.theta {
		sq += t * t
		if grad != nil {
			grad[i] += m.l2 * t
		}
	}
	return obj + m.l2/2*sq
}

// accumulate adds Σ_n δ_n [h_n; 1]ᵀ for every layer to grad.
func (m *MLP) accumulate(grad []float64, hs, ds []*linalg.Dense64) {
	m.accumulateWith(blas64.Gemm, grad, hs, ds)
}

func (m *MLP) accumulateWith(gemm gemmFunc, grad []float64, hs, ds []*linalg.Dense64) {
	for l, ls := range m.layers {
		g := grad[m.offs[l] : m.offs[l]+ls.DOut*ls.DIn]
		gv := blas64.General{Rows: ls.DOut, Cols: ls.DIn - 1, Stride: ls.DIn, Data: g}
		gemm(blas.Trans, blas.NoTrans, 1, general(ds[l]), general(hs[l]), 1, gv)
		d := ds[l]
		for i := 0; i < d.Rows; i++ {
			for o, v := range d.Row(i) {
				g[o*ls.DIn+ls.DIn-1] += v
			}
		}
	}
}

// Gradients returns the per-example gradients of ℓ_n at the given labels in
// factored form: for layer l, A holds the layer's input with a 1 appended and
// S holds ∂ℓ_n/∂z_l, the gradient with respect to its pre-activation.
func (m *MLP) Gradients(x *linalg.Dense64, labels []int) *gradients.Batch {
	n := x.Rows
	b := &gradients.Batch{N: n, Layers: make([]gradients.Layer, len(m.layers))}
	for l, ls := range m.layers {
		b.Layers[l] = gradients.Layer{
			Name: ls.Name, DIn: ls.DIn, DOut: ls.DOut, Tokens: 1,
			A: make([]float64, n*ls.DIn), S: make([]float64, n*ls.DOut),
		}
	}
	for r0 := 0; r0 < n; r0 += blockRows {
		r1 := min(r0+blockRows, n)
		hs, z := m.forward(x.Slice(r0, r1, 0, x.Cols))
		softmaxRows(z, nil)
		for i := 0; i < z.Rows; i++ {
			z.Row(i)[labels[r0+i]] -= 1
		}
		ds := m.backward(hs, z)
		for l, ls := range m.layers {
			bl := &b.Layers[l]
			for i := 0; i < z.Rows; i++ {
				a := bl.A[(r0+i)*ls.DIn : (r0+i+1)*ls.DIn]
				copy(a, hs[l].Row(i))
				a[ls.DIn-1] = 1
				copy(bl.S[(r0+i)*ls.DOut:(r0+i+1)*ls.DOut], ds[l].Row(i))
			}
		}
	}
	return b
}

// ggnBlockFloats bounds the stacked Jacobian rows Curvature holds at once
// (32 MiB of float64, and as much again for their packed copy). It is a
// variable so that tests can force many blocks.
var ggnBlockFloats = 1 << 22

// Curvature returns the P × P Gauss–Newton matrix of R,
//
//	G = (1/N) Σ_n w_n J_nᵀ (diag(p_n) − p_n p_nᵀ) J_n + λI,
//
// with J_n the Jacobian of example n's logits. y is not used: the Gauss–Newton
// matrix of cross-entropy does not depend on the labels. Writing
// diag(p) − ppᵀ = B Bᵀ with column c of B equal to √p_c (e_c − p), the rows of
// Bᵀ J_n are √p_c times the gradient of ℓ_n at label c, so G = Σ Mᵀ M over
// stacked rows M that one backward pass per class produces.
//
// The cost is about N·C·P² multiply-adds and 8P² bytes for the result;
// examples of zero weight are skipped.
func (m *MLP) Curvature(x *linalg.Dense64, y []int, w []float64) *linalg.Dense64 {
	P := len(m.theta)
	C := m.Classes()
	N := x.Rows
	g := linalg.NewDense64(P, P, nil)
	per := max(1, ggnBlockFloats/(C*P)) // examples per block
	rows := make([]int, 0, per)         // examples of the current block
	be := m.backend()
	flush := func() {
		if len(rows) == 0 {
			return
		}
		m.ggnAccumulate(be, g, x, rows, w, N)
		rows = rows[:0]
	}
	for i := 0; i < N; i++ {
		if w != nil && w[i] == 0 {
			continue
		}
		rows = append(rows, i)
		if len(rows) == per {
			flush()
		}
	}
	flush()
	for i := 0; i < P; i++ {
		g.Data[i*P+i] += m.l2
	}
	return g
}

// ggnAccumulate adds Mᵀ M for the examples in rows to g, on be.
func (m *MLP) ggnAccumulate(be linalg.Backend, g, x *linalg.Dense64, rows []int, w []float64, N int) {
	P := len(m.theta)
	C := m.Classes()
	// Each example repeated once per class, so that one backward pass gives
	// all C rows of Bᵀ J_n.
	xr := linalg.NewDense64(len(rows)*C, x.Cols, nil)
	for k, i := range rows {
		for c := 0; c < C; c++ {
			copy(xr.Row(k*C+c), x.Row(i))
		}
	}
	hs, z := m.forward(xr)
	softmaxRows(z, nil)
	delta := linalg.NewDense64(len(rows)*C, C, nil)
	for k, i := range rows {
		wi := 1.0
		if w != nil {
			wi = w[i]
		}
		p := z.Row(k * C)
		for c := 0; c < C; c++ {
			s := math.Sqrt(wi * p[c] / float64(N))
			d := delta.Row(k*C + c)
			for j := range d {
				d[j] = s * p[j]
			}
			d[c] -= s
		}
	}
	ds := m.backward(hs, delta)
	M := linalg.NewDense64(len(rows)*C, P, nil)
	for r := 0; r < M.Rows; r++ {
		mr := M.Row(r)
		for l, ls := range m.layers {
			a, s := hs[l].Row(r), ds[l].Row(r)
			blk := mr[m.offs[l] : m.offs[l]+ls.DOut*ls.DIn]
			for o, so := range s {
				if so == 0 {
					continue
				}
				dst := blk[o*ls.DIn : (o+1)*ls.DIn]
				for i, ai := range a {
					dst[i] = so * ai
				}
				dst[ls.DIn-1] = so
			}
		}
	}
	be.CovAccumulate(g, M)
}
