package cuda

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Benchmarks report the GPU next to its yardsticks in the same run: the
// host backend's Sgemm on the same shapes, H2D bandwidth, and gradients'
// CPU projection.

func BenchmarkSgemm(b *testing.B) {
	be := gpu(b)
	for _, n := range []int{512, 1024, 2048, 4096} {
		x, y, z := linalg.NewDense32(n, n, nil), linalg.NewDense32(n, n, nil), linalg.NewDense32(n, n, nil)
		for _, m := range []*linalg.Dense32{x, y} {
			for i := range m.Data {
				m.Data[i] = float32(i%7) - 3
			}
		}
		for _, tc := range []struct {
			name string
			be   linalg.Backend
		}{{"cuda", be}, {"host-" + be.Host().Name(), be.Host()}} {
			if tc.name != "cuda" && n > 2048 {
				continue
			}
			b.Run(fmt.Sprintf("%s/n=%d", tc.name, n), func(b *testing.B) {
				for range b.N {
					tc.be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, x, y, 0, z)
				}
				b.ReportMetric(linalg.GemmFlops(n, n, n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkH2D measures host-to-device bandwidth from pageable memory, the
// bound on any backend call that copies its operands.
func BenchmarkH2D(b *testing.B) {
	d := gpu(b).dev
	const n = 64 << 20
	src := make([]byte, n)
	buf, err := d.Alloc(n)
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Free()
	b.SetBytes(n)
	for range b.N {
		if err := Upload(buf, src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProjectRademacher(b *testing.B) {
	be := gpuKernels(b)
	const rows, d, k = 64, 1 << 16, 1024
	x := gradValues(rand.New(rand.NewPCG(1, 1)), rows*d)
	dst := make([]float64, rows*k)
	b.Run("cuda", func(b *testing.B) {
		for range b.N {
			if err := be.ProjectRademacher(dst, x, d, k, 1, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gradients-cpu", func(b *testing.B) {
		batch := &gradients.Batch{N: rows, Layers: []gradients.Layer{{Name: "l", D: d, Grad: x}}}
		p := gradients.Projection{Kind: gradients.Rademacher, K: k, Seed: 1}
		for range b.N {
			if _, err := p.Apply(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkTopK(b *testing.B) {
	be := gpuKernels(b)
	s := linalg.NewDense32(64, 1<<20, nil)
	rng := rand.New(rand.NewPCG(2, 2))
	for i := range s.Data {
		s.Data[i] = float32(rng.NormFloat64())
	}
	b.SetBytes(int64(4 * len(s.Data)))
	for range b.N {
		if _, _, err := be.TopK(s, 100, false, 0); err != nil {
			b.Fatal(err)
		}
	}
}
