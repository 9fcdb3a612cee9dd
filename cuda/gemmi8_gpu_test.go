package cuda

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/goinfluence/goinfluence/quant"
)

// TestGPUGemmI8 runs GemmI8 on the GPU against quant's Go kernel: the
// integer sums must be equal, bit for bit, for every shape of the fake's
// test, for rows of ±127 as long as quant allows, for a product in pieces
// (b cut, ldc smaller than n) and for one of a realistic size.
func TestGPUGemmI8(t *testing.T) {
	b := gpu(t)
	rng := rand.New(rand.NewPCG(8, 18))
	check := func(t *testing.T, out, want []int32) {
		t.Helper()
		if !slices.Equal(out, want) {
			i := firstDiff(out, want)
			t.Fatalf("out[%d] = %d, want %d", i, out[i], want[i])
		}
	}
	for _, m := range []int{1, 3, 64} {
		for _, n := range []int{1, 7, 1000} {
			for _, dim := range []int{1, 3, 4, 5, 1024, 4097} {
				t.Run(fmt.Sprintf("%dx%dx%d", m, n, dim), func(t *testing.T) {
					a, bm := randI8(rng, m*dim), randI8(rng, n*dim)
					out := make([]int32, m*n)
					if err := b.GemmI8(out, a, m, bm, n, dim); err != nil {
						t.Fatal(err)
					}
					check(t, out, refGemmI8(t, a, m, bm, n, dim))
				})
			}
		}
	}
	for _, dim := range []int{quant.MaxDim, quant.MaxDim - 1, 4097} {
		t.Run(fmt.Sprintf("±127/dim=%d", dim), func(t *testing.T) {
			const m, n = 5, 9
			a, bm := signs127(rng, m, dim), signs127(rng, n, dim)
			out := make([]int32, m*n)
			if err := b.GemmI8(out, a, m, bm, n, dim); err != nil {
				t.Fatal(err)
			}
			check(t, out, refGemmI8(t, a, m, bm, n, dim))
			if out[0] != int32(127*127*dim) {
				t.Errorf("out[0] = %d, want 127²·%d", out[0], dim)
			}
		})
	}
	t.Run("pieces", func(t *testing.T) {
		const m, n, dim = 37, 1001, 515
		dp := (dim + 3) &^ 3
		a, bm := randI8(rng, m*dim), randI8(rng, n*dim)
		want := refGemmI8(t, a, m, bm, n, dim)
		budget := uint64(8*dp + 100*(dp+4*8)) // 8 rows of a, 100 of b
		out := make([]int32, m*n)
		d := b.dev
		if err := d.do(func() error { return gemmI8Device(d, out, a, m, bm, n, dim, budget) }); err != nil {
			t.Fatal(err)
		}
		check(t, out, want)
	})
	t.Run("large", func(t *testing.T) {
		const m, n, dim = 16, 50000, 2048
		a, bm := randI8(rng, m*dim), randI8(rng, n*dim)
		out := make([]int32, m*n)
		start := time.Now()
		if err := b.GemmI8(out, a, m, bm, n, dim); err != nil {
			t.Fatal(err)
		}
		gpu := time.Since(start)
		start = time.Now()
		want := refGemmI8(t, a, m, bm, n, dim)
		t.Logf("%d×%d by %d×%d: GPU %v (with copies), Go kernel %v", m, dim, n, dim, gpu, time.Since(start))
		check(t, out, want)
	})
	if b.Err() != nil {
		t.Errorf("backend error %v", b.Err())
	}
}
