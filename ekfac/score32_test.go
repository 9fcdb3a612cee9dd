package ekfac

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// layerSpec is one layer of a batch built by shapedBatch: factored with
// tokens > 0, dense of dimension d otherwise.
type layerSpec struct {
	name              string
	din, dout, tokens int
	d                 int
}

// shapedBatch returns n examples with fresh normal values (never zeros)
// over the given layers.
func shapedBatch(rng *rand.Rand, n int, specs []layerSpec) *gradients.Batch {
	fill := func(k int, scale float64) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = scale * rng.NormFloat64()
		}
		return v
	}
	b := &gradients.Batch{N: n}
	for _, s := range specs {
		if s.tokens == 0 {
			b.Layers = append(b.Layers, gradients.Layer{Name: s.name, D: s.d, Grad: fill(n*s.d, 0.5)})
			continue
		}
		b.Layers = append(b.Layers, gradients.Layer{Name: s.name, DIn: s.din, DOut: s.dout, Tokens: s.tokens,
			TokenAxis: s.tokens > 1, A: fill(n*s.tokens*s.din, 1), S: fill(n*s.tokens*s.dout, 0.3)})
	}
	return b
}

// f32Shape is a set of layers and the methods that fit them.
type f32Shape struct {
	name    string
	layers  []layerSpec
	methods []Method
}

type queryCount struct {
	name string
	n    int
}

// TestF32AgainstF64 holds the F32 scores of every layer, and their sum, to
// the F64 ones within 1e-4 relative Frobenius error: each method, factored
// layers with one and five tokens, dense and mixed layers, each algorithm
// forced and as planned, one query, fewer and more queries than training
// examples, and chunks of one example, a few, and the default bound.
func TestF32AgainstF64(t *testing.T) {
	var (
		t1    = layerSpec{name: "fc1", din: 9, dout: 5, tokens: 1}
		t5    = layerSpec{name: "attn.out", din: 7, dout: 6, tokens: 5}
		dense = layerSpec{name: "emb", d: 11}
	)
	shapes := []f32Shape{
		{"T=1", []layerSpec{t1}, []Method{EKFAC, KFAC, Diagonal, Identity}},
		{"T=5", []layerSpec{t5}, []Method{EKFAC, KFAC, Diagonal, Identity}},
		{"factored", []layerSpec{t5, t1}, []Method{EKFAC, KFAC, Diagonal, Identity}},
		{"dense", []layerSpec{dense}, []Method{Diagonal, Identity}},
		{"mixed", []layerSpec{t1, dense, t5}, []Method{Diagonal, Identity}},
	}
	queries := []queryCount{{"Q=1", 1}, {"Q<N", 4}, {"Q>N", 23}}
	algorithms := []Algorithm{"", Bilinear, Materialise}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(32, 64))
	for _, beName := range linalg.Backends() {
		be, err := linalg.Open(beName)
		if err != nil {
			continue
		}
		t.Run(beName, func(t *testing.T) { f32AgainstF64(t, ctx, be, rng, shapes, queries, algorithms) })
	}
}

func f32AgainstF64(t *testing.T, ctx context.Context, be linalg.Backend, rng *rand.Rand, shapes []f32Shape, queries []queryCount, algorithms []Algorithm) {
	const nTrain = 9
	for _, sh := range shapes {
		for _, m := range sh.methods {
			fit := shapedBatch(rng, 30, sh.layers)
			f, err := Fit(ctx, m, be, BatchSource(fit), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, qc := range queries {
				for _, alg := range algorithms {
					for _, chunk := range []int{0, 1, 700} { // floats: the default bound, one example a chunk, a few
						name := fmt.Sprintf("%s/%s/%s/%s/chunk=%d", sh.name, m, qc.name, alg, chunk)
						if alg == "" {
							name = fmt.Sprintf("%s/%s/%s/planned/chunk=%d", sh.name, m, qc.name, chunk)
						}
						t.Run(name, func(t *testing.T) {
							q, tr := shapedBatch(rng, qc.n, sh.layers), shapedBatch(rng, nTrain, sh.layers)
							opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
							want, err := f.LayerScores(ctx, be, q, tr, opt)
							if err != nil {
								t.Fatal(err)
							}
							opt.Precision, opt.algorithm, opt.chunkFloats = F32, alg, chunk
							got, err := f.LayerScores(ctx, be, q, tr, opt)
							if err != nil {
								t.Fatal(err)
							}
							sumGot := make([]float64, q.N*tr.N)
							sumWant := make([]float64, q.N*tr.N)
							for li := range want {
								if got[li].Rows != q.N || got[li].Cols != tr.N {
									t.Fatalf("layer %d: %d×%d scores, want %d×%d", li, got[li].Rows, got[li].Cols, q.N, tr.N)
								}
								if e := relErr(got[li].Data, want[li].Data); !(e <= 1e-4) {
									t.Errorf("layer %s: relative error %.3g", tr.Layers[li].Name, e)
								}
								for i := range sumGot {
									sumGot[i] += got[li].Data[i]
									sumWant[i] += want[li].Data[i]
								}
							}
							if e := relErr(sumGot, sumWant); !(e <= 1e-4) {
								t.Errorf("summed scores: relative error %.3g", e)
							}
						})
					}
				}
			}
		}
	}
}

// TestF64Unchanged checks that F32 with self-influence takes the float64
// path, bit for bit, and that an unknown precision is refused. That F64,
// the zero value, scores as before F32 existed is held by
// cmd/goinfluence's golden test.
func TestF64Unchanged(t *testing.T) {
	ctx := context.Background()
	be := linalg.CPU()
	rng := rand.New(rand.NewPCG(5, 6))
	fit := randomBatch(rng, 40, false)
	f, err := Fit(ctx, EKFAC, be, BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	q, tr := randomBatch(rng, 4, false), randomBatch(rng, 9, false)
	base := ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	want, wantSelf, err := f.LayerScoresAndSelf(ctx, be, q, tr, base, true)
	if err != nil {
		t.Fatal(err)
	}
	opt := base
	opt.Precision = F32
	got, gotSelf, err := f.LayerScoresAndSelf(ctx, be, q, tr, opt, true)
	if err != nil {
		t.Fatal(err)
	}
	for li := range want {
		for i, v := range want[li].Data {
			if got[li].Data[i] != v {
				t.Fatalf("F32 with self: layer %d entry %d = %v, want %v", li, i, got[li].Data[i], v)
			}
		}
	}
	for i, v := range wantSelf {
		if gotSelf[i] != v {
			t.Fatalf("F32: self-influence %d = %v, want %v", i, gotSelf[i], v)
		}
	}
	if _, err := f.LayerScores(ctx, be, q, tr, ScoreOptions{Damping: base.Damping, Precision: 9}); err == nil {
		t.Error("unknown precision accepted")
	}
}

func TestPairwisePlan(t *testing.T) {
	f := &Factors{Method: EKFAC, Layers: []LayerFactors{
		{Name: "mlp", DIn: 785, DOut: 512, QA: &linalg.Dense64{}},
		{Name: "attn", DIn: 64, DOut: 64, QA: &linalg.Dense64{}},
		{Name: "emb", D: 100},
	}}
	batch := func(n int) *gradients.Batch {
		return &gradients.Batch{N: n, Layers: []gradients.Layer{
			{Name: "mlp", DIn: 785, DOut: 512, Tokens: 1},
			{Name: "attn", DIn: 64, DOut: 64, Tokens: 5},
			{Name: "emb", D: 100, Grad: []float64{}},
		}}
	}
	tests := []struct {
		name string
		q    int
		opt  ScoreOptions
		want []Algorithm
	}{
		// T = 1: bilinear saves the materialisation when Q < d_in; T = 5:
		// it repeats the product with M̃ for every token, so pays off only
		// for a single query.
		{"one query", 1, ScoreOptions{}, []Algorithm{Bilinear, Bilinear, Materialise}},
		{"few queries", 10, ScoreOptions{}, []Algorithm{Bilinear, Materialise, Materialise}},
		{"MLP Q=500", 500, ScoreOptions{}, []Algorithm{Bilinear, Materialise, Materialise}},
		{"many queries", 1000, ScoreOptions{}, []Algorithm{Materialise, Materialise, Materialise}},
		{"forced bilinear", 1000, ScoreOptions{algorithm: Bilinear}, []Algorithm{Bilinear, Bilinear, Materialise}},
		{"forced materialise", 10, ScoreOptions{algorithm: Materialise}, []Algorithm{Materialise, Materialise, Materialise}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := f.PairwisePlan(batch(tc.q), batch(2000), tc.opt)
			for li, p := range plan {
				if p.Algorithm != tc.want[li] {
					t.Errorf("layer %s: %s, want %s (bilinear %.3g, materialise %.3g flops)", p.Layer, p.Algorithm, tc.want[li], p.Bilinear, p.Materialise)
				}
			}
			mlp := plan[0]
			n, q := 2000.0, float64(tc.q)
			if want := 2 * n * (785*785 + 512*512); mlp.Rotation != want {
				t.Errorf("rotation %g flops, want %g", mlp.Rotation, want)
			}
			if want := 2*n*785*q*512 + 2*n*q*512; mlp.Bilinear != want {
				t.Errorf("bilinear %g flops, want %g", mlp.Bilinear, want)
			}
			if want := 2*n*512*785 + 2*q*n*512*785; mlp.Materialise != want {
				t.Errorf("materialise %g flops, want %g", mlp.Materialise, want)
			}
			if d := plan[2]; d.Rotation != 0 || d.Bilinear != 0 || d.Materialise != 2*q*n*100 {
				t.Errorf("dense layer plan %+v", d)
			}
		})
	}
}

func TestF32Guards(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	be := linalg.CPU()
	rng := rand.New(rand.NewPCG(8, 9))
	fit := randomBatch(rng, 20, false)
	f, err := Fit(ctx, KFAC, be, BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	q, tr := randomBatch(rng, 3, false), randomBatch(rng, 5, false)
	opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Precision: F32}
	opt.MemoryLimit = 64
	if _, err := f.LayerScores(ctx, be, q, tr, opt); !errors.Is(err, linalg.ErrMemoryLimit) {
		t.Errorf("memory limit: %v", err)
	}
	opt.MemoryLimit = 0
	cancel()
	if _, err := f.LayerScores(ctx, be, q, tr, opt); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := f.LayerScores(context.Background(), be, q, tr, ScoreOptions{Damping: hessian.Damping{Value: -1e9}, Precision: F32}); !errors.Is(err, hessian.ErrDamping) {
		t.Errorf("bad damping: %v", err)
	}
	// No queries or no training examples: empty scores of the right shape.
	for _, n := range [][2]int{{0, 5}, {3, 0}} {
		for _, alg := range []Algorithm{Bilinear, Materialise} {
			q, tr := randomBatch(rng, n[0], true), randomBatch(rng, n[1], true)
			g, err := IdentityFactors(q).LayerScores(context.Background(), be, q, tr, ScoreOptions{Precision: F32, algorithm: alg})
			if err != nil || len(g) != 3 || g[0].Rows != n[0] || g[0].Cols != n[1] {
				t.Errorf("%d queries, %d training examples, %s: %v", n[0], n[1], alg, err)
			}
		}
	}
	if p, err := ParsePrecision("f32"); err != nil || p != F32 || p.String() != "f32" {
		t.Errorf("ParsePrecision(f32) = %v, %v", p, err)
	}
	if p, err := ParsePrecision(""); err == nil {
		t.Errorf("ParsePrecision(\"\") = %v", p)
	}
}

// TestF32Rank holds F32 scores with a rank limit, whose queries are
// truncated in float64 before they are narrowed, to the F64 ones.
func TestF32Rank(t *testing.T) {
	ctx := context.Background()
	be := linalg.CPU()
	rng := rand.New(rand.NewPCG(11, 12))
	specs := []layerSpec{{name: "fc1", din: 9, dout: 5, tokens: 1}, {name: "attn.out", din: 7, dout: 6, tokens: 5}}
	f, err := Fit(ctx, EKFAC, be, BatchSource(shapedBatch(rng, 30, specs)), nil)
	if err != nil {
		t.Fatal(err)
	}
	q, tr := shapedBatch(rng, 4, specs), shapedBatch(rng, 9, specs)
	for _, alg := range []Algorithm{Bilinear, Materialise} {
		opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Rank: 2}
		want, err := f.LayerScores(ctx, be, q, tr, opt)
		if err != nil {
			t.Fatal(err)
		}
		opt.Precision, opt.algorithm = F32, alg
		got, err := f.LayerScores(ctx, be, q, tr, opt)
		if err != nil {
			t.Fatal(err)
		}
		for li := range want {
			if e := relErr(got[li].Data, want[li].Data); !(e <= 1e-4) {
				t.Errorf("%s: layer %s: relative error %.3g", alg, tr.Layers[li].Name, e)
			}
		}
	}
}

// TestBilinearBlocks holds the bilinear blocks within the bound (where
// one query and one example fit in it) and to covering the queries and
// examples in blocks of even size, at least as wide as asked.
func TestBilinearBlocks(t *testing.T) {
	tests := []struct {
		name                        string
		nq, nt, tok, din, dout, lim int
		wantQB, wantNC              int
	}{
		{"MLP fc1 N=2000", 500, 2000, 1, 785, 512, chunkFloats32, 8, 2000},
		{"MLP fc1 N=5000", 500, 5000, 1, 785, 512, chunkFloats32, 8, 5000},
		{"MLP fc3", 500, 2000, 1, 513, 10, chunkFloats32, 250, 2000},
		{"many examples", 500, 100000, 1, 785, 512, chunkFloats32, 8, 7693},
		{"one float", 23, 9, 5, 7, 6, 1, 1, 1},
		{"a few floats", 23, 9, 1, 9, 5, 700, 23, 5},
		{"no queries", 0, 9, 1, 9, 5, 700, 1, 9},
		{"no examples", 4, 0, 1, 9, 5, 700, 4, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			qb, nc := bilinearBlocks(tc.nq, tc.nt, tc.tok, tc.din, tc.dout, tc.lim)
			if qb != tc.wantQB || nc != tc.wantNC {
				t.Errorf("blocks of %d queries × %d examples, want %d × %d", qb, nc, tc.wantQB, tc.wantNC)
			}
			if y := nc * tc.tok * qb * tc.dout; y > tc.lim && (qb > 1 || nc > 1) {
				t.Errorf("Y of %d values over the bound %d", y, tc.lim)
			}
			if r := nc * tc.tok * max(tc.din, tc.dout); r > tc.lim && nc > 1 {
				t.Errorf("rotated rows of %d values over the bound %d", r, tc.lim)
			}
		})
	}
}

// TestPreconditionF32 holds Precondition with F32 rotations to the F64
// result within 1e-4 relative error per layer, for every method, one and
// five tokens, with and without a rank limit.
func TestPreconditionF32(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(41, 42))
	specs := []layerSpec{{name: "fc1", din: 9, dout: 5, tokens: 1}, {name: "attn.out", din: 7, dout: 6, tokens: 5}}
	for _, beName := range linalg.Backends() {
		be, err := linalg.Open(beName)
		if err != nil {
			continue
		}
		for _, m := range []Method{EKFAC, KFAC, Diagonal, Identity} {
			f, err := Fit(ctx, m, be, BatchSource(shapedBatch(rng, 30, specs)), nil)
			if err != nil {
				t.Fatal(err)
			}
			q := shapedBatch(rng, 6, specs)
			for _, rank := range []int{0, 2} {
				opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Rank: rank}
				want, err := f.Precondition(ctx, be, q, opt)
				if err != nil {
					t.Fatal(err)
				}
				opt.Precision = F32
				got, err := f.Precondition(ctx, be, q, opt)
				if err != nil {
					t.Fatal(err)
				}
				off := 0
				for _, l := range q.Layers {
					d := l.Dim()
					var g, w []float64
					for n := 0; n < q.N; n++ {
						g = append(g, got.Row(n)[off:off+d]...)
						w = append(w, want.Row(n)[off:off+d]...)
					}
					if e := relErr(g, w); !(e <= 1e-4) || (m != Diagonal && m != Identity && rank == 0 && e == 0) {
						t.Errorf("%s/%s/rank %d: layer %s: relative error %.3g", beName, m, rank, l.Name, e)
					}
					off += d
				}
			}
		}
	}
	if _, err := IdentityFactors(shapedBatch(rng, 1, specs)).Precondition(ctx, nil, shapedBatch(rng, 1, specs), ScoreOptions{Precision: 7}); err == nil {
		t.Error("precision 7 accepted")
	}
}
