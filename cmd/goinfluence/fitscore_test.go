package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// randomGrads returns n examples of a two-token dotted layer and a
// one-token layer, values float32-representable.
func randomGrads(rng *rand.Rand, n int) *gradients.Batch {
	fill := func(k int, scale float64) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = float64(float32(scale * rng.NormFloat64()))
		}
		return v
	}
	return &gradients.Batch{N: n, Layers: []gradients.Layer{
		{Name: "block.0.attn", DIn: 5, DOut: 4, Tokens: 2, TokenAxis: true, A: fill(n*2*5, 1), S: fill(n*2*4, 0.3)},
		{Name: "head", DIn: 4, DOut: 3, Tokens: 1, A: fill(n*4, 1), S: fill(n*3, 1)},
	}}
}

func readTensor(t *testing.T, path, name string) []float64 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Info(name)
	if info.DType == safetensors.I64 {
		iv, err := f.Int64s(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v := make([]float64, len(iv))
		for i, x := range iv {
			v[i] = float64(x)
		}
		return v
	}
	v, err := f.Float64s(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestFitScore runs the CLI on random multi-layer, multi-token files (the
// fit set split over two files) and holds its output to the library's
// float64 result, which ekfac's tests hold to the reference math.
func TestFitScore(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	fit, train, query := randomGrads(rng, 30), randomGrads(rng, 9), randomGrads(rng, 4)
	for name, b := range map[string]*gradients.Batch{"fit1": fit.Slice(0, 13), "fit2": fit.Slice(13, 30), "train": train, "query": query} {
		if err := gradients.WriteFile(p(name), b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	be := linalg.CPU()
	for _, method := range []string{"ekfac", "kfac", "diagonal", "identity"} {
		for _, damping := range []string{"heuristic", "0.01"} {
			t.Run(method+"/"+damping, func(t *testing.T) {
				var out, errOut bytes.Buffer
				if err := run(ctx, []string{"fit", "--grads", p("fit1"), "--grads", p("fit2"), "--method", method, "--chunk", "5", "--out", p("factors")}, &out, &errOut); err != nil {
					t.Fatalf("fit: %v\n%s", err, errOut.String())
				}
				args := []string{"score", "--factors", p("factors"), "--train", p("train"), "--query", p("query"),
					"--damping", damping, "--self", "--topk", "3", "--per-layer", "--out", p("scores")}
				if err := run(ctx, args, &out, &errOut); err != nil {
					t.Fatalf("score: %v\n%s", err, errOut.String())
				}
				m, _ := ekfac.ParseMethod(method)
				d, _ := hessian.ParseDamping(damping)
				f, err := ekfac.Fit(ctx, m, be, ekfac.BatchSource(fit), nil)
				if err != nil {
					t.Fatal(err)
				}
				an := &influence.Analyzer{Method: influence.Factors(f, ekfac.ScoreOptions{Damping: d}), Backend: be}
				want, err := an.Scores(ctx, query, train)
				if err != nil {
					t.Fatal(err)
				}
				wantSelf, err := an.SelfInfluence(ctx, train)
				if err != nil {
					t.Fatal(err)
				}
				got := readTensor(t, p("scores"), "scores")
				if e := rel(got, want.Data); e > 1e-6 {
					t.Errorf("scores relative error %.3g", e)
				}
				if e := rel(readTensor(t, p("scores"), "self"), wantSelf); e > 1e-6 {
					t.Errorf("self relative error %.3g", e)
				}
				// Per-layer tensors sum to the total.
				a, b := readTensor(t, p("scores"), "scores.block.0.attn"), readTensor(t, p("scores"), "scores.head")
				for i := range got {
					if math.Abs(a[i]+b[i]-got[i]) > 1e-5*(1+math.Abs(got[i])) {
						t.Fatalf("per-layer scores do not add up at %d: %v + %v != %v", i, a[i], b[i], got[i])
					}
				}
				// Top-k indices point at the largest scores of each row.
				idx, vals := readTensor(t, p("scores"), "topk.indices"), readTensor(t, p("scores"), "topk.scores")
				for q := 0; q < 4; q++ {
					for k := 0; k < 3; k++ {
						j := int(idx[q*3+k])
						if vals[q*3+k] != got[q*9+j] {
							t.Fatalf("topk[%d][%d] = %d with score %v, scores has %v", q, k, j, vals[q*3+k], got[q*9+j])
						}
						for jj := 0; jj < 9; jj++ {
							if got[q*9+jj] > got[q*9+int(idx[q*3])] {
								t.Fatalf("query %d: %d beats the top entry", q, jj)
							}
						}
					}
				}
			})
		}
	}
}

func TestFitScoreErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	other := randomGrads(rng, 3)
	other.Layers[1].Name = "tail"
	for name, b := range map[string]*gradients.Batch{"fit": randomGrads(rng, 10), "other": other} {
		if err := gradients.WriteFile(p(name), b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"fit", "--grads", p("fit"), "--out", p("factors")}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"fit", "--grads", p("fit")}, "needs --grads and --out"},
		{[]string{"fit", "--grads", p("fit"), "--method", "lissa", "--out", p("x")}, `unknown method "lissa"`},
		{[]string{"fit", "--grads", p("missing"), "--out", p("x")}, "missing"},
		{[]string{"score", "--factors", p("factors"), "--train", p("fit"), "--out", p("s")}, "needs --query"},
		{[]string{"score", "--factors", p("factors"), "--train", p("fit"), "--query", p("fit"), "--damping", "-1", "--out", p("s")}, "damping"},
		{[]string{"score", "--factors", p("factors"), "--train", p("fit"), "--query", p("other"), "--out", p("s")}, `"tail" in the gradients, "head" in the factors`},
		{[]string{"score", "--factors", p("fit"), "--train", p("fit"), "--query", p("fit"), "--out", p("s")}, "format"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[:2], " ")+" "+tc.want, func(t *testing.T) {
			err := run(ctx, tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func rel(got, want []float64) float64 {
	var num, den float64
	for i := range got {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

// TestScoreDType holds 'score --dtype f64' to the library's float64 scores
// to the bit, where the default f32 file is off by float32 rounding, and
// checks the dtype each records.
func TestScoreDType(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	fit, train, query := randomGrads(rng, 30), randomGrads(rng, 9), randomGrads(rng, 4)
	for name, b := range map[string]*gradients.Batch{"fit": fit, "train": train, "query": query} {
		if err := gradients.WriteFile(p(name), b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	be := linalg.CPU()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"fit", "--grads", p("fit"), "--method", "ekfac", "--backend", "cpu", "--out", p("factors")}, &out, &errOut); err != nil {
		t.Fatalf("fit: %v\n%s", err, errOut.String())
	}
	f, err := ekfac.Fit(ctx, ekfac.EKFAC, be, ekfac.BatchSource(fit), nil)
	if err != nil {
		t.Fatal(err)
	}
	an := &influence.Analyzer{Method: influence.Factors(f, ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}), Backend: be}
	want, err := an.Scores(ctx, query, train)
	if err != nil {
		t.Fatal(err)
	}
	wantSelf, err := an.SelfInfluence(ctx, train)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dtype string // flag value; "" for the default
		st    safetensors.DType
		exact bool
	}{{"", safetensors.F32, false}, {"f32", safetensors.F32, false}, {"f64", safetensors.F64, true}} {
		t.Run("dtype="+tc.dtype, func(t *testing.T) {
			path := p("scores-" + tc.dtype)
			args := []string{"score", "--factors", p("factors"), "--train", p("train"), "--query", p("query"),
				"--self", "--topk", "3", "--per-layer", "--backend", "cpu", "--out", path}
			if tc.dtype != "" {
				args = append(args, "--dtype", tc.dtype)
			}
			if err := run(ctx, args, &out, &errOut); err != nil {
				t.Fatalf("score: %v\n%s", err, errOut.String())
			}
			sf, err := influence.ReadScores(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := sf.Metadata["dtype"]; (got == "f64") != tc.exact || (got != "" && got != "f64") {
				t.Errorf("metadata dtype %q", got)
			}
			for _, name := range []string{"scores", "scores.head", "self", "topk.scores", "bottomk.scores"} {
				if info := tensorInfo(t, path, name); info.DType != tc.st {
					t.Errorf("%s is %s, want %s", name, info.DType, tc.st)
				}
			}
			e, eSelf := rel(sf.Float64Scores().Data, want.Data), rel(sf.Self, wantSelf)
			if tc.exact && (e != 0 || eSelf != 0) {
				t.Errorf("f64 scores relative error %.3g, self %.3g: want 0", e, eSelf)
			}
			// The f32 file is rounded: the exact check above can fail.
			if !tc.exact && !(e > 0 && e < 1e-7 && eSelf > 0 && eSelf < 1e-7) {
				t.Errorf("f32 scores relative error %.3g, self %.3g: want float32 rounding", e, eSelf)
			}
			if tc.exact {
				for q, r := range sf.Rankings {
					for _, en := range append(r.Helpful, r.Harmful...) {
						if en.Score != want.At(q, en.Index) {
							t.Fatalf("query %d: ranked score %v of %d, want %v", q, en.Score, en.Index, want.At(q, en.Index))
						}
					}
				}
			}
		})
	}
	// --dtype f32 is the default, byte for byte.
	if a, b := readFile(t, p("scores-")), readFile(t, p("scores-f32")); !bytes.Equal(a, b) {
		t.Error("--dtype f32 writes other bytes than the default")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"score", "--factors", p("factors"), "--train", p("train"), "--query", p("query"), "--dtype", "f16", "--out", p("x")}, `score: --dtype: scores dtype "f16": want f32 or f64`},
		{[]string{"score", "--factors", p("factors"), "--train", p("train"), "--query", p("query"), "--dtype", "", "--out", p("x")}, "--dtype"},
	} {
		err := run(ctx, tc.args, &out, &errOut)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error containing %q", tc.args, err, tc.want)
		}
		if _, err := os.Stat(p("x")); !os.IsNotExist(err) {
			t.Errorf("%q wrote its output", tc.args)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tensorInfo(t *testing.T, path, name string) safetensors.Info {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, ok := f.Info(name)
	if !ok {
		t.Fatalf("%s has no tensor %s", path, name)
	}
	return info
}
