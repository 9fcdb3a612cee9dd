package hessian

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"testing"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/linalg"
)

// projectedReference returns Σ_i (g·u_i)u_i/(λ_i+δ) over the given
// eigenpairs (vectors as rows), by plain loops.
func projectedReference(vals []float64, vecs, g *linalg.Dense64, damping float64) *linalg.Dense64 {
	out := linalg.NewDense64(g.Rows, g.Cols, nil)
	for r := 0; r < g.Rows; r++ {
		for i, l := range vals {
			c := floats.Dot(g.Row(r), vecs.Row(i)) / (l + damping)
			axpy(c, vecs.Row(i), out.Row(r))
		}
	}
	return out
}

func TestArnoldiFullRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 1))
	const p = 40
	eigs := spread(0.1, 20, p)
	h, _ := withSpectrum(rng, eigs)
	d := mustDense(t, h)
	g := randomBlock(rng, 5, p)
	for _, damping := range []float64{0, 0.05} {
		lr, rep, err := Arnoldi(context.Background(), nil, d, ArnoldiOptions{Iterations: p, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(lr.Values) != p || rep.Iterations[0] != p || rep.HVPs != p {
			t.Fatalf("%d values, %v iterations, %d HVPs", len(lr.Values), rep.Iterations, rep.HVPs)
		}
		sorted := append([]float64(nil), lr.Values...)
		sort.Float64s(sorted)
		for i, v := range sorted {
			if math.Abs(v-eigs[i]) > 1e-10*eigs[p-1] {
				t.Fatalf("eigenvalue %d: %.15g, want %.15g", i, v, eigs[i])
			}
		}
		got, err := lr.ProjectedInverse(nil, g, damping)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := d.Solve(g, damping)
		e := maxRelErr(got, want)
		t.Logf("δ=%g: relative error %.2g against Cholesky", damping, e)
		if e > 1e-8 {
			t.Errorf("δ=%g: relative error %.3g", damping, e)
		}
	}
}

func TestArnoldiTopK(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 1))
	const p, k = 60, 4
	eigs := spread(0.1, 1, p)
	copy(eigs[p-k:], []float64{40, 60, 80, 100})
	h, vecs := withSpectrum(rng, eigs)
	g := randomBlock(rng, 3, p)
	lr, rep, err := Arnoldi(context.Background(), nil, mustDense(t, h), ArnoldiOptions{Iterations: 20, TopK: k, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{100, 80, 60, 40} {
		if math.Abs(lr.Values[i]-want) > 1e-9*want || rep.Eigenvalues[i] != lr.Values[i] {
			t.Errorf("eigenvalue %d: %.15g, want %g", i, lr.Values[i], want)
		}
	}
	const damping = 0.3
	got, err := lr.ProjectedInverse(nil, g, damping)
	if err != nil {
		t.Fatal(err)
	}
	want := projectedReference(eigs[p-k:], vecs.Slice(p-k, p, 0, p), g, damping)
	e := maxRelErr(got, want)
	t.Logf("top-%d of %d after 20 iterations: relative error %.2g against the exact projection", k, p, e)
	if e > 1e-8 {
		t.Errorf("projected inverse: relative error %.3g", e)
	}
}

func TestArnoldiErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 1))
	eigs := spread(1, 5, 10)
	eigs[0] = -3
	h, _ := withSpectrum(rng, eigs)
	lr, _, err := Arnoldi(context.Background(), nil, mustDense(t, h), ArnoldiOptions{Iterations: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lr.ProjectedInverse(nil, randomBlock(rng, 1, 10), 1); !errors.Is(err, ErrIndefinite) || !strings.Contains(err.Error(), "eigenvalue") {
		t.Errorf("negative eigenvalue: %v", err)
	}
	nan := randomBlock(rng, 2, 10)
	nan.Set(1, 4, math.NaN())
	if _, err := lr.ProjectedInverse(nil, nan, 5); !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), "right-hand side 1") || !strings.Contains(err.Error(), "element 4") {
		t.Errorf("NaN gradient: %v", err)
	}
	asym := h.Clone()
	asym.Set(0, 1, asym.At(0, 1)+1)
	if _, _, err := Arnoldi(context.Background(), nil, rowByRow{&Dense{h: asym, be: linalg.CPU()}}, ArnoldiOptions{Iterations: 10}); err == nil || !strings.Contains(err.Error(), "not symmetric") {
		t.Errorf("asymmetric operator: %v", err)
	}
	bad := h.Clone()
	bad.Set(2, 2, math.Inf(1))
	if _, _, err := Arnoldi(context.Background(), nil, &Dense{h: bad, be: linalg.CPU()}, ArnoldiOptions{}); !errors.Is(err, ErrNotFinite) {
		t.Errorf("infinite operator: %v", err)
	}
}

// An invariant start space stops the iteration early with exact pairs.
func TestArnoldiBreakdown(t *testing.T) {
	eigs := []float64{3, 3, 3, 3, 3, 3}
	rng := rand.New(rand.NewPCG(34, 1))
	h, _ := withSpectrum(rng, eigs)
	lr, rep, err := Arnoldi(context.Background(), nil, mustDense(t, h), ArnoldiOptions{Iterations: 6})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Iterations[0] != 1 || len(lr.Values) != 1 || math.Abs(lr.Values[0]-3) > 1e-12 {
		t.Errorf("breakdown: %v iterations, values %v", rep.Iterations, lr.Values)
	}
}

func TestNystromAgainstCholesky(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 1))
	const p = 35
	full, _ := withSpectrum(rng, spread(0.05, 30, p))
	lowEigs := make([]float64, p)
	copy(lowEigs, []float64{9, 7, 5, 3, 1})
	low, _ := withSpectrum(rng, lowEigs) // rank 5
	g := randomBlock(rng, 4, p)
	cases := []struct {
		name    string
		h       *linalg.Dense64
		rank    int
		damping float64
	}{
		{"r=P", full, p, 0.1},
		{"r=P undamped", full, p, 0},
		{"rank-5 H, r=8", low, 8, 0.1},
	}
	for _, c := range cases {
		d := mustDense(t, c.h)
		lr, rep, err := Nystrom(context.Background(), nil, d, NystromOptions{Rank: c.rank, Seed: 5})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if rep.HVPs != c.rank || len(rep.Eigenvalues) != c.rank {
			t.Errorf("%s: report %+v", c.name, rep)
		}
		got, err := lr.ShiftedInverse(nil, g, c.damping)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want, err := d.Solve(g, c.damping)
		if err != nil {
			t.Fatal(err)
		}
		e := maxRelErr(got, want)
		t.Logf("%s: relative error %.2g, top eigenvalues %.6g", c.name, e, lr.Values[:3])
		if e > 1e-8 {
			t.Errorf("%s: relative error %.3g", c.name, e)
		}
	}
}

// A sketch below the rank under-approximates: H − Ĥ is positive semidefinite.
func TestNystromLowRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	const p = 30
	h, _ := withSpectrum(rng, spread(0.01, 10, p))
	lr, _, err := Nystrom(context.Background(), nil, mustDense(t, h), NystromOptions{Rank: 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	diff := h.Clone()
	for i, l := range lr.Values {
		u := lr.Vectors.Row(i)
		for a := 0; a < p; a++ {
			for b := 0; b < p; b++ {
				diff.Data[a*p+b] -= l * u[a] * u[b]
			}
		}
	}
	vals, _, err := linalg.CPU().Eigh(diff)
	if err != nil {
		t.Fatal(err)
	}
	if vals[0] < -1e-10 || vals[p-1] > 10 || vals[p-1] < 0.1 {
		t.Errorf("spectrum of H − Ĥ: [%.3g, %.3g]", vals[0], vals[p-1])
	}
	if _, err := lr.ShiftedInverse(nil, randomBlock(rng, 1, p), 0); !errors.Is(err, ErrIndefinite) {
		t.Errorf("rank-deficient undamped inverse: %v", err)
	}
}

func TestNystromErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 1))
	eigs := spread(1, 5, 12)
	eigs[5] = -4
	h, _ := withSpectrum(rng, eigs)
	if _, _, err := Nystrom(context.Background(), nil, mustDense(t, h), NystromOptions{Rank: 12}); !errors.Is(err, ErrIndefinite) {
		t.Errorf("indefinite: %v", err)
	}
	if _, _, err := Nystrom(context.Background(), nil, mustDense(t, h), NystromOptions{Rank: 13}); err == nil || !strings.Contains(err.Error(), "rank 13") {
		t.Errorf("rank above dimension: %v", err)
	}
}

// Same seed, same bits; and the bits do not depend on GOMAXPROCS.
func TestDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 1))
	const p = 300
	h, _ := withSpectrum(rng, spread(0.1, 10, p))
	d := mustDense(t, h)
	g := randomBlock(rng, 7, p)
	run := func(seed uint64) []*linalg.Dense64 {
		ctx := context.Background()
		a, _, err := Arnoldi(ctx, nil, d, ArnoldiOptions{Iterations: 40, TopK: 10, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		pa, _ := a.ProjectedInverse(nil, g, 0.1)
		n, _, err := Nystrom(ctx, nil, d, NystromOptions{Rank: 40, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		pn, _ := n.ShiftedInverse(nil, g, 0.1)
		cg, _, err := CG(ctx, d, 0.1, g, CGOptions{})
		if err != nil {
			t.Fatal(err)
		}
		li, _, err := LiSSA(ctx, d, 0, g, LiSSAOptions{Scale: 10, Depth: 20, Repeats: 2, Seed: seed, Sample: func(s uint64) (Operator, error) {
			// A seeded random scaling of H stands in for a mini-batch.
			c := 0.5 + rand.New(rand.NewPCG(s, 1)).Float64()
			sh := h.Clone()
			for i := range sh.Data {
				sh.Data[i] *= c
			}
			return NewDense(sh, nil)
		}})
		if err != nil {
			t.Fatal(err)
		}
		return []*linalg.Dense64{a.Vectors, pa, n.Vectors, pn, cg, li}
	}
	names := []string{"arnoldi vectors", "arnoldi inverse", "nystrom vectors", "nystrom inverse", "cg", "lissa"}
	base := run(1)
	again := run(1)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	single := run(1)
	runtime.GOMAXPROCS(4)
	four := run(1)
	other := run(2)
	for i, name := range names {
		if !bitsEqual(base[i], again[i]) {
			t.Errorf("%s: same seed, different bits", name)
		}
		if !bitsEqual(base[i], single[i]) || !bitsEqual(base[i], four[i]) {
			t.Errorf("%s: bits depend on GOMAXPROCS", name)
		}
		if name != "cg" && bitsEqual(base[i], other[i]) {
			t.Errorf("%s: seed ignored", name)
		}
	}
}

func TestTrace(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 1))
	const p = 20
	eigs := spread(0.5, 8, p)
	h, _ := withSpectrum(rng, eigs)
	var want, fro float64
	for _, e := range eigs {
		want += e
		fro += e * e
	}
	d := mustDense(t, h)
	ctx := context.Background()
	exact, _ := Trace(ctx, d, 1, 0)
	unit, _ := Trace(ctx, rowByRow{d}, p, 0)
	hutch, err := Trace(ctx, rowByRow{d}, 4000, 3)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(exact-want) > 1e-12*want || math.Abs(unit-want) > 1e-12*want {
		t.Errorf("exact traces %v, %v, want %v", exact, unit, want)
	}
	// Hutchinson's standard error is √(2(‖H‖_F² − Σ h_ii²)/probes) ≤ √(2/probes)·‖H‖_F.
	if se := math.Sqrt(2 * fro / 4000); math.Abs(hutch-want) > 4*se || hutch == want {
		t.Errorf("Hutchinson trace %v, want %v ± %v", hutch, want, se)
	}
	if dmp, _ := HeuristicDamping(ctx, d, 1, 0); math.Abs(dmp-0.1*want/p) > 1e-14 {
		t.Errorf("heuristic damping %v, want %v", dmp, 0.1*want/p)
	}
}
