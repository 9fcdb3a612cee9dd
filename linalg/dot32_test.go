package linalg

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDot32 holds Dot32 to the float64 dot product within the bound of
// float32 rounding (n·u·Σ|a·b|), for lengths around the kernel's block of 32, and to giving the
// same bits twice.
func TestDot32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 4, 31, 32, 33, 64, 95, 512, 785, 1000} {
		a, b := make([]float32, n), make([]float32, n+5)
		var want, abs float64
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			want += float64(a[i]) * float64(b[i])
			abs += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got := Dot32(a, b)
		if e := math.Abs(float64(got) - want); e > float64(n)*6e-8*abs {
			t.Errorf("n=%d: Dot32 = %v, want %v (error %.3g of Σ|a·b| %.3g)", n, got, want, e, abs)
		}
		if again := Dot32(a, b); again != got {
			t.Errorf("n=%d: Dot32 gave %v, then %v", n, got, again)
		}
		if g := dot32Go(a, b); math.Abs(float64(g)-want) > float64(n)*6e-8*abs {
			t.Errorf("n=%d: dot32Go = %v, want %v", n, g, want)
		}
	}
}
