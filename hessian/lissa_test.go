package hessian

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
)

func TestLiSSAAgainstCholesky(t *testing.T) {
	cases := []struct {
		name    string
		damping float64
		scale   float64 // relative to λ_max(H+δI)
		depth   int
		tol     float64
		maxErr  float64
	}{
		{"scale λmax", 0, 1, 300, 0, 1e-4},
		{"damped", 0.5, 1, 200, 0, 1e-4},
		{"scale 0.6λmax", 0, 0.6, 200, 0, 1e-4},
		{"tolerance", 0, 1, 2000, 1e-9, 1e-7},
	}
	rng := rand.New(rand.NewPCG(21, 1))
	const p = 30
	h, _ := withSpectrum(rng, spread(1, 10, p))
	d := mustDense(t, h)
	b := randomBlock(rng, 4, p)
	for _, c := range cases {
		want, err := d.Solve(b, c.damping)
		if err != nil {
			t.Fatal(err)
		}
		opts := LiSSAOptions{Scale: c.scale * (10 + c.damping), Depth: c.depth, Tol: c.tol}
		got, rep, err := LiSSA(context.Background(), d, c.damping, b, opts)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		e := maxRelErr(got, want)
		t.Logf("%s: relative error %.2g, steps %v, residuals %.1g", c.name, e, rep.Iterations, rep.Residuals)
		if e > c.maxErr {
			t.Errorf("%s: relative error %.3g > %g", c.name, e, c.maxErr)
		}
		// For a full-batch operator the reported step bounds the true residual.
		for i := range rep.Residuals {
			x := linalg.NewDense64(1, p, got.Row(i))
			hx := linalg.NewDense64(1, p, nil)
			d.ApplyMany(context.Background(), x, hx)
			axpy(c.damping, x.Row(0), hx.Row(0))
			for j, v := range b.Row(i) {
				hx.Row(0)[j] -= v
			}
			r := floats.Norm(hx.Row(0), 2) / floats.Norm(b.Row(i), 2)
			if r > rep.Residuals[i]*(1+1e-9)+1e-14 || rep.Residuals[i] > 1 {
				t.Errorf("%s: rhs %d: reported residual %.4g, true %.4g", c.name, i, rep.Residuals[i], r)
			}
		}
	}
}

func TestLiSSADiverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 1))
	h, _ := withSpectrum(rng, spread(1, 10, 20))
	b := randomBlock(rng, 3, 20)
	for _, scale := range []float64{4, 1} { // λ_max/2 = 5
		_, _, err := LiSSA(context.Background(), mustDense(t, h), 0, b, LiSSAOptions{Scale: scale, Depth: 500})
		if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "scale") || !strings.Contains(err.Error(), "right-hand side") {
			t.Errorf("scale %g: error %v, want a divergence that names the scale", scale, err)
		} else {
			t.Logf("scale %g: %v", scale, err)
		}
	}
	// A NaN in the operator is reported, not returned.
	h.Set(3, 3, math.NaN())
	op := rowByRow{&Dense{h: h, be: linalg.CPU()}}
	if _, _, err := LiSSA(context.Background(), op, 0, b, LiSSAOptions{Scale: 10}); !errors.Is(err, ErrNotFinite) {
		t.Errorf("NaN operator: %v", err)
	}
}

func TestLiSSAErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 1))
	h, _ := withSpectrum(rng, spread(1, 10, 10))
	d := mustDense(t, h)
	b := randomBlock(rng, 3, 10)
	nan := b.Clone()
	nan.Set(1, 7, math.Inf(1))
	cases := []struct {
		name string
		b    *linalg.Dense64
		opts LiSSAOptions
		want string
	}{
		{"negative scale", b, LiSSAOptions{Scale: -1}, "scale -1"},
		{"inf", nan, LiSSAOptions{Scale: 10}, "right-hand side 1: non-finite value: element 7 is +Inf"},
		{"not converged", b, LiSSAOptions{Scale: 10, Depth: 5, Tol: 1e-6}, "did not converge"},
		{"depth", b, LiSSAOptions{Scale: 10, Depth: -1}, "depth -1"},
	}
	for _, c := range cases {
		if _, _, err := LiSSA(context.Background(), d, 0, c.b, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// sampler returns LiSSA's per-step operators for H = (1/N) GᵀG + λI: the
// same form over a mini-batch of m rows of G drawn with the step's seed.
func sampler(g *linalg.Dense64, m int, l2 float64, seeds *[]uint64) func(uint64) (Operator, error) {
	return func(seed uint64) (Operator, error) {
		if seeds != nil {
			*seeds = append(*seeds, seed)
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		sub := linalg.NewDense64(m, g.Cols, nil)
		for i := 0; i < m; i++ {
			copy(sub.Row(i), g.Row(rng.IntN(g.Rows)))
		}
		return NewDense(gram(sub, l2), linalg.CPU())
	}
}

func gram(g *linalg.Dense64, l2 float64) *linalg.Dense64 {
	h := linalg.NewDense64(g.Cols, g.Cols, nil)
	linalg.CPU().CovAccumulate(h, g)
	for i := range h.Data {
		h.Data[i] /= float64(g.Rows)
	}
	for i := 0; i < g.Cols; i++ {
		h.Data[i*g.Cols+i] += l2
	}
	return h
}

func TestLiSSASampled(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	const p, n = 8, 400
	g := randomBlock(rng, n, p)
	full := mustDense(t, gram(g, 0.5))
	b := randomBlock(rng, 2, p)
	want, err := full.Solve(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	run := func(seed uint64, seeds *[]uint64) *linalg.Dense64 {
		x, _, err := LiSSA(context.Background(), full, 0, b, LiSSAOptions{Scale: 6, Depth: 150, Repeats: 4, Seed: seed, Sample: sampler(g, 64, 0.5, seeds)})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	var seedsA, seedsB []uint64
	a, a2, other := run(7, &seedsA), run(7, &seedsB), run(8, nil)
	if !bitsEqual(a, a2) {
		t.Error("same seed gave different results")
	}
	if bitsEqual(a, other) {
		t.Error("different seeds gave identical results")
	}
	if len(seedsA) != 4*150 || seedsA[0] == seedsA[150] {
		t.Errorf("%d step seeds, first of repeats 0 and 1: %d %d", len(seedsA), seedsA[0], seedsA[150])
	}
	// Mini-batch LiSSA is noisy but unbiased enough to land near the solve.
	e := maxRelErr(a, want)
	t.Logf("sampled: relative error %.3g", e)
	if e > 0.2 {
		t.Errorf("sampled LiSSA: relative error %.3g", e)
	}
}

// TestLiSSADefaultScale checks that a zero Scale takes LiSSAScale's
// estimate, 2·(λ_max + δ), and that LiSSA then converges to the solution.
func TestLiSSADefaultScale(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	h, _ := withSpectrum(rng, spread(1, 4, 12))
	d := mustDense(t, h)
	b := randomBlock(rng, 2, 12)
	const damping = 0.5
	s, err := LiSSAScale(context.Background(), nil, d, damping, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s < 2*(4+damping)*0.99 || s > 2*(4+damping)*1.01 {
		t.Errorf("scale %v, want about 2·(λ_max + δ) = %v", s, 2*(4+damping))
	}
	got, _, err := LiSSA(context.Background(), d, damping, b, LiSSAOptions{Depth: 400, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	want, err := d.Solve(b, damping)
	if err != nil {
		t.Fatal(err)
	}
	if e := maxRelErr(got, want); e > 1e-6 {
		t.Errorf("relative error %.3g with the default scale", e)
	}
}
