package cuda

import (
	"math"
	"math/bits"
	"slices"
)

// CPU references of the kernels in kernels/*.cu, written to their exact
// semantics: the GPU tests require the kernels to match them bit for bit,
// and the package's tests check them against the packages whose results the
// kernels must reproduce (gradients' projections, influence.TopK, linalg's
// conversions, ekfac's scaling).

// philox4x32 is Philox4x32-10 (DESIGN.md §4), as kernels/project.cu has it.
func philox4x32(c [4]uint32, k0, k1 uint32) [4]uint32 {
	for r := 0; r < 10; r++ {
		if r > 0 {
			k0 += 0x9E3779B9
			k1 += 0xBB67AE85
		}
		hi0, lo0 := bits.Mul32(0xD2511F53, c[0])
		hi1, lo1 := bits.Mul32(0xCD9E8D57, c[2])
		c = [4]uint32{hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0}
	}
	return c
}

// refRademacher is rademacher_f64: dst (rows×k) = (1/√k)·P·x for the rows
// of x (rows×d), each output summed in float64 over i in increasing order.
func refRademacher(dst, x []float64, d, k int, seed uint64, stream uint32) {
	k0, k1 := philoxKey(seed)
	rows := len(x) / d
	scale := 1 / math.Sqrt(float64(k))
	clear(dst[:rows*k])
	for jb := 0; jb*128 < k; jb++ {
		for i := 0; i < d; i++ {
			w := philox4x32([4]uint32{uint32(i), uint32(uint64(i) >> 32), uint32(jb), stream}, k0, k1)
			for j := jb * 128; j < min(k, jb*128+128); j++ {
				b := j - jb*128
				neg := w[b>>5]>>(b&31)&1 == 1
				for r := 0; r < rows; r++ {
					v := x[r*d+i]
					if neg {
						v = -v
					}
					dst[r*k+j] += v
				}
			}
		}
	}
	for i := range dst[:rows*k] {
		dst[i] *= scale
	}
}

// refSJLTHash is sjlt_hash: the bucket and sign bit of each input.
func refSJLTHash(d, k int, seed uint64, stream uint32) (bucket []int32, neg []uint8) {
	k0, k1 := philoxKey(seed)
	bucket, neg = make([]int32, d), make([]uint8, d)
	for i := range d {
		w := philox4x32([4]uint32{uint32(i), uint32(uint64(i) >> 32), 0, stream}, k0, k1)
		bucket[i] = int32(uint64(w[0]) * uint64(k) >> 32)
		neg[i] = uint8(w[1] & 1)
	}
	return bucket, neg
}

// refSJLT is sjlt_hash followed by sjlt_gather_f64: dst[r*k+b] is the sum,
// over inputs i of bucket b in increasing order, of ±x[r*d+i].
func refSJLT(dst, x []float64, d, k int, seed uint64, stream uint32) {
	bucket, neg := refSJLTHash(d, k, seed, stream)
	rows := len(x) / d
	clear(dst[:rows*k])
	for r := range rows {
		for i := range d {
			v := x[r*d+i]
			if neg[i] == 1 {
				v = -v
			}
			dst[r*k+int(bucket[i])] += v
		}
	}
}

// refScaleEKFAC is ekfac_scale_f64: x[n*d+j] *= 1/(lambda[j]+delta), the
// reciprocal in float64.
func refScaleEKFAC(x, lambda []float64, delta float64) {
	d := len(lambda)
	for idx := range x {
		x[idx] *= 1 / (lambda[idx%d] + delta)
	}
}

// refScaleEKFAC32 is ekfac_scale_f32: the product in float64, rounded once.
func refScaleEKFAC32(x []float32, lambda []float64, delta float64) {
	d := len(lambda)
	for idx := range x {
		x[idx] = float32(float64(x[idx]) * (1 / (lambda[idx%d] + delta)))
	}
}

// topkKey is topk_key of kernels/topk.cu: larger for a better entry; the
// high word orders scores (−0 as +0, NaN last), the low word 0xFFFFFFFF − g
// breaks ties by the lower global index g < 0xFFFFFFFF.
func topkKey(v float32, g uint64, lowest bool) uint64 {
	var s uint32
	if v == v {
		u := math.Float32bits(v)
		if v == 0 {
			u = 0
		}
		if u&0x80000000 != 0 {
			s = ^u
		} else {
			s = u | 0x80000000
		}
		if lowest {
			s = ^s
		}
	}
	return uint64(s)<<32 | uint64(0xFFFFFFFF-uint32(g))
}

// refTopK is topk_f32 on one row: the k best entries, best first, as global
// indices offset+i and scores.
func refTopK(row []float32, k int, lowest bool, offset int64) ([]int64, []float32) {
	k = min(k, len(row))
	keys := make([]uint64, len(row))
	for i, v := range row {
		keys[i] = topkKey(v, uint64(offset)+uint64(i), lowest)
	}
	slices.Sort(keys)
	slices.Reverse(keys)
	idx, val := make([]int64, k), make([]float32, k)
	for p := range k {
		g := int64(0xFFFFFFFF - uint32(keys[p]))
		idx[p], val[p] = g, row[g-offset]
	}
	return idx, val
}

// refF16 is f16_bits_to_f32 of kernels/convert.cu.
func refF16(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f && frac == 0:
		return sign | 0x7f800000
	case exp == 0x1f:
		return sign | 0x7fc00000 | frac<<13
	case exp == 0 && frac == 0:
		return sign
	case exp == 0:
		e := uint32(113)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		return sign | e<<23 | (frac&0x3ff)<<13
	}
	return sign | (exp+112)<<23 | frac<<13
}

// refBF16 is bf16_to_f32.
func refBF16(h uint16) uint32 { return uint32(h) << 16 }
