package cuda

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// driverNames are the driver libraries tried in turn; the first is named in
// errors. libcuda.so.1 is what the driver installs; the unversioned name
// exists only with the toolkit's development links.
var driverNames = []string{"libcuda.so.1", "libcuda.so"}

// driverAPI holds the driver functions, bound by name. Types follow cuda.h
// on 64-bit Linux: CUresult and CUdevice are 32-bit ints, size_t and
// CUdeviceptr 64-bit, handles (CUcontext, CUstream, …) pointers, carried as
// uintptr since they point into driver memory the Go GC must not see.
//
// Where cuda.h maps a name to a _v2 symbol the _v2 symbol is bound, as the
// header would; the plain names are the CUDA 3 ABI with 32-bit sizes.
type driverAPI struct {
	lib string

	cuInit             func(flags uint32) int32
	cuDriverGetVersion func(v *int32) int32

	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uint64, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuCtxSynchronize          func() int32

	cuMemGetInfo      func(free, total *uint64) int32
	cuMemAlloc        func(ptr *uint64, bytes uint64) int32
	cuMemFree         func(ptr uint64) int32
	cuMemcpyHtoDAsync func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) int32
	cuMemcpyDtoHAsync func(dst unsafe.Pointer, src uint64, bytes uint64, stream uintptr) int32
	cuMemcpyDtoDAsync func(dst, src uint64, bytes uint64, stream uintptr) int32
	cuMemsetD8Async   func(dst uint64, v uint8, n uint64, stream uintptr) int32
	cuMemHostAlloc    func(p *unsafe.Pointer, bytes uint64, flags uint32) int32
	cuMemFreeHost     func(p unsafe.Pointer) int32

	cuStreamCreate      func(s *uintptr, flags uint32) int32
	cuStreamDestroy     func(s uintptr) int32
	cuStreamSynchronize func(s uintptr) int32
	cuStreamWaitEvent   func(s, e uintptr, flags uint32) int32
	cuEventCreate       func(e *uintptr, flags uint32) int32
	cuEventRecord       func(e, s uintptr) int32
	cuEventSynchronize  func(e uintptr) int32
	cuEventElapsedTime  func(ms *float32, start, end uintptr) int32
	cuEventDestroy      func(e uintptr) int32

	cuModuleLoadData    func(m *uintptr, image unsafe.Pointer) int32
	cuModuleGetFunction func(f *uintptr, m uintptr, name string) int32
	cuModuleUnload      func(m uintptr) int32
	cuLaunchKernel      func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params, extra unsafe.Pointer) int32
}

// symbol is a C function to bind: its names, best first (a newer ABI, then
// the one it replaced), and the Go function pointer to set.
type symbol struct {
	names []string
	fn    any
}

func sym(fn any, names ...string) symbol { return symbol{names, fn} }

// Device attributes (CUdevice_attribute).
const (
	attrMaxThreadsPerBlock = 1
	attrMultiprocessors    = 16
	attrComputeMajor       = 75
	attrComputeMinor       = 76
)

// Stream and event flags.
const (
	streamNonBlocking   = 1 // CU_STREAM_NON_BLOCKING: no implicit sync with stream 0
	eventDisableTiming  = 2 // CU_EVENT_DISABLE_TIMING
	eventDefault        = 0
	maxDeviceNameLength = 256
)

// The driver is loaded and initialised once per process.
var (
	driverOnce sync.Once
	driverLib  *driverAPI
	driverErr  error
)

func loadDriver() (*driverAPI, error) {
	driverOnce.Do(func() { driverLib, driverErr = openDriver(driverNames...) })
	return driverLib, driverErr
}

// openDriver loads the first of names that opens, initialises the driver
// and binds the rest of its functions. Each failure wraps its own sentinel
// error: ErrLibraryNotFound, ErrSymbolMissing, ErrInit, ErrNoDevice or
// ErrDriverTooOld.
func openDriver(names ...string) (*driverAPI, error) {
	h, lib, err := openFirst(names)
	if err != nil {
		return nil, newError(ErrLibraryNotFound, err, "")
	}
	d := &driverAPI{lib: lib}
	// cuInit and the version first, so that an old driver is reported as
	// too old rather than as lacking some newer symbol.
	if err := bindAll(h, lib, d.initSymbols()); err != nil {
		dlclose(h)
		return nil, err
	}
	if err := d.start(); err != nil {
		dlclose(h)
		return nil, err
	}
	if err := bindAll(h, lib, d.symbols()); err != nil {
		dlclose(h)
		return nil, err
	}
	return d, nil
}

// openFirst dlopens the first of names that loads.
func openFirst(names []string) (h uintptr, lib string, err error) {
	if len(names) == 0 {
		return 0, "", errors.New("no library name")
	}
	var first error
	for _, name := range names {
		h, err := dlopen(name)
		if err == nil {
			return h, name, nil
		}
		if first == nil {
			first = err
		}
	}
	if strings.Contains(first.Error(), names[0]) { // dlerror names it
		return 0, "", first
	}
	return 0, "", fmt.Errorf("%s: %w", names[0], first)
}

// bindAll binds every symbol, trying each of its names in turn, and reports
// the first that is missing as ErrSymbolMissing.
func bindAll(h uintptr, lib string, syms []symbol) error {
	for _, s := range syms {
		var addr uintptr
		for _, name := range s.names {
			if a, err := dlsym(h, name); err == nil && a != 0 {
				addr = a
				break
			}
		}
		if addr == 0 {
			return newError(ErrSymbolMissing, nil, "%s has no %s", lib, s.names[0])
		}
		bindFunc(s.fn, addr)
	}
	return nil
}

func (d *driverAPI) initSymbols() []symbol {
	return []symbol{
		sym(&d.cuInit, "cuInit"),
		sym(&d.cuDriverGetVersion, "cuDriverGetVersion"),
	}
}

func (d *driverAPI) symbols() []symbol {
	return []symbol{
		sym(&d.cuDeviceGetCount, "cuDeviceGetCount"),
		sym(&d.cuDeviceGet, "cuDeviceGet"),
		sym(&d.cuDeviceGetName, "cuDeviceGetName"),
		sym(&d.cuDeviceGetAttribute, "cuDeviceGetAttribute"),
		sym(&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2"),
		sym(&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
		sym(&d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
		sym(&d.cuCtxSetCurrent, "cuCtxSetCurrent"),
		sym(&d.cuCtxSynchronize, "cuCtxSynchronize"),
		sym(&d.cuMemGetInfo, "cuMemGetInfo_v2"),
		sym(&d.cuMemAlloc, "cuMemAlloc_v2"),
		sym(&d.cuMemFree, "cuMemFree_v2"),
		sym(&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
		sym(&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
		sym(&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
		sym(&d.cuMemsetD8Async, "cuMemsetD8Async"),
		sym(&d.cuMemHostAlloc, "cuMemHostAlloc"),
		sym(&d.cuMemFreeHost, "cuMemFreeHost"),
		sym(&d.cuStreamCreate, "cuStreamCreate"),
		sym(&d.cuStreamDestroy, "cuStreamDestroy_v2"),
		sym(&d.cuStreamSynchronize, "cuStreamSynchronize"),
		sym(&d.cuStreamWaitEvent, "cuStreamWaitEvent"),
		sym(&d.cuEventCreate, "cuEventCreate"),
		sym(&d.cuEventRecord, "cuEventRecord"),
		sym(&d.cuEventSynchronize, "cuEventSynchronize"),
		// CUDA 12.8 added a _v2 with the same signature; CUDA 13 headers
		// map the plain name to it.
		sym(&d.cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime"),
		sym(&d.cuEventDestroy, "cuEventDestroy_v2"),
		sym(&d.cuModuleLoadData, "cuModuleLoadData"),
		sym(&d.cuModuleGetFunction, "cuModuleGetFunction"),
		sym(&d.cuModuleUnload, "cuModuleUnload"),
		sym(&d.cuLaunchKernel, "cuLaunchKernel"),
	}
}

// start runs cuInit and checks the driver version.
func (d *driverAPI) start() error {
	if r := d.cuInit(0); r != 0 {
		err := &CallError{Call: "cuInit", Err: Result(r)}
		if Result(r) == NoDevice {
			return newError(ErrNoDevice, err, "%s", d.lib)
		}
		return newError(ErrInit, err, "%s", d.lib)
	}
	var v int32
	if err := check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return newError(ErrInit, err, "%s", d.lib)
	}
	if v < MinDriverVersion {
		return newError(ErrDriverTooOld, nil, "%s supports CUDA %s, need %s", d.lib, versionString(int(v)), versionString(MinDriverVersion))
	}
	return nil
}

// versionString formats a CUDA version number (1000·major + 10·minor).
func versionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// deviceCount returns the number of devices the driver sees.
func (d *driverAPI) deviceCount() (int, error) {
	var n int32
	if err := check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// query fills in the Info of device ordinal; it needs no context.
func (d *driverAPI) query(ordinal int) (dev int32, info Info, err error) {
	n, err := d.deviceCount()
	if err != nil {
		return 0, info, err
	}
	if ordinal < 0 || ordinal >= n {
		if n == 0 {
			return 0, info, newError(ErrNoDevice, nil, "the driver sees no GPU")
		}
		return 0, info, newError(ErrNoDevice, nil, "device %d asked for, the driver sees %d", ordinal, n)
	}
	if err := check("cuDeviceGet", d.cuDeviceGet(&dev, int32(ordinal))); err != nil {
		return 0, info, err
	}
	name := make([]byte, maxDeviceNameLength)
	if err := check("cuDeviceGetName", d.cuDeviceGetName(&name[0], int32(len(name)), dev)); err != nil {
		return 0, info, err
	}
	info.Ordinal = ordinal
	info.Name = cString(name)
	attr := func(a int32) (int, error) {
		var v int32
		err := check("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, a, dev))
		return int(v), err
	}
	for _, f := range []struct {
		dst  *int
		attr int32
	}{
		{&info.Major, attrComputeMajor},
		{&info.Minor, attrComputeMinor},
		{&info.SMs, attrMultiprocessors},
		{&info.MaxThreadsPerBlock, attrMaxThreadsPerBlock},
	} {
		if *f.dst, err = attr(f.attr); err != nil {
			return 0, info, err
		}
	}
	if err := check("cuDeviceTotalMem_v2", d.cuDeviceTotalMem(&info.Memory, dev)); err != nil {
		return 0, info, err
	}
	var v int32
	if err := check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return 0, info, err
	}
	info.DriverVersion = int(v)
	return dev, info, nil
}

// cString returns the text of a NUL-terminated buffer.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
