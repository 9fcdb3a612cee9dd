package cuda

import "sync"

// cublasNames are the cuBLAS libraries tried in turn: CUDA 13, then 12.
var cublasNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"}

// blasAPI holds the cuBLAS functions (the _v2 API of cublas_v2.h). Matrices
// are column-major; dimensions are 32-bit ints, device pointers 64-bit and
// α, β host pointers (the default CUBLAS_POINTER_MODE_HOST).
type blasAPI struct {
	lib string

	create      func(h *uintptr) int32
	destroy     func(h uintptr) int32
	setStream   func(h, s uintptr) int32
	setMathMode func(h uintptr, mode int32) int32
	getVersion  func(h uintptr, v *int32) int32

	sgemm func(h uintptr, tA, tB, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) int32
	dgemm func(h uintptr, tA, tB, m, n, k int32, alpha *float64, a uint64, lda int32, b uint64, ldb int32, beta *float64, c uint64, ldc int32) int32
	ssyrk func(h uintptr, uplo, trans, n, k int32, alpha *float32, a uint64, lda int32, beta *float32, c uint64, ldc int32) int32
	dsyrk func(h uintptr, uplo, trans, n, k int32, alpha *float64, a uint64, lda int32, beta *float64, c uint64, ldc int32) int32
	sdgmm func(h uintptr, side, m, n int32, a uint64, lda int32, x uint64, incx int32, c uint64, ldc int32) int32
	// gemmEx is cublasGemmEx, bound for the int8 product of GemmI8 only:
	// α and β point at int32, the scale type of CUBLAS_COMPUTE_32I.
	gemmEx func(h uintptr, tA, tB, m, n, k int32, alpha *int32, a uint64, aType, lda int32, b uint64, bType, ldb int32,
		beta *int32, c uint64, cType, ldc int32, compute, algo int32) int32
}

// cuBLAS enumerations.
const (
	cublasOpN        = 0 // CUBLAS_OP_N
	cublasOpT        = 1 // CUBLAS_OP_T
	cublasFillLower  = 0 // CUBLAS_FILL_MODE_LOWER
	cublasSideLeft   = 0 // CUBLAS_SIDE_LEFT
	cublasDefaultMth = 0 // CUBLAS_DEFAULT_MATH
	cublasTF32Math   = 3 // CUBLAS_TF32_TENSOR_OP_MATH
)

// The types of cublasGemmEx's int8 product: cudaDataType_t values of
// library_types.h, and the cublasComputeType_t and cublasGemmAlgo_t of
// cublas_api.h (CUDA 11 and later; the values have not changed since).
const (
	cudaR8I           = 3  // CUDA_R_8I: signed 8-bit integers
	cudaR32I          = 10 // CUDA_R_32I: signed 32-bit integers
	cublasCompute32I  = 72 // CUBLAS_COMPUTE_32I: int32 accumulation and scale type
	cublasGemmDefault = -1 // CUBLAS_GEMM_DEFAULT: cuBLAS's heuristic picks the kernel
)

var (
	cublasOnce sync.Once
	cublasLib  *blasAPI
	cublasErr  error
)

// loadCUBLAS loads cuBLAS once per process; failures wrap ErrNoCUBLAS.
func loadCUBLAS() (*blasAPI, error) {
	cublasOnce.Do(func() { cublasLib, cublasErr = openCUBLAS(cublasNames...) })
	return cublasLib, cublasErr
}

func openCUBLAS(names ...string) (*blasAPI, error) {
	h, lib, err := openFirst(names)
	if err != nil {
		return nil, newError(ErrNoCUBLAS, err, "")
	}
	b := &blasAPI{lib: lib}
	err = bindAll(h, lib, []symbol{
		sym(&b.create, "cublasCreate_v2"),
		sym(&b.destroy, "cublasDestroy_v2"),
		sym(&b.setStream, "cublasSetStream_v2"),
		sym(&b.setMathMode, "cublasSetMathMode"),
		sym(&b.getVersion, "cublasGetVersion_v2"),
		sym(&b.sgemm, "cublasSgemm_v2"),
		sym(&b.dgemm, "cublasDgemm_v2"),
		sym(&b.ssyrk, "cublasSsyrk_v2"),
		sym(&b.dsyrk, "cublasDsyrk_v2"),
		sym(&b.sdgmm, "cublasSdgmm"),
		sym(&b.gemmEx, "cublasGemmEx"),
	})
	if err != nil {
		dlclose(h)
		return nil, newError(ErrNoCUBLAS, err, "")
	}
	return b, nil
}

// blasHandle returns the device's cuBLAS handle, bound to its stream,
// creating it on first use. It runs on the device goroutine.
func (d *Device) blasHandle() (*blasAPI, uintptr, error) {
	b, err := d.cublas()
	if err != nil {
		return nil, 0, err
	}
	if d.blas == 0 {
		var h uintptr
		if err := checkBLAS("cublasCreate_v2", b.create(&h)); err != nil {
			return nil, 0, err
		}
		if err := checkBLAS("cublasSetStream_v2", b.setStream(h, d.stream)); err != nil {
			b.destroy(h)
			return nil, 0, err
		}
		d.blas = h
	}
	return b, d.blas, nil
}

// cublas returns the cuBLAS of the device: the library, or the stand-in a
// test has set.
func (d *Device) cublas() (*blasAPI, error) {
	if d.blasLib != nil {
		return d.blasLib, nil
	}
	return loadCUBLAS()
}

// BLASVersion returns the version of the cuBLAS in use (e.g. 130001 for
// 13.0.1), or an error wrapping ErrNoCUBLAS when there is none.
func (d *Device) BLASVersion() (int, error) {
	var v int32
	err := d.do(func() error {
		b, h, err := d.blasHandle()
		if err != nil {
			return err
		}
		return checkBLAS("cublasGetVersion_v2", b.getVersion(h, &v))
	})
	return int(v), err
}
