package cuda

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/goinfluence/goinfluence/quant"
)

// fakeGemmExCall is what one cublasGemmEx asked of the fake cuBLAS, kept so
// that tests check the arguments against cuBLAS's documentation.
type fakeGemmExCall struct {
	tA, tB, m, n, k     int32
	alpha, beta         int32
	aType, bType, cType int32
	lda, ldb, ldc       int32
	compute, algo       int32
}

// fakeGemmEx returns the fake's cublasGemmEx: the int8 product into int32
// of CUBLAS_COMPUTE_32I, computed on the host in int32 and queued on the
// handle's stream like the fake's Sgemm. It records every call and refuses
// what cuBLAS documents as unsupported for that compute type, so that a
// caller breaking a rule fails here as it would on a GPU: types other than
// int8 A and B and int32 C (CUBLAS_STATUS_NOT_SUPPORTED); α or β other
// than 0 and 1, A or B not 4-byte aligned, lda or ldb not a multiple of 4
// (NOT_SUPPORTED: "this path is only supported with" those); leading
// dimensions shorter than the columns they hold (INVALID_VALUE).
func (f *fakeDriver) fakeGemmEx(streams map[uintptr]uintptr) func(h uintptr, tA, tB, m, n, k int32, alpha *int32, a uint64, aType, lda int32,
	b uint64, bType, ldb int32, beta *int32, c uint64, cType, ldc int32, compute, algo int32) int32 {
	return func(h uintptr, tA, tB, m, n, k int32, alpha *int32, a uint64, aType, lda int32,
		b uint64, bType, ldb int32, beta *int32, c uint64, cType, ldc int32, compute, algo int32) int32 {
		defer f.enter("cublasGemmEx")()
		al, be := *alpha, *beta // host pointer mode: read during the call
		f.gemmEx = append(f.gemmEx, fakeGemmExCall{tA, tB, m, n, k, al, be, aType, bType, cType, lda, ldb, ldc, compute, algo})
		if f.injected("cublasGemmEx") {
			return int32(BLASExecutionFailed)
		}
		if aType != cudaR8I || bType != cudaR8I || cType != cudaR32I || compute != cublasCompute32I {
			return int32(BLASNotSupported)
		}
		if al&^1 != 0 || be&^1 != 0 || a%4 != 0 || b%4 != 0 || lda%4 != 0 || ldb%4 != 0 {
			return int32(BLASNotSupported)
		}
		ar, ac := m, k // op(A) is m×k, op(B) k×n
		if tA == cublasOpT {
			ar, ac = k, m
		}
		br, bc := k, n
		if tB == cublasOpT {
			br, bc = n, k
		}
		if tA&^1 != 0 || tB&^1 != 0 || m < 0 || n < 0 || k < 0 || lda < max(1, ar) || ldb < max(1, br) || ldc < max(1, m) {
			return int32(BLASInvalidValue)
		}
		if m == 0 || n == 0 {
			return 0
		}
		// extent is the bytes spanned by a column-major r×c matrix.
		extent := func(r, c, ld int32, size uint64) uint64 {
			if r == 0 || c == 0 {
				return 0
			}
			return (uint64(c-1)*uint64(ld) + uint64(r)) * size
		}
		sa, sb, sc := extent(ar, ac, lda, 1), extent(br, bc, ldb, 1), extent(m, n, ldc, 4)
		acc := []fakeAccess{devRead(a, sa), devRead(b, sb), devWrite(c, sc)}
		f.sched.enqueue(streams[h], "GemmEx", acc, func() {
			A, B := f.block(a, sa), f.block(b, sb)
			C := unsafeInt32s(f.block(c, sc))
			for j := range uint64(n) {
				for i := range uint64(m) {
					var sum int32
					for l := range uint64(k) {
						ai, bi := i+l*uint64(lda), l+j*uint64(ldb)
						if tA == cublasOpT {
							ai = l + i*uint64(lda)
						}
						if tB == cublasOpT {
							bi = j + l*uint64(ldb)
						}
						sum += int32(int8(A[ai])) * int32(int8(B[bi]))
					}
					ci := i + j*uint64(ldc)
					C[ci] = al*sum + be*C[ci]
				}
			}
		})
		return 0
	}
}

// unsafeInt32s views the bytes of a fake device block as int32s (device
// memory is little-endian, as is every host these tests run on).
func unsafeInt32s(b []byte) []int32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// randI8 returns n values drawn uniformly from [−127, 127] without 0, so
// that no product vanishes and a wrong pairing of rows shows.
func randI8(rng *rand.Rand, n int) []int8 {
	v := make([]int8, n)
	for i := range v {
		x := rng.IntN(254) // 0…253 → −127…−1, 1…127
		if x < 127 {
			v[i] = int8(x - 127)
		} else {
			v[i] = int8(x - 126)
		}
	}
	return v
}

// signs127 returns n values ±127 drawn at random; with first set, row 0 is
// all +127, so that its products with another such row reach ±127²·dim.
func signs127(rng *rand.Rand, rows, dim int) []int8 {
	v := make([]int8, rows*dim)
	for i := range v {
		v[i] = 127
		if i >= dim && rng.IntN(2) == 0 {
			v[i] = -127
		}
	}
	return v
}

// refGemmI8 is quant's portable kernel, the reference of every int8 path.
func refGemmI8(tb testing.TB, a []int8, m int, b []int8, n, dim int) []int32 {
	tb.Helper()
	k, err := quant.ByName("go")
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]int32, m*n)
	k.Gemm(out, a, m, b, n, dim)
	return out
}

// checkI8Calls checks the recorded cublasGemmEx calls of one GemmI8 of
// m×dim by n×dim: the types, α, β and algorithm cuBLAS documents for
// CUBLAS_COMPUTE_32I, the "TN" layout with lda = ldb = dim padded to a
// multiple of 4, and pieces that cover the product once.
func checkI8Calls(t *testing.T, calls []fakeGemmExCall, m, n, dim int) {
	t.Helper()
	dp := int32((dim + 3) &^ 3)
	if len(calls) == 0 {
		t.Fatal("no cublasGemmEx call")
	}
	var covered int64
	for _, c := range calls {
		want := fakeGemmExCall{tA: cublasOpT, tB: cublasOpN, m: c.m, n: c.n, k: dp, alpha: 1, beta: 0,
			aType: cudaR8I, bType: cudaR8I, cType: cudaR32I, lda: dp, ldb: dp, ldc: c.m,
			compute: cublasCompute32I, algo: cublasGemmDefault}
		if c != want || c.lda%4 != 0 || c.m < 1 || c.n < 1 {
			t.Fatalf("cublasGemmEx called with %+v, want %+v", c, want)
		}
		covered += int64(c.m) * int64(c.n)
	}
	if covered != int64(m)*int64(n) {
		t.Errorf("the %d pieces cover %d outputs, want %d", len(calls), covered, m*n)
	}
}

// TestFakeGemmI8 runs GemmI8 on the fake driver, whose work runs only when
// waited for: for every shape the sums must equal quant's Go kernel, the
// cuBLAS arguments must be the documented ones, and no device memory may
// stay in use.
func TestFakeGemmI8(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 17))
	f, d, b := openFakeStreams(t, 1<<26, false)
	before := held(f, d)
	type shape struct{ m, n, dim int }
	var shapes []shape
	for _, m := range []int{1, 3, 64} {
		for _, n := range []int{1, 7, 1000} {
			for _, dim := range []int{1, 3, 4, 5, 1024, 4097} {
				shapes = append(shapes, shape{m, n, dim})
			}
		}
	}
	for _, s := range shapes {
		t.Run(fmt.Sprintf("%dx%dx%d", s.m, s.n, s.dim), func(t *testing.T) {
			a, bm := randI8(rng, s.m*s.dim), randI8(rng, s.n*s.dim)
			out := make([]int32, s.m*s.n)
			f.gemmEx = nil
			if err := b.GemmI8(out, a, s.m, bm, s.n, s.dim); err != nil {
				t.Fatal(err)
			}
			if want := refGemmI8(t, a, s.m, bm, s.n, s.dim); !slices.Equal(out, want) {
				i := firstDiff(out, want)
				t.Fatalf("out[%d] = %d, want %d", i, out[i], want[i])
			}
			checkI8Calls(t, f.gemmEx, s.m, s.n, s.dim)
		})
	}

	// Rows of ±127 as long as quant allows: sums up to ±127²·MaxDim, the
	// largest that fit int32, with and without padding.
	for _, dim := range []int{quant.MaxDim, quant.MaxDim - 1, 4097} {
		t.Run(fmt.Sprintf("±127/dim=%d", dim), func(t *testing.T) {
			const m, n = 2, 3
			a, bm := signs127(rng, m, dim), signs127(rng, n, dim)
			out := make([]int32, m*n)
			f.gemmEx = nil
			if err := b.GemmI8(out, a, m, bm, n, dim); err != nil {
				t.Fatal(err)
			}
			want := refGemmI8(t, a, m, bm, n, dim)
			if !slices.Equal(out, want) || out[0] != int32(127*127*dim) {
				t.Fatalf("out = %v, want %v (out[0] = 127²·%d)", out, want, dim)
			}
			checkI8Calls(t, f.gemmEx, m, n, dim)
		})
	}

	if h := held(f, d); h != before {
		t.Errorf("after GemmI8 the device holds %+v, before %+v", h, before)
	}
	if len(f.sched.races) > 0 {
		t.Errorf("race: %s", f.sched.races[0])
	}
	if b.Err() != nil {
		t.Errorf("backend error %v", b.Err())
	}
}

// TestFakeGemmI8Pieces runs the device half of GemmI8 with budgets that
// cut the product into pieces: of b only, of a and b, one row of each. The
// pieces must cover the product once, their results land in place, and the
// padding buffers must not be overwritten before their copies have run
// (the fake runs copies only when waited for).
func TestFakeGemmI8Pieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	f, d, _ := openFakeStreams(t, 1<<26, false)
	const m, n = 5, 37
	for _, dim := range []int{13, 16} {
		dp := (dim + 3) &^ 3
		a, bm := randI8(rng, m*dim), randI8(rng, n*dim)
		want := refGemmI8(t, a, m, bm, n, dim)
		for _, tc := range []struct {
			budget  uint64
			ma, nb  int
			nPieces int
		}{
			{1 << 20, m, n, 1},
			{uint64(m*dp + 10*(dp+4*m)), m, 10, 4},
			{130, 2, 4, 3 * 10}, // a quarter holds two rows of a; 98 bytes, four of b
			{1, 1, 1, m * n},    // less than a row: one row of each
		} {
			t.Run(fmt.Sprintf("dim=%d/budget=%d", dim, tc.budget), func(t *testing.T) {
				if ma, nb := i8Pieces(m, n, dp, tc.budget); ma != tc.ma || nb != tc.nb {
					t.Fatalf("i8Pieces = %d, %d rows, want %d, %d", ma, nb, tc.ma, tc.nb)
				}
				out := make([]int32, m*n)
				f.gemmEx = nil
				if err := d.do(func() error { return gemmI8Device(d, out, a, m, bm, n, dim, tc.budget) }); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(out, want) {
					i := firstDiff(out, want)
					t.Fatalf("out[%d] = %d, want %d", i, out[i], want[i])
				}
				if len(f.gemmEx) != tc.nPieces {
					t.Errorf("%d pieces, want %d", len(f.gemmEx), tc.nPieces)
				}
				checkI8Calls(t, f.gemmEx, m, n, dim)
			})
		}
	}
	if len(f.sched.races) > 0 {
		t.Errorf("race: %s", f.sched.races[0])
	}
}

// TestFakeGemmI8Errors checks that a failing cuBLAS or copy comes back as an
// error naming the call, that nothing stays in use, that the device
// remains usable after an error that is not sticky, and GemmI8's argument
// checks.
func TestFakeGemmI8Errors(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const m, n, dim = 3, 50, 21
	a, bm := randI8(rng, m*dim), randI8(rng, n*dim)
	want := refGemmI8(t, a, m, bm, n, dim)
	for _, tc := range []struct {
		call    string
		res     Result
		status  BLASStatus
		sticky  bool
		message string
	}{
		{call: "cublasGemmEx", status: BLASExecutionFailed, message: "cuda: GemmI8: cuda: cublasGemmEx: CUBLAS_STATUS_EXECUTION_FAILED"},
		{call: "cuMemcpyHtoDAsync", res: InvalidValue, message: "cuMemcpyHtoDAsync_v2: CUDA_ERROR_INVALID_VALUE"},
		{call: "cuMemcpyDtoHAsync", res: IllegalAddress, sticky: true, message: "cuMemcpyDtoHAsync_v2: CUDA_ERROR_ILLEGAL_ADDRESS"},
	} {
		t.Run(tc.call, func(t *testing.T) {
			f, d, b := openFakeStreams(t, 1<<26, false)
			before := held(f, d)
			f.failRes = tc.res
			f.failAt[tc.call] = f.calls[tc.call] + 1
			out := make([]int32, m*n)
			err := b.GemmI8(out, a, m, bm, n, dim)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %v, want one containing %q", err, tc.message)
			}
			if tc.status != 0 && !errors.Is(err, tc.status) || tc.res != 0 && !errors.Is(err, tc.res) {
				t.Errorf("error %v is not %v", err, tc.status+BLASStatus(tc.res))
			}
			if h := held(f, d); h != before {
				t.Errorf("after the failure the device holds %+v, before %+v", h, before)
			}
			if b.broken.Load() != tc.sticky || b.Err() == nil {
				t.Errorf("backend error %v, broken %v", b.Err(), b.broken.Load())
			}
			clear(out)
			err = b.GemmI8(out, a, m, bm, n, dim)
			if tc.sticky {
				if err == nil || !strings.Contains(err.Error(), "failed earlier") {
					t.Errorf("after a sticky error: %v", err)
				}
				return
			}
			if err != nil || !slices.Equal(out, want) {
				t.Errorf("after the failure: %v, equal %v", err, slices.Equal(out, want))
			}
		})
	}

	f, _, b := openFakeStreams(t, 1<<26, false)
	for _, bad := range []struct {
		name   string
		out    []int32
		a      []int8
		m      int
		b      []int8
		n, dim int
	}{
		{"negative", nil, nil, -1, nil, 0, 4},
		{"a short", make([]int32, 6), make([]int8, 7), 2, make([]int8, 12), 3, 4},
		{"b short", make([]int32, 6), make([]int8, 8), 2, make([]int8, 11), 3, 4},
		{"out short", make([]int32, 5), make([]int8, 8), 2, make([]int8, 12), 3, 4},
		{"dim > MaxDim", make([]int32, 1), make([]int8, quant.MaxDim+1), 1, make([]int8, quant.MaxDim+1), 1, quant.MaxDim + 1},
	} {
		if err := b.GemmI8(bad.out, bad.a, bad.m, bad.b, bad.n, bad.dim); err == nil || !strings.HasPrefix(err.Error(), "cuda: GemmI8: ") {
			t.Errorf("%s: error %v", bad.name, err)
		}
	}
	// Empty products need no device; dim = 0 gives zeros.
	f.gemmEx = nil
	out := []int32{5, 6}
	for _, err := range []error{
		b.GemmI8(nil, nil, 0, make([]int8, 8), 2, 4),
		b.GemmI8(nil, make([]int8, 8), 2, nil, 0, 4),
		b.GemmI8(out, nil, 1, nil, 2, 0),
	} {
		if err != nil {
			t.Error(err)
		}
	}
	if len(f.gemmEx) != 0 || out[0] != 0 || out[1] != 0 {
		t.Errorf("empty products: %d cuBLAS calls, out %v", len(f.gemmEx), out)
	}
	if b.Err() != nil {
		t.Errorf("argument errors were kept: %v", b.Err())
	}
}

func firstDiff[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
