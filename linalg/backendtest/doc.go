// Package backendtest is the conformance suite of linalg.Backend: one call,
//
//	backendtest.Run(t, be)
//
// checks a backend's kernels against float64 references computed here on
// fresh seeded random inputs: Sgemm and Dgemm with every transpose
// combination, several α and β, strided views and odd shapes (1×1, k = 0,
// m = 0); CovAccumulate and CovAccumulate32 over two batches; CholeskySolve
// by its residual, with its errors for matrices that are not positive
// definite or not finite; Eigh by its residual, orthogonality and the
// reconstruction VΛVᵀ; the half-precision conversions on every binary16
// pattern and on special float32 values (NaN, ±Inf, subnormals, ties); panics
// on shape mismatches; and that results are bit-identical for GOMAXPROCS 1,
// 2 and 4.
//
// The tolerances are stated with each check: products and sums of k terms
// may be off by (k+2)·ε times the sum of the magnitudes of their terms, with
// ε = 2⁻⁵² for float64 and 2·2⁻²³ for float32 (allowing a float32 kernel to
// round its partial sums once more than the reference); solves and
// eigendecompositions by n·10⁻¹² relative to ‖A‖; conversions must be exact.
//
// Every backend package runs it from a test, skipping when the backend cannot
// open on the machine; linalg runs it on each registered backend.
package backendtest
