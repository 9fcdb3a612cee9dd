package gradients

import (
	"math"
	"testing"
)

// allFinite must find one bad value at any position of slices of any
// length (the eight sums and the tail), and pass the largest finite values.
func TestAllFinite(t *testing.T) {
	for n := 1; n <= 27; n++ {
		v := make([]float64, n)
		for i := range v {
			v[i] = math.MaxFloat64 * float64(1-2*(i%2))
		}
		if !allFinite(v) {
			t.Fatalf("n=%d: finite values reported non-finite", n)
		}
		for i := range v {
			for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
				w := append([]float64(nil), v...)
				w[i] = bad
				if allFinite(w) {
					t.Fatalf("n=%d: %v at %d not found", n, bad, i)
				}
			}
		}
	}
	if !allFinite(nil) {
		t.Fatal("no values reported non-finite")
	}
}
