package linalg

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// forEachBackendB runs f as a sub-benchmark for every backend that opens.
func forEachBackendB(b *testing.B, f func(b *testing.B, be Backend)) {
	for _, name := range Backends() {
		b.Run(name, func(b *testing.B) {
			be, err := Open(name)
			if err != nil {
				b.Skipf("backend %s not available: %v", name, err)
			}
			f(b, be)
		})
	}
}

var gemmBenchSizes = []int{256, 512, 1024, 2048}

func BenchmarkSgemm(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be Backend) {
		for _, n := range gemmBenchSizes {
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				x, y, z := NewDense32(n, n, nil), NewDense32(n, n, nil), NewDense32(n, n, nil)
				fillPattern(x.Data)
				fillPattern(y.Data)
				b.ResetTimer()
				for range b.N {
					be.Sgemm(NoTrans, NoTrans, 1, x, y, 0, z)
				}
				b.ReportMetric(GemmFlops(n, n, n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	})
}

func BenchmarkDgemm(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be Backend) {
		for _, n := range gemmBenchSizes {
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				x, y, z := NewDense64(n, n, nil), NewDense64(n, n, nil), NewDense64(n, n, nil)
				fillPattern(x.Data)
				fillPattern(y.Data)
				b.ResetTimer()
				for range b.N {
					be.Dgemm(NoTrans, NoTrans, 1, x, y, 0, z)
				}
				b.ReportMetric(GemmFlops(n, n, n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	})
}

func BenchmarkEigh(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, be Backend) {
		for _, n := range []int{256, 1024} {
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				a := randSym(rand.New(rand.NewPCG(1, uint64(n))), n, false)
				b.ResetTimer()
				for range b.N {
					if _, _, err := be.Eigh(a); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}

func TestMeasureGemm(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be Backend) {
		for _, f64 := range []bool{false, true} {
			if g := MeasureGemm(be, 64, f64, 0); !(g > 0) {
				t.Errorf("MeasureGemm(f64=%t) = %v", f64, g)
			}
		}
	})
}
