package hessian

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

func TestCGAgainstCholesky(t *testing.T) {
	cases := []struct {
		name    string
		p, k    int
		lo, hi  float64
		damping float64
		rows    bool // hide ApplyMany
	}{
		{"well-conditioned", 40, 5, 1, 10, 0, false},
		{"damped", 40, 5, 0.01, 10, 0.1, false},
		{"ill-conditioned", 60, 3, 1e-4, 10, 0, false},
		{"row-by-row", 25, 4, 0.5, 5, 0.05, true},
	}
	for _, c := range cases {
		rng := rand.New(rand.NewPCG(uint64(c.p), 11))
		h, _ := withSpectrum(rng, spread(c.lo, c.hi, c.p))
		d := mustDense(t, h)
		b := randomBlock(rng, c.k, c.p)
		want, err := d.Solve(b, c.damping)
		if err != nil {
			t.Fatal(err)
		}
		var op Operator = d
		if c.rows {
			op = rowByRow{d}
		}
		got, rep, err := CG(context.Background(), op, c.damping, b, CGOptions{Tol: 1e-12})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		e := maxRelErr(got, want)
		t.Logf("%s: relative error %.2g, iterations %v, residuals %.1g", c.name, e, rep.Iterations, rep.Residuals)
		if e > 1e-8 {
			t.Errorf("%s: relative error %.3g > 1e-8", c.name, e)
		}
		for i, r := range rep.Residuals {
			if r > 1e-10 || rep.Iterations[i] < 1 {
				t.Errorf("%s: rhs %d: residual %.3g after %d iterations", c.name, i, r, rep.Iterations[i])
			}
		}
		if rep.HVPs < c.k*2 {
			t.Errorf("%s: %d HVPs reported", c.name, rep.HVPs)
		}
	}
}

func TestCGZeroRHS(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	h, _ := withSpectrum(rng, spread(1, 3, 8))
	b := randomBlock(rng, 3, 8)
	clear(b.Row(1))
	x, rep, err := CG(context.Background(), mustDense(t, h), 0, b, CGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range x.Row(1) {
		if v != 0 {
			t.Fatalf("zero right-hand side gave %v", x.Row(1))
		}
	}
	if rep.Iterations[1] != 0 || rep.Iterations[0] == 0 {
		t.Errorf("iterations %v", rep.Iterations)
	}
}

func TestCGErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	eigs := spread(0.5, 4, 12)
	eigs[3] = -2 // one negative direction
	indef, _ := withSpectrum(rng, eigs)
	spd, _ := withSpectrum(rng, spread(1e-3, 10, 30))
	b := randomBlock(rng, 3, 12)
	nan := b.Clone()
	nan.Set(2, 5, math.NaN())
	cases := []struct {
		name    string
		h       *linalg.Dense64
		b       *linalg.Dense64
		damping float64
		opts    CGOptions
		is      error
		want    []string
	}{
		{"indefinite", indef, b, 0, CGOptions{}, ErrIndefinite, []string{"cg: right-hand side ", "≤ 0", "damping"}},
		{"nan", indef, nan, 0, CGOptions{}, ErrNotFinite, []string{"right-hand side 2", "element 5 is NaN"}},
		{"not converged", spd, randomBlock(rng, 2, 30), 0, CGOptions{MaxIter: 3}, ErrNotConverged, []string{"right-hand side 0", "after 3 iterations"}},
		{"dimension", spd, b, 0, CGOptions{}, nil, []string{"dimension 12, operator 30"}},
		{"damping", spd, randomBlock(rng, 1, 30), -1, CGOptions{}, nil, []string{"damping -1"}},
	}
	for _, c := range cases {
		x, rep, err := CG(context.Background(), mustDense(t, c.h), c.damping, c.b, c.opts)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v does not wrap %v", c.name, err, c.is)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
		var he *Error
		if !errors.As(err, &he) {
			t.Errorf("%s: %T is not *Error", c.name, err)
		}
		if c.is == ErrNotConverged && (x == nil || rep == nil || rep.Iterations[0] != 3) {
			t.Errorf("%s: partial results not returned", c.name)
		}
	}
}

func TestCGCancel(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	h, _ := withSpectrum(rng, spread(1, 10, 10))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := CG(ctx, mustDense(t, h), 0, randomBlock(rng, 2, 10), CGOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled CG: %v", err)
	}
}

func TestDenseErrors(t *testing.T) {
	cases := []struct {
		name string
		h    *linalg.Dense64
		want string
	}{
		{"square", linalg.NewDense64(2, 3, nil), "not square"},
		{"nan", linalg.NewDense64(2, 2, []float64{1, 0, math.NaN(), 1}), "(1, 0) is NaN"},
		{"asymmetric", linalg.NewDense64(2, 2, []float64{1, 0.5, 0.4, 1}), "not symmetric"},
	}
	for _, c := range cases {
		if _, err := NewDense(c.h, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestProgress checks that CG and LiSSA report every iteration, in order,
// with the number of right-hand sides still iterating, and that the
// report ends where the solve did.
func TestProgress(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	h, _ := withSpectrum(rng, spread(1, 10, 30))
	d := mustDense(t, h)
	b := randomBlock(rng, 4, 30)

	var iters, active []int
	_, rep, err := CG(context.Background(), d, 0, b, CGOptions{Tol: 1e-10, MaxIter: 500, Progress: func(stage string, it, total int) {
		var a int
		if _, err := fmt.Sscanf(stage, "%d right-hand sides above tolerance", &a); err != nil || total != 500 {
			t.Fatalf("CG progress %q %d/%d", stage, it, total)
		}
		iters, active = append(iters, it), append(active, a)
	}})
	if err != nil {
		t.Fatal(err)
	}
	last := slices.Max(rep.Iterations)
	if len(iters) != last || active[len(active)-1] != 0 {
		t.Fatalf("CG: %d progress calls ending with %d active, solve took %d iterations", len(iters), active[len(active)-1], last)
	}
	for i, it := range iters {
		if it != i+1 || (i > 0 && active[i] > active[i-1]) || active[i] > b.Rows {
			t.Fatalf("CG progress: iterations %v, active %v", iters, active)
		}
	}

	steps := 0
	_, _, err = LiSSA(context.Background(), d, 0, b, LiSSAOptions{Scale: 10, Depth: 25, Progress: func(stage string, step, depth int) {
		steps++
		var r, a int
		if _, err := fmt.Sscanf(stage, "repeat %d, %d right-hand sides iterating", &r, &a); err != nil || r != 0 || step != steps || a != b.Rows || depth != 25 {
			t.Fatalf("LiSSA progress %q, step %d of %d after %d calls", stage, step, depth, steps-1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if steps != 25 {
		t.Fatalf("LiSSA: %d progress calls for depth 25", steps)
	}
}

// TestCGTruncate checks that a truncated solve returns the iterate reached,
// with its true residual, where the same solve untruncated is an error.
func TestCGTruncate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 17))
	h, _ := withSpectrum(rng, spread(1e-3, 10, 40))
	d := mustDense(t, h)
	b := randomBlock(rng, 3, 40)
	opts := CGOptions{Tol: 1e-12, MaxIter: 3}
	full, _, err := CG(context.Background(), d, 0, b, opts)
	if !errors.Is(err, ErrNotConverged) {
		t.Fatalf("3 iterations on a condition number of 1e4: %v", err)
	}
	opts.Truncate = true
	x, rep, err := CG(context.Background(), d, 0, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	if maxRelErr(x, full) != 0 {
		t.Errorf("truncated iterate differs from the one returned with the error")
	}
	for i, r := range rep.Residuals {
		if !(r > 1e-12) || rep.Iterations[i] != 3 {
			t.Errorf("rhs %d: residual %.3g after %d iterations", i, r, rep.Iterations[i])
		}
	}
}

// inverseOp applies (H + δI)⁻¹ of a Dense operator by Cholesky: the
// perfect preconditioner.
type inverseOp struct {
	d       *Dense
	damping float64
}

func (o inverseOp) Dim() int { return o.d.Dim() }
func (o inverseOp) Apply(ctx context.Context, v, out []float64) error {
	x, err := o.d.Solve(linalg.NewDense64(1, len(v), slices.Clone(v)), o.damping)
	if err != nil {
		return err
	}
	copy(out, x.Data)
	return nil
}

// jacobiOp applies the inverse of the diagonal of H + δI.
type jacobiOp []float64

func (o jacobiOp) Dim() int { return len(o) }
func (o jacobiOp) Apply(_ context.Context, v, out []float64) error {
	for i, x := range v {
		out[i] = x / o[i]
	}
	return nil
}

// TestCGPreconditioned solves an ill-conditioned system with the exact
// inverse as preconditioner (one iteration), with Jacobi (fewer iterations
// than none, whose matrix has a spread diagonal) and holds both to Cholesky.
func TestCGPreconditioned(t *testing.T) {
	const p, k, damping = 50, 3, 0.01
	rng := rand.New(rand.NewPCG(5, 6))
	h, _ := withSpectrum(rng, spread(1e-3, 10, p))
	// Spread the diagonal too, so that Jacobi has something to correct.
	s := make([]float64, p)
	for i := range s {
		s[i] = math.Pow(10, 2*float64(i)/p)
	}
	for i := 0; i < p; i++ {
		for j := 0; j < p; j++ {
			h.Set(i, j, h.At(i, j)*s[i]*s[j])
		}
	}
	d := mustDense(t, h)
	b := randomBlock(rng, k, p)
	want, err := d.Solve(b, damping)
	if err != nil {
		t.Fatal(err)
	}
	diag := make(jacobiOp, p)
	for i := range diag {
		diag[i] = h.At(i, i) + damping
	}
	_, plain, err := CG(context.Background(), d, damping, b, CGOptions{Tol: 1e-10, MaxIter: 5000})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    Operator
	}{{"exact", inverseOp{d, damping}}, {"jacobi", diag}} {
		got, rep, err := CG(context.Background(), d, damping, b, CGOptions{Tol: 1e-10, MaxIter: 5000, Precondition: tc.m})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if e := maxRelErr(got, want); e > 1e-6 {
			t.Errorf("%s: relative error %.3g", tc.name, e)
		}
		for i := range rep.Iterations {
			if tc.name == "exact" && rep.Iterations[i] > 2 || rep.Iterations[i] >= plain.Iterations[i] {
				t.Errorf("%s: rhs %d: %d iterations, %d without a preconditioner", tc.name, i, rep.Iterations[i], plain.Iterations[i])
			}
		}
		t.Logf("%s: iterations %v, without %v", tc.name, rep.Iterations, plain.Iterations)
	}
	if _, _, err := CG(context.Background(), d, damping, b, CGOptions{Precondition: jacobiOp(diag[:3])}); err == nil {
		t.Error("a preconditioner of another dimension was accepted")
	}
}
