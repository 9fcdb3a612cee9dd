package hessian

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// dataInfBatch returns n examples over a factored layer with two token rows
// and a dense layer.
func dataInfBatch(rng *rand.Rand, n int) *gradients.Batch {
	fill := func(k int, s float64) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = s * rng.NormFloat64()
		}
		return v
	}
	return &gradients.Batch{N: n, Layers: []gradients.Layer{
		{Name: "fc1", DIn: 4, DOut: 3, Tokens: 2, A: fill(n*2*4, 1), S: fill(n*2*3, 0.5)},
		{Name: "head", D: 6, Grad: fill(n*6, 2)},
	}}
}

// dataInfLoop is the DataInf formula by plain loops, one layer and one query
// at a time: (1/(nλ)) Σ_i (v − (g_i·v)/(λ+‖g_i‖²) g_i).
func dataInfLoop(train *gradients.Batch, lambda []float64, v *linalg.Dense64) *linalg.Dense64 {
	out := linalg.NewDense64(v.Rows, v.Cols, nil)
	off := 0
	for l := range train.Layers {
		layer := &train.Layers[l]
		d := layer.Dim()
		g := make([]float64, d)
		for q := 0; q < v.Rows; q++ {
			vq, oq := v.Row(q)[off:off+d], out.Row(q)[off:off+d]
			for i := 0; i < train.N; i++ {
				layer.Gradient(i, g)
				c := floats.Dot(g, vq) / (lambda[l] + floats.Dot(g, g))
				for j := range oq {
					oq[j] += (vq[j] - c*g[j]) / (float64(train.N) * lambda[l])
				}
			}
		}
		off += d
	}
	return out
}

func TestDataInfAgainstLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 1))
	train := dataInfBatch(rng, 23)
	v := randomBlock(rng, 5, train.Dim())
	defer func(c int) { dataInfChunkFloats = c }(dataInfChunkFloats)
	cases := []struct {
		name   string
		damp   Damping
		chunks int // floats per chunk; 0 keeps the default
	}{
		{"heuristic", Damping{Heuristic: true}, 0},
		{"absolute", Damping{Value: 0.7}, 0},
		{"chunked", Damping{Heuristic: true}, 3 * train.Dim()},
	}
	for _, c := range cases {
		if c.chunks > 0 {
			dataInfChunkFloats = c.chunks
		}
		di, err := NewDataInf(context.Background(), train, DataInfOptions{Damping: c.damp})
		if err != nil {
			t.Fatal(err)
		}
		lam := di.Damping()
		if c.damp.Heuristic {
			// 0.1 × mean ‖g_i‖²/D_l, from Flatten.
			g := train.Flatten()
			off := 0
			for l := range train.Layers {
				d := train.Layers[l].Dim()
				var s float64
				for i := 0; i < train.N; i++ {
					r := g.Row(i)[off : off+d]
					s += floats.Dot(r, r)
				}
				if want := 0.1 * s / float64(train.N*d); math.Abs(lam[l]-want) > 1e-14*want {
					t.Errorf("%s: layer %d: λ = %v, want %v", c.name, l, lam[l], want)
				}
				off += d
			}
		}
		got, err := di.Apply(context.Background(), linalg.CPU(), v)
		if err != nil {
			t.Fatal(err)
		}
		e := maxRelErr(got, dataInfLoop(train, lam, v))
		t.Logf("%s: λ = %.4g, relative error %.2g against the loop", c.name, lam, e)
		if e > 1e-12 {
			t.Errorf("%s: relative error %.3g", c.name, e)
		}
	}
}

// With one training example DataInf is Sherman–Morrison: the exact inverse
// of g gᵀ + λI, layer by layer.
func TestDataInfShermanMorrison(t *testing.T) {
	rng := rand.New(rand.NewPCG(72, 1))
	train := dataInfBatch(rng, 1)
	v := randomBlock(rng, 3, train.Dim())
	di, err := NewDataInf(context.Background(), train, DataInfOptions{Damping: Damping{Heuristic: true}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := di.Apply(context.Background(), nil, v)
	if err != nil {
		t.Fatal(err)
	}
	g := train.Flatten()
	off := 0
	for l, lam := range di.Damping() {
		d := train.Layers[l].Dim()
		gl := g.Slice(0, 1, off, off+d).Clone()
		h := linalg.NewDense64(d, d, nil)
		linalg.CPU().CovAccumulate(h, gl)
		want, err := mustDense(t, h).Solve(v.Slice(0, v.Rows, off, off+d).Clone(), lam)
		if err != nil {
			t.Fatal(err)
		}
		e := maxRelErr(got.Slice(0, v.Rows, off, off+d).Clone(), want)
		t.Logf("layer %d: relative error %.2g against Cholesky", l, e)
		if e > 1e-12 {
			t.Errorf("layer %d: relative error %.3g", l, e)
		}
		off += d
	}
}

func TestDataInfErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(73, 1))
	train := dataInfBatch(rng, 4)
	zero := dataInfBatch(rng, 3)
	clear(zero.Layers[1].Grad)
	nanTrain := dataInfBatch(rng, 3)
	nanTrain.Layers[1].Grad[8] = math.NaN()
	cases := []struct {
		name  string
		train *gradients.Batch
		damp  Damping
		want  string
	}{
		{"zero damping", train, Damping{}, "damping 0"},
		{"zero layer", zero, Damping{Heuristic: true}, `layer "head"`},
		{"nan", nanTrain, Damping{Value: 1}, "example 1"},
		{"empty", &gradients.Batch{}, Damping{Value: 1}, "at least one example"},
	}
	for _, c := range cases {
		if _, err := NewDataInf(context.Background(), c.train, DataInfOptions{Damping: c.damp}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	di, err := NewDataInf(context.Background(), train, DataInfOptions{Damping: Damping{Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	v := randomBlock(rng, 2, train.Dim())
	v.Set(1, 3, math.NaN())
	if _, err := di.Apply(context.Background(), nil, v); !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), "right-hand side 1") {
		t.Errorf("NaN query: %v", err)
	}
	if _, err := di.Apply(context.Background(), nil, randomBlock(rng, 1, 5)); err == nil {
		t.Error("wrong dimension accepted")
	}
}
