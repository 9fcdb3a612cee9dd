package models

import (
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Logistic is binary logistic regression: p(y=1|x) = σ(w·[x; 1]). Its one
// layer "linear" has DOut = 1. The objective is strictly convex, so FitNewton
// reaches its optimum.
type Logistic struct{ linear }

// Softmax is multinomial logistic regression: p(y|x) = softmax(W·[x; 1]) with
// W of shape classes × (features+1). With λ > 0 the objective is strictly
// convex even though the parameterisation is redundant.
type Softmax struct{ linear }

// NewLogistic returns a logistic regression on the given number of features,
// with parameters zero (the optimum is unique, so the start does not matter).
func NewLogistic(features int, l2 float64) *Logistic {
	return &Logistic{newLinear("logistic", features, 1, l2)}
}

// NewSoftmax returns a softmax regression with parameters zero.
func NewSoftmax(features, classes int, l2 float64) *Softmax {
	return &Softmax{newLinear("softmax", features, classes, l2)}
}

// linear holds what both regressions share; out is the number of logits (1
// for the binary model, which keeps the usual single-weight-vector form).
type linear struct {
	kind   string
	din    int // features + 1
	out    int
	l2     float64
	params []float64
	be     linalg.Backend // nil: linalg.Default() (SetBackend)
}

// backend returns the backend the model's methods run on.
func (m *linear) backend() linalg.Backend {
	if m.be != nil {
		return m.be
	}
	return linalg.Default()
}

func newLinear(kind string, features, out int, l2 float64) linear {
	return linear{kind: kind, din: features + 1, out: out, l2: l2, params: make([]float64, out*(features+1))}
}

func (m *linear) Kind() string { return m.kind }

func (m *linear) Layers() []LayerSpec {
	return []LayerSpec{{Name: "linear", DIn: m.din, DOut: m.out}}
}

func (m *linear) Classes() int {
	if m.out == 1 {
		return 2
	}
	return m.out
}

func (m *linear) Params() []float64 { return m.params }
func (m *linear) L2() float64       { return m.l2 }

// augment returns [x, 1].
func augment(x *linalg.Dense64) *linalg.Dense64 {
	a := linalg.NewDense64(x.Rows, x.Cols+1, nil)
	for i := 0; i < x.Rows; i++ {
		row := a.Row(i)
		copy(row, x.Row(i))
		row[x.Cols] = 1
	}
	return a
}

// logits returns [x, 1]·Wᵀ (n × out) and the augmented inputs.
func (m *linear) logits(x *linalg.Dense64) (z, a *linalg.Dense64) {
	a = augment(x)
	z = linalg.NewDense64(x.Rows, m.out, nil)
	w := linalg.NewDense64(m.out, m.din, m.params)
	m.backend().Dgemm(linalg.NoTrans, linalg.Trans, 1, a, w, 0, z)
	return z, a
}

func (m *linear) Probs(x *linalg.Dense64) *linalg.Dense64 {
	z, _ := m.logits(x)
	p := linalg.NewDense64(x.Rows, m.Classes(), nil)
	for i := 0; i < z.Rows; i++ {
		if m.out == 1 {
			s := sigmoid(z.At(i, 0))
			p.Set(i, 0, 1-s)
			p.Set(i, 1, s)
			continue
		}
		softmax(p.Row(i), z.Row(i))
	}
	return p
}

func (m *linear) Losses(x *linalg.Dense64, y []int) []float64 {
	z, _ := m.logits(x)
	loss := make([]float64, x.Rows)
	for i := range loss {
		loss[i] = m.loss(z.Row(i), y[i], nil)
	}
	return loss
}

// loss returns ℓ for one row of logits and writes ∂ℓ/∂z into dz when it is
// not nil.
func (m *linear) loss(z []float64, y int, dz []float64) float64 {
	if m.out == 1 {
		// ℓ = log(1+e^z) − y·z, evaluated without overflow.
		v := z[0]
		l := math.Max(v, 0) + math.Log1p(math.Exp(-math.Abs(v))) - float64(y)*v
		if dz != nil {
			dz[0] = sigmoid(v) - float64(y)
		}
		return l
	}
	return crossEntropy(z, y, dz)
}

func (m *linear) Objective(x *linalg.Dense64, y []int, w []float64, grad []float64) float64 {
	z, a := m.logits(x)
	n := float64(x.Rows)
	dz := linalg.NewDense64(x.Rows, m.out, nil)
	var f float64
	for i := 0; i < x.Rows; i++ {
		wi := weight(w, i)
		f += wi * m.loss(z.Row(i), y[i], dz.Row(i)) / n
		for j := range dz.Row(i) {
			dz.Row(i)[j] *= wi / n
		}
	}
	f += 0.5 * m.l2 * floats.Dot(m.params, m.params)
	if grad != nil {
		g := linalg.NewDense64(m.out, m.din, grad)
		copy(grad, m.params)
		m.backend().Dgemm(linalg.Trans, linalg.NoTrans, 1, dz, a, m.l2, g)
	}
	return f
}

func (m *linear) Gradients(x *linalg.Dense64, labels []int) *gradients.Batch {
	z, a := m.logits(x)
	s := make([]float64, x.Rows*m.out)
	for i := 0; i < x.Rows; i++ {
		m.loss(z.Row(i), labels[i], s[i*m.out:(i+1)*m.out])
	}
	return &gradients.Batch{N: x.Rows, Layers: []gradients.Layer{{
		Name: "linear", DIn: m.din, DOut: m.out, Tokens: 1, A: a.Data, S: s,
	}}}
}

// Curvature returns the exact Hessian
//
//	(1/N) Σ_n w_n K_n ⊗ a_n a_nᵀ + λI,
//
// K_n = p(1−p) for the binary model and diag(p) − ppᵀ for softmax, computed
// block by block as Aᵀ diag(coef) A so the cost is out²/2 GEMMs of size
// din × N × din.
func (m *linear) Curvature(x *linalg.Dense64, y []int, w []float64) *linalg.Dense64 {
	z, a := m.logits(x)
	n := float64(x.Rows)
	p := linalg.NewDense64(x.Rows, m.out, nil)
	for i := 0; i < x.Rows; i++ {
		if m.out == 1 {
			p.Set(i, 0, sigmoid(z.At(i, 0)))
		} else {
			softmax(p.Row(i), z.Row(i))
		}
	}
	dim := m.out * m.din
	h := linalg.NewDense64(dim, dim, nil)
	scaled := linalg.NewDense64(x.Rows, m.din, nil)
	be := m.backend()
	for c := 0; c < m.out; c++ {
		for c2 := c; c2 < m.out; c2++ {
			for i := 0; i < x.Rows; i++ {
				pc := p.At(i, c)
				var k float64
				switch {
				case m.out == 1:
					k = pc * (1 - pc)
				case c == c2:
					k = pc * (1 - pc)
				default:
					k = -pc * p.At(i, c2)
				}
				k *= weight(w, i) / n
				dst, src := scaled.Row(i), a.Row(i)
				for j := range dst {
					dst[j] = k * src[j]
				}
			}
			blk := h.Slice(c*m.din, (c+1)*m.din, c2*m.din, (c2+1)*m.din)
			be.Dgemm(linalg.Trans, linalg.NoTrans, 1, a, scaled, 0, blk)
		}
	}
	// Rounding leaves the diagonal blocks asymmetric in the last bit; copy
	// the upper triangle down so H is exactly symmetric.
	for i := 1; i < dim; i++ {
		for j := 0; j < i; j++ {
			h.Data[i*dim+j] = h.Data[j*dim+i]
		}
	}
	for i := 0; i < dim; i++ {
		h.Data[i*h.Stride+i] += m.l2
	}
	return h
}

func weight(w []float64, i int) float64 {
	if w == nil {
		return 1
	}
	return w[i]
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// softmax writes softmax(z) into p.
func softmax(p, z []float64) {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	var s float64
	for j, v := range z {
		p[j] = math.Exp(v - mx)
		s += p[j]
	}
	for j := range p {
		p[j] /= s
	}
}

// crossEntropy returns logsumexp(z) − z[y] and writes softmax(z) − e_y into
// dz when it is not nil.
func crossEntropy(z []float64, y int, dz []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	var s float64
	for _, v := range z {
		s += math.Exp(v - mx)
	}
	lse := mx + math.Log(s)
	if dz != nil {
		for j, v := range z {
			dz[j] = math.Exp(v - lse)
		}
		dz[y]--
	}
	return lse - z[y]
}
