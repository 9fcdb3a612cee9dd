//go:build amd64 && !purego

package linalg

//go:noescape
func dot32FMA(a, b *float32, n int) float32

// hasFMA reports whether the CPU has AVX2 and FMA and the operating system
// saves the YMM registers.
var hasFMA = func() bool {
	_, _, ecx1, _ := cpuid(1, 0)
	return hasAVX2 && ecx1&(1<<12) != 0
}()

// dot32Fast sets *s to the dot product of the leading multiple of 32
// values of a and b with the FMA kernel and returns how many it used.
func dot32Fast(a, b []float32, s *float32) int {
	n := len(a) &^ 31
	if !hasFMA || n == 0 {
		return 0
	}
	*s = dot32FMA(&a[0], &b[0], n)
	return n
}
