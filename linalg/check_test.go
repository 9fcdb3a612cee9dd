package linalg

import (
	"math/rand/v2"
	"testing"
)

// TestTiledCopies holds mirrorUpper and transposeInto, which copy tile by
// tile, to the plain loops, for sizes around the tile's and strides wider
// than the rows.
func TestTiledCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 63, 64, 65, 130, 200} {
		for _, pad := range []int{0, 3} {
			c := NewDense64(n, n+pad, nil)
			for i := range c.Data {
				c.Data[i] = rng.NormFloat64()
			}
			c = c.Slice(0, n, 0, n)
			want := c.Clone()
			for i := 0; i < n; i++ {
				for j := 0; j < i; j++ {
					want.Set(i, j, want.At(j, i))
				}
			}
			mirrorUpper(c)
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					if c.At(i, j) != want.At(i, j) {
						t.Fatalf("mirrorUpper n=%d pad=%d: [%d,%d] = %v, want %v", n, pad, i, j, c.At(i, j), want.At(i, j))
					}
				}
			}
			for _, r := range []int{1, 64, n + 7} {
				src := make([]float64, r*(n+pad))
				for i := range src {
					src[i] = rng.NormFloat64()
				}
				ldd := r + pad
				dst := make([]float64, n*ldd)
				transposeInto(dst, ldd, src, n+pad, r, n)
				for i := 0; i < r; i++ {
					for j := 0; j < n; j++ {
						if dst[j*ldd+i] != src[i*(n+pad)+j] {
							t.Fatalf("transposeInto %d×%d pad=%d: [%d,%d] wrong", r, n, pad, j, i)
						}
					}
				}
			}
		}
	}
}
