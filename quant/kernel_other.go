//go:build !amd64

package quant

func cpuKernels() []Kernel { return nil }
