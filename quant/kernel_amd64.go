package quant

// cpuKernels returns the assembly kernels this CPU supports, best first.
func cpuKernels() []Kernel { return nil }
