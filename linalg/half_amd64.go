//go:build amd64 && !purego

package linalg

// The widening kernels below convert 32 values per iteration with F16C
// (vcvtph2ps) and AVX2 (vpmovzxwd + vpslld). Widening is exact, so they give
// the same bits as the table and the shift; they matter because an f16 or
// bf16 store streams into Sgemm only as fast as it widens, on the same cores.

//go:noescape
func f16ToF32F16C(dst *float32, src *uint16, n int)

//go:noescape
func bf16ToF32AVX2(dst *float32, src *uint16, n int)

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
func xgetbv() (eax, edx uint32)

// hasF16C and hasAVX2 report whether the CPU has the instructions and the
// operating system saves the YMM registers they use.
var hasF16C, hasAVX2 = func() (f16c, avx2 bool) {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return false, false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		osxsave = 1 << 27
		avx     = 1 << 28
		f16cBit = 1 << 29
	)
	if ecx1&osxsave == 0 || ecx1&avx == 0 {
		return false, false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 { // XMM and YMM state enabled
		return false, false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ecx1&f16cBit != 0, ebx7&(1<<5) != 0
}()

// widenBlock is the number of values the kernels convert per iteration.
const widenBlock = 32

// f16ToF32Fast converts the leading multiple of widenBlock values of src
// and returns how many it converted.
func f16ToF32Fast(dst []float32, src []uint16) int {
	n := len(src) &^ (widenBlock - 1)
	if !hasF16C || n == 0 {
		return 0
	}
	f16ToF32F16C(&dst[0], &src[0], n)
	return n
}

// bf16ToF32Fast is f16ToF32Fast for bfloat16.
func bf16ToF32Fast(dst []float32, src []uint16) int {
	n := len(src) &^ (widenBlock - 1)
	if !hasAVX2 || n == 0 {
		return 0
	}
	bf16ToF32AVX2(&dst[0], &src[0], n)
	return n
}

func hasF16CKernel() bool { return hasF16C }
func hasBF16Kernel() bool { return hasAVX2 }
