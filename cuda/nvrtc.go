package cuda

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// NVRTC, the CUDA runtime compiler, lets the kernels run on a machine where
// no PTX was generated (make ptx needs nvcc) but the NVRTC library is
// installed, as it is with the CUDA toolkit and with PyTorch's wheels. The
// sources in kernels/ are written to compile under both nvcc and NVRTC:
// they include no headers.
var nvrtcNames = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}

type nvrtcAPI struct {
	create  func(prog *uintptr, src *byte, name *byte, nHeaders int32, headers, includeNames unsafe.Pointer) int32
	compile func(prog uintptr, nOptions int32, options unsafe.Pointer) int32
	ptxSize func(prog uintptr, n *uint64) int32
	ptx     func(prog uintptr, buf *byte) int32
	logSize func(prog uintptr, n *uint64) int32
	log     func(prog uintptr, buf *byte) int32
	destroy func(prog *uintptr) int32
}

var (
	nvrtcOnce sync.Once
	nvrtcLib  *nvrtcAPI
	nvrtcErr  error
)

func loadNVRTC() (*nvrtcAPI, error) {
	nvrtcOnce.Do(func() {
		h, lib, err := openFirst(nvrtcNames)
		if err != nil {
			nvrtcErr = err
			return
		}
		n := new(nvrtcAPI)
		nvrtcErr = bindAll(h, lib, []symbol{
			sym(&n.create, "nvrtcCreateProgram"),
			sym(&n.compile, "nvrtcCompileProgram"),
			sym(&n.ptxSize, "nvrtcGetPTXSize"),
			sym(&n.ptx, "nvrtcGetPTX"),
			sym(&n.logSize, "nvrtcGetProgramLogSize"),
			sym(&n.log, "nvrtcGetProgramLog"),
			sym(&n.destroy, "nvrtcDestroyProgram"),
		})
		if nvrtcErr != nil {
			dlclose(h)
			return
		}
		nvrtcLib = n
	})
	return nvrtcLib, nvrtcErr
}

// compileNVRTC compiles CUDA C source to PTX for compute capability
// major.minor, falling back to compute_80 (what make ptx targets) when
// this NVRTC does not know the device's architecture.
func compileNVRTC(name string, src []byte, major, minor int) ([]byte, error) {
	n, err := loadNVRTC()
	if err != nil {
		return nil, err
	}
	archs := []string{fmt.Sprintf("compute_%d%d", major, minor)}
	if archs[0] != "compute_80" {
		archs = append(archs, "compute_80")
	}
	var errs []string
	for _, arch := range archs {
		ptx, err := n.compileFor(name, src, arch)
		if err == nil {
			return ptx, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
}

func (n *nvrtcAPI) compileFor(name string, src []byte, arch string) ([]byte, error) {
	csrc, cname := cBytes(string(src)), cBytes(name)
	var prog uintptr
	if r := n.create(&prog, &csrc[0], &cname[0], 0, nil, nil); r != 0 {
		return nil, fmt.Errorf("nvrtcCreateProgram(%s): NVRTC error %d", name, r)
	}
	defer n.destroy(&prog)
	opts := [][]byte{cBytes("--gpu-architecture=" + arch), cBytes("--std=c++14")}
	ptrs := make([]*byte, len(opts))
	for i, o := range opts {
		ptrs[i] = &o[0]
	}
	r := n.compile(prog, int32(len(ptrs)), unsafe.Pointer(&ptrs[0]))
	runtime.KeepAlive(opts)
	runtime.KeepAlive(ptrs)
	if r != 0 {
		return nil, fmt.Errorf("nvrtcCompileProgram(%s, %s): NVRTC error %d: %s", name, arch, r, n.programLog(prog))
	}
	var size uint64
	if r := n.ptxSize(prog, &size); r != 0 || size == 0 {
		return nil, fmt.Errorf("nvrtcGetPTXSize(%s): NVRTC error %d", name, r)
	}
	buf := make([]byte, size)
	if r := n.ptx(prog, &buf[0]); r != 0 {
		return nil, fmt.Errorf("nvrtcGetPTX(%s): NVRTC error %d", name, r)
	}
	return []byte(cString(buf)), nil
}

func (n *nvrtcAPI) programLog(prog uintptr) string {
	var size uint64
	if n.logSize(prog, &size) != 0 || size <= 1 {
		return "(no log)"
	}
	buf := make([]byte, size)
	if n.log(prog, &buf[0]) != 0 {
		return "(no log)"
	}
	return strings.TrimSpace(cString(buf))
}

// cBytes returns s as a NUL-terminated byte slice.
func cBytes(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}
