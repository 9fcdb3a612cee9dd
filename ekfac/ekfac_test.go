package ekfac

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// randomBatch returns n examples over a multi-token factored layer with a
// dotted name, a one-token layer and (when dense) a dense layer. Values are
// rounded to float32 as the CLI's inputs would be.
func randomBatch(rng *rand.Rand, n int, dense bool) *gradients.Batch {
	fill := func(k int, scale float64) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = float64(float32(scale * rng.NormFloat64()))
		}
		return v
	}
	b := &gradients.Batch{N: n, Layers: []gradients.Layer{
		{Name: "enc.fc1", DIn: 6, DOut: 4, Tokens: 3, TokenAxis: true, A: fill(n*3*6, 1), S: fill(n*3*4, 0.1)},
		{Name: "head", DIn: 5, DOut: 3, Tokens: 1, A: fill(n*5, 2), S: fill(n*3, 1)},
	}}
	if dense {
		b.Layers = append(b.Layers, gradients.Layer{Name: "emb", D: 7, Grad: fill(n*7, 0.5)})
	}
	return b
}

// refEigh is an independent symmetric eigensolver call (gonum mat) for the
// reference.
func refEigh(a [][]float64) ([]float64, *mat.Dense) {
	n := len(a)
	s := mat.NewSymDense(n, nil)
	for i := range a {
		for j := range a {
			s.SetSym(i, j, 0.5*(a[i][j]+a[j][i]))
		}
	}
	var e mat.EigenSym
	if !e.Factorize(s, true) {
		panic("eigen")
	}
	var v mat.Dense
	e.VectorsTo(&v)
	return e.Values(nil), &v
}

// refGrad returns G_n = Σ_t s aᵀ of one layer.
func refGrad(l *gradients.Layer, n int) *mat.Dense {
	if !l.Factored() {
		return mat.NewDense(1, l.D, append([]float64(nil), l.Grad[n*l.D:(n+1)*l.D]...))
	}
	g := mat.NewDense(l.DOut, l.DIn, nil)
	for t := 0; t < l.Tokens; t++ {
		for o := 0; o < l.DOut; o++ {
			for i := 0; i < l.DIn; i++ {
				g.Set(o, i, g.At(o, i)+l.S[(n*l.Tokens+t)*l.DOut+o]*l.A[(n*l.Tokens+t)*l.DIn+i])
			}
		}
	}
	return g
}

// reference computes scores(q, t) by DESIGN §3 literally, in float64, with
// loops and gonum, sharing no code with the package.
func reference(method Method, fit, q, tr *gradients.Batch, damp hessian.Damping) (scores *mat.Dense, self []float64) {
	scores = mat.NewDense(q.N, tr.N, nil)
	self = make([]float64, tr.N)
	for li := range fit.Layers {
		fl := &fit.Layers[li]
		var qs, qa *mat.Dense
		var lam *mat.Dense
		switch method {
		case KFAC, EKFAC:
			m := float64(fit.N * fl.Tokens)
			A := make([][]float64, fl.DIn)
			for i := range A {
				A[i] = make([]float64, fl.DIn)
			}
			S := make([][]float64, fl.DOut)
			for i := range S {
				S[i] = make([]float64, fl.DOut)
			}
			for r := 0; r < fit.N*fl.Tokens; r++ {
				a, s := fl.A[r*fl.DIn:(r+1)*fl.DIn], fl.S[r*fl.DOut:(r+1)*fl.DOut]
				for i := range a {
					for j := range a {
						A[i][j] += a[i] * a[j] / m
					}
				}
				for i := range s {
					for j := range s {
						S[i][j] += s[i] * s[j] / m
					}
				}
			}
			la, va := refEigh(A)
			ls, vs := refEigh(S)
			qa, qs = va, vs
			lam = mat.NewDense(fl.DOut, fl.DIn, nil)
			if method == KFAC {
				for i := range ls {
					for j := range la {
						lam.Set(i, j, ls[i]*la[j])
					}
				}
			} else {
				for n := 0; n < fit.N; n++ {
					var r, rr mat.Dense
					r.Mul(qs.T(), refGrad(fl, n))
					rr.Mul(&r, qa)
					for i := 0; i < fl.DOut; i++ {
						for j := 0; j < fl.DIn; j++ {
							lam.Set(i, j, lam.At(i, j)+rr.At(i, j)*rr.At(i, j)/float64(fit.N))
						}
					}
				}
			}
		case Diagonal:
			r, c := refGrad(fl, 0).Dims()
			lam = mat.NewDense(r, c, nil)
			for n := 0; n < fit.N; n++ {
				g := refGrad(fl, n)
				for i := 0; i < r; i++ {
					for j := 0; j < c; j++ {
						lam.Set(i, j, lam.At(i, j)+g.At(i, j)*g.At(i, j)/float64(fit.N))
					}
				}
			}
		}
		delta := damp.Value
		if damp.Heuristic && lam != nil {
			r, c := lam.Dims()
			delta = 0.1 * mat.Sum(lam) / float64(r*c)
		}
		p := func(g *mat.Dense) *mat.Dense {
			switch method {
			case Identity:
				return g
			case Diagonal:
				r, c := g.Dims()
				out := mat.NewDense(r, c, nil)
				for i := 0; i < r; i++ {
					for j := 0; j < c; j++ {
						out.Set(i, j, g.At(i, j)/(lam.At(i, j)+delta))
					}
				}
				return out
			}
			var r, rr mat.Dense
			r.Mul(qs.T(), g)
			rr.Mul(&r, qa)
			for i := 0; i < fl.DOut; i++ {
				for j := 0; j < fl.DIn; j++ {
					rr.Set(i, j, rr.At(i, j)/(lam.At(i, j)+delta))
				}
			}
			var b, bb mat.Dense
			b.Mul(qs, &rr)
			bb.Mul(&b, qa.T())
			return &bb
		}
		for i := 0; i < q.N; i++ {
			pq := p(refGrad(&q.Layers[li], i))
			for j := 0; j < tr.N; j++ {
				scores.Set(i, j, scores.At(i, j)+mat.Sum(elem(pq, refGrad(&tr.Layers[li], j))))
			}
		}
		for j := 0; j < tr.N; j++ {
			gt := refGrad(&tr.Layers[li], j)
			self[j] += mat.Sum(elem(p(gt), gt))
		}
	}
	return scores, self
}

func elem(a, b *mat.Dense) *mat.Dense {
	var c mat.Dense
	c.MulElem(a, b)
	return &c
}

// score computes scores and self-influence through the package.
func score(t *testing.T, be linalg.Backend, f *Factors, q, tr *gradients.Batch, opt ScoreOptions) (*linalg.Dense64, []float64) {
	t.Helper()
	ctx := context.Background()
	pq, err := f.Precondition(ctx, be, q, opt)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := f.Precondition(ctx, be, tr, opt)
	if err != nil {
		t.Fatal(err)
	}
	gt := tr.Flatten()
	s := linalg.NewDense64(q.N, tr.N, nil)
	be.Dgemm(linalg.NoTrans, linalg.Trans, 1, pq, gt, 0, s)
	self := make([]float64, tr.N)
	for j := range self {
		for k, v := range pt.Row(j) {
			self[j] += v * gt.At(j, k)
		}
	}
	return s, self
}

func relErr(got []float64, want []float64) float64 {
	var num, den float64
	for i := range got {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	fitDense := randomBatch(rng, 40, true)
	fitFactored := randomBatch(rng, 40, false)
	tests := []struct {
		method Method
		damp   hessian.Damping
		dense  bool
	}{
		{EKFAC, hessian.Damping{Heuristic: true}, false},
		{EKFAC, hessian.Damping{Value: 1e-3}, false},
		{KFAC, hessian.Damping{Heuristic: true}, false},
		{KFAC, hessian.Damping{Value: 0.05}, false},
		{Diagonal, hessian.Damping{Heuristic: true}, true},
		{Diagonal, hessian.Damping{Value: 1e-2}, true},
		{Identity, hessian.Damping{Heuristic: true}, true},
	}
	for _, tc := range tests {
		t.Run(string(tc.method)+"/"+tc.damp.String(), func(t *testing.T) {
			fit := fitFactored
			if tc.dense {
				fit = fitDense
			}
			q, tr := randomBatch(rng, 3, tc.dense), randomBatch(rng, 7, tc.dense)
			for _, name := range linalg.Backends() {
				be, err := linalg.Open(name)
				if err != nil {
					continue
				}
				f, err := Fit(context.Background(), tc.method, be, BatchSource(fit), nil)
				if err != nil {
					t.Fatal(err)
				}
				got, gotSelf := score(t, be, f, q, tr, ScoreOptions{Damping: tc.damp})
				want, wantSelf := reference(tc.method, fit, q, tr, tc.damp)
				if e := relErr(got.Data, want.RawMatrix().Data); e > 1e-10 || math.IsNaN(e) {
					t.Errorf("%s: scores relative error %.3g", name, e)
				}
				if e := relErr(gotSelf, wantSelf); e > 1e-10 || math.IsNaN(e) {
					t.Errorf("%s: self-influence relative error %.3g", name, e)
				}
				// The eigenbasis path must agree with the reference too.
				opt := ScoreOptions{Damping: tc.damp}
				layers, err := f.LayerScores(context.Background(), be, q, tr, opt)
				if err != nil {
					t.Fatal(err)
				}
				sum := make([]float64, q.N*tr.N)
				for _, l := range layers {
					for i, v := range l.Data {
						sum[i] += v
					}
				}
				if e := relErr(sum, want.RawMatrix().Data); e > 1e-10 || math.IsNaN(e) {
					t.Errorf("%s: LayerScores relative error %.3g", name, e)
				}
				eself, err := f.SelfInfluence(context.Background(), be, tr, opt)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(eself, wantSelf); e > 1e-10 || math.IsNaN(e) {
					t.Errorf("%s: SelfInfluence relative error %.3g", name, e)
				}
			}
		})
	}
}

// TestInvariance fits the same set in one batch, in uneven batches, and
// from several files read in chunks: the factors and scores agree.
func TestInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	whole := randomBatch(rng, 37, false)
	dir := t.TempDir()
	var paths []string
	for i, r := range [][2]int{{0, 10}, {10, 11}, {11, 37}} {
		p := filepath.Join(dir, "part"+string(rune('a'+i))+".safetensors")
		if err := gradients.WriteFile(p, whole.Slice(r[0], r[1]), gradients.F64, nil); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	sources := map[string]Source{
		"one batch":     BatchSource(whole),
		"uneven":        BatchSource(whole.Slice(0, 1), whole.Slice(1, 20), whole.Slice(20, 37)),
		"files chunk 4": FileSource(4, paths...),
		"files chunk 1": FileSource(1, paths...),
	}
	be := linalg.CPU()
	q, tr := randomBatch(rng, 2, false), randomBatch(rng, 5, false)
	for _, method := range []Method{EKFAC, KFAC, Diagonal} {
		var ref *linalg.Dense64
		for name, src := range sources {
			f, err := Fit(context.Background(), method, be, src, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", method, name, err)
			}
			if f.N != 37 {
				t.Fatalf("%s %s: N = %d", method, name, f.N)
			}
			s, _ := score(t, be, f, q, tr, ScoreOptions{Damping: hessian.Damping{Heuristic: true}})
			if ref == nil {
				ref = s
				continue
			}
			if e := relErr(s.Data, ref.Data); e > 1e-12 {
				t.Errorf("%s %s: scores differ by %.3g", method, name, e)
			}
		}
	}
}

func TestSaveLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	fit := randomBatch(rng, 20, false)
	q, tr := randomBatch(rng, 2, false), randomBatch(rng, 4, false)
	be := linalg.CPU()
	for _, method := range []Method{EKFAC, KFAC, Diagonal, Identity} {
		f, err := Fit(context.Background(), method, be, BatchSource(fit), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.Meta = map[string]string{"grads": "fit.safetensors"}
		path := filepath.Join(t.TempDir(), "f.safetensors")
		if err := f.Save(path); err != nil {
			t.Fatal(err)
		}
		g, err := Load(path)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if g.Method != method || g.N != 20 || g.Meta["grads"] != "fit.safetensors" || len(g.Layers) != 2 || g.Layers[0].M != f.Layers[0].M {
			t.Fatalf("%s: loaded %+v", method, g)
		}
		opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
		a, _ := score(t, be, f, q, tr, opt)
		b, _ := score(t, be, g, q, tr, opt)
		for i := range a.Data {
			if a.Data[i] != b.Data[i] {
				t.Fatalf("%s: scores change after a save/load round trip", method)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	ctx := context.Background()
	be := linalg.CPU()
	fit := randomBatch(rng, 10, false)
	nan := randomBatch(rng, 10, false)
	nan.Layers[1].A[5*5+2] = math.Inf(1)
	other := randomBatch(rng, 3, false)
	other.Layers[1].Name = "tail"

	if _, err := Fit(ctx, EKFAC, be, BatchSource(randomBatch(rng, 4, true)), nil); err == nil || !strings.Contains(err.Error(), `layer "emb" is dense`) {
		t.Errorf("dense layer in EK-FAC fit: %v", err)
	}
	if _, err := Fit(ctx, EKFAC, be, BatchSource(nan), nil); err == nil || !strings.Contains(err.Error(), `layer "head": a: example 5`) {
		t.Errorf("Inf in fit set: %v", err)
	}
	for _, m := range []Method{EKFAC, Diagonal, Identity} {
		if _, err := Fit(ctx, m, be, BatchSource(fit, other), nil); err == nil || !strings.Contains(err.Error(), `"tail"`) {
			t.Errorf("%s: batches with different layers: %v", m, err)
		}
	}
	if _, err := ParseMethod("lissa"); err == nil {
		t.Error("unknown method accepted")
	}
	for _, s := range []string{"-1", "x", "NaN", "Inf"} {
		if _, err := hessian.ParseDamping(s); err == nil {
			t.Errorf("damping %q accepted", s)
		}
	}
	f, err := Fit(ctx, KFAC, be, BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Precondition(ctx, be, other, ScoreOptions{}); err == nil || !strings.Contains(err.Error(), `"tail" in the gradients, "head" in the factors`) {
		t.Errorf("query with other layers: %v", err)
	}
	// A zero activation column makes A singular: without damping Λ has a
	// zero entry and the inverse must fail naming the layer.
	sing := randomBatch(rng, 10, false)
	for i := 0; i < len(sing.Layers[1].A); i += 5 {
		sing.Layers[1].A[i] = 0
	}
	fs, err := Fit(ctx, EKFAC, be, BatchSource(sing), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Precondition(ctx, be, sing, ScoreOptions{}); err == nil || !strings.Contains(err.Error(), `layer "head"`) {
		t.Errorf("singular factor without damping: %v", err)
	}
}

func TestRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	fit := randomBatch(rng, 30, false)
	q := randomBatch(rng, 2, false)
	be := linalg.CPU()
	f, err := Fit(context.Background(), EKFAC, be, BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	full, err := f.Precondition(context.Background(), be, q, ScoreOptions{Damping: hessian.Damping{Heuristic: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{1, 2, 3} {
		low, err := f.Precondition(context.Background(), be, q, ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Rank: r})
		if err != nil {
			t.Fatal(err)
		}
		want := svdTruncate(q, full, r)
		if e := relErr(low.Data, want.Data); !(e <= 1e-9) {
			t.Errorf("rank %d: truncated P(G) off the SVD's by %.3g", r, e)
		}
		if e := relErr(low.Row(0)[:24], full.Row(0)[:24]); r < 4 && e == 0 {
			t.Errorf("rank %d changed nothing", r)
		}
		// LayerScores with a rank limit scores the truncated P(G_q).
		tr := randomBatch(rng, 3, false)
		opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Rank: r}
		layers, err := f.LayerScores(context.Background(), be, q, tr, opt)
		if err != nil {
			t.Fatal(err)
		}
		gt := tr.Flatten()
		for i := 0; i < q.N; i++ {
			for j := 0; j < tr.N; j++ {
				var want float64
				for k, v := range low.Row(i) {
					want += v * gt.At(j, k)
				}
				got := layers[0].At(i, j) + layers[1].At(i, j)
				if math.Abs(got-want) > 1e-9*(1+math.Abs(want)) {
					t.Fatalf("rank %d: score(%d,%d) = %v, want %v", r, i, j, got, want)
				}
			}
		}
	}
}

// svdTruncate returns p (examples × Dim of b's layers) with every factored
// layer of rank above r replaced by its rank-r truncated SVD (gonum), the
// reference for the rank option.
func svdTruncate(b *gradients.Batch, p *linalg.Dense64, r int) *linalg.Dense64 {
	out := p.Clone()
	off := 0
	for _, l := range b.Layers {
		d := l.Dim()
		if l.Factored() && r < min(l.DIn, l.DOut) {
			for n := 0; n < out.Rows; n++ {
				v := out.Row(n)[off : off+d]
				var svd mat.SVD
				if !svd.Factorize(mat.NewDense(l.DOut, l.DIn, append([]float64(nil), v...)), mat.SVDThin) {
					panic("SVD did not converge")
				}
				var u, vt mat.Dense
				svd.UTo(&u)
				svd.VTo(&vt)
				s := svd.Values(nil)
				for i := 0; i < l.DOut; i++ {
					for j := 0; j < l.DIn; j++ {
						var x float64
						for k := 0; k < r; k++ {
							x += u.At(i, k) * s[k] * vt.At(j, k)
						}
						v[i*l.DIn+j] = x
					}
				}
			}
		}
		off += d
	}
	return out
}

// TestLowRank holds the rank-r scores of both precisions to the gonum SVD
// truncation of each query's P(G) dotted with the flattened training
// gradients: layers wider than tall and taller than wide, one and several
// tokens, every method, several blocks of queries and chunks of examples.
func TestLowRank(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(53, 54))
	specs := []layerSpec{
		{name: "fc1", din: 9, dout: 5, tokens: 1},
		{name: "attn.out", din: 7, dout: 6, tokens: 5},
		{name: "up", din: 4, dout: 11, tokens: 2},
	}
	for _, beName := range linalg.Backends() {
		be, err := linalg.Open(beName)
		if err != nil {
			continue
		}
		for _, m := range []Method{EKFAC, KFAC, Diagonal, Identity} {
			f, err := Fit(ctx, m, be, BatchSource(shapedBatch(rng, 40, specs)), nil)
			if err != nil {
				t.Fatal(err)
			}
			q, tr := shapedBatch(rng, 7, specs), shapedBatch(rng, 13, specs)
			full, err := f.Precondition(ctx, be, q, ScoreOptions{Damping: hessian.Damping{Heuristic: true}})
			if err != nil {
				t.Fatal(err)
			}
			gt := tr.Flatten()
			for _, r := range []int{1, 3} {
				ref := svdTruncate(q, full, r)
				for _, prec := range []Precision{F64, F32} {
					for _, chunk := range []int{0, 40} {
						opt := ScoreOptions{Damping: hessian.Damping{Heuristic: true}, Rank: r, Precision: prec, chunkFloats: chunk}
						layers, err := f.LayerScores(ctx, be, q, tr, opt)
						if err != nil {
							t.Fatal(err)
						}
						tol := map[Precision]float64{F64: 1e-9, F32: 1e-4}[prec]
						off := 0
						for li, l := range tr.Layers {
							d := l.Dim()
							want := make([]float64, q.N*tr.N)
							for i := 0; i < q.N; i++ {
								for j := 0; j < tr.N; j++ {
									for k, v := range ref.Row(i)[off : off+d] {
										want[i*tr.N+j] += v * gt.At(j, off+k)
									}
								}
							}
							if e := relErr(layers[li].Data, want); !(e <= tol) {
								t.Errorf("%s/%s/rank %d/%s/chunk %d: layer %s: relative error %.3g", beName, m, r, prec, chunk, l.Name, e)
							}
							off += d
						}
					}
				}
			}
		}
	}
}

// TestLoadGuards tampers with a saved factors file: every problem is an
// error naming the layer or field, never a panic or silent garbage.
func TestLoadGuards(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	f, err := Fit(context.Background(), EKFAC, linalg.CPU(), BatchSource(randomBatch(rng, 12, false)), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := f.Save(good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor
		want   string
	}{
		{"asymmetric covariance", func(ts []safetensors.Tensor, _ map[string]string) []safetensors.Tensor {
			setF64(ts, "head.a_cov", 1, 1e3)
			return ts
		}, `layer "head": a_cov is not symmetric`},
		{"NaN in lambda", func(ts []safetensors.Tensor, _ map[string]string) []safetensors.Tensor {
			setF64(ts, "enc.fc1.lambda", 3, math.NaN())
			return ts
		}, `layer "enc.fc1": tensor enc.fc1.lambda: element 3 is NaN`},
		{"negative lambda", func(ts []safetensors.Tensor, _ map[string]string) []safetensors.Tensor {
			setF64(ts, "head.lambda", 0, -5)
			return ts
		}, `layer "head": lambda has a negative entry`},
		{"missing tensor", func(ts []safetensors.Tensor, _ map[string]string) []safetensors.Tensor {
			return drop(ts, "head.qs")
		}, "tensor head.qs missing"},
		{"unknown method", func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["method"] = "lissa"
			return ts
		}, `unknown method "lissa"`},
		{"not a factors file", func(ts []safetensors.Tensor, meta map[string]string) []safetensors.Tensor {
			meta["format"] = "goinfluence.gradients/v1"
			return ts
		}, "metadata format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, meta := readTensors(t, good)
			bad := filepath.Join(dir, "bad")
			if err := safetensors.WriteFile(bad, tc.tamper(ts, meta), meta); err != nil {
				t.Fatal(err)
			}
			_, err := Load(bad)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func setF64(ts []safetensors.Tensor, name string, i int, v float64) {
	for _, t := range ts {
		if t.Name == name {
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(v))
			return
		}
	}
	panic("no tensor " + name)
}

func drop(ts []safetensors.Tensor, name string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, t := range ts {
		if t.Name != name {
			out = append(out, t)
		}
	}
	return out
}

// TestLowRankMemoryLimit holds the rank-r path to refusing, before
// allocating, work buffers over the memory limit, naming the layer.
func TestLowRankMemoryLimit(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(55, 56))
	specs := []layerSpec{{name: "wide", din: 300, dout: 200, tokens: 1}}
	f := IdentityFactors(shapedBatch(rng, 1, specs))
	q, tr := shapedBatch(rng, 20, specs), shapedBatch(rng, 10, specs)
	for _, prec := range []Precision{F64, F32} {
		_, err := f.LayerScores(ctx, linalg.CPU(), q, tr, ScoreOptions{Rank: 8, Precision: prec, MemoryLimit: 256 << 10})
		if !errors.Is(err, linalg.ErrMemoryLimit) || !strings.Contains(err.Error(), "query transforms") {
			t.Errorf("%s: %v, want a memory-limit error naming the query transforms", prec, err)
		}
		if _, err := f.LayerScores(ctx, linalg.CPU(), q, tr, ScoreOptions{Rank: 8, Precision: prec, MemoryLimit: linalg.NoMemoryLimit}); err != nil {
			t.Errorf("%s without a limit: %v", prec, err)
		}
	}
}
