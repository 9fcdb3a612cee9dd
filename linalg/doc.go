// Package linalg holds the dense linear algebra that goinfluence runs on:
// matrix products, covariance sums, Cholesky solves and symmetric
// eigendecompositions, in float32 and float64, and conversions between
// float32 and the half-precision formats binary16 and bfloat16.
//
// # Matrices
//
// Dense64 and Dense32 are row-major: element (i, j) of m lies at
// m.Data[i*m.Stride+j]. A matrix may be a view into a larger one, with
// Stride greater than Cols, as Slice returns; kernels read and write only
// the elements inside the view. Matrices are plain structs with exported
// fields, so data from elsewhere (a memory-mapped file, a tensor) can be
// wrapped without copying.
//
// Symmetric inputs to CholeskySolve and Eigh are read from the lower
// triangle only (j ≤ i); the strict upper triangle may hold anything.
//
// # Backends
//
// The kernels are the methods of a Backend. Every backend computes the same
// results to rounding, and a backend's results do not depend on how many
// threads it uses. Shape mismatches are programming errors and panic, as in
// gonum's mat; conditions of the data (a matrix that is not positive
// definite, a NaN) are returned as errors.
//
// The backends are
//
//	cpu       pure Go on gonum; always available (priority 10)
//	openblas  OpenBLAS loaded at run time with purego, so without cgo;
//	          available where libopenblas can be loaded (priority 20)
//	cuda      NVIDIA GPUs; registered by another package when imported
//	          (priority 30)
//
// The openblas backend needs no C toolchain at build time and works with
// CGO_ENABLED=0; OpenBLAS runs its own threads, set by OPENBLAS_NUM_THREADS.
//
// Backends register themselves with Register in an init function, as
// database/sql drivers do, and are opened (their libraries loaded) on first
// use by Open.
//
// # Choosing a backend
//
// Auto picks the backend. When the environment variable
// GOINFLUENCE_BACKEND is set to a backend name (cpu, openblas or cuda),
// that backend is used, and failing to open it is an error rather than a
// silent fallback; the value "auto" is the same as leaving it unset.
// Otherwise Auto returns the registered backend of highest priority that
// opens: cuda, then openblas, then cpu. Default is Auto for callers without
// an error return: it panics when a forced backend cannot open (check Auto
// once at start-up), and OrAuto resolves an optional backend argument.
// Library functions take their backend as an argument or an options field
// (nil meaning Auto's choice, resolved once at the call) and pass it down,
// so the backend a program opens governs everything it runs.
//
// MeasureGemm times a backend's matrix product, to compare backends on a
// machine.
//
// # Writing a backend
//
// A backend in another package implements Backend, validates its arguments
// with GemmStart and CovStart so that it panics and handles degenerate
// shapes exactly as the built-in ones do, and registers itself with
// Register. The package linalg/backendtest is the conformance suite every
// backend must pass: backendtest.Run(t, be) checks all the methods against
// float64 references.
//
// A backend may also implement ScoreStreamer, to score rows streamed from
// host memory in their stored precision against queries it keeps (the
// cuda backend does); influence's streamed scoring uses it when present.
package linalg
