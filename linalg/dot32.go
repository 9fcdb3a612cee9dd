package linalg

// Dot32 returns Σ a_i·b_i in float32; b must be at least as long as a.
// The summation order depends on len(a) and on the CPU only (with AVX2 and
// FMA, 32 fused lanes, then four partial sums for the rest), so a given
// machine returns the same bits for the same values every time.
func Dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	k := dot32Fast(a, b, &s)
	return s + dot32Go(a[k:], b[k:])
}

// dot32Go is Dot32 with four partial sums.
func dot32Go(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
