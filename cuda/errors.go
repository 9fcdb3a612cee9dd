package cuda

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of Open, one per way that bringing up a GPU can fail, so callers
// (and linalg.Auto) can tell "no GPU here" from a broken installation with
// errors.Is. The errors returned wrap them with the details.
var (
	// ErrLibraryNotFound: the driver library (libcuda.so.1) cannot be
	// loaded, normally because no NVIDIA driver is installed.
	ErrLibraryNotFound = errors.New("cuda: driver library not found")
	// ErrSymbolMissing: the driver library lacks a function this package
	// binds (a driver older than CUDA 11, or not the NVIDIA driver).
	ErrSymbolMissing = errors.New("cuda: driver library lacks a required symbol")
	// ErrInit: cuInit failed (a stub library, a kernel module that does
	// not match the user-space driver, no permission on /dev/nvidia*).
	ErrInit = errors.New("cuda: cuInit failed")
	// ErrDriverTooOld: the driver is older than MinDriverVersion.
	ErrDriverTooOld = errors.New("cuda: driver too old")
	// ErrNoDevice: the driver works but sees no GPU (or not the one asked
	// for).
	ErrNoDevice = errors.New("cuda: no CUDA device")
	// ErrNoCUBLAS: cuBLAS (libcublas.so.13 or .12) cannot be loaded, so
	// the GEMM backend is unavailable; kernels and memory still work.
	ErrNoCUBLAS = errors.New("cuda: cuBLAS not found, GEMM unavailable")
	// ErrNoKernels: no PTX is embedded for the kernels (run make ptx on a
	// machine with nvcc) and NVRTC could not compile their sources.
	ErrNoKernels = errors.New("cuda: no kernels")
	// ErrClosed: the Device was closed.
	ErrClosed = errors.New("cuda: device closed")
)

// MinDriverVersion is the oldest driver API accepted, as cuDriverGetVersion
// reports it (1000·major + 10·minor): CUDA 11.0, which introduced
// cuDevicePrimaryCtxRelease_v2.
const MinDriverVersion = 11000

// Result is a CUresult, the status of a CUDA driver call. It implements
// error; its message is the C enumerator's name, so errors.Is(err,
// cuda.OutOfMemory) and a log line saying CUDA_ERROR_OUT_OF_MEMORY agree.
type Result int32

// Results that callers may want to test for.
const (
	Success           Result = 0
	InvalidValue      Result = 1
	OutOfMemory       Result = 2
	NotInitialized    Result = 3
	Deinitialized     Result = 4
	StubLibrary       Result = 34
	NoDevice          Result = 100
	InvalidDevice     Result = 101
	InvalidImage      Result = 200
	InvalidContext    Result = 201
	NoBinaryForGPU    Result = 209
	InvalidPTX        Result = 218
	UnsupportedPTX    Result = 222
	NotFound          Result = 500
	NotReady          Result = 600
	IllegalAddress    Result = 700
	LaunchOutOfRes    Result = 701
	LaunchTimeout     Result = 702
	LaunchFailed      Result = 719
	NotSupported      Result = 801
	SystemNotReady    Result = 802
	DriverMismatch    Result = 803
	CompatNotOnDevice Result = 804
	Unknown           Result = 999
)

// resultNames are the names of the CUresult codes of cuda.h (CUDA 12/13)
// that a program is likely to meet.
var resultNames = map[Result]string{
	0:   "CUDA_SUCCESS",
	1:   "CUDA_ERROR_INVALID_VALUE",
	2:   "CUDA_ERROR_OUT_OF_MEMORY",
	3:   "CUDA_ERROR_NOT_INITIALIZED",
	4:   "CUDA_ERROR_DEINITIALIZED",
	5:   "CUDA_ERROR_PROFILER_DISABLED",
	34:  "CUDA_ERROR_STUB_LIBRARY",
	46:  "CUDA_ERROR_DEVICE_UNAVAILABLE",
	100: "CUDA_ERROR_NO_DEVICE",
	101: "CUDA_ERROR_INVALID_DEVICE",
	102: "CUDA_ERROR_DEVICE_NOT_LICENSED",
	200: "CUDA_ERROR_INVALID_IMAGE",
	201: "CUDA_ERROR_INVALID_CONTEXT",
	205: "CUDA_ERROR_MAP_FAILED",
	206: "CUDA_ERROR_UNMAP_FAILED",
	209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	214: "CUDA_ERROR_ECC_UNCORRECTABLE",
	215: "CUDA_ERROR_UNSUPPORTED_LIMIT",
	216: "CUDA_ERROR_CONTEXT_ALREADY_IN_USE",
	218: "CUDA_ERROR_INVALID_PTX",
	219: "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT",
	220: "CUDA_ERROR_NVLINK_UNCORRECTABLE",
	221: "CUDA_ERROR_JIT_COMPILER_NOT_FOUND",
	222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	223: "CUDA_ERROR_JIT_COMPILATION_DISABLED",
	300: "CUDA_ERROR_INVALID_SOURCE",
	301: "CUDA_ERROR_FILE_NOT_FOUND",
	302: "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND",
	303: "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED",
	304: "CUDA_ERROR_OPERATING_SYSTEM",
	400: "CUDA_ERROR_INVALID_HANDLE",
	401: "CUDA_ERROR_ILLEGAL_STATE",
	500: "CUDA_ERROR_NOT_FOUND",
	600: "CUDA_ERROR_NOT_READY",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	703: "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING",
	708: "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE",
	709: "CUDA_ERROR_CONTEXT_IS_DESTROYED",
	710: "CUDA_ERROR_ASSERT",
	714: "CUDA_ERROR_HARDWARE_STACK_ERROR",
	715: "CUDA_ERROR_ILLEGAL_INSTRUCTION",
	716: "CUDA_ERROR_MISALIGNED_ADDRESS",
	717: "CUDA_ERROR_INVALID_ADDRESS_SPACE",
	718: "CUDA_ERROR_INVALID_PC",
	719: "CUDA_ERROR_LAUNCH_FAILED",
	720: "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE",
	800: "CUDA_ERROR_NOT_PERMITTED",
	801: "CUDA_ERROR_NOT_SUPPORTED",
	802: "CUDA_ERROR_SYSTEM_NOT_READY",
	803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
	804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
	999: "CUDA_ERROR_UNKNOWN",
}

// Name returns the C name of r, or CUresult(N) for a code not in the table.
func (r Result) Name() string {
	if s, ok := resultNames[r]; ok {
		return s
	}
	return fmt.Sprintf("CUresult(%d)", int32(r))
}

func (r Result) Error() string { return "cuda: " + r.Name() }

// Sticky reports whether r leaves the context unusable: after such an
// error every later call in the process fails, so the backend stops using
// the GPU.
func (r Result) Sticky() bool {
	switch r {
	case IllegalAddress, LaunchFailed, 710, 714, 715, 716, 717, 718, 214, 220:
		return true
	}
	return false
}

// BLASStatus is a cublasStatus_t. It implements error with the C name.
type BLASStatus int32

// cuBLAS statuses that callers may want to test for.
const (
	BLASSuccess         BLASStatus = 0
	BLASNotInitialized  BLASStatus = 1
	BLASAllocFailed     BLASStatus = 3
	BLASInvalidValue    BLASStatus = 7
	BLASArchMismatch    BLASStatus = 8
	BLASMappingError    BLASStatus = 11
	BLASExecutionFailed BLASStatus = 13
	BLASInternalError   BLASStatus = 14
	BLASNotSupported    BLASStatus = 15
	BLASLicenseError    BLASStatus = 16
)

var blasNames = map[BLASStatus]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// Name returns the C name of s, or cublasStatus_t(N) for an unknown code.
func (s BLASStatus) Name() string {
	if n, ok := blasNames[s]; ok {
		return n
	}
	return fmt.Sprintf("cublasStatus_t(%d)", int32(s))
}

func (s BLASStatus) Error() string { return "cuda: " + s.Name() }

// check turns a CUresult into an error naming the call, nil on success.
func check(call string, r int32) error {
	if r == 0 {
		return nil
	}
	return &CallError{Call: call, Err: Result(r)}
}

// checkBLAS is check for cuBLAS.
func checkBLAS(call string, s int32) error {
	if s == 0 {
		return nil
	}
	return &CallError{Call: call, Err: BLASStatus(s)}
}

// CallError is a failed driver, cuBLAS or NVRTC call: the function and its
// status (a Result or a BLASStatus), which errors.Is and errors.As see.
type CallError struct {
	Call string
	Err  error
}

func (e *CallError) Error() string {
	name := e.Err.Error()
	var r Result
	var s BLASStatus
	switch {
	case errors.As(e.Err, &r):
		name = r.Name()
	case errors.As(e.Err, &s):
		name = s.Name()
	}
	return "cuda: " + e.Call + ": " + name
}

func (e *CallError) Unwrap() error { return e.Err }

// kindError is an error of one of the kinds above (ErrInit, …) with its
// details and, when a call failed, that call's error; errors.Is sees both.
type kindError struct {
	kind   error
	detail string
	cause  error
}

// newError returns an error of the given kind. cause may be nil.
func newError(kind, cause error, format string, args ...any) error {
	return &kindError{kind: kind, detail: fmt.Sprintf(format, args...), cause: cause}
}

func (e *kindError) Error() string {
	s := e.kind.Error()
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.cause != nil {
		s += ": " + strings.TrimPrefix(e.cause.Error(), "cuda: ")
	}
	return s
}

func (e *kindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}
