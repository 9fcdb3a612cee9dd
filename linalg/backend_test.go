package linalg

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
)

// forEachBackend runs f as a subtest for every registered backend that opens
// here; the others are skipped.
func forEachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	t.Helper()
	for _, name := range Backends() {
		t.Run(name, func(t *testing.T) {
			b, err := Open(name)
			if err != nil {
				t.Skipf("backend %s not available: %v", name, err)
			}
			if b.Name() != name {
				t.Fatalf("backend registered as %q calls itself %q", name, b.Name())
			}
			f(t, b)
		})
	}
}

// randDense64 returns an r×c matrix of values in [-1, 1), stored as a view
// with Stride > Cols when view is set.
func randDense64(rng *rand.Rand, r, c int, view bool) *Dense64 {
	pad := 0
	if view {
		pad = 3
	}
	m := NewDense64(r, c+pad, nil)
	for i := range m.Data {
		m.Data[i] = 2*rng.Float64() - 1
	}
	if view {
		return m.Slice(0, r, 1, c+1)
	}
	return m
}

// to32 is To32 that keeps a view layout, so float32 kernels see
// Stride > Cols too.
func to32(m *Dense64, view bool) *Dense32 {
	if !view {
		return m.To32()
	}
	p := NewDense32(m.Rows, m.Cols+3, nil)
	for i := range p.Data {
		p.Data[i] = 0.5
	}
	v := p.Slice(0, m.Rows, 2, m.Cols+2)
	for i := 0; i < m.Rows; i++ {
		for j := 0; j < m.Cols; j++ {
			v.Set(i, j, float32(m.At(i, j)))
		}
	}
	return v
}

// refGemm returns alpha·op(A)·op(B) + beta·C in float64 and the matching
// sums of magnitudes, which bound the rounding error.
func refGemm(tA, tB Transpose, alpha float64, a, b *Dense64, beta float64, c *Dense64) (ref, mag *Dense64) {
	op := func(m *Dense64, t Transpose, i, j int) float64 {
		if t {
			return m.At(j, i)
		}
		return m.At(i, j)
	}
	k := a.Cols
	if tA {
		k = a.Rows
	}
	ref, mag = NewDense64(c.Rows, c.Cols, nil), NewDense64(c.Rows, c.Cols, nil)
	for i := 0; i < c.Rows; i++ {
		for j := 0; j < c.Cols; j++ {
			var s, sa float64
			for l := 0; l < k; l++ {
				p := op(a, tA, i, l) * op(b, tB, l, j)
				s += p
				sa += math.Abs(p)
			}
			ref.Set(i, j, alpha*s+beta*c.At(i, j))
			mag.Set(i, j, math.Abs(alpha)*sa+math.Abs(beta*c.At(i, j)))
		}
	}
	return ref, mag
}

// maxScaledErr returns max |got−want| / (mag·tol) over the elements, so that
// values above 1 are failures.
func maxScaledErr(got func(i, j int) float64, want, mag *Dense64, tol float64) (worst float64, wi, wj int) {
	for i := 0; i < want.Rows; i++ {
		for j := 0; j < want.Cols; j++ {
			e := math.Abs(got(i, j)-want.At(i, j)) / (tol*mag.At(i, j) + math.SmallestNonzeroFloat64)
			if e > worst || math.IsNaN(e) {
				worst, wi, wj = e, i, j
			}
		}
	}
	return worst, wi, wj
}

const (
	eps64 = 0x1p-52
	eps32 = 0x1p-23
)

type gemmCase struct {
	m, n, k     int
	tA, tB      Transpose
	alpha, beta float64
	view        bool
}

func gemmCases() []gemmCase {
	var cases []gemmCase
	sizes := [][3]int{{1, 1, 1}, {7, 1, 33}, {1, 7, 7}, {33, 7, 1}, {7, 33, 129}, {129, 33, 7}, {300, 129, 33}, {33, 300, 300}, {129, 129, 129}}
	coef := [][2]float64{{1, 0}, {-0.75, 1}, {1.5, -0.5}, {0, 2}}
	for si, s := range sizes {
		for _, tA := range []Transpose{NoTrans, Trans} {
			for _, tB := range []Transpose{NoTrans, Trans} {
				ab := coef[(si+len(cases))%len(coef)]
				cases = append(cases, gemmCase{s[0], s[1], s[2], tA, tB, ab[0], ab[1], len(cases)%2 == 1})
			}
		}
	}
	// k == 0 scales C by beta.
	cases = append(cases, gemmCase{5, 4, 0, NoTrans, NoTrans, 1, 0.5, false}, gemmCase{0, 4, 3, Trans, NoTrans, 1, 0.5, true})
	return cases
}

func (c gemmCase) String() string {
	t := func(t Transpose) string {
		if t {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_%dx%dx%d_a%g_b%g_view%t", t(c.tA), t(c.tB), c.m, c.n, c.k, c.alpha, c.beta, c.view)
}

// operands returns fresh random A, B and C for the case.
func (c gemmCase) operands(seed uint64) (a, b, cc *Dense64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	ar, ac := c.m, c.k
	if c.tA {
		ar, ac = ac, ar
	}
	br, bc := c.k, c.n
	if c.tB {
		br, bc = bc, br
	}
	return randDense64(rng, ar, ac, c.view), randDense64(rng, br, bc, c.view), randDense64(rng, c.m, c.n, c.view)
}

func TestDgemm(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for i, tc := range gemmCases() {
			a, b, c := tc.operands(uint64(i))
			want, mag := refGemm(tc.tA, tc.tB, tc.alpha, a, b, tc.beta, c)
			be.Dgemm(tc.tA, tc.tB, tc.alpha, a, b, tc.beta, c)
			tol := float64(tc.k+2) * eps64
			if e, wi, wj := maxScaledErr(c.At, want, mag, tol); e > 1 {
				t.Errorf("%v: C[%d,%d] = %v, want %v (error %.3g× bound)", tc, wi, wj, c.At(wi, wj), want.At(wi, wj), e)
			}
		}
	})
}

func TestSgemm(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for i, tc := range gemmCases() {
			a64, b64, c64 := tc.operands(uint64(i))
			a, b, c := to32(a64, tc.view), to32(b64, tc.view), to32(c64, tc.view)
			alpha, beta := float32(tc.alpha), float32(tc.beta)
			// The reference works on the float32 values exactly.
			want, mag := refGemm(tc.tA, tc.tB, float64(alpha), a.To64(), b.To64(), float64(beta), c.To64())
			be.Sgemm(tc.tA, tc.tB, alpha, a, b, beta, c)
			tol := 2 * float64(tc.k+2) * eps32
			got := func(i, j int) float64 { return float64(c.At(i, j)) }
			if e, wi, wj := maxScaledErr(got, want, mag, tol); e > 1 {
				t.Errorf("%v: C[%d,%d] = %v, want %v (error %.3g× bound)", tc, wi, wj, got(wi, wj), want.At(wi, wj), e)
			}
		}
	})
}

// TestGemmViewUntouched checks that kernels write only inside a view.
func TestGemmViewUntouched(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		rng := rand.New(rand.NewPCG(7, 7))
		a, b := randDense64(rng, 9, 5, true), randDense64(rng, 5, 6, true)
		p64, p32 := NewDense64(11, 10, nil), NewDense32(11, 10, nil)
		for i := range p64.Data {
			p64.Data[i], p32.Data[i] = -3, -3
		}
		be.Dgemm(NoTrans, NoTrans, 1, a, b, 0, p64.Slice(1, 10, 2, 8))
		be.Sgemm(NoTrans, NoTrans, 1, to32(a, true), to32(b, true), 0, p32.Slice(1, 10, 2, 8))
		for i := 0; i < p64.Rows; i++ {
			for j := 0; j < p64.Cols; j++ {
				inside := i >= 1 && i < 10 && j >= 2 && j < 8
				if inside == (p64.At(i, j) == -3) || inside == (p32.At(i, j) == -3) {
					t.Fatalf("element (%d,%d) = %v, %v: want changed only inside the view", i, j, p64.At(i, j), p32.At(i, j))
				}
			}
		}
	})
}

func TestGemmPanics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for _, tc := range []struct {
			name string
			f    func()
		}{
			{"inner", func() {
				be.Dgemm(NoTrans, NoTrans, 1, NewDense64(2, 3, nil), NewDense64(4, 2, nil), 0, NewDense64(2, 2, nil))
			}},
			{"output", func() {
				be.Dgemm(NoTrans, Trans, 1, NewDense64(2, 3, nil), NewDense64(4, 3, nil), 0, NewDense64(2, 2, nil))
			}},
			{"short", func() {
				be.Sgemm(NoTrans, NoTrans, 1, &Dense32{Rows: 2, Cols: 2, Stride: 2, Data: make([]float32, 3)}, NewDense32(2, 2, nil), 0, NewDense32(2, 2, nil))
			}},
			{"stride", func() {
				be.Sgemm(NoTrans, NoTrans, 1, &Dense32{Rows: 2, Cols: 2, Stride: 1, Data: make([]float32, 4)}, NewDense32(2, 2, nil), 0, NewDense32(2, 2, nil))
			}},
			{"cov", func() { be.CovAccumulate(NewDense64(3, 3, nil), NewDense64(5, 4, nil)) }},
			{"solve", func() { be.CholeskySolve(NewDense64(3, 3, nil), NewDense64(2, 1, nil)) }},
			{"eigh", func() { be.Eigh(NewDense64(3, 2, nil)) }},
			{"convert", func() { be.F32ToBF16(make([]uint16, 2), make([]float32, 3)) }},
		} {
			func() {
				defer func() {
					r := recover()
					if r == nil {
						t.Errorf("%s: no panic", tc.name)
					} else if s, ok := r.(string); !ok || !strings.HasPrefix(s, "linalg: ") {
						t.Errorf("%s: panic %v, want a linalg message", tc.name, r)
					}
				}()
				tc.f()
			}()
		}
	})
}

// refCov returns c + Σ xᵢᵀxᵢ and the matching magnitudes.
func refCov(c *Dense64, xs ...*Dense64) (ref, mag *Dense64) {
	n := c.Rows
	ref, mag = c.Clone(), NewDense64(n, n, nil)
	for i := range mag.Data {
		mag.Data[i] = math.Abs(ref.Data[i])
	}
	for _, x := range xs {
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				var s, sa float64
				for l := 0; l < x.Rows; l++ {
					p := x.At(l, i) * x.At(l, j)
					s += p
					sa += math.Abs(p)
				}
				ref.Set(i, j, ref.At(i, j)+s)
				mag.Set(i, j, mag.At(i, j)+sa)
			}
		}
	}
	return ref, mag
}

func randSym(rng *rand.Rand, n int, view bool) *Dense64 {
	a := randDense64(rng, n, n, view)
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			a.Set(j, i, a.At(i, j))
		}
	}
	return a
}

func checkSymmetric(t *testing.T, what string, c *Dense64) {
	t.Helper()
	for i := 0; i < c.Rows; i++ {
		for j := 0; j < i; j++ {
			if c.At(i, j) != c.At(j, i) {
				t.Fatalf("%s: C[%d,%d] = %v but C[%d,%d] = %v", what, i, j, c.At(i, j), j, i, c.At(j, i))
			}
		}
	}
}

var covCases = []struct {
	m1, m2, n int
	view      bool
}{
	{1, 1, 1, false},
	{7, 3, 5, true},
	{33, 129, 65, false},
	{300, 7, 129, true},
	{0, 5, 4, false},
}

func TestCovAccumulate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for i, tc := range covCases {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			c := randSym(rng, tc.n, tc.view)
			x1, x2 := randDense64(rng, tc.m1, tc.n, tc.view), randDense64(rng, tc.m2, tc.n, !tc.view)
			want, mag := refCov(c, x1, x2)
			be.CovAccumulate(c, x1)
			be.CovAccumulate(c, x2)
			name := fmt.Sprintf("%d+%d×%d", tc.m1, tc.m2, tc.n)
			checkSymmetric(t, name, c)
			tol := float64(tc.m1+tc.m2+2) * eps64
			if e, wi, wj := maxScaledErr(c.At, want, mag, tol); e > 1 {
				t.Errorf("%s: C[%d,%d] = %v, want %v (error %.3g× bound)", name, wi, wj, c.At(wi, wj), want.At(wi, wj), e)
			}
		}
	})
}

func TestCovAccumulate32(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for i, tc := range covCases {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			c := randSym(rng, tc.n, tc.view)
			x1 := to32(randDense64(rng, tc.m1, tc.n, false), tc.view)
			x2 := to32(randDense64(rng, tc.m2, tc.n, false), !tc.view)
			want, mag := refCov(c, x1.To64(), x2.To64())
			be.CovAccumulate32(c, x1)
			be.CovAccumulate32(c, x2)
			name := fmt.Sprintf("%d+%d×%d", tc.m1, tc.m2, tc.n)
			checkSymmetric(t, name, c)
			tol := 2 * float64(max(tc.m1, tc.m2)+2) * eps32
			if e, wi, wj := maxScaledErr(c.At, want, mag, tol); e > 1 {
				t.Errorf("%s: C[%d,%d] = %v, want %v (error %.3g× bound)", name, wi, wj, c.At(wi, wj), want.At(wi, wj), e)
			}
		}
	})
}

// randSPD returns MᵀM + n·I for random M, with NaNs in the strict upper
// triangle, which must not be read, when poison is set.
func randSPD(rng *rand.Rand, n int, view, poison bool) *Dense64 {
	m := randDense64(rng, n, n, false)
	a := randDense64(rng, n, n, view)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < n; l++ {
				s += m.At(l, i) * m.At(l, j)
			}
			if i == j {
				s += float64(n)
			}
			a.Set(i, j, s)
			if poison && j > i {
				a.Set(i, j, math.NaN())
			}
		}
	}
	return a
}

// sym returns the symmetric matrix whose lower triangle is that of a.
func sym(a *Dense64) *Dense64 {
	s := a.Clone()
	for i := 0; i < s.Rows; i++ {
		for j := 0; j < i; j++ {
			s.Set(j, i, s.At(i, j))
		}
	}
	return s
}

func sameBits(a, b *Dense64) bool {
	for i := 0; i < a.Rows; i++ {
		for j := 0; j < a.Cols; j++ {
			if math.Float64bits(a.At(i, j)) != math.Float64bits(b.At(i, j)) {
				return false
			}
		}
	}
	return true
}

func TestCholeskySolve(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for i, tc := range []struct {
			n, k         int
			view, poison bool
		}{
			{1, 1, false, false},
			{5, 3, true, true},
			{33, 1, false, true},
			{64, 7, true, false},
			{200, 33, false, true},
			{4, 0, false, false},
		} {
			rng := rand.New(rand.NewPCG(uint64(i), 4))
			a := randSPD(rng, tc.n, tc.view, tc.poison)
			a0 := a.Clone()
			b := randDense64(rng, tc.n, tc.k, !tc.view)
			b0 := b.Clone()
			if err := be.CholeskySolve(a, b); err != nil {
				t.Fatalf("n=%d k=%d: %v", tc.n, tc.k, err)
			}
			if !sameBits(a, a0) {
				t.Errorf("n=%d: A was modified", tc.n)
			}
			// ‖AX − B‖_F / ‖B‖_F
			as := sym(a)
			var rr, bb float64
			for r := 0; r < tc.n; r++ {
				for c := 0; c < tc.k; c++ {
					var s float64
					for l := 0; l < tc.n; l++ {
						s += as.At(r, l) * b.At(l, c)
					}
					d := s - b0.At(r, c)
					rr += d * d
					bb += b0.At(r, c) * b0.At(r, c)
				}
			}
			if tc.k > 0 && math.Sqrt(rr/bb) >= 1e-10 {
				t.Errorf("n=%d k=%d: relative residual %.3g", tc.n, tc.k, math.Sqrt(rr/bb))
			}
		}
	})
}

func TestCholeskySolveErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		rng := rand.New(rand.NewPCG(5, 5))
		a := randSPD(rng, 9, false, false)
		a.Set(4, 4, -a.At(4, 4))
		b := randDense64(rng, 9, 2, false)
		err := be.CholeskySolve(a, b)
		if !errors.Is(err, ErrNotPositiveDefinite) {
			t.Errorf("indefinite: got %v, want ErrNotPositiveDefinite", err)
		} else if !strings.Contains(err.Error(), "9×9") {
			t.Errorf("indefinite: error %q does not give the size", err)
		}
		a = randSPD(rng, 6, false, false)
		a.Set(3, 1, math.Inf(1))
		if err := be.CholeskySolve(a, randDense64(rng, 6, 1, false)); !errors.Is(err, ErrNotFinite) {
			t.Errorf("Inf: got %v, want ErrNotFinite", err)
		}
	})
}

func TestEigh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for i, tc := range []struct {
			n            int
			view, poison bool
		}{
			{1, false, false},
			{5, true, true},
			{64, false, true},
			{200, true, false},
		} {
			rng := rand.New(rand.NewPCG(uint64(i), 6))
			a := randDense64(rng, tc.n, tc.n, tc.view)
			if tc.poison {
				for r := 0; r < tc.n; r++ {
					for c := r + 1; c < tc.n; c++ {
						a.Set(r, c, math.NaN())
					}
				}
			}
			a0 := a.Clone()
			w, v, err := be.Eigh(a)
			if err != nil {
				t.Fatalf("n=%d: %v", tc.n, err)
			}
			if !sameBits(a, a0) {
				t.Errorf("n=%d: A was modified", tc.n)
			}
			if len(w) != tc.n || v.Rows != tc.n || v.Cols != tc.n {
				t.Fatalf("n=%d: got %d values and a %d×%d matrix", tc.n, len(w), v.Rows, v.Cols)
			}
			for j := 1; j < tc.n; j++ {
				if w[j] < w[j-1] {
					t.Fatalf("n=%d: values not ascending: w[%d] = %v < w[%d] = %v", tc.n, j, w[j], j-1, w[j-1])
				}
			}
			as := sym(a)
			var normA, res, orth float64
			for _, x := range as.Data {
				normA += x * x
			}
			normA = math.Sqrt(normA)
			for r := 0; r < tc.n; r++ {
				for c := 0; c < tc.n; c++ {
					var av, vv float64
					for l := 0; l < tc.n; l++ {
						av += as.At(r, l) * v.At(l, c)
						vv += v.At(l, r) * v.At(l, c)
					}
					d := av - v.At(r, c)*w[c]
					res += d * d
					if r == c {
						vv--
					}
					orth = max(orth, math.Abs(vv))
				}
			}
			tol := 1e-12 * float64(tc.n)
			if r := math.Sqrt(res) / normA; r > tol {
				t.Errorf("n=%d: ‖AV − VΛ‖/‖A‖ = %.3g", tc.n, r)
			}
			if orth > tol {
				t.Errorf("n=%d: max |VᵀV − I| = %.3g", tc.n, orth)
			}
		}
		if w, v, err := be.Eigh(NewDense64(0, 0, nil)); err != nil || len(w) != 0 || v.Rows != 0 {
			t.Errorf("n=0: got %v, %v, %v", w, v, err)
		}
		a := randSym(rand.New(rand.NewPCG(9, 9)), 4, false)
		a.Set(2, 0, math.NaN())
		if _, _, err := be.Eigh(a); !errors.Is(err, ErrNotFinite) {
			t.Errorf("NaN: got %v, want ErrNotFinite", err)
		}
	})
}

func TestConversions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		// Long enough to be split over goroutines.
		const n = 3*convChunk + 17
		rng := rand.New(rand.NewPCG(8, 8))
		f := make([]float32, n)
		h := make([]uint16, n)
		for i := range f {
			f[i] = float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
			h[i] = uint16(rng.Uint32())
		}
		got16, gotF := make([]uint16, n), make([]float32, n)
		for _, tc := range []struct {
			name   string
			narrow func([]uint16, []float32)
			widen  func([]float32, []uint16)
			bits   func(float32) uint16
			value  func(uint16) float32
		}{
			{"f16", be.F32ToF16, be.F16ToF32, F16Bits, F16Float32},
			{"bf16", be.F32ToBF16, be.BF16ToF32, BF16Bits, BF16Float32},
		} {
			tc.narrow(got16, f)
			tc.widen(gotF, h)
			for i := range f {
				if w := tc.bits(f[i]); got16[i] != w {
					t.Fatalf("%s: narrow(%v) = %#04x, want %#04x", tc.name, f[i], got16[i], w)
				}
				if w := tc.value(h[i]); math.Float32bits(gotF[i]) != math.Float32bits(w) {
					t.Fatalf("%s: widen(%#04x) = %v, want %v", tc.name, h[i], gotF[i], w)
				}
			}
		}
	})
}

func TestAuto(t *testing.T) {
	t.Setenv(EnvBackend, "cpu")
	b, err := Auto()
	if err != nil || b.Name() != "cpu" {
		t.Fatalf("%s=cpu: Auto() = %v, %v", EnvBackend, b, err)
	}

	t.Setenv(EnvBackend, "nosuch")
	if _, err := Auto(); err == nil || !strings.Contains(err.Error(), `"nosuch"`) || !strings.Contains(err.Error(), EnvBackend) {
		t.Errorf("%s=nosuch: Auto() error %v, want one naming the backend and the variable", EnvBackend, err)
	}
	if b := Default(); b == nil || b.Name() != "cpu" {
		t.Errorf("Default() with a bad %s = %v, want cpu", EnvBackend, b)
	}

	t.Setenv(EnvBackend, "")
	b, err = Auto()
	if err != nil {
		t.Fatalf("Auto() unset: %v", err)
	}
	// The best backend that opens.
	for _, name := range Backends() {
		if _, err := Open(name); err == nil {
			if b.Name() != name {
				t.Errorf("Auto() = %s, want %s", b.Name(), name)
			}
			break
		}
	}
}

// TestAutoFromEnvironment checks the backend named by the environment of the
// test run, if any, so that GOINFLUENCE_BACKEND=openblas go test fails when
// OpenBLAS cannot be used.
func TestAutoFromEnvironment(t *testing.T) {
	name := os.Getenv(EnvBackend)
	if name == "" || name == "auto" {
		t.Skipf("%s not set", EnvBackend)
	}
	b, err := Auto()
	if err != nil {
		t.Fatalf("%s=%s: %v", EnvBackend, name, err)
	}
	if b.Name() != name {
		t.Fatalf("%s=%s: Auto() = %s", EnvBackend, name, b.Name())
	}
}

func TestBackendsOrder(t *testing.T) {
	names := Backends()
	rank := map[string]int{}
	for i, n := range names {
		rank[n] = i
	}
	if _, ok := rank["cpu"]; !ok {
		t.Fatalf("cpu not registered: %v", names)
	}
	if r, ok := rank["openblas"]; ok && r > rank["cpu"] {
		t.Errorf("openblas after cpu in %v", names)
	}
	if _, err := Open("nosuch"); err == nil {
		t.Error("Open(nosuch) succeeded")
	}
}

// TestCPUDeterministic checks that the CPU backend gives bit-identical
// results whatever GOMAXPROCS is.
func TestCPUDeterministic(t *testing.T) {
	be := CPU()
	rng := rand.New(rand.NewPCG(10, 10))
	a32, b32 := randDense64(rng, 300, 257, false).To32(), to32(randDense64(rng, 257, 300, true), true)
	a64, b64 := randDense64(rng, 300, 257, false), randDense64(rng, 300, 257, true)
	x := randDense64(rng, 100, 300, false)
	run := func(procs int) (*Dense32, *Dense64, *Dense64) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		c32, c64, cov := NewDense32(300, 300, nil), NewDense64(300, 300, nil), NewDense64(300, 300, nil)
		be.Sgemm(NoTrans, NoTrans, 1, a32, b32, 0, c32)
		be.Dgemm(NoTrans, Trans, 1, a64, b64, 0, c64)
		be.CovAccumulate(cov, x)
		return c32, c64, cov
	}
	s1, d1, v1 := run(1)
	s4, d4, v4 := run(4)
	for i := range s1.Data {
		if math.Float32bits(s1.Data[i]) != math.Float32bits(s4.Data[i]) {
			t.Fatalf("Sgemm element %d: %v with GOMAXPROCS=1, %v with 4", i, s1.Data[i], s4.Data[i])
		}
	}
	if !sameBits(d1, d4) {
		t.Error("Dgemm results differ between GOMAXPROCS 1 and 4")
	}
	if !sameBits(v1, v4) {
		t.Error("CovAccumulate results differ between GOMAXPROCS 1 and 4")
	}
}
