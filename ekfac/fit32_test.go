package ekfac

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// splitBatch returns b's examples as consecutive batches of the given
// sizes (the last one takes the rest).
func splitBatch(b *gradients.Batch, sizes ...int) []*gradients.Batch {
	var out []*gradients.Batch
	for lo, k := 0, 0; lo < b.N; k++ {
		hi := b.N
		if k < len(sizes) {
			hi = min(lo+sizes[k], b.N)
		}
		p := &gradients.Batch{N: hi - lo}
		for _, l := range b.Layers {
			c := l
			if l.Factored() {
				ra, rs := l.Tokens*l.DIn, l.Tokens*l.DOut
				c.A, c.S = l.A[lo*ra:hi*ra], l.S[lo*rs:hi*rs]
			} else {
				c.Grad = l.Grad[lo*l.D : hi*l.D]
			}
			p.Layers = append(p.Layers, c)
		}
		out = append(out, p)
		lo = hi
	}
	return out
}

// fitErr returns the largest relative Frobenius error of got's covariances,
// eigenvalues and Λ against want's, naming the worst.
func fitErr(t *testing.T, got, want *Factors) (float64, string) {
	t.Helper()
	if got.Method != want.Method || got.N != want.N || len(got.Layers) != len(want.Layers) {
		t.Fatalf("got %s, N %d, %d layers; want %s, N %d, %d layers",
			got.Method, got.N, len(got.Layers), want.Method, want.N, len(want.Layers))
	}
	worst, what := 0.0, ""
	check := func(layer, name string, g, w []float64) {
		if len(g) != len(w) {
			t.Fatalf("layer %s: %s has %d values, want %d", layer, name, len(g), len(w))
		}
		if len(w) == 0 {
			return
		}
		if e := relErr(g, w); !(e <= worst) {
			worst, what = e, layer+" "+name
		}
	}
	data := func(m *linalg.Dense64) []float64 {
		if m == nil {
			return nil
		}
		return m.Data
	}
	for i := range want.Layers {
		g, w := &got.Layers[i], &want.Layers[i]
		if g.M != w.M {
			t.Fatalf("layer %s: M %d, want %d", w.Name, g.M, w.M)
		}
		check(w.Name, "A", data(g.ACov), data(w.ACov))
		check(w.Name, "S", data(g.SCov), data(w.SCov))
		check(w.Name, "λ_A", g.LambdaA, w.LambdaA)
		check(w.Name, "λ_S", g.LambdaS, w.LambdaS)
		check(w.Name, "Λ", data(g.Lambda), data(w.Lambda))
	}
	return worst, what
}

// TestFitF32AgainstF64 holds F32 fits to F64 fits of the same fresh random
// gradients within 1e-4 relative Frobenius error in the covariances, their
// eigenvalues and Λ, and the scores of F32-fitted factors to those of
// F64-fitted ones within 1e-4: each method, several layers with one token
// (Λ as one GEMM), four tokens (token pairs) and nine (per example), mixed,
// and dense layers beside factored ones for Diagonal; fitted in one batch,
// in uneven batches, with token pairs in small GEMMs and with none, which
// must all agree with each other to float32 rounding.
func TestFitF32AgainstF64(t *testing.T) {
	var (
		t1a   = layerSpec{name: "fc1", din: 13, dout: 8, tokens: 1}
		t1b   = layerSpec{name: "fc2", din: 9, dout: 5, tokens: 1}
		t4a   = layerSpec{name: "attn.q", din: 11, dout: 6, tokens: 4}
		t4b   = layerSpec{name: "attn.out", din: 7, dout: 10, tokens: 4}
		t9    = layerSpec{name: "conv", din: 6, dout: 5, tokens: 9} // over pairMaxTokens
		dense = layerSpec{name: "emb", d: 17}
	)
	all := []Method{EKFAC, KFAC, Diagonal}
	shapes := []f32Shape{
		{"T=1", []layerSpec{t1a, t1b}, all},
		{"T=4", []layerSpec{t4a, t4b}, all},
		{"T=9", []layerSpec{t9}, all},
		{"mixed", []layerSpec{t4a, t1a, t9, t4b, t1b}, all},
		{"dense", []layerSpec{t1a, dense, t4b}, []Method{Diagonal}},
	}
	splits := [][]int{{5, 1, 17, 3}, {1}}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(15, 32))
	for _, beName := range linalg.Backends() {
		be, err := linalg.Open(beName)
		if err != nil {
			continue
		}
		for _, sh := range shapes {
			for _, m := range sh.methods {
				t.Run(fmt.Sprintf("%s/%s/%s", beName, sh.name, m), func(t *testing.T) {
					fit := shapedBatch(rng, 60, sh.layers)
					want, err := FitWithOptions(ctx, m, be, BatchSource(fit), FitOptions{})
					if err != nil {
						t.Fatal(err)
					}
					got, err := FitWithOptions(ctx, m, be, BatchSource(fit), FitOptions{Precision: F32})
					if err != nil {
						t.Fatal(err)
					}
					if e, what := fitErr(t, got, want); !(e <= 1e-4) {
						t.Errorf("F32 fit: %s relative error %.3g", what, e)
					}
					for _, sizes := range splits {
						chunked, err := FitWithOptions(ctx, m, be, BatchSource(splitBatch(fit, sizes...)...), FitOptions{Precision: F32})
						if err != nil {
							t.Fatal(err)
						}
						if e, what := fitErr(t, chunked, got); !(e <= 1e-5) {
							t.Errorf("F32 fit in batches %v: %s relative error %.3g against one batch", sizes, what, e)
						}
					}
					// Token pairs in GEMMs of a few examples, and none.
					for _, c := range []struct{ maxTokens, blockRows int }{{8, 25}, {1, 4096}} {
						pairMaxTokens, pairBlockRows = c.maxTokens, c.blockRows
						blocked, err := FitWithOptions(ctx, m, be, BatchSource(fit), FitOptions{Precision: F32})
						pairMaxTokens, pairBlockRows = 8, 4096
						if err != nil {
							t.Fatal(err)
						}
						if e, what := fitErr(t, blocked, got); !(e <= 1e-5) {
							t.Errorf("F32 fit, pairs up to %d tokens in %d rows: %s relative error %.3g", c.maxTokens, c.blockRows, what, e)
						}
					}
					q, tr := shapedBatch(rng, 3, sh.layers), shapedBatch(rng, 8, sh.layers)
					opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
					ws, err := want.LayerScores(ctx, be, q, tr, opt)
					if err != nil {
						t.Fatal(err)
					}
					gs, err := got.LayerScores(ctx, be, q, tr, opt)
					if err != nil {
						t.Fatal(err)
					}
					for li := range ws {
						if e := relErr(gs[li].Data, ws[li].Data); !(e <= 1e-4) {
							t.Errorf("layer %s: scores of F32-fitted factors: relative error %.3g", tr.Layers[li].Name, e)
						}
					}
				})
			}
		}
	}
}

// TestFitUnknownPrecision checks that a precision other than F64 and F32
// is refused by every entry point. That F64, the zero value, fits bit for
// bit as before F32 existed is held by cmd/goinfluence's golden test,
// whose factors files were written by that code.
func TestFitUnknownPrecision(t *testing.T) {
	ctx := context.Background()
	be := linalg.CPU()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, m := range []Method{EKFAC, KFAC, Diagonal, Identity} {
		src := BatchSource(randomBatch(rng, 5, m == Diagonal || m == Identity))
		if _, err := FitWithOptions(ctx, m, be, src, FitOptions{Precision: 9}); err == nil {
			t.Errorf("%s: unknown precision accepted", m)
		}
	}
	b := randomBatch(rng, 3, false)
	cov := NewCovariance(be)
	cov.Precision = -1
	if err := cov.Add(b); err == nil {
		t.Error("Covariance: unknown precision accepted")
	}
	lam, err := NewLambda(Diagonal, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	lam.Precision = 2
	if err := lam.Add(b); err == nil {
		t.Error("Lambda: unknown precision accepted")
	}
}

// TestFitF32Values checks the F32 passes' own check of the values: a NaN
// or ±Inf anywhere is refused naming the layer, the tensor and the
// example, a finite value beyond float32's range naming the layer, and a
// refused batch leaves the sums as they were.
func TestFitF32Values(t *testing.T) {
	be := linalg.CPU()
	rng := rand.New(rand.NewPCG(9, 10))
	fit := randomBatch(rng, 6, false)
	cases := []struct {
		name  string
		layer int
		field string
		at    int // index into the tensor
		v     float64
		want  []string
	}{
		{"NaN in a", 0, "a", 3*18 + 5, math.NaN(), []string{`layer "enc.fc1"`, "a", "example 3"}},
		{"+Inf in s", 1, "s", 4*3 + 2, math.Inf(1), []string{`layer "head"`, "s", "example 4"}},
		{"-Inf in grad", 2, "grad", 2*7 + 1, math.Inf(-1), []string{`layer "emb"`, "grad", "example 2"}},
		{"beyond float32", 1, "a", 7, 1e39, []string{`layer "head"`, "beyond float32's range"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dense := tc.field == "grad" // Covariance refuses dense layers by shape
			b := randomBatch(rng, 6, dense)
			l := &b.Layers[tc.layer]
			map[string][]float64{"a": l.A, "s": l.S, "grad": l.Grad}[tc.field][tc.at] = tc.v
			if !dense {
				c := NewCovariance(be)
				c.Precision = F32
				if err := c.Add(fit); err != nil {
					t.Fatal(err)
				}
				before := append([]float64(nil), c.layers[0].a.Data...)
				err := c.Add(b)
				if err == nil {
					t.Fatal("Covariance accepted the batch")
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Covariance: %v, want %q", err, w)
					}
				}
				for i, v := range c.layers[0].a.Data {
					if v != before[i] {
						t.Fatalf("Covariance: a refused batch changed the sums at %d", i)
					}
				}
			}
			lam, err := NewLambda(Diagonal, be, nil)
			if err != nil {
				t.Fatal(err)
			}
			lam.Precision = F32
			if err := lam.Add(b); err == nil || !strings.Contains(err.Error(), tc.want[0]) {
				t.Errorf("Lambda (diagonal): %v, want %q", err, tc.want[0])
			}
		})
	}
}

func TestChunkExamples(t *testing.T) {
	for _, tc := range []struct {
		bytes int64
		want  int
	}{
		{0, ChunkBytes}, {1, ChunkBytes}, {8 * (785 + 512), ChunkBytes / (8 * 1297)}, {ChunkBytes + 1, 1}, {math.MaxInt64, 1},
	} {
		if got := ChunkExamples(tc.bytes); got != tc.want {
			t.Errorf("ChunkExamples(%d) = %d, want %d", tc.bytes, got, tc.want)
		}
	}
}
