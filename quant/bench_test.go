package quant

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

var benchShapes = []struct{ m, n, dim int }{
	{512, 1024, 4096},
	{1, 65536, 1024},
}

// BenchmarkGemm reports each kernel's rate in GOPS (a multiply and an add
// count as two operations) and, for one query over the rows, the rate at
// which it reads b, to set against BenchmarkPass.
func BenchmarkGemm(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 1))
	for _, sh := range benchShapes {
		x := randInt8(rnd, sh.m*sh.dim)
		y := randInt8(rnd, sh.n*sh.dim)
		out := make([]int32, sh.m*sh.n)
		for _, k := range Kernels() {
			b.Run(fmt.Sprintf("%s/m=%d,n=%d,dim=%d", k.Name(), sh.m, sh.n, sh.dim), func(b *testing.B) {
				b.SetBytes(int64(len(y)))
				for b.Loop() {
					k.Gemm(out, x, sh.m, y, sh.n, sh.dim)
				}
				s := b.Elapsed().Seconds()
				b.ReportMetric(2*float64(sh.m)*float64(sh.n)*float64(sh.dim)*float64(b.N)/s/1e9, "GOPS")
				if sh.m == 1 {
					b.ReportMetric(float64(len(y))*float64(b.N)/s/1e9, "GB/s")
				}
			})
		}
	}
}

// sink keeps the compiler from dropping the pass.
var sink uint64

// BenchmarkPass sums the bytes of b of the GEMV-shaped shape as uint64
// words, and counts them with bytes.Count: the rate at which one core
// reads them, the bound of a kernel that reads b once.
func BenchmarkPass(b *testing.B) {
	sh := benchShapes[1]
	y := randInt8(rand.New(rand.NewPCG(1, 1)), sh.n*sh.dim)
	w := unsafe.Slice((*uint64)(unsafe.Pointer(&y[0])), len(y)/8)
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(y))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	}
	b.Run(fmt.Sprintf("bytes=%d,words", len(y)), func(b *testing.B) {
		b.SetBytes(int64(len(y)))
		for b.Loop() {
			var s0, s1, s2, s3 uint64
			for v := w; len(v) >= 4; v = v[4:] {
				s0 += v[0]
				s1 += v[1]
				s2 += v[2]
				s3 += v[3]
			}
			sink += s0 + s1 + s2 + s3
		}
		report(b)
	})
	// bytes.Count reads with the runtime's vector code, as the kernels
	// do, where the loop above is bound by its one word a load.
	yb := unsafe.Slice((*byte)(unsafe.Pointer(&y[0])), len(y))
	b.Run(fmt.Sprintf("bytes=%d,count", len(y)), func(b *testing.B) {
		b.SetBytes(int64(len(y)))
		for b.Loop() {
			sink += uint64(bytes.Count(yb, []byte{0}))
		}
		report(b)
	})
}
