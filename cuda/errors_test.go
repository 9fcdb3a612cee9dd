package cuda

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestResultNames(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Success, "CUDA_SUCCESS"},
		{OutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY"},
		{NoDevice, "CUDA_ERROR_NO_DEVICE"},
		{InvalidPTX, "CUDA_ERROR_INVALID_PTX"},
		{UnsupportedPTX, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"},
		{IllegalAddress, "CUDA_ERROR_ILLEGAL_ADDRESS"},
		{LaunchFailed, "CUDA_ERROR_LAUNCH_FAILED"},
		{NotFound, "CUDA_ERROR_NOT_FOUND"},
		{StubLibrary, "CUDA_ERROR_STUB_LIBRARY"},
		{Result(12345), "CUresult(12345)"},
	} {
		if got := tc.r.Name(); got != tc.want {
			t.Errorf("Result(%d).Name() = %q, want %q", int32(tc.r), got, tc.want)
		}
		if got := tc.r.Error(); got != "cuda: "+tc.want {
			t.Errorf("Result(%d).Error() = %q", int32(tc.r), got)
		}
	}
	// Every name in the table is a distinct CUDA_ name.
	seen := map[string]Result{}
	for r, n := range resultNames {
		if !strings.HasPrefix(n, "CUDA_") {
			t.Errorf("%d: name %q", r, n)
		}
		if o, dup := seen[n]; dup {
			t.Errorf("%q for both %d and %d", n, r, o)
		}
		seen[n] = r
	}
	if !IllegalAddress.Sticky() || OutOfMemory.Sticky() || NoDevice.Sticky() {
		t.Error("Sticky: want only context-destroying errors")
	}
}

func TestBLASStatusNames(t *testing.T) {
	for _, tc := range []struct {
		s    BLASStatus
		want string
	}{
		{BLASSuccess, "CUBLAS_STATUS_SUCCESS"},
		{BLASNotInitialized, "CUBLAS_STATUS_NOT_INITIALIZED"},
		{BLASAllocFailed, "CUBLAS_STATUS_ALLOC_FAILED"},
		{BLASInvalidValue, "CUBLAS_STATUS_INVALID_VALUE"},
		{BLASArchMismatch, "CUBLAS_STATUS_ARCH_MISMATCH"},
		{BLASExecutionFailed, "CUBLAS_STATUS_EXECUTION_FAILED"},
		{BLASInternalError, "CUBLAS_STATUS_INTERNAL_ERROR"},
		{BLASNotSupported, "CUBLAS_STATUS_NOT_SUPPORTED"},
		{BLASStatus(99), "cublasStatus_t(99)"},
	} {
		if got := tc.s.Name(); got != tc.want {
			t.Errorf("BLASStatus(%d).Name() = %q, want %q", int32(tc.s), got, tc.want)
		}
	}
}

func TestCallErrors(t *testing.T) {
	if check("cuMemAlloc_v2", 0) != nil || checkBLAS("cublasSgemm_v2", 0) != nil {
		t.Fatal("success reported as an error")
	}
	err := fmt.Errorf("uploading: %w", check("cuMemAlloc_v2", 2))
	if !errors.Is(err, OutOfMemory) {
		t.Errorf("%v: not errors.Is OutOfMemory", err)
	}
	var ce *CallError
	if !errors.As(err, &ce) || ce.Call != "cuMemAlloc_v2" {
		t.Errorf("%v: no CallError for cuMemAlloc_v2", err)
	}
	if want := "uploading: cuda: cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	berr := checkBLAS("cublasSgemm_v2", 13)
	if !errors.Is(berr, BLASExecutionFailed) || berr.Error() != "cuda: cublasSgemm_v2: CUBLAS_STATUS_EXECUTION_FAILED" {
		t.Errorf("cuBLAS error %v", berr)
	}
	kerr := newError(ErrInit, check("cuInit", 34), "libcuda.so.1")
	if !errors.Is(kerr, ErrInit) || !errors.Is(kerr, StubLibrary) {
		t.Errorf("%v: want ErrInit and StubLibrary", kerr)
	}
	if want := "cuda: cuInit failed: libcuda.so.1: cuInit: CUDA_ERROR_STUB_LIBRARY"; kerr.Error() != want {
		t.Errorf("message %q, want %q", kerr, want)
	}
	if e := newError(ErrNoKernels, nil, ""); e.Error() != ErrNoKernels.Error() {
		t.Errorf("bare kind error %q", e)
	}
}
