// Package cuda runs goinfluence on NVIDIA GPUs: it is a linalg.Backend
// whose products run on cuBLAS, plus kernels of its own for the steps of
// the pipeline that are not BLAS (seeded projections, EK-FAC scaling,
// row-wise top-k, half-precision widening).
//
// Importing the package registers the backend with linalg under the name
// "cuda" at priority 30, so linalg.Auto picks it when a GPU answers:
//
//	import _ "github.com/goinfluence/goinfluence/cuda"
//
// When it cannot open (no driver, no GPU, no cuBLAS), Auto falls back to
// OpenBLAS or pure Go without a word; GOINFLUENCE_BACKEND=cuda makes that an
// error that says why.
//
// # No cgo, no toolkit at build time
//
// The driver (libcuda.so.1), cuBLAS (libcublas.so.13, else .12) and, when
// needed, NVRTC are loaded at run time with purego, so the package builds
// with CGO_ENABLED=0 and without CUDA headers, and the same binary runs on
// machines with and without a GPU. Each way of failing to load has its own
// error (ErrLibraryNotFound, ErrSymbolMissing, ErrInit, ErrDriverTooOld,
// ErrNoDevice, ErrNoCUBLAS, ErrNoKernels), and failed calls carry their
// CUresult or cublasStatus_t by name (CUDA_ERROR_OUT_OF_MEMORY, …), as the
// Result and BLASStatus types.
//
// # Devices
//
// A Device is one GPU's primary context (cuDevicePrimaryCtxRetain, never a
// context of its own, so it shares the GPU with the CUDA runtime of other
// libraries in the process). One goroutine, locked to its OS thread, owns
// the context and makes every CUDA call; methods hand it their work and
// wait. Device memory comes from a pool with size classes, because
// cuMemAlloc and cuMemFree synchronise the device. Streams, events, PTX
// modules and kernel launches are exposed for code that keeps data on the
// GPU across calls.
//
// # Kernels
//
// The kernels are CUDA C in kernels/*.cu. `make ptx` compiles them with
// nvcc -ptx -arch=compute_80 into kernels/*.ptx, which are embedded and
// loaded with cuModuleLoadData; the driver compiles the PTX for the GPU at
// hand. Where no PTX was generated, the embedded sources are compiled at
// run time with NVRTC if libnvrtc is installed; otherwise the kernel
// methods fail with ErrNoKernels while the cuBLAS backend still works.
//
// Each kernel has a CPU reference in reference.go with the same semantics
// bit for bit, which the tests hold to the code it must reproduce:
// gradients' Philox projections, influence.TopK's order, linalg's
// conversions, ekfac's reciprocal in float64. Results never depend on the
// launch shape or the GPU model.
//
// # Streamed scoring
//
// Backend implements linalg.ScoreStreamer, which influence.StreamScores and
// StreamCheckpoints use: the queries stay on the GPU, and each chunk of
// store rows goes there in its stored precision (f16 and bf16 are half the
// bytes of float32) through page-locked staging buffers, on a copy stream,
// while the chunk before is widened, multiplied (cuBLAS, in fixed blocks of
// 1024 rows, so that the chunking does not change a score) and reduced to
// its top-k on a compute stream; events order the two. Only the top-k
// candidates come back, or the scores when they are asked for. The scores
// are cuBLAS's, equal to the host's to float32 rounding, not bit for bit.
//
// # Exact integer sums
//
// Backend implements accel.Int8Gemmer for the exact scoring of package
// quant: GemmI8 multiplies int8 rows into int32 sums with cublasGemmEx
// (CUBLAS_COMPUTE_32I). Integer sums do not depend on their order, so these
// equal quant's CPU kernels bit for bit, and so do the scores and rankings
// made from them.
//
// # Testing
//
// Tests that need a GPU skip with "cuda: no GPU: <reason>" elsewhere. The
// rest run on a fake driver written in Go, whose stream work runs only when
// the host waits for it and is checked for races between streams.
// `make gpu-test` cross-compiles the test binaries into .gpu/ for a GPU
// machine that has no Go.
package cuda
