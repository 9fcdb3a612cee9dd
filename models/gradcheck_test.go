package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// gcCase is one model of the finite-difference checks.
type gcCase struct {
	name     string
	features int
	classes  int
	model    func() Model
	// logits, if not nil, marks a non-convex model whose Curvature is the
	// Gauss–Newton matrix; it is checked against finite-difference Jacobians
	// of these logits instead of the finite-difference Hessian.
	logits func(m Model, x *linalg.Dense64) *linalg.Dense64
}

func mlpLogits(m Model, x *linalg.Dense64) *linalg.Dense64 { return m.(*MLP).logits(x) }

func mustMLP(sizes []int, act Activation, l2 float64, seed uint64) *MLP {
	m, err := NewMLP(sizes, act, l2, seed)
	if err != nil {
		panic(err)
	}
	return m
}

var gcCases = []gcCase{
	{name: "logistic", features: 4, classes: 2, model: func() Model { return NewLogistic(4, 0.1) }},
	{name: "softmax", features: 4, classes: 3, model: func() Model { return NewSoftmax(4, 3, 0.05) }},
	{name: "mlp-relu-2", features: 4, classes: 3, model: func() Model { return mustMLP([]int{4, 5, 4, 3}, ReLU, 0.1, 1) }, logits: mlpLogits},
	{name: "mlp-tanh-1", features: 3, classes: 4, model: func() Model { return mustMLP([]int{3, 6, 4}, Tanh, 0.02, 2) }, logits: mlpLogits},
	{name: "mlp-tanh-0", features: 5, classes: 3, model: func() Model { return mustMLP([]int{5, 3}, Tanh, 0.3, 3) }, logits: mlpLogits},
}

// gcSetup returns a model with random parameters (biases included) and
// random data with positive, unequal weights, none of it zero.
func gcSetup(c gcCase, seed uint64) (Model, *linalg.Dense64, []int, []float64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	m := c.model()
	for i := range m.Params() {
		m.Params()[i] = 0.6 * rng.NormFloat64()
	}
	const n = 7
	x := linalg.NewDense64(n, c.features, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	y := make([]int, n)
	w := make([]float64, n)
	for i := range y {
		y[i] = rng.IntN(c.classes)
		w[i] = 0.5 + rng.Float64()
	}
	return m, x, y, w
}

// relErr is the largest absolute difference relative to the largest entry.
func relErr(got, want []float64) float64 {
	diff, scale := 0.0, 1e-300
	for i := range got {
		diff = max(diff, math.Abs(got[i]-want[i]))
		scale = max(scale, math.Abs(got[i]), math.Abs(want[i]))
	}
	return diff / scale
}

// centralDiff returns (f(θ+h e_j) − f(θ−h e_j)) / 2h for every parameter j;
// f returns a vector and column j of the result is its derivative.
func centralDiff(m Model, f func() []float64) [][]float64 {
	const h = 1e-5
	theta := m.Params()
	d := make([][]float64, len(theta))
	for j := range theta {
		t := theta[j]
		theta[j] = t + h
		fp := f()
		theta[j] = t - h
		fm := f()
		theta[j] = t
		d[j] = make([]float64, len(fp))
		for i := range fp {
			d[j][i] = (fp[i] - fm[i]) / (2 * h)
		}
	}
	return d
}

func TestGradCheck(t *testing.T) {
	for _, c := range gcCases {
		t.Run(c.name, func(t *testing.T) {
			m, x, y, w := gcSetup(c, 7)
			P := NumParams(m)
			N := x.Rows
			grad := make([]float64, P)
			m.Objective(x, y, w, grad)

			// (a) Objective's gradient against central differences.
			fd := centralDiff(m, func() []float64 { return []float64{m.Objective(x, y, w, nil)} })
			want := make([]float64, P)
			for j := range want {
				want[j] = fd[j][0]
			}
			if e := relErr(grad, want); e > 1e-6 {
				t.Errorf("objective gradient: relative error %.3g\n got %.6g\nwant %.6g", e, grad, want)
			}

			// (b) Per-example gradients against differences of Losses.
			b := m.Gradients(x, y)
			if err := b.Validate(); err != nil {
				t.Fatalf("gradients batch: %v", err)
			}
			if b.N != N || b.Dim() != P {
				t.Fatalf("gradients batch: N=%d Dim=%d, want %d, %d", b.N, b.Dim(), N, P)
			}
			for l, ls := range m.Layers() {
				bl := b.Layers[l]
				if bl.Name != ls.Name || bl.DIn != ls.DIn || bl.DOut != ls.DOut || bl.Tokens != 1 || bl.TokenAxis {
					t.Errorf("layer %d: %+v does not match %+v", l, bl, ls)
				}
				for n := 0; n < N; n++ {
					if a := bl.A[(n+1)*ls.DIn-1]; a != 1 {
						t.Errorf("layer %s example %d: bias activation %v, want 1", ls.Name, n, a)
					}
				}
			}
			g := b.Flatten()
			fdl := centralDiff(m, func() []float64 { return m.Losses(x, y) })
			for n := 0; n < N; n++ {
				want := make([]float64, P)
				for j := range want {
					want[j] = fdl[j][n]
				}
				if e := relErr(g.Row(n), want); e > 1e-6 {
					t.Errorf("example %d gradient: relative error %.3g", n, e)
				}
			}

			// (c) The weighted mean of per-example gradients plus λθ is ∇R.
			sum := make([]float64, P)
			for n := 0; n < N; n++ {
				for j, v := range g.Row(n) {
					sum[j] += w[n] * v / float64(N)
				}
			}
			for j, th := range m.Params() {
				sum[j] += m.L2() * th
			}
			if e := relErr(sum, grad); e > 1e-12 {
				t.Errorf("Σ w_n g_n/N + λθ differs from the objective gradient: relative error %.3g", e)
			}

			// (d) Curvature: the exact Hessian for the convex models, the
			// Gauss–Newton matrix built from numerical Jacobians otherwise.
			H := m.Curvature(x, y, w)
			if H.Rows != P || H.Cols != P {
				t.Fatalf("curvature is %d×%d, want %d×%d", H.Rows, H.Cols, P, P)
			}
			for i := 0; i < P; i++ {
				for j := 0; j < i; j++ {
					// Exactly symmetric: Cholesky and eigensolvers read
					// one triangle, so both must agree bit for bit.
					if H.At(i, j) != H.At(j, i) {
						t.Fatalf("curvature not symmetric at (%d, %d): %v vs %v", i, j, H.At(i, j), H.At(j, i))
					}
				}
			}
			var ref *linalg.Dense64
			if c.logits == nil {
				ref = fdHessian(m, x, y, w)
			} else {
				ref = fdGaussNewton(m, x, w, c.logits)
			}
			got := make([]float64, 0, P*P)
			for i := 0; i < P; i++ {
				got = append(got, H.Row(i)...)
			}
			if e := relErr(got, ref.Data); e > 1e-6 {
				t.Errorf("curvature: relative error %.3g", e)
			}
		})
	}
}

// fdHessian differentiates the objective's gradient numerically.
func fdHessian(m Model, x *linalg.Dense64, y []int, w []float64) *linalg.Dense64 {
	P := NumParams(m)
	cols := centralDiff(m, func() []float64 {
		g := make([]float64, P)
		m.Objective(x, y, w, g)
		return g
	})
	H := linalg.NewDense64(P, P, nil)
	for j, col := range cols {
		for i, v := range col {
			H.Set(i, j, v)
		}
	}
	return H
}

// fdGaussNewton forms (1/N) Σ w_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n + λI from
// numerical Jacobians J_n of the logits, independently of Curvature.
func fdGaussNewton(m Model, x *linalg.Dense64, w []float64, logits func(Model, *linalg.Dense64) *linalg.Dense64) *linalg.Dense64 {
	P, N, C := NumParams(m), x.Rows, m.Classes()
	cols := centralDiff(m, func() []float64 { return logits(m, x).Data })
	p := m.Probs(x)
	G := linalg.NewDense64(P, P, nil)
	for n := 0; n < N; n++ {
		pn := p.Row(n)
		J := func(c, j int) float64 { return cols[j][n*C+c] }
		for a := 0; a < P; a++ {
			for b := 0; b < P; b++ {
				s := 0.0
				for c := 0; c < C; c++ {
					for d := 0; d < C; d++ {
						k := -pn[c] * pn[d]
						if c == d {
							k += pn[c]
						}
						s += J(c, a) * k * J(d, b)
					}
				}
				G.Data[a*P+b] += w[n] * s / float64(N)
			}
		}
	}
	for i := 0; i < P; i++ {
		G.Data[i*P+i] += m.L2()
	}
	return G
}

// TestObjectiveUnitWeights checks that nil weights mean weights of one and
// that a zero weight removes an example.
func TestObjectiveUnitWeights(t *testing.T) {
	for _, c := range gcCases {
		t.Run(c.name, func(t *testing.T) {
			m, x, y, _ := gcSetup(c, 11)
			P := NumParams(m)
			ones := make([]float64, x.Rows)
			for i := range ones {
				ones[i] = 1
			}
			g1, g2 := make([]float64, P), make([]float64, P)
			f1 := m.Objective(x, y, nil, g1)
			f2 := m.Objective(x, y, ones, g2)
			if math.Abs(f1-f2) > 1e-14*math.Abs(f1) || relErr(g1, g2) > 1e-14 {
				t.Errorf("nil weights: %v, unit weights: %v", f1, f2)
			}
			ones[0] = 0
			f3 := m.Objective(x, y, ones, nil)
			loss := m.Losses(x, y)
			if d := f2 - f3 - loss[0]/float64(x.Rows); math.Abs(d) > 1e-12 {
				t.Errorf("zero weight removes %v from the objective, want ℓ_0/N = %v", f2-f3, loss[0]/float64(x.Rows))
			}
		})
	}
}

func TestSampleLabels(t *testing.T) {
	for _, c := range gcCases {
		t.Run(c.name, func(t *testing.T) {
			m, _, _, _ := gcSetup(c, 5)
			rng := rand.New(rand.NewPCG(5, 6))
			const n = 20000
			x := linalg.NewDense64(n, c.features, nil)
			for i := range x.Data {
				x.Data[i] = 0.5 * rng.NormFloat64()
			}
			a, b := SampleLabels(m, x, 42), SampleLabels(m, x, 42)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatal("SampleLabels is not reproducible for a fixed seed")
			}
			if fmt.Sprint(a) == fmt.Sprint(SampleLabels(m, x, 43)) {
				t.Error("different seeds gave the same labels")
			}
			p := m.Probs(x)
			freq, mean := make([]float64, c.classes), make([]float64, c.classes)
			for i, yi := range a {
				if yi < 0 || yi >= c.classes {
					t.Fatalf("label %d out of range", yi)
				}
				freq[yi] += 1.0 / n
				for k, v := range p.Row(i) {
					mean[k] += v / n
				}
			}
			for k := range freq {
				// Five standard deviations of a frequency of n draws.
				if tol := 5 * math.Sqrt(mean[k]*(1-mean[k])/n); math.Abs(freq[k]-mean[k]) > tol {
					t.Errorf("class %d: frequency %.4f, mean probability %.4f (tolerance %.4f)", k, freq[k], mean[k], tol)
				}
			}
		})
	}
}
