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

func TestExampleBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers []LayerInfo
		want   int64
	}{
		{"none", nil, 0},
		{"factored with tokens", []LayerInfo{{Factored: true, Tokens: 3, DIn: 5, DOut: 2}}, 8 * 3 * (5 + 2)},
		{"factored and dense", []LayerInfo{{Factored: true, Tokens: 1, DIn: 785, DOut: 512}, {D: 10}}, 8 * (785 + 512 + 10)},
		{"overflow", []LayerInfo{{D: math.MaxInt64 / 4}}, math.MaxInt64},
	} {
		if got := ExampleBytes(tc.layers); got != tc.want {
			t.Errorf("%s: %d bytes, want %d", tc.name, got, tc.want)
		}
	}
}
