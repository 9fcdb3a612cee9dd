package linalg

import (
	"fmt"
	"time"
)

// MeasureGemm returns the rate, in GFLOP/s, at which b multiplies two n×n
// matrices: float64 (Dgemm) when f64 is set, else float32 (Sgemm). After one
// untimed warm-up call it repeats the product until minTime has passed, at
// least three times, and reports the best repeat, the least disturbed by
// other load.
func MeasureGemm(b Backend, n int, f64 bool, minTime time.Duration) (gflops float64) {
	if n <= 0 {
		panic(fmt.Sprintf("linalg: MeasureGemm: n = %d", n))
	}
	var run func()
	if f64 {
		x, y, z := NewDense64(n, n, nil), NewDense64(n, n, nil), NewDense64(n, n, nil)
		fillPattern(x.Data)
		fillPattern(y.Data)
		run = func() { b.Dgemm(NoTrans, NoTrans, 1, x, y, 0, z) }
	} else {
		x, y, z := NewDense32(n, n, nil), NewDense32(n, n, nil), NewDense32(n, n, nil)
		fillPattern(x.Data)
		fillPattern(y.Data)
		run = func() { b.Sgemm(NoTrans, NoTrans, 1, x, y, 0, z) }
	}
	run()
	best := time.Duration(1<<63 - 1)
	start := time.Now()
	for reps := 0; reps < 3 || time.Since(start) < minTime; reps++ {
		t0 := time.Now()
		run()
		best = min(best, max(time.Since(t0), time.Nanosecond))
	}
	return GemmFlops(n, n, n) / best.Seconds() / 1e9
}

// GemmFlops returns the floating-point operations in an m×k by k×n product.
func GemmFlops(m, n, k int) float64 { return 2 * float64(m) * float64(n) * float64(k) }

// fillPattern fills s with a cheap deterministic pattern in [-1, 1) that has
// no zeros, so timings are not flattered by sparsity.
func fillPattern[T float32 | float64](s []T) {
	var x uint32 = 2463534242
	for i := range s {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		s[i] = T(x>>8)/(1<<23) - 1 + 1.0/(1<<24)
	}
}
