package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

var _ Model = (*MLP)(nil)

func TestNewMLPErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		act   Activation
		l2    float64
	}{
		{"no sizes", nil, ReLU, 0},
		{"one size", []int{3}, ReLU, 0},
		{"zero input", []int{0, 2}, ReLU, 0},
		{"zero hidden", []int{3, 0, 2}, ReLU, 0},
		{"negative hidden", []int{3, -4, 2}, Tanh, 0},
		{"one class", []int{3, 4, 1}, ReLU, 0},
		{"bad activation", []int{3, 2}, Activation(7), 0},
		{"negative l2", []int{3, 2}, ReLU, -1},
		{"NaN l2", []int{3, 2}, ReLU, math.NaN()},
		{"infinite l2", []int{3, 2}, ReLU, math.Inf(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMLP(tc.sizes, tc.act, tc.l2, 1)
			if err == nil || m != nil {
				t.Errorf("NewMLP(%v, %v, %v) = %v, %v; want an error", tc.sizes, tc.act, tc.l2, m, err)
			}
		})
	}
}

func TestParseActivation(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Activation
		ok   bool
	}{
		{"relu", ReLU, true},
		{"ReLU", ReLU, true},
		{" tanh ", Tanh, true},
		{"sigmoid", 0, false},
		{"", 0, false},
	} {
		got, err := ParseActivation(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseActivation(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, a := range []Activation{ReLU, Tanh} {
		if got, err := ParseActivation(a.String()); err != nil || got != a {
			t.Errorf("round trip of %v: %v, %v", a, got, err)
		}
	}
	if s := Activation(9).String(); s != "Activation(9)" {
		t.Errorf("invalid activation prints as %q", s)
	}
}

func TestMLPStructure(t *testing.T) {
	sizes := []int{6, 5, 4, 3}
	m, err := NewMLP(sizes, ReLU, 0.01, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []LayerSpec{{"fc1", 7, 5}, {"fc2", 6, 4}, {"fc3", 5, 3}}
	if !slices.Equal(m.Layers(), want) {
		t.Errorf("layers %v, want %v", m.Layers(), want)
	}
	if m.Kind() != "mlp" || m.Classes() != 3 || m.L2() != 0.01 || m.Activation() != ReLU {
		t.Errorf("kind %q classes %d l2 %v activation %v", m.Kind(), m.Classes(), m.L2(), m.Activation())
	}
	if !slices.Equal(m.Sizes(), sizes) || !slices.Equal(m.Hidden(), []int{5, 4}) {
		t.Errorf("sizes %v hidden %v", m.Sizes(), m.Hidden())
	}
	if P := NumParams(m); len(m.Params()) != P || P != 7*5+6*4+5*3 {
		t.Errorf("%d params, NumParams %d", len(m.Params()), P)
	}
	// Accessors return copies; Params aliases.
	m.Sizes()[0] = 99
	m.Hidden()[0] = 99
	m.Layers()[0].DIn = 99
	if m.Sizes()[0] != 6 || m.Hidden()[0] != 5 || m.Layers()[0].DIn != 7 {
		t.Error("accessor results alias the model")
	}
	m.Params()[0] = 42
	if m.Params()[0] != 42 {
		t.Error("Params does not alias the model")
	}
	if h := mustMLP([]int{2, 3}, Tanh, 0, 1).Hidden(); h == nil || len(h) != 0 {
		t.Errorf("Hidden of a model without hidden layers is %#v, want empty", h)
	}
}

func TestMLPInit(t *testing.T) {
	for _, act := range []Activation{ReLU, Tanh} {
		sizes := []int{20, 30, 10}
		a, b, c := mustMLP(sizes, act, 0, 5), mustMLP(sizes, act, 0, 5), mustMLP(sizes, act, 0, 6)
		if !slices.Equal(a.Params(), b.Params()) {
			t.Errorf("%v: same seed, different parameters", act)
		}
		if slices.Equal(a.Params(), c.Params()) {
			t.Errorf("%v: different seeds, same parameters", act)
		}
		for l, ls := range a.Layers() {
			w := a.weights(l)
			limit := math.Sqrt(6 / float64(ls.DIn-1+ls.DOut))
			if act == ReLU && l == 0 {
				limit = math.Sqrt(6 / float64(ls.DIn-1))
			}
			for o := 0; o < ls.DOut; o++ {
				for i := 0; i < ls.DIn; i++ {
					v := w[o*ls.DIn+i]
					switch {
					case i == ls.DIn-1 && v != 0:
						t.Errorf("%v %s: bias %d is %v, want 0", act, ls.Name, o, v)
					case i < ls.DIn-1 && (v == 0 || math.Abs(v) > limit):
						t.Errorf("%v %s: weight (%d, %d) = %v outside (0, %v]", act, ls.Name, o, i, v, limit)
					}
				}
			}
		}
	}
}

// TestMLPExtremeLogits checks that probabilities and losses stay finite when
// the logits are far beyond exp's range.
func TestMLPExtremeLogits(t *testing.T) {
	m := mustMLP([]int{2, 4, 3}, ReLU, 0, 1)
	x := linalg.NewDense64(3, 2, []float64{1e4, -1e4, -1e5, 3e4, 0, 0})
	p := m.Probs(x)
	for i := 0; i < p.Rows; i++ {
		s := 0.0
		for _, v := range p.Row(i) {
			if math.IsNaN(v) || v < 0 || v > 1 {
				t.Fatalf("row %d: probability %v", i, v)
			}
			s += v
		}
		if math.Abs(s-1) > 1e-12 {
			t.Errorf("row %d: probabilities sum to %v", i, s)
		}
	}
	for i, l := range m.Losses(x, []int{0, 1, 2}) {
		if math.IsNaN(l) || math.IsInf(l, 0) || l < 0 {
			t.Errorf("loss %d is %v", i, l)
		}
	}
	g := make([]float64, NumParams(m))
	if f := m.Objective(x, []int{0, 1, 2}, nil, g); math.IsNaN(f) || math.IsInf(f, 0) || !isFiniteVec(g) {
		t.Errorf("objective %v, gradient finite %v", f, isFiniteVec(g))
	}
}

// TestMLPBlocks checks that processing rows in blocks, in Objective, Probs,
// Gradients and Curvature, matches processing them one at a time.
func TestMLPBlocks(t *testing.T) {
	defer func(v int) { ggnBlockFloats = v }(ggnBlockFloats)
	rng := rand.New(rand.NewPCG(1, 2))
	m := mustMLP([]int{3, 4, 3}, Tanh, 0.01, 9)
	n := 2*blockRows + 17
	x := linalg.NewDense64(n, 3, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	y, w := make([]int, n), make([]float64, n)
	for i := range y {
		y[i], w[i] = rng.IntN(3), rng.Float64()
	}
	P := NumParams(m)
	g := make([]float64, P)
	f := m.Objective(x, y, w, g)
	p := m.Probs(x)
	gb := m.Gradients(x, y).Flatten()
	ggnBlockFloats = 1 << 22
	G1 := m.Curvature(x, y, w)
	ggnBlockFloats = 3 * P * 7 // blocks of 7 examples
	G2 := m.Curvature(x, y, w)
	if e := relErr(G1.Data, G2.Data); e > 1e-12 {
		t.Errorf("curvature depends on the block size: relative error %.3g", e)
	}

	fs, gs := 0.0, make([]float64, P)
	gi := make([]float64, P)
	for i := 0; i < n; i++ {
		xi := x.Slice(i, i+1, 0, 3)
		// Objective on one row has N = 1; rescale to the full data's 1/N
		// and take the penalty out.
		fi := m.Objective(xi, y[i:i+1], w[i:i+1], gi)
		for j, th := range m.Params() {
			gs[j] += (gi[j] - m.L2()*th) / float64(n)
		}
		fs += (fi - m.Objective(linalg.NewDense64(0, 3, nil), nil, nil, nil)) / float64(n)
		if e := relErr(m.Probs(xi).Row(0), p.Row(i)); e > 1e-15 {
			t.Fatalf("row %d: probabilities differ by %.3g", i, e)
		}
		if e := relErr(m.Gradients(xi, y[i:i+1]).Flatten().Row(0), gb.Row(i)); e > 1e-14 {
			t.Fatalf("row %d: gradient differs by %.3g", i, e)
		}
	}
	pen := m.Objective(linalg.NewDense64(0, 3, nil), nil, nil, nil)
	for j, th := range m.Params() {
		gs[j] += m.L2() * th
	}
	if math.Abs(fs+pen-f) > 1e-12*f {
		t.Errorf("objective %v, row by row %v", f, fs+pen)
	}
	if e := relErr(gs, g); e > 1e-12 {
		t.Errorf("gradient differs from the row-by-row sum by %.3g", e)
	}
}

// TestMLPCurvatureWeights checks that zero weights remove examples from the
// Gauss–Newton matrix, that labels do not matter, and that it is positive
// definite with λ > 0.
func TestMLPCurvatureWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := mustMLP([]int{3, 5, 3}, ReLU, 0.05, 2)
	const n = 12
	x := linalg.NewDense64(n, 3, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	y, y2, w := make([]int, n), make([]int, n), make([]float64, n)
	for i := range y {
		y[i], y2[i] = rng.IntN(3), rng.IntN(3)
		if i%3 != 0 {
			w[i] = 1
		}
	}
	G := m.Curvature(x, y, w)
	if e := relErr(m.Curvature(x, y2, w).Data, G.Data); e != 0 {
		t.Errorf("curvature depends on the labels: %.3g", e)
	}
	// The kept examples alone, with their own N, reweighted to this N.
	var keep []int
	for i := range w {
		if w[i] != 0 {
			keep = append(keep, i)
		}
	}
	xs := linalg.NewDense64(len(keep), 3, nil)
	for k, i := range keep {
		copy(xs.Row(k), x.Row(i))
	}
	Gs := m.Curvature(xs, nil, nil)
	P := NumParams(m)
	scale := float64(len(keep)) / n
	want := make([]float64, P*P)
	for i := range want {
		want[i] = Gs.Data[i]
		if i%(P+1) == 0 {
			want[i] -= m.L2()
		}
		want[i] *= scale
		if i%(P+1) == 0 {
			want[i] += m.L2()
		}
	}
	if e := relErr(G.Data, want); e > 1e-12 {
		t.Errorf("zero weights: relative error %.3g", e)
	}
	// vᵀGv ≥ λ‖v‖² for random v.
	for trial := 0; trial < 5; trial++ {
		v := make([]float64, P)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		q, vv := 0.0, 0.0
		for i := 0; i < P; i++ {
			vv += v[i] * v[i]
			for j := 0; j < P; j++ {
				q += v[i] * G.At(i, j) * v[j]
			}
		}
		if q < m.L2()*vv*(1-1e-12) {
			t.Errorf("vᵀGv = %v < λ‖v‖² = %v", q, m.L2()*vv)
		}
	}
}

// TestMLPCurvatureThreads checks that the parallel products give the same
// bits whatever the number of threads.
func TestMLPCurvatureThreads(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	m := mustMLP([]int{20, 12, 5}, ReLU, 1e-3, 1) // 317 parameters: several tiles
	x := linalg.NewDense64(30, 20, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	one := m.Curvature(x, nil, nil)
	runtime.GOMAXPROCS(8)
	many := m.Curvature(x, nil, nil)
	for i := range one.Data {
		if math.Float64bits(one.Data[i]) != math.Float64bits(many.Data[i]) {
			t.Fatalf("entry %d: %v with one thread, %v with eight", i, one.Data[i], many.Data[i])
		}
	}
}

func TestMLPEmpty(t *testing.T) {
	m := mustMLP([]int{2, 3, 2}, ReLU, 0.5, 1)
	x := linalg.NewDense64(0, 2, nil)
	g := make([]float64, NumParams(m))
	if f := m.Objective(x, nil, nil, g); math.IsNaN(f) {
		t.Errorf("objective of no examples is %v", f)
	}
	if p := m.Probs(x); p.Rows != 0 || p.Cols != 2 {
		t.Errorf("probs of no examples: %d×%d", p.Rows, p.Cols)
	}
	if b := m.Gradients(x, nil); b.N != 0 || b.Validate() != nil {
		t.Errorf("gradients of no examples: %+v", b)
	}
	G := m.Curvature(x, nil, nil)
	for i := 0; i < G.Rows; i++ {
		for j := 0; j < G.Cols; j++ {
			if want := map[bool]float64{true: 0.5}[i == j]; G.At(i, j) != want {
				t.Fatalf("curvature of no examples at (%d, %d) = %v, want %v", i, j, G.At(i, j), want)
			}
		}
	}
}

func BenchmarkMLPCurvature(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := mustMLP([]int{64, 32, 10}, ReLU, 1e-3, 1) // 2410 parameters
	x := linalg.NewDense64(200, 64, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	for b.Loop() {
		m.Curvature(x, nil, nil)
	}
}

func BenchmarkMLPObjective(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := mustMLP([]int{64, 32, 10}, ReLU, 1e-3, 1)
	x := linalg.NewDense64(4096, 64, nil)
	for i := range x.Data {
		x.Data[i] = rng.NormFloat64()
	}
	y := make([]int, x.Rows)
	for i := range y {
		y[i] = rng.IntN(10)
	}
	g := make([]float64, NumParams(m))
	for b.Loop() {
		m.Objective(x, y, nil, g)
	}
}

func ExampleNewMLP() {
	m, err := NewMLP([]int{4, 8, 3}, ReLU, 1e-3, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range m.Layers() {
		fmt.Printf("%s: %d×%d\n", l.Name, l.DOut, l.DIn)
	}
	fmt.Println("parameters:", NumParams(m))
	x := linalg.NewDense64(1, 4, []float64{0.5, -1, 2, 0})
	p := m.Probs(x)
	fmt.Printf("probabilities sum to %.3f\n", p.At(0, 0)+p.At(0, 1)+p.At(0, 2))
	// Output:
	// fc1: 8×5
	// fc2: 3×9
	// parameters: 67
	// probabilities sum to 1.000
}
