package quant

import (
	"sync"

	"golang.org/x/sys/cpu"
)

// cpuKernels returns the assembly kernels this CPU supports, best first.
// x/sys/cpu reports an extension only when the operating system saves its
// registers too.
func cpuKernels() []Kernel {
	var ks []Kernel
	x := &cpu.X86
	if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512VNNI {
		ks = append(ks, vnniKernel{})
	}
	if x.HasAVX2 {
		ks = append(ks, avx2Kernel{})
	}
	return ks
}

// blockBytes bounds the bytes of the a rows that one pass over b reuses,
// so that they stay in the L2 cache while the few b rows of a tile stay in
// L1.
const blockBytes = 256 << 10

// blockRows returns how many a rows, a multiple of mr, make one block of
// rows dim long.
func blockRows(dim, mr int) int {
	return max(mr, blockBytes/dim/mr*mr)
}

// vnniKernel uses AVX-512 VNNI (VPDPBUSD), 64 products an instruction, on
// 6×4 tiles of a rows by b rows; a row of a left over, as a lone query is,
// streams b eight rows at a time.
type vnniKernel struct{}

func (vnniKernel) Name() string { return "vnni" }

func (vnniKernel) Gemm(out []int32, a []int8, m int, b []int8, n, dim int) {
	if trivialGemm(out, a, m, b, n, dim) {
		return
	}
	k, mask := dim/64, uint64(1)<<(dim%64)-1
	const mr, nr = 6, 4
	m6 := m / mr * mr
	mc := blockRows(dim, mr)
	for i0 := 0; i0 < m6; i0 += mc {
		i1 := min(i0+mc, m6)
		r := 0
		for ; r+nr <= n; r += nr {
			for i := i0; i < i1; i += mr {
				vnni6x4(&a[i*dim], &b[r*dim], dim, k, mask, &out[i*n+r], n)
			}
		}
		for ; r < n; r++ {
			for i := i0; i < i1; i += mr {
				vnni6x1(&a[i*dim], &b[r*dim], dim, k, mask, &out[i*n+r], n)
			}
		}
	}
	for i := m6; i < m; i++ {
		r := 0
		for ; r+8 <= n; r += 8 {
			vnni1x8(&a[i*dim], &b[r*dim], dim, k, mask, &out[i*n+r])
		}
		for ; r < n; r++ {
			out[i*n+r] = vnni1x1(&a[i*dim], &b[r*dim], k, mask)
		}
	}
	// The kernels summed (t+128)·a; take the 128·Σa back off, modulo 2³²
	// like the sums themselves.
	for i := range m {
		s := rowSum(a[i*dim:(i+1)*dim], k, mask)
		c := 128 * s
		oi := out[i*n : (i+1)*n]
		for r := range oi {
			oi[r] -= c
		}
	}
}

// minus127 returns MaxDim bytes of −127 (0x81), which the VNNI kernels,
// adding 0x80 to every byte of b, read as ones.
var minus127 = sync.OnceValue(func() []int8 {
	b := make([]int8, MaxDim)
	for i := range b {
		b[i] = -127
	}
	return b
})

// rowSum returns Σ a[j] modulo 2³², on the VNNI kernel against a row of
// ones (minus127): a batch of queries needs the sum of every query at every
// call, which a loop over bytes would make a good part of the call's time.
func rowSum(a []int8, k int, mask uint64) int32 {
	if len(a) > MaxDim {
		var s int32
		for _, v := range a {
			s += int32(v)
		}
		return s
	}
	return vnni1x1(&a[0], &minus127()[0], k, mask)
}

// avx2Kernel uses AVX2, 16 products an instruction, on 2×4 tiles.
type avx2Kernel struct{}

func (avx2Kernel) Name() string { return "avx2" }

func (avx2Kernel) Gemm(out []int32, a []int8, m int, b []int8, n, dim int) {
	if trivialGemm(out, a, m, b, n, dim) {
		return
	}
	k := dim / 16
	const mr, nr = 2, 4
	m2 := m / mr * mr
	mc := blockRows(dim, mr)
	for i0 := 0; i0 < m2; i0 += mc {
		i1 := min(i0+mc, m2)
		r := 0
		for ; r+nr <= n; r += nr {
			for i := i0; i < i1; i += mr {
				avx2x2x4(&a[i*dim], &b[r*dim], dim, k, &out[i*n+r], n)
			}
		}
		for ; r < n; r++ {
			for i := i0; i < i1; i++ {
				out[i*n+r] = avx2x1x1(&a[i*dim], &b[r*dim], k)
			}
		}
	}
	for i := m2; i < m; i++ {
		r := 0
		for ; r+nr <= n; r += nr {
			avx2x1x4(&a[i*dim], &b[r*dim], dim, k, &out[i*n+r])
		}
		for ; r < n; r++ {
			out[i*n+r] = avx2x1x1(&a[i*dim], &b[r*dim], k)
		}
	}
	// The kernels leave the last dim mod 16 columns out; sums modulo 2³²
	// do not depend on the order of the terms.
	if t := k * 16; t < dim {
		for i := range m {
			ai := a[i*dim+t : (i+1)*dim]
			oi := out[i*n : (i+1)*n]
			for r := range oi {
				oi[r] += dotGo(ai, b[r*dim+t:(r+1)*dim])
			}
		}
	}
}

// The assembly kernels read the rows of a and b, stride bytes apart, over
// 64·k bytes (16·k for AVX2) and then, for VNNI, the bytes that mask
// selects; they write the block of out whose rows are ldo values apart.

//go:noescape
func vnni6x4(a, b *int8, stride, k int, mask uint64, out *int32, ldo int)

//go:noescape
func vnni6x1(a, b *int8, stride, k int, mask uint64, out *int32, ldo int)

//go:noescape
func vnni1x8(a, b *int8, stride, k int, mask uint64, out *int32)

//go:noescape
func vnni1x1(a, b *int8, k int, mask uint64) int32

//go:noescape
func avx2x2x4(a, b *int8, stride, k int, out *int32, ldo int)

//go:noescape
func avx2x1x4(a, b *int8, stride, k int, out *int32)

//go:noescape
func avx2x1x1(a, b *int8, k int) int32
