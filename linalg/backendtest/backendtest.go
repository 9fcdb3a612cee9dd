package backendtest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// Unit roundoffs. A float32 kernel is allowed twice eps32 per term because
// it may round a partial sum where the float64 reference of the float32
// inputs does not.
const (
	eps64 = 0x1p-52
	eps32 = 0x1p-23
)

// Run checks be against the float64 references, as subtests of t. It calls
// runtime.GOMAXPROCS, so it must not run in parallel with other tests.
func Run(t *testing.T, be linalg.Backend) {
	t.Helper()
	if be == nil {
		t.Fatal("backendtest: nil backend")
	}
	if be.Name() == "" {
		t.Error("backend has an empty Name")
	}
	for _, tc := range []struct {
		name string
		f    func(*testing.T, linalg.Backend)
	}{
		{"Dgemm", testDgemm},
		{"Sgemm", testSgemm},
		{"GemmViewUntouched", testGemmViewUntouched},
		{"Panics", testPanics},
		{"CovAccumulate", testCovAccumulate},
		{"CovAccumulate32", testCovAccumulate32},
		{"CholeskySolve", testCholeskySolve},
		{"CholeskySolveErrors", testCholeskySolveErrors},
		{"Eigh", testEigh},
		{"Conversions", testConversions},
		{"HalfSpecialValues", testHalfSpecial},
		{"HalfAllBits", testHalfAllBits},
		{"ThreadCountIndependent", testThreadCount},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, be) })
	}
}

// randDense64 returns an r×c matrix of values in [-1, 1), stored as a view
// with Stride > Cols when view is set.
func randDense64(rng *rand.Rand, r, c int, view bool) *linalg.Dense64 {
	pad := 0
	if view {
		pad = 3
	}
	m := linalg.NewDense64(r, c+pad, nil)
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
func to32(m *linalg.Dense64, view bool) *linalg.Dense32 {
	if !view {
		return m.To32()
	}
	p := linalg.NewDense32(m.Rows, m.Cols+3, nil)
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
func refGemm(tA, tB linalg.Transpose, alpha float64, a, b *linalg.Dense64, beta float64, c *linalg.Dense64) (ref, mag *linalg.Dense64) {
	op := func(m *linalg.Dense64, t linalg.Transpose, i, j int) float64 {
		if t {
			return m.At(j, i)
		}
		return m.At(i, j)
	}
	k := a.Cols
	if tA {
		k = a.Rows
	}
	ref, mag = linalg.NewDense64(c.Rows, c.Cols, nil), linalg.NewDense64(c.Rows, c.Cols, nil)
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
func maxScaledErr(got func(i, j int) float64, want, mag *linalg.Dense64, tol float64) (worst float64, wi, wj int) {
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

type gemmCase struct {
	m, n, k     int
	tA, tB      linalg.Transpose
	alpha, beta float64
	view        bool
}

func gemmCases() []gemmCase {
	var cases []gemmCase
	sizes := [][3]int{{1, 1, 1}, {7, 1, 33}, {1, 7, 7}, {33, 7, 1}, {7, 33, 129}, {129, 33, 7}, {300, 129, 33}, {33, 300, 300}, {129, 129, 129}}
	coef := [][2]float64{{1, 0}, {-0.75, 1}, {1.5, -0.5}, {0, 2}}
	for si, s := range sizes {
		for _, tA := range []linalg.Transpose{linalg.NoTrans, linalg.Trans} {
			for _, tB := range []linalg.Transpose{linalg.NoTrans, linalg.Trans} {
				ab := coef[(si+len(cases))%len(coef)]
				cases = append(cases, gemmCase{s[0], s[1], s[2], tA, tB, ab[0], ab[1], len(cases)%2 == 1})
			}
		}
	}
	// k == 0 scales C by beta; m == 0 and n == 0 do nothing.
	cases = append(cases,
		gemmCase{5, 4, 0, linalg.NoTrans, linalg.NoTrans, 1, 0.5, false},
		gemmCase{0, 4, 3, linalg.Trans, linalg.NoTrans, 1, 0.5, true},
		gemmCase{4, 0, 3, linalg.NoTrans, linalg.Trans, 1, 0.5, false})
	return cases
}

func (c gemmCase) String() string {
	t := func(t linalg.Transpose) string {
		if t {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_%dx%dx%d_a%g_b%g_view%t", t(c.tA), t(c.tB), c.m, c.n, c.k, c.alpha, c.beta, c.view)
}

// operands returns fresh random A, B and C for the case.
func (c gemmCase) operands(seed uint64) (a, b, cc *linalg.Dense64) {
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

// testDgemm: tolerance (k+2)·2⁻⁵² times the sum of the terms' magnitudes.
func testDgemm(t *testing.T, be linalg.Backend) {
	for i, tc := range gemmCases() {
		a, b, c := tc.operands(uint64(i))
		want, mag := refGemm(tc.tA, tc.tB, tc.alpha, a, b, tc.beta, c)
		be.Dgemm(tc.tA, tc.tB, tc.alpha, a, b, tc.beta, c)
		tol := float64(tc.k+2) * eps64
		if e, wi, wj := maxScaledErr(c.At, want, mag, tol); e > 1 {
			t.Errorf("%v: C[%d,%d] = %v, want %v (error %.3g× bound)", tc, wi, wj, c.At(wi, wj), want.At(wi, wj), e)
		}
	}
}

// testSgemm: tolerance 2·(k+2)·2⁻²³ times the sum of the terms' magnitudes,
// against the float64 product of the float32 inputs.
func testSgemm(t *testing.T, be linalg.Backend) {
	for i, tc := range gemmCases() {
		a64, b64, c64 := tc.operands(uint64(i))
		a, b, c := to32(a64, tc.view), to32(b64, tc.view), to32(c64, tc.view)
		alpha, beta := float32(tc.alpha), float32(tc.beta)
		want, mag := refGemm(tc.tA, tc.tB, float64(alpha), a.To64(), b.To64(), float64(beta), c.To64())
		be.Sgemm(tc.tA, tc.tB, alpha, a, b, beta, c)
		tol := 2 * float64(tc.k+2) * eps32
		got := func(i, j int) float64 { return float64(c.At(i, j)) }
		if e, wi, wj := maxScaledErr(got, want, mag, tol); e > 1 {
			t.Errorf("%v: C[%d,%d] = %v, want %v (error %.3g× bound)", tc, wi, wj, got(wi, wj), want.At(wi, wj), e)
		}
	}
}

// testGemmViewUntouched checks that kernels write only inside a view, and
// that beta = 0 ignores NaNs already in C.
func testGemmViewUntouched(t *testing.T, be linalg.Backend) {
	rng := rand.New(rand.NewPCG(7, 7))
	a, b := randDense64(rng, 9, 5, true), randDense64(rng, 5, 6, true)
	p64, p32 := linalg.NewDense64(11, 10, nil), linalg.NewDense32(11, 10, nil)
	for i := range p64.Data {
		p64.Data[i], p32.Data[i] = math.NaN(), float32(math.NaN())
	}
	be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, a, b, 0, p64.Slice(1, 10, 2, 8))
	be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, to32(a, true), to32(b, true), 0, p32.Slice(1, 10, 2, 8))
	for i := 0; i < p64.Rows; i++ {
		for j := 0; j < p64.Cols; j++ {
			inside := i >= 1 && i < 10 && j >= 2 && j < 8
			v64, v32 := p64.At(i, j), float64(p32.At(i, j))
			if inside == math.IsNaN(v64) || inside == math.IsNaN(v32) {
				t.Fatalf("element (%d,%d) = %v, %v: want NaN outside the view only", i, j, v64, v32)
			}
		}
	}
}

func testPanics(t *testing.T, be linalg.Backend) {
	d64, d32 := linalg.NewDense64, linalg.NewDense32
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"inner", func() {
			be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, d64(2, 3, nil), d64(4, 2, nil), 0, d64(2, 2, nil))
		}},
		{"output", func() {
			be.Dgemm(linalg.NoTrans, linalg.Trans, 1, d64(2, 3, nil), d64(4, 3, nil), 0, d64(2, 2, nil))
		}},
		{"short", func() {
			be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, &linalg.Dense32{Rows: 2, Cols: 2, Stride: 2, Data: make([]float32, 3)}, d32(2, 2, nil), 0, d32(2, 2, nil))
		}},
		{"stride", func() {
			be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, &linalg.Dense32{Rows: 2, Cols: 2, Stride: 1, Data: make([]float32, 4)}, d32(2, 2, nil), 0, d32(2, 2, nil))
		}},
		{"nil", func() { be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, nil, d32(2, 2, nil), 0, d32(2, 2, nil)) }},
		{"cov", func() { be.CovAccumulate(d64(3, 3, nil), d64(5, 4, nil)) }},
		{"cov32", func() { be.CovAccumulate32(d64(3, 4, nil), d32(5, 4, nil)) }},
		{"solve", func() { be.CholeskySolve(d64(3, 3, nil), d64(2, 1, nil)) }},
		{"eigh", func() { be.Eigh(d64(3, 2, nil)) }},
		{"convert", func() { be.F32ToBF16(make([]uint16, 2), make([]float32, 3)) }},
		{"widen", func() { be.F16ToF32(make([]float32, 3), make([]uint16, 2)) }},
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
}

// refCov returns c + Σ xᵢᵀxᵢ and the matching magnitudes.
func refCov(c *linalg.Dense64, xs ...*linalg.Dense64) (ref, mag *linalg.Dense64) {
	n := c.Rows
	ref, mag = c.Clone(), linalg.NewDense64(n, n, nil)
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

func randSym(rng *rand.Rand, n int, view bool) *linalg.Dense64 {
	a := randDense64(rng, n, n, view)
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			a.Set(j, i, a.At(i, j))
		}
	}
	return a
}

func checkSymmetric(t *testing.T, what string, c *linalg.Dense64) {
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

// testCovAccumulate: tolerance (m+2)·2⁻⁵² over both batches.
func testCovAccumulate(t *testing.T, be linalg.Backend) {
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
}

// testCovAccumulate32: each batch is summed in float32, so the tolerance is
// 2·(max m + 2)·2⁻²³.
func testCovAccumulate32(t *testing.T, be linalg.Backend) {
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
}

// randSPD returns MᵀM + n·I for random M, with NaNs in the strict upper
// triangle, which must not be read, when poison is set.
func randSPD(rng *rand.Rand, n int, view, poison bool) *linalg.Dense64 {
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
func sym(a *linalg.Dense64) *linalg.Dense64 {
	s := a.Clone()
	for i := 0; i < s.Rows; i++ {
		for j := 0; j < i; j++ {
			s.Set(j, i, s.At(i, j))
		}
	}
	return s
}

func sameBits(a, b *linalg.Dense64) bool {
	for i := 0; i < a.Rows; i++ {
		for j := 0; j < a.Cols; j++ {
			if math.Float64bits(a.At(i, j)) != math.Float64bits(b.At(i, j)) {
				return false
			}
		}
	}
	return true
}

// testCholeskySolve: relative residual ‖AX − B‖/‖B‖ below 10⁻¹⁰ (the
// matrices are well conditioned, κ < 10).
func testCholeskySolve(t *testing.T, be linalg.Backend) {
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
		{0, 3, false, false},
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
		if bb > 0 && math.Sqrt(rr/bb) >= 1e-10 {
			t.Errorf("n=%d k=%d: relative residual %.3g", tc.n, tc.k, math.Sqrt(rr/bb))
		}
	}
}

func testCholeskySolveErrors(t *testing.T, be linalg.Backend) {
	rng := rand.New(rand.NewPCG(5, 5))
	a := randSPD(rng, 9, false, false)
	a.Set(4, 4, -a.At(4, 4))
	b := randDense64(rng, 9, 2, false)
	err := be.CholeskySolve(a, b)
	if !errors.Is(err, linalg.ErrNotPositiveDefinite) {
		t.Errorf("indefinite: got %v, want ErrNotPositiveDefinite", err)
	} else if !strings.Contains(err.Error(), "9×9") {
		t.Errorf("indefinite: error %q does not give the size", err)
	}
	// Singular: a zero row and column.
	a = randSPD(rng, 5, false, false)
	for j := 0; j < 5; j++ {
		a.Set(2, j, 0)
		a.Set(j, 2, 0)
	}
	if err := be.CholeskySolve(a, randDense64(rng, 5, 1, false)); !errors.Is(err, linalg.ErrNotPositiveDefinite) {
		t.Errorf("singular: got %v, want ErrNotPositiveDefinite", err)
	}
	a = randSPD(rng, 6, false, false)
	a.Set(3, 1, math.Inf(1))
	if err := be.CholeskySolve(a, randDense64(rng, 6, 1, false)); !errors.Is(err, linalg.ErrNotFinite) {
		t.Errorf("Inf: got %v, want ErrNotFinite", err)
	}
}

// testEigh: ‖AV − VΛ‖/‖A‖, max|VᵀV − I| and ‖VΛVᵀ − A‖/‖A‖ below
// n·10⁻¹².
func testEigh(t *testing.T, be linalg.Backend) {
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
		var normA, res, orth, rec float64
		for _, x := range as.Data {
			normA += x * x
		}
		normA = math.Sqrt(normA)
		for r := 0; r < tc.n; r++ {
			for c := 0; c < tc.n; c++ {
				var av, vv, vlv float64
				for l := 0; l < tc.n; l++ {
					av += as.At(r, l) * v.At(l, c)
					vv += v.At(l, r) * v.At(l, c)
					vlv += v.At(r, l) * w[l] * v.At(c, l)
				}
				d := av - v.At(r, c)*w[c]
				res += d * d
				if r == c {
					vv--
				}
				orth = max(orth, math.Abs(vv))
				d = vlv - as.At(r, c)
				rec += d * d
			}
		}
		tol := 1e-12 * float64(tc.n)
		if r := math.Sqrt(res) / normA; r > tol {
			t.Errorf("n=%d: ‖AV − VΛ‖/‖A‖ = %.3g", tc.n, r)
		}
		if orth > tol {
			t.Errorf("n=%d: max |VᵀV − I| = %.3g", tc.n, orth)
		}
		if r := math.Sqrt(rec) / normA; r > tol {
			t.Errorf("n=%d: ‖VΛVᵀ − A‖/‖A‖ = %.3g", tc.n, r)
		}
	}
	if w, v, err := be.Eigh(linalg.NewDense64(0, 0, nil)); err != nil || len(w) != 0 || v == nil || v.Rows != 0 {
		t.Errorf("n=0: got %v, %v, %v", w, v, err)
	}
	a := randSym(rand.New(rand.NewPCG(9, 9)), 4, false)
	a.Set(2, 0, math.NaN())
	if _, _, err := be.Eigh(a); !errors.Is(err, linalg.ErrNotFinite) {
		t.Errorf("NaN: got %v, want ErrNotFinite", err)
	}
}

// bigConv is long enough for a backend to split a conversion over
// goroutines (linalg's CPU code does above 2¹⁶ values).
const bigConv = 3<<16 + 17

// testConversions compares the slice conversions with the references on
// random values, exactly.
func testConversions(t *testing.T, be linalg.Backend) {
	rng := rand.New(rand.NewPCG(8, 8))
	f := make([]float32, bigConv)
	h := make([]uint16, bigConv)
	for i := range f {
		f[i] = float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(60)-30)))
		h[i] = uint16(rng.Uint32())
	}
	checkConversions(t, be, f, h)
}

// testHalfSpecial converts values where rounding is delicate: zeros,
// infinities, NaNs with payloads, overflow thresholds, subnormals of each
// format and exact ties.
func testHalfSpecial(t *testing.T, be linalg.Backend) {
	f := []float32{
		0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00000), math.Float32frombits(0x7f800001), math.Float32frombits(0xffc00001),
		math.Float32frombits(0x7fbfffff), math.Float32frombits(0x7f802000),
		math.MaxFloat32, -math.MaxFloat32, 65504, 65519.996, 65520, -65520, 65536, 0x1.fep127, 0x1.ffp127,
		0x1p-24, 0x1p-25, 0x1.8p-25, 0x1.8p-24, 0x1.4p-24, 0x1p-14, 0x1.ff8p-15, 0x1p-26,
		1 + 0x1p-11, 1 + 0x3p-11, 1 - 0x1p-12, -(1 + 0x1p-11), 2049, 2051, 4097,
		1 + 0x1p-8, 1 + 0x3p-8, 1 + 0x1p-9 + 0x1p-23, 257, 259, -259,
		0x1p-149, 0x1p-133, 0x1p-134, 0x3p-135, 0x1p-126, 0x1.fffffcp-127, 0x1.01p-126, 0x1.03p-126,
		1.0 / 3, -2.0 / 3, math.Pi, 1e-8, 1e30, -1e-30,
	}
	var h []uint16
	for _, v := range []uint16{0, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7c01, 0x7e00, 0xfe01, 0x7fff, 0x3c00, 0x3c01} {
		h = append(h, v)
	}
	for _, v := range []uint16{0x0040, 0x807f, 0x7f7f, 0x7f80, 0xff80, 0x7f81, 0x7fc0, 0xffff, 0x3f80, 0x0080} {
		h = append(h, v)
	}
	for len(h) < len(f) {
		h = append(h, uint16(uint32(len(h))*2654435761>>7))
	}
	checkConversions(t, be, f, h[:len(f)])
}

// testHalfAllBits widens every binary16 and bfloat16 pattern, checks the
// value, and checks that narrowing gives the pattern back.
func testHalfAllBits(t *testing.T, be linalg.Backend) {
	h := make([]uint16, 1<<16)
	for i := range h {
		h[i] = uint16(i)
	}
	f := make([]float32, len(h))
	back := make([]uint16, len(h))
	for _, tc := range formats(be) {
		tc.widen(f, h)
		tc.narrow(back, f)
		for i, x := range h {
			if got, want := math.Float32bits(f[i]), tc.widenRef(x); got != want {
				t.Fatalf("%s: widen(%#04x) = %#08x, want %#08x", tc.name, x, got, want)
			}
			if tc.isNaN(x) {
				if !tc.isNaN(back[i]) || back[i]&0x8000 != x&0x8000 {
					t.Fatalf("%s: round trip of NaN %#04x gave %#04x", tc.name, x, back[i])
				}
			} else if back[i] != x {
				t.Fatalf("%s: round trip of %#04x gave %#04x", tc.name, x, back[i])
			}
		}
	}
}

type format struct {
	name     string
	narrow   func([]uint16, []float32)
	widen    func([]float32, []uint16)
	widenRef func(uint16) uint32
	narrowOK func(f float32, h uint16) bool
	isNaN    func(uint16) bool
}

func formats(be linalg.Backend) []format {
	return []format{
		{"f16", be.F32ToF16, be.F16ToF32, f16Widen, f16NarrowOK, func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }},
		{"bf16", be.F32ToBF16, be.BF16ToF32, func(h uint16) uint32 { return uint32(h) << 16 }, bf16NarrowOK, func(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }},
	}
}

func checkConversions(t *testing.T, be linalg.Backend, f []float32, h []uint16) {
	t.Helper()
	got16, gotF := make([]uint16, len(f)), make([]float32, len(h))
	for _, tc := range formats(be) {
		tc.narrow(got16, f)
		tc.widen(gotF, h)
		for i := range f {
			if !tc.narrowOK(f[i], got16[i]) {
				t.Fatalf("%s: narrow(%v = %#08x) = %#04x, want %#04x", tc.name, f[i], math.Float32bits(f[i]), got16[i], narrowRef(tc.name, f[i]))
			}
		}
		for i := range h {
			if g, w := math.Float32bits(gotF[i]), tc.widenRef(h[i]); g != w {
				t.Fatalf("%s: widen(%#04x) = %#08x, want %#08x", tc.name, h[i], g, w)
			}
		}
	}
}

// f16Widen returns the float32 bits of binary16 h from the definition of the
// format; a NaN becomes quiet with its sign and payload kept.
func f16Widen(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp, frac := int(h>>10&0x1f), h&0x3ff
	switch {
	case exp == 0x1f && frac == 0:
		return sign | 0x7f800000
	case exp == 0x1f:
		return sign | 0x7fc00000 | uint32(frac)<<13
	case exp == 0:
		return sign | math.Float32bits(float32(math.Ldexp(float64(frac), -24)))
	}
	return sign | math.Float32bits(float32(math.Ldexp(float64(1024+frac), exp-25)))
}

// roundQuantum rounds |v| to a multiple of the quantum q, ties to even.
func roundQuantum(v, q float64) float64 { return math.RoundToEven(math.Abs(v)/q) * q }

// f16NarrowOK reports whether h is f rounded to binary16, to nearest with
// ties to even, computed from the definition: the quantum is 2⁻²⁴ below
// 2⁻¹⁴ and 2^(e−10) for |f| in [2^e, 2^(e+1)); results of 2¹⁶ or more
// overflow to infinity. A NaN must stay a NaN of the same sign.
func f16NarrowOK(f float32, h uint16) bool {
	v := float64(f)
	if math.IsNaN(v) {
		return h&0x7c00 == 0x7c00 && h&0x3ff != 0 && (h&0x8000 != 0) == math.Signbit(v)
	}
	return h == f16Ref(v)
}

func f16Ref(v float64) uint16 {
	var sign uint16
	if math.Signbit(v) {
		sign = 0x8000
	}
	a := math.Abs(v)
	if math.IsInf(a, 0) {
		return sign | 0x7c00
	}
	q := 0x1p-24
	if a >= 0x1p-14 {
		_, e := math.Frexp(a) // a in [2^(e-1), 2^e)
		q = math.Ldexp(1, e-1-10)
	}
	r := roundQuantum(a, q)
	switch {
	case r >= 0x1p16:
		return sign | 0x7c00
	case r < 0x1p-14:
		return sign | uint16(r/0x1p-24)
	}
	_, e := math.Frexp(r)
	m := uint16(r/math.Ldexp(1, e-1-10)) - 1024
	return sign | uint16(e-1+15)<<10 | m
}

// bf16NarrowOK is f16NarrowOK for bfloat16: the quantum is 2⁻¹³³ below
// 2⁻¹²⁶ and 2^(e−7) above; results of 2¹²⁸ or more overflow.
func bf16NarrowOK(f float32, h uint16) bool {
	v := float64(f)
	if math.IsNaN(v) {
		return h&0x7f80 == 0x7f80 && h&0x7f != 0 && (h&0x8000 != 0) == math.Signbit(v)
	}
	return h == bf16Ref(v)
}

func bf16Ref(v float64) uint16 {
	var sign uint16
	if math.Signbit(v) {
		sign = 0x8000
	}
	a := math.Abs(v)
	if math.IsInf(a, 0) {
		return sign | 0x7f80
	}
	q := 0x1p-133
	if a >= 0x1p-126 {
		_, e := math.Frexp(a)
		q = math.Ldexp(1, e-1-7)
	}
	r := roundQuantum(a, q)
	if r >= 0x1p128 {
		return sign | 0x7f80
	}
	return sign | uint16(math.Float32bits(float32(r))>>16)
}

func narrowRef(name string, f float32) uint16 {
	if name == "f16" {
		return f16Ref(float64(f))
	}
	return bf16Ref(float64(f))
}

// testThreadCount checks that the results of every kernel are bit-identical
// whatever GOMAXPROCS is.
func testThreadCount(t *testing.T, be linalg.Backend) {
	rng := rand.New(rand.NewPCG(10, 10))
	a32, b32 := randDense64(rng, 300, 257, false).To32(), to32(randDense64(rng, 257, 300, true), true)
	a64, b64 := randDense64(rng, 300, 257, false), randDense64(rng, 300, 257, true)
	x := randDense64(rng, 100, 300, false)
	x32 := x.To32()
	spd := randSPD(rng, 80, false, false)
	rhs := randDense64(rng, 80, 5, false)
	halves := make([]uint16, bigConv)
	for i := range halves {
		halves[i] = uint16(rng.Uint32())
	}
	type result struct {
		s32, f32 []float32
		d64      []*linalg.Dense64
		w        []float64
	}
	run := func(procs int) result {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		c32, c64 := linalg.NewDense32(300, 300, nil), linalg.NewDense64(300, 300, nil)
		cov, cov32 := linalg.NewDense64(300, 300, nil), linalg.NewDense64(300, 300, nil)
		be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a32, b32, 0, c32)
		be.Dgemm(linalg.NoTrans, linalg.Trans, 1, a64, b64, 0, c64)
		be.CovAccumulate(cov, x)
		be.CovAccumulate32(cov32, x32)
		sol := rhs.Clone()
		if err := be.CholeskySolve(spd, sol); err != nil {
			t.Fatalf("CholeskySolve: %v", err)
		}
		w, v, err := be.Eigh(spd)
		if err != nil {
			t.Fatalf("Eigh: %v", err)
		}
		f := make([]float32, len(halves))
		be.F16ToF32(f, halves)
		return result{c32.Data, f, []*linalg.Dense64{c64, cov, cov32, sol, v}, w}
	}
	names := []string{"Dgemm", "CovAccumulate", "CovAccumulate32", "CholeskySolve", "Eigh vectors"}
	r1 := run(1)
	for _, procs := range []int{2, 4} {
		r := run(procs)
		for i := range r1.s32 {
			if math.Float32bits(r1.s32[i]) != math.Float32bits(r.s32[i]) {
				t.Fatalf("Sgemm element %d: %v with GOMAXPROCS=1, %v with %d", i, r1.s32[i], r.s32[i], procs)
			}
		}
		for i := range r1.f32 {
			if math.Float32bits(r1.f32[i]) != math.Float32bits(r.f32[i]) {
				t.Fatalf("F16ToF32 element %d differs between GOMAXPROCS 1 and %d", i, procs)
			}
		}
		for i, m := range r1.d64 {
			if !sameBits(m, r.d64[i]) {
				t.Errorf("%s results differ between GOMAXPROCS 1 and %d", names[i], procs)
			}
		}
		for i := range r1.w {
			if math.Float64bits(r1.w[i]) != math.Float64bits(r.w[i]) {
				t.Errorf("Eigh value %d differs between GOMAXPROCS 1 and %d", i, procs)
				break
			}
		}
	}
}
