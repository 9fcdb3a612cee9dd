// Package quant implements the exact integer scoring of DESIGN §11: the
// symmetric per-row int8 quantisation of projected (and, for queries,
// preconditioned) gradients, and exact int8 dot products.
//
// Float scores differ in their last bits between BLAS kernels, thread
// counts and GPUs, so that a recomputation elsewhere may rank two examples
// the other way and a commitment to scores cannot be checked. Sums of int8
// products accumulated in int32 are exact whatever the order, so every
// kernel of this package, and the GPU's int8 GEMM, returns the same
// integers, and Score turns them into the same float32 on every machine.
//
// A row x is quantised with its own scale:
//
//	m = max_j |x_j|,  scale = float32(float64(m) / 127)
//	q_j = clamp(RoundHalfEven(float64(x_j) / float64(scale)), −127, 127)
//
// (a row with m = 0 has scale 0 and q = 0), and the score of a query q with
// scale s_q against a row t with scale s_t is
//
//	isum  = Σ_j q_j·t_j                  (int32, exact)
//	score = float32(float64(isum) · float64(s_q) · float64(s_t))
//
// evaluated left to right. Rankings order by score descending, ties by
// example id ascending. Rows are at most MaxDim values long, so that no
// isum overflows.
//
// Kernels compute the integer sums. Kernels lists those the CPU runs, best
// first; Default picks one at run time (GOINFLUENCE_I8_KERNEL overrides the
// choice). Every kernel gives the same integers; they differ only in speed.
package quant
