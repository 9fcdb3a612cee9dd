package cuda

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"runtime"
	"unsafe"
)

// kernelFiles holds the kernel sources (kernels/*.cu) and, once make ptx
// has generated and committed them, their PTX (kernels/*.ptx). Embedding
// the directory rather than *.ptx keeps the package building when no PTX
// exists yet.
//
//go:embed kernels
var kernelFiles embed.FS

// Module is a loaded PTX module.
type Module struct {
	d *Device
	m uintptr
}

// Function is a kernel of a module.
type Function struct {
	m    *Module
	f    uintptr
	name string
}

// Dim3 is a grid or block shape; zero components count as 1.
type Dim3 struct{ X, Y, Z int }

// LoadPTX loads a module from PTX text with cuModuleLoadData, which
// compiles it for the device (the JIT caches the result on disk).
func (d *Device) LoadPTX(ptx []byte) (*Module, error) {
	m := &Module{d: d}
	err := d.do(func() (err error) { m.m, err = d.loadPTX(ptx); return err })
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d *Device) loadPTX(ptx []byte) (uintptr, error) {
	// cuModuleLoadData reads PTX up to a NUL.
	img := make([]byte, len(ptx)+1)
	copy(img, ptx)
	var m uintptr
	err := check("cuModuleLoadData", d.api.cuModuleLoadData(&m, unsafe.Pointer(&img[0])))
	runtime.KeepAlive(img)
	if err != nil {
		return 0, err
	}
	d.modules[m] = true
	return m, nil
}

// Function returns the kernel called name (its extern "C" name).
func (m *Module) Function(name string) (*Function, error) {
	f := &Function{m: m, name: name}
	err := m.d.do(func() (err error) { f.f, err = m.d.function(m.m, name); return err })
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (d *Device) function(m uintptr, name string) (uintptr, error) {
	var f uintptr
	if err := check("cuModuleGetFunction("+name+")", d.api.cuModuleGetFunction(&f, m, name)); err != nil {
		return 0, err
	}
	return f, nil
}

// Close unloads the module.
func (m *Module) Close() error {
	return m.d.do(func() error {
		if !m.d.modules[m.m] {
			return fmt.Errorf("cuda: module closed twice")
		}
		delete(m.d.modules, m.m)
		return check("cuModuleUnload", m.d.api.cuModuleUnload(m.m))
	})
}

// Launch queues kernel f on stream s (nil: the device's own stream) with
// the given grid, block and dynamic shared memory. The arguments are
// *Buffer (passed as its device pointer), uint64, int64, int32, uint32,
// float32 and float64, matching the kernel's parameters; int is refused
// because C's int is 32 bits. Launch does not wait for the kernel.
func (d *Device) Launch(f *Function, grid, block Dim3, shared int, s *Stream, args ...any) error {
	if f.m.d != d {
		return fmt.Errorf("cuda: Launch: %s belongs to another device", f.name)
	}
	return d.do(func() error { return d.launch(f.f, f.name, grid, block, shared, s.handle(d), args...) })
}

// launch runs on the device goroutine.
func (d *Device) launch(f uintptr, name string, grid, block Dim3, shared int, stream uintptr, args ...any) error {
	vals := make([]uint64, len(args)+1)
	params := make([]unsafe.Pointer, len(args)+1)
	for i, a := range args {
		switch v := a.(type) {
		case *Buffer:
			vals[i] = v.ptr
		case uint64:
			vals[i] = v
		case int64:
			vals[i] = uint64(v)
		case int32:
			vals[i] = uint64(uint32(v))
		case uint32:
			vals[i] = uint64(v)
		case float32:
			vals[i] = uint64(math.Float32bits(v))
		case float64:
			vals[i] = math.Float64bits(v)
		default:
			return fmt.Errorf("cuda: Launch %s: argument %d has unsupported type %T", name, i, a)
		}
		// Little-endian: a 4-byte argument is the low half of its slot.
		params[i] = unsafe.Pointer(&vals[i])
	}
	dims := [6]int{grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z}
	var u [6]uint32
	for i, v := range dims {
		if v == 0 {
			v = 1
		}
		if v < 0 || v > math.MaxInt32 {
			return fmt.Errorf("cuda: Launch %s: bad grid %v or block %v", name, grid, block)
		}
		u[i] = uint32(v)
	}
	if shared < 0 || shared > math.MaxInt32 {
		return fmt.Errorf("cuda: Launch %s: shared memory %d", name, shared)
	}
	err := check("cuLaunchKernel("+name+")", d.api.cuLaunchKernel(f, u[0], u[1], u[2], u[3], u[4], u[5], uint32(shared), stream, unsafe.Pointer(&params[0]), nil))
	runtime.KeepAlive(vals)
	runtime.KeepAlive(params)
	return err
}

// kernelModules are the kernel sources, kernels/<name>.cu.
var kernelModules = []string{"convert", "project", "ekfac", "topk"}

// kernelSet holds the functions of the package's own kernels.
type kernelSet struct {
	f16ToF32, bf16ToF32          uintptr
	rademacherF64, rademacherF32 uintptr
	sjltHash, sjltGather         uintptr
	ekfacScaleF64, ekfacScaleF32 uintptr
	topkF32                      uintptr
}

// PTXSource says where the kernels' PTX comes from: "embedded" when make
// ptx has generated it, "nvrtc" when it was compiled at run time from the
// embedded sources, or "" when there is none (see ErrNoKernels).
func (d *Device) PTXSource() string {
	var src string
	d.do(func() error {
		if _, err := d.kernels(); err == nil {
			src = d.kernSource
		}
		return nil
	})
	return src
}

// kernels loads the package's kernels on first use; it runs on the device
// goroutine. The PTX is the embedded kernels/<name>.ptx or, when that is
// missing, the embedded source compiled with NVRTC if the library is
// present. Failure is remembered and returned as ErrNoKernels.
func (d *Device) kernels() (*kernelSet, error) {
	if d.kern != nil || d.kernErr != nil {
		return d.kern, d.kernErr
	}
	k := new(kernelSet)
	fns := map[string]*uintptr{
		"f16_to_f32": &k.f16ToF32, "bf16_to_f32": &k.bf16ToF32,
		"rademacher_f64": &k.rademacherF64, "rademacher_f32": &k.rademacherF32,
		"sjlt_hash": &k.sjltHash, "sjlt_gather_f64": &k.sjltGather,
		"ekfac_scale_f64": &k.ekfacScaleF64, "ekfac_scale_f32": &k.ekfacScaleF32,
		"topk_f32": &k.topkF32,
	}
	source := "embedded"
	for _, name := range kernelModules {
		ptx, err := fs.ReadFile(kernelFiles, "kernels/"+name+".ptx")
		if err != nil {
			src, serr := fs.ReadFile(kernelFiles, "kernels/"+name+".cu")
			if serr != nil {
				d.kernErr = newError(ErrNoKernels, serr, "kernels/%s.cu", name)
				return nil, d.kernErr
			}
			var cerr error
			ptx, cerr = compileNVRTC(name+".cu", src, d.info.Major, d.info.Minor)
			if cerr != nil {
				d.kernErr = newError(ErrNoKernels, cerr, "kernels/%s.ptx is not embedded (run make ptx where nvcc is installed) and NVRTC could not compile kernels/%s.cu", name, name)
				return nil, d.kernErr
			}
			source = "nvrtc"
		}
		m, err := d.loadPTX(ptx)
		if err != nil {
			d.kernErr = newError(ErrNoKernels, err, "loading kernels/%s", name)
			return nil, d.kernErr
		}
		for fn, dst := range fns {
			if *dst != 0 {
				continue
			}
			if f, err := d.function(m, fn); err == nil {
				*dst = f
			} else if !errors.Is(err, NotFound) {
				d.kernErr = newError(ErrNoKernels, err, "kernels/%s", name)
				return nil, d.kernErr
			}
		}
	}
	for fn, dst := range fns {
		if *dst == 0 {
			d.kernErr = newError(ErrNoKernels, nil, "no kernel %s in kernels/*.cu", fn)
			return nil, d.kernErr
		}
	}
	d.kern, d.kernSource = k, source
	return k, nil
}
