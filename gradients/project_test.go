package gradients

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// testBatch returns a batch with factored layers (with and without a token
// axis, with zero activations as ReLU gives) and, unless factoredOnly, a
// dense layer.
func testBatch(n int, factoredOnly bool) *Batch {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(m int, zeros bool) []float64 {
		v := make([]float64, m)
		for i := range v {
			if !zeros || rng.IntN(3) > 0 {
				v[i] = rng.NormFloat64()
			}
		}
		return v
	}
	b := &Batch{N: n, IDs: make([]int64, n)}
	for i := range b.IDs {
		b.IDs[i] = int64(100 + i)
	}
	b.Layers = append(b.Layers, Layer{Name: "enc.fc1", DIn: 13, DOut: 11, Tokens: 3, TokenAxis: true,
		A: fill(n*3*13, true), S: fill(n*3*11, false)})
	if !factoredOnly {
		b.Layers = append(b.Layers, Layer{Name: "enc.bias", D: 300, Grad: fill(n*300, false)})
	}
	b.Layers = append(b.Layers, Layer{Name: "head", DIn: 7, DOut: 5, Tokens: 1,
		A: fill(n*7, false), S: fill(n*5, false)})
	return b
}

func sameBits(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}

func sameBatch(t *testing.T, what string, got, want *Batch) {
	t.Helper()
	if got.N != want.N || len(got.Layers) != len(want.Layers) || !equalIDs(got.IDs, want.IDs) {
		t.Fatalf("%s: batch N=%d layers=%d ids=%v, want N=%d layers=%d ids=%v",
			what, got.N, len(got.Layers), got.IDs, want.N, len(want.Layers), want.IDs)
	}
	for i := range got.Layers {
		g, w := &got.Layers[i], &want.Layers[i]
		if g.Name != w.Name || g.D != w.D || g.DIn != w.DIn || g.DOut != w.DOut || g.Tokens != w.Tokens ||
			!sameBits(g.Grad, w.Grad) || !sameBits(g.A, w.A) || !sameBits(g.S, w.S) {
			t.Errorf("%s: layer %q differs", what, w.Name)
		}
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sign returns the sign of a Rademacher entry as ±1.
func sign(v float64) int {
	if v > 0 {
		return 1
	}
	return -1
}

func TestRademacherGolden(t *testing.T) {
	// P[j][i] of seed 42, stream 0, for j < 8 and i < 3, as signs; computed
	// by this implementation and frozen so that it cannot drift.
	want := [3][8]int{
		{-1, -1, 1, 1, -1, 1, -1, 1},
		{-1, -1, -1, 1, 1, -1, 1, 1},
		{-1, 1, -1, 1, 1, -1, 1, 1},
	}
	const k = 130 // two output blocks
	p := RademacherMatrix(k, 3, 42, 0)
	scale := 1 / math.Sqrt(k)
	for i := range want {
		for j, s := range want[i] {
			if got := p.At(j, i); got != float64(s)*scale {
				t.Errorf("P[%d][%d] = %v, want %v", j, i, got, float64(s)*scale)
			}
		}
	}

	// The same entries re-derived from the Philox words: bit b = j mod 128
	// of words[b/32] at position b%32, 0 for +, 1 for −.
	bySpec := func(j, i int, stream uint32) int {
		w := Philox4x32([4]uint32{uint32(i), uint32(uint64(i) >> 32), uint32(j / 128), stream}, Key(42))
		b := j % 128
		return 1 - 2*int(w[b/32]>>(b%32)&1)
	}
	for _, e := range []struct{ j, i int }{{0, 0}, {7, 0}, {5, 2}, {31, 1}, {32, 1}, {100, 1}, {127, 2}, {128, 0}, {129, 2}} {
		if got, want := sign(p.At(e.j, e.i)), bySpec(e.j, e.i, 0); got != want {
			t.Errorf("P[%d][%d] has sign %d, the spec gives %d", e.j, e.i, got, want)
		}
	}
	// Word 0 of input 0 is 0x9ceaf053: bits 0…7 of 0x53 are 1100 1010.
	if w := Philox4x32([4]uint32{}, Key(42)); w[0] != 0x9ceaf053 {
		t.Errorf("Philox word 0 of seed 42 = %08x, want 9ceaf053", w[0])
	}

	// Inputs beyond 2³² put their high word in the counter.
	if strconv.IntSize < 64 {
		return
	}
	hi := uint64(1)
	i := int(hi<<32 + 5)
	pr := newProjector(Rademacher, k, 42, stream(3, roleKronOut))
	tile := make([]float64, outBlock)
	pr.fill(tile, outBlock, 2, i, i+1)
	for j := range 2 {
		if got, want := sign(tile[j]), bySpec(outBlock+j, i, 3<<2|2); got != want {
			t.Errorf("P[%d][2³²+5] of stream 14 has sign %d, the spec gives %d", outBlock+j, got, want)
		}
	}
}

func TestRademacherStatistics(t *testing.T) {
	const k, d = 256, 2000
	p := RademacherMatrix(k, d, 7, stream(0, roleDense))
	scale := 1 / math.Sqrt(k)
	plus := 0
	for _, v := range p.Data {
		switch v {
		case scale:
			plus++
		case -scale:
		default:
			t.Fatalf("entry %v, want ±%v", v, scale)
		}
	}
	if f := float64(plus) / (k * d); math.Abs(f-0.5) > 0.01 {
		t.Errorf("fraction of + entries %.4f, want about 0.5", f)
	}
	// Rows have norm² d/k exactly; their cosines are about N(0, 1/d), so
	// the largest of k(k−1)/2 stays below 5 standard deviations.
	worst := 0.0
	for j := 0; j < k; j++ {
		for j2 := j + 1; j2 < k; j2++ {
			dot := 0.0
			for i, v := range p.Row(j) {
				dot += v * p.At(j2, i)
			}
			worst = max(worst, math.Abs(dot)/(d/k))
		}
	}
	if worst > 5/math.Sqrt(d) {
		t.Errorf("largest row cosine %.3f, want below %.3f", worst, 5/math.Sqrt(d))
	}
}

// TestJLNorms checks E‖Pg‖² = ‖g‖² over seeds for the dense kinds and SJLT.
func TestJLNorms(t *testing.T) {
	const k, d, seeds = 256, 500, 40
	rng := rand.New(rand.NewPCG(3, 4))
	g := make([]float64, d)
	norm := 0.0
	for i := range g {
		g[i] = rng.NormFloat64()
		norm += g[i] * g[i]
	}
	for _, kind := range []ProjectionKind{Rademacher, Gaussian, SJLT} {
		t.Run(kind.String(), func(t *testing.T) {
			mean := 0.0
			for seed := range uint64(seeds) {
				b := &Batch{N: 1, Layers: []Layer{{Name: "w", D: d, Grad: g}}}
				phi, err := Projection{Kind: kind, K: k, Seed: seed}.Apply(context.Background(), b)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range phi.Layers[0].Grad {
					mean += v * v / norm / seeds
				}
			}
			// Each ratio has standard deviation about √(2/k) = 0.09.
			if math.Abs(mean-1) > 0.06 {
				t.Errorf("mean ‖Pg‖²/‖g‖² over %d seeds = %.4f, want 1 ± 0.06", seeds, mean)
			}
		})
	}
}

func TestGaussianEntries(t *testing.T) {
	const k, d = 64, 3000
	p := GaussianMatrix(k, d, 9, stream(2, roleDense))
	var sum, sq float64
	for _, v := range p.Data {
		sum += v
		sq += v * v
	}
	n := float64(k * d)
	if mean, v := sum/n, sq/n*k; math.Abs(mean) > 0.01 || math.Abs(v-1) > 0.02 {
		t.Errorf("entries have mean %.4f and k·variance %.4f, want 0 and 1", mean, v)
	}
	// Entries (2j, i) and (2j+1, i) are the cosine and sine halves of one
	// Box–Muller pair.
	for _, e := range []struct{ j, i int }{{0, 0}, {1, 0}, {6, 17}, {7, 17}, {63, 2999}} {
		w := Philox4x32([4]uint32{uint32(e.i), 0, uint32(e.j / 2), 2 << 2}, Key(9))
		u1 := (float64(w[0]) + 0.5) / (1 << 32)
		u2 := (float64(w[1]) + 0.5) / (1 << 32)
		z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
		if e.j%2 == 1 {
			z = math.Sqrt(-2*math.Log(u1)) * math.Sin(2*math.Pi*u2)
		}
		if got, want := p.At(e.j, e.i), z/math.Sqrt(k); math.Abs(got-want) > 1e-15 {
			t.Errorf("P[%d][%d] = %v, want %v", e.j, e.i, got, want)
		}
	}
}

func TestSJLTBuckets(t *testing.T) {
	const k, d = 16, 40000
	buckets, signs := SJLTBuckets(k, d, 11, stream(1, roleSJLT))
	count := make([]int, k)
	plus := 0
	for i, b := range buckets {
		if b < 0 || b >= k || (signs[i] != 1 && signs[i] != -1) {
			t.Fatalf("input %d: bucket %d sign %v", i, b, signs[i])
		}
		count[b]++
		if signs[i] > 0 {
			plus++
		}
	}
	// Buckets hold d/k = 2500 ± 50 inputs each.
	for b, c := range count {
		if math.Abs(float64(c)-d/k) > 250 {
			t.Errorf("bucket %d holds %d inputs, want about %d", b, c, d/k)
		}
	}
	if math.Abs(float64(plus)/d-0.5) > 0.02 {
		t.Errorf("%d of %d signs +", plus, d)
	}
	// Input 5 by hand.
	w := Philox4x32([4]uint32{5, 0, 0, 1<<2 | 3}, Key(11))
	if b := int(uint64(w[0]) * k >> 32); buckets[5] != b || signs[5] != float64(1-2*int(w[1]&1)) {
		t.Errorf("input 5: bucket %d sign %v, the spec gives %d and %v", buckets[5], signs[5], b, 1-2*int(w[1]&1))
	}
}

// TestApplyMatchesMatrix compares Apply with the materialised matrices
// applied to the flattened gradients.
func TestApplyMatchesMatrix(t *testing.T) {
	b := testBatch(4, false)
	flat := b.Flatten()
	for _, kind := range []ProjectionKind{Rademacher, Gaussian, SJLT} {
		t.Run(kind.String(), func(t *testing.T) {
			const k = 150
			phi, err := Projection{Kind: kind, K: k, Seed: 5}.Apply(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			if !equalIDs(phi.IDs, b.IDs) {
				t.Errorf("ids %v, want %v", phi.IDs, b.IDs)
			}
			off := 0
			for li := range b.Layers {
				l, pl := &b.Layers[li], &phi.Layers[li]
				d := l.Dim()
				if pl.Name != l.Name || pl.Factored() || pl.D != k {
					t.Fatalf("layer %d: %q factored=%v D=%d, want %q dense D=%d", li, pl.Name, pl.Factored(), pl.D, l.Name, k)
				}
				var p *linalg.Dense64
				switch kind {
				case Rademacher:
					p = RademacherMatrix(k, d, 5, uint32(li<<2))
				case Gaussian:
					p = GaussianMatrix(k, d, 5, uint32(li<<2))
				case SJLT:
					p = linalg.NewDense64(k, d, nil)
					buckets, signs := SJLTBuckets(k, d, 5, uint32(li<<2|3))
					for i := range d {
						p.Set(buckets[i], i, signs[i])
					}
				}
				for n := 0; n < b.N; n++ {
					g := flat.Row(n)[off : off+d]
					for j := range k {
						want, mag := 0.0, 0.0
						for i, v := range p.Row(j) {
							want += v * g[i]
							mag += math.Abs(v * g[i])
						}
						if got := pl.Grad[n*k+j]; math.Abs(got-want) > 1e-12*max(mag, 1) {
							t.Fatalf("layer %q example %d output %d: %v, want %v", l.Name, n, j, got, want)
						}
					}
				}
				off += d
			}
		})
	}
}

func TestKronecker(t *testing.T) {
	b := testBatch(3, true)
	const kIn, kOut = 4, 3
	proj, err := Projection{Kind: Kronecker, KIn: kIn, KOut: kOut, Seed: 8}.Apply(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	for li := range b.Layers {
		l, pl := &b.Layers[li], &proj.Layers[li]
		if pl.Name != l.Name || !pl.Factored() || pl.DIn != kIn || pl.DOut != kOut || pl.Tokens != l.Tokens || pl.TokenAxis != l.TokenAxis {
			t.Fatalf("layer %q: got %q d_in=%d d_out=%d tokens=%d axis=%v", l.Name, pl.Name, pl.DIn, pl.DOut, pl.Tokens, pl.TokenAxis)
		}
		pIn := RademacherMatrix(kIn, l.DIn, 8, uint32(li<<2|1))
		pOut := RademacherMatrix(kOut, l.DOut, 8, uint32(li<<2|2))
		g := make([]float64, l.Dim())
		gh := make([]float64, pl.Dim())
		for n := 0; n < b.N; n++ {
			// Ĝ_n = Σ_t ŝ âᵀ must equal P_out G_n P_inᵀ.
			l.Gradient(n, g)
			pl.Gradient(n, gh)
			for o := range kOut {
				for i := range kIn {
					want, mag := 0.0, 0.0
					for r := range l.DOut {
						for c := range l.DIn {
							v := pOut.At(o, r) * g[r*l.DIn+c] * pIn.At(i, c)
							want += v
							mag += math.Abs(v)
						}
					}
					if got := gh[o*kIn+i]; math.Abs(got-want) > 1e-12*max(mag, 1) {
						t.Errorf("layer %q example %d: Ĝ[%d][%d] = %v, want %v", l.Name, n, o, i, got, want)
					}
				}
			}
		}
	}
}

// TestDeterminism checks that results do not depend on the input block
// size, GOMAXPROCS or how the examples are batched.
func TestDeterminism(t *testing.T) {
	defer func(b int) { projectBlock = b }(projectBlock)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	b := testBatch(5, false)
	bf := testBatch(5, true)
	for _, p := range []Projection{
		{Kind: Rademacher, K: 300, Seed: 1},
		{Kind: Gaussian, K: 131, Seed: 2},
		{Kind: SJLT, K: 40, Seed: 3},
		{Kind: Kronecker, KIn: 130, KOut: 2, Seed: 4},
	} {
		t.Run(p.Kind.String(), func(t *testing.T) {
			in := b
			if p.Kind == Kronecker {
				in = bf
			}
			projectBlock = 256
			runtime.GOMAXPROCS(4)
			ref, err := p.Apply(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			for _, block := range []int{1, 7, 128, 5000} {
				for _, procs := range []int{1, 3, 16} {
					projectBlock = block
					runtime.GOMAXPROCS(procs)
					got, err := p.Apply(context.Background(), in)
					if err != nil {
						t.Fatal(err)
					}
					sameBatch(t, "block "+strconv.Itoa(block)+" procs "+strconv.Itoa(procs), got, ref)
				}
			}
			projectBlock = 256
			// Two batches of examples give the rows of one.
			lo, err := p.Apply(context.Background(), in.Slice(0, 2))
			if err != nil {
				t.Fatal(err)
			}
			hi, err := p.Apply(context.Background(), in.Slice(2, 5))
			if err != nil {
				t.Fatal(err)
			}
			sameBatch(t, "split batch", concatBatches(lo, hi), ref)
		})
	}
}

func concatBatches(a, b *Batch) *Batch {
	c := &Batch{N: a.N + b.N, IDs: append(append([]int64{}, a.IDs...), b.IDs...), Layers: make([]Layer, len(a.Layers))}
	for i := range a.Layers {
		l := a.Layers[i]
		if l.Factored() {
			l.A = append(append([]float64{}, l.A...), b.Layers[i].A...)
			l.S = append(append([]float64{}, l.S...), b.Layers[i].S...)
		} else {
			l.Grad = append(append([]float64{}, l.Grad...), b.Layers[i].Grad...)
		}
		c.Layers[i] = l
	}
	return c
}

func TestFlattenChunks(t *testing.T) {
	// Factored layers flattened a few examples at a time give the result of
	// the dense layers of their flattened gradients.
	defer func(c int) { flattenChunk = c }(flattenChunk)
	b := testBatch(5, true)
	dense := &Batch{N: b.N, IDs: b.IDs, Layers: make([]Layer, len(b.Layers))}
	for li := range b.Layers {
		l := &b.Layers[li]
		g := make([]float64, b.N*l.Dim())
		for n := 0; n < b.N; n++ {
			l.Gradient(n, g[n*l.Dim():(n+1)*l.Dim()])
		}
		dense.Layers[li] = Layer{Name: l.Name, D: l.Dim(), Grad: g}
	}
	for _, kind := range []ProjectionKind{Rademacher, SJLT} {
		p := Projection{Kind: kind, K: 9, Seed: 1}
		want, err := p.Apply(context.Background(), dense)
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{1, 2*13*11 + 1, 1 << 23} {
			flattenChunk = chunk
			got, err := p.Apply(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			sameBatch(t, kind.String()+" chunk "+strconv.Itoa(chunk), got, want)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	good := testBatch(2, false)
	tests := []struct {
		name string
		ctx  context.Context
		p    Projection
		b    *Batch
		is   error
		want string
	}{
		{"no kind", ctx, Projection{K: 4}, good, ErrProjection, "unknown kind"},
		{"k zero", ctx, Projection{Kind: Rademacher}, good, ErrProjection, "rademacher: k = 0"},
		{"k negative", ctx, Projection{Kind: SJLT, K: -1}, good, ErrProjection, "sjlt: k = -1"},
		{"k huge", ctx, Projection{Kind: Gaussian, K: MaxProjectionDim + 1}, good, ErrProjection, "want 1 ≤ k ≤ 16777216"},
		{"k_in zero", ctx, Projection{Kind: Kronecker, K: 4, KOut: 2}, good, ErrProjection, "k_in = 0"},
		{"nil batch", ctx, Projection{Kind: Rademacher, K: 4}, nil, ErrShape, "nil batch"},
		{"bad batch", ctx, Projection{Kind: Rademacher, K: 4},
			&Batch{N: 1, Layers: []Layer{{Name: "w", D: 2, Grad: []float64{1, math.NaN()}}}}, ErrNonFinite, `layer "w"`},
		{"kronecker on dense", ctx, Projection{Kind: Kronecker, KIn: 2, KOut: 2}, good, ErrProjection,
			`layer "enc.bias": invalid projection: kronecker needs a factored layer`},
		{"canceled", canceled, Projection{Kind: Rademacher, K: 4}, good, context.Canceled, `layer "enc.fc1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.Apply(tc.ctx, tc.b)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v containing %q", err, tc.is, tc.want)
			}
		})
	}
}

func TestParseProjectionKind(t *testing.T) {
	tests := []struct {
		in   string
		want ProjectionKind
		ok   bool
	}{
		{"rademacher", Rademacher, true},
		{"SJLT", SJLT, true},
		{"gaussian", Gaussian, true},
		{"Kronecker", Kronecker, true},
		{"logra", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseProjectionKind(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseProjectionKind(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && !strings.EqualFold(got.String(), tc.in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if s := ProjectionKind(9).String(); s != "ProjectionKind(9)" {
		t.Errorf("String of an unknown kind: %q", s)
	}
}

func BenchmarkRademacher(b *testing.B) {
	const n, d, k = 64, 1 << 14, 512
	g := make([]float64, n*d)
	for i := range g {
		g[i] = float64(i%7) - 3
	}
	batch := &Batch{N: n, Layers: []Layer{{Name: "w", D: d, Grad: g}}}
	p := Projection{Kind: Rademacher, K: k, Seed: 1}
	b.SetBytes(int64(8 * len(g)))
	for b.Loop() {
		if _, err := p.Apply(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}
