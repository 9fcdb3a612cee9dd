package accel

// Projector applies the seeded projections of shared/DESIGN.md §4 to rows
// of values: x holds rows of d values, dst receives rows of k. Entries are
// generated from Philox4x32-10 under the key of seed at the given stream
// (layerIndex<<2 | role), never stored, and every output is summed over
// its inputs in increasing order, so that the result equals the host's
// (package gradients) bit for bit.
type Projector interface {
	// ProjectRademacher applies the dense ±1/√k projection.
	ProjectRademacher(dst, x []float64, d, k int, seed uint64, stream uint32) error
	// ProjectSJLT applies the sparse projection with one ±1 per input.
	ProjectSJLT(dst, x []float64, d, k int, seed uint64, stream uint32) error
}

// EKFACScaler performs the middle step of EK-FAC preconditioning: x, rows
// of len(lambda) gradients rotated into the Kronecker eigenbasis, is scaled
// element-wise by the float64 reciprocal 1/(Λ + δ), as package ekfac does on
// the host. An entry with Λ + δ not positive is an error.
type EKFACScaler interface {
	ScaleEKFAC(x, lambda []float64, delta float64) error
}

// Int8Gemmer multiplies int8 matrices exactly into int32, for the exact
// integer scoring of DESIGN §11 (package quant): out[i·n+r] =
// Σ_{j<dim} a[i·dim+j]·b[r·dim+j] for a m×dim and b n×dim, row-major, and
// out m×n. The sums must equal those of package quant's kernels, bit for
// bit: int32 accumulation, wrapping modulo 2³² alike where they overflow.
type Int8Gemmer interface {
	GemmI8(out []int32, a []int8, m int, b []int8, n, dim int) error
}
