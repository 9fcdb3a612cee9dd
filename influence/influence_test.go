package influence

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// randomBatch returns n examples over two factored layers, one with three
// token rows, and a dense layer.
func randomBatch(rng *rand.Rand, n int) *gradients.Batch {
	fill := func(k int) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	return &gradients.Batch{N: n, Layers: []gradients.Layer{
		{Name: "enc.fc1", DIn: 4, DOut: 3, Tokens: 3, TokenAxis: true, A: fill(n * 3 * 4), S: fill(n * 3 * 3)},
		{Name: "fc2", DIn: 3, DOut: 2, Tokens: 1, A: fill(n * 3), S: fill(n * 2)},
		{Name: "head", D: 5, Grad: fill(n * 5)},
	}}
}

// randomSPD returns QᵀQ/d + 0.1 I for a random d×d Q.
func randomSPD(rng *rand.Rand, d int) *linalg.Dense64 {
	q := make([]float64, d*d)
	for i := range q {
		q[i] = rng.NormFloat64()
	}
	qm := mat.NewDense(d, d, q)
	var h mat.Dense
	h.Mul(qm.T(), qm)
	h.Scale(1/float64(d), &h)
	out := linalg.NewDense64(d, d, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			out.Set(i, j, h.At(i, j))
		}
		out.Data[i*d+i] += 0.1
	}
	return out
}

// reference computes g_qᵀ (H+δI)⁻¹ g_t with gonum's general inverse, an
// independent route from the Cholesky solve under test.
func reference(h *linalg.Dense64, damping float64, q, t *gradients.Batch) *mat.Dense {
	d := h.Rows
	hm := mat.NewDense(d, d, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			hm.Set(i, j, h.At(i, j))
		}
		hm.Set(i, i, hm.At(i, i)+damping)
	}
	var inv mat.Dense
	if err := inv.Inverse(hm); err != nil {
		panic(err)
	}
	gq, gt := q.Flatten(), t.Flatten()
	qm := mat.NewDense(gq.Rows, gq.Cols, gq.Data)
	tm := mat.NewDense(gt.Rows, gt.Cols, gt.Data)
	var tmp, s mat.Dense
	tmp.Mul(qm, &inv)
	s.Mul(&tmp, tm.T())
	return &s
}

func TestExactAgainstInverse(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	q, tr := randomBatch(rng, 4), randomBatch(rng, 9)
	d := q.Dim()
	h := randomSPD(rng, d)
	for _, damping := range []float64{0, 1e-3, 0.5} {
		an := &Analyzer{Method: Exact(h, damping), Backend: linalg.CPU()}
		got, err := an.Scores(context.Background(), q, tr)
		if err != nil {
			t.Fatal(err)
		}
		want := reference(h, damping, q, tr)
		for i := 0; i < got.Rows; i++ {
			for j := 0; j < got.Cols; j++ {
				if w := want.At(i, j); math.Abs(got.At(i, j)-w) > 1e-9*(1+math.Abs(w)) {
					t.Fatalf("δ=%g: score(%d,%d) = %v, want %v", damping, i, j, got.At(i, j), w)
				}
			}
		}
		self, err := an.SelfInfluence(context.Background(), tr)
		if err != nil {
			t.Fatal(err)
		}
		wantSelf := reference(h, damping, tr, tr)
		for j, v := range self {
			if w := wantSelf.At(j, j); math.Abs(v-w) > 1e-9*(1+math.Abs(w)) {
				t.Fatalf("δ=%g: self(%d) = %v, want %v", damping, j, v, w)
			}
			if v <= 0 {
				t.Fatalf("self-influence %v of example %d is not positive for an SPD H", v, j)
			}
		}
	}
}

func TestIdentityIsDotProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	q, tr := randomBatch(rng, 3), randomBatch(rng, 5)
	got, err := NewAnalyzer(Identity()).Scores(context.Background(), q, tr)
	if err != nil {
		t.Fatal(err)
	}
	// Build G_n = Σ_t s aᵀ by hand for the first layer to make sure the
	// flattening (row = output, column = input) is what the score uses.
	for i := 0; i < q.N; i++ {
		for j := 0; j < tr.N; j++ {
			var want float64
			for li := range q.Layers {
				lq, lt := &q.Layers[li], &tr.Layers[li]
				if !lq.Factored() {
					for k := 0; k < lq.D; k++ {
						want += lq.Grad[i*lq.D+k] * lt.Grad[j*lt.D+k]
					}
					continue
				}
				for o := 0; o < lq.DOut; o++ {
					for in := 0; in < lq.DIn; in++ {
						var gq, gt float64
						for tok := 0; tok < lq.Tokens; tok++ {
							gq += lq.Outs(i).At(tok, o) * lq.Acts(i).At(tok, in)
							gt += lt.Outs(j).At(tok, o) * lt.Acts(j).At(tok, in)
						}
						want += gq * gt
					}
				}
			}
			if math.Abs(got.At(i, j)-want) > 1e-10*(1+math.Abs(want)) {
				t.Fatalf("score(%d,%d) = %v, want %v", i, j, got.At(i, j), want)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	q, tr := randomBatch(rng, 2), randomBatch(rng, 3)
	h := randomSPD(rng, q.Dim())
	ctx := context.Background()

	bad := randomBatch(rng, 3)
	bad.Layers[1].S[4] = math.NaN()
	renamed := randomBatch(rng, 3)
	renamed.Layers[0].Name = "other"
	indefinite := h.Clone()
	indefinite.Data[0] = -50

	tests := []struct {
		name   string
		method Method
		train  *gradients.Batch
		want   string
	}{
		{"nan names layer and example", Identity(), bad, `layer "fc2": s: example 2`},
		{"layer mismatch", Identity(), renamed, `"enc.fc1" in the query, "other"`},
		{"wrong curvature size", Exact(linalg.NewDense64(3, 3, []float64{1, 0, 0, 0, 1, 0, 0, 0, 1}), 0), tr, "curvature is 3×3"},
		{"indefinite", Exact(indefinite, 0), tr, "not positive definite"},
		{"negative damping", Exact(h, -1), tr, "damping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAnalyzer(tc.method).Scores(ctx, q, tc.train)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTopK(t *testing.T) {
	s := linalg.NewDense64(2, 6, []float64{
		0.5, -2, 3, 0.5, -0.1, 1,
		-1, -1, -1, 2, 0, -3,
	})
	r := TopK(s, 3)
	want := []struct {
		helpful, harmful []int
	}{
		{[]int{2, 5, 0}, []int{1, 4, 0}},
		{[]int{3, 4, 0}, []int{5, 0, 1}},
	}
	for q, w := range want {
		for i, e := range r[q].Helpful {
			if e.Index != w.helpful[i] || e.Score != s.At(q, e.Index) {
				t.Errorf("query %d helpful: %v, want indices %v", q, r[q].Helpful, w.helpful)
			}
		}
		for i, e := range r[q].Harmful {
			if e.Index != w.harmful[i] || e.Score != s.At(q, e.Index) {
				t.Errorf("query %d harmful: %v, want indices %v", q, r[q].Harmful, w.harmful)
			}
		}
	}
	if got := TopK(s, 100); len(got[0].Helpful) != 6 {
		t.Errorf("k larger than the row: %d entries", len(got[0].Helpful))
	}
}

// TestNoLayers: batches without layers score zero instead of panicking.
func TestNoLayers(t *testing.T) {
	s, err := NewAnalyzer(Identity()).Scores(context.Background(), &gradients.Batch{N: 2}, &gradients.Batch{N: 3})
	if err != nil {
		t.Fatal(err)
	}
	if s.Rows != 2 || s.Cols != 3 {
		t.Fatalf("scores are %d×%d, want 2×3", s.Rows, s.Cols)
	}
}
