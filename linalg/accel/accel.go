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
