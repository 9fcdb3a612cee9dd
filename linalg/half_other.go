//go:build !amd64 || purego

package linalg

func f16ToF32Fast(dst []float32, src []uint16) int  { return 0 }
func bf16ToF32Fast(dst []float32, src []uint16) int { return 0 }

func hasF16CKernel() bool { return false }
func hasBF16Kernel() bool { return false }
