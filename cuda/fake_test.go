package cuda

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/backendtest"
)

// fakeDriver stands in for libcuda: enough of the driver API, in Go, to
// test Device (the owning goroutine, the pool, copies, streams, launches,
// Close) without a GPU. Device memory is Go memory behind made-up
// addresses. Every call checks that it runs on the device's thread and
// that no other call is in flight.
type fakeDriver struct {
	t        *testing.T
	mu       sync.Mutex
	mem      map[uint64][]byte
	next     uint64
	capacity uint64
	used     uint64
	inFlight atomic.Int32
	thread   atomic.Int64 // OS thread of the first context call
	retained int
	objects  map[uintptr]string // live streams, events, modules
	handles  uintptr
	launches []fakeLaunch

	sched   fakeSched                 // streams, events, races (fakesched_test.go)
	kernels map[uintptr]fakeKernel    // kernels the fake runs, by function handle
	pinned  map[unsafe.Pointer][]byte // page-locked host blocks
	failAt  map[string]int            // call name → number of the call (from 1) that fails
	calls   map[string]int            // calls so far, by name
	failRes Result                    // what a failing call returns
	gemmEx  []fakeGemmExCall          // the arguments of every cublasGemmEx (gemmi8_test.go)
}

// injected counts a call of name and reports whether it is the one that
// must fail.
func (f *fakeDriver) injected(name string) bool {
	f.calls[name]++
	return f.failAt[name] != 0 && f.calls[name] == f.failAt[name]
}

type fakeLaunch struct {
	f      uintptr
	dims   [7]uint32
	stream uintptr
	params []uint64
}

func newFakeDriver(t *testing.T) *fakeDriver {
	f := &fakeDriver{t: t, mem: map[uint64][]byte{}, next: 1 << 32, capacity: 1 << 24, objects: map[uintptr]string{}, handles: 0x1000,
		kernels: map[uintptr]fakeKernel{}, pinned: map[unsafe.Pointer][]byte{}, failAt: map[string]int{}, calls: map[string]int{}, failRes: InvalidValue}
	f.sched.init()
	return f
}

// enter checks the calling thread and exclusivity; it returns the exit.
func (f *fakeDriver) enter(name string) func() {
	if n := f.inFlight.Add(1); n != 1 {
		f.t.Errorf("%s: %d driver calls in flight at once", name, n)
	}
	if tid := threadID(); tid != 0 {
		if !f.thread.CompareAndSwap(0, int64(tid)) && f.thread.Load() != int64(tid) {
			f.t.Errorf("%s: called on thread %d, the context is on %d", name, tid, f.thread.Load())
		}
	}
	return func() { f.inFlight.Add(-1) }
}

// block returns the memory at device address p, n bytes long.
func (f *fakeDriver) block(p, n uint64) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	for base, b := range f.mem {
		if p >= base && p+n <= base+uint64(len(b)) {
			return b[p-base : p-base+n]
		}
	}
	f.t.Errorf("device access [%#x, %#x) outside any allocation", p, p+n)
	return make([]byte, n)
}

func (f *fakeDriver) newHandle(kind string) uintptr {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handles += 16
	f.objects[f.handles] = kind
	return f.handles
}

func (f *fakeDriver) drop(h uintptr, kind string) int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.objects[h] != kind {
		return int32(InvalidHandle)
	}
	delete(f.objects, h)
	return 0
}

// InvalidHandle is CUDA_ERROR_INVALID_HANDLE.
const InvalidHandle Result = 400

func (f *fakeDriver) api() *driverAPI {
	ok := func(name string) func() { return f.enter(name) }
	return &driverAPI{
		lib:                func() string { return "fake" }(),
		cuInit:             func(uint32) int32 { return 0 },
		cuDriverGetVersion: func(v *int32) int32 { *v = 12080; return 0 },
		cuDeviceGetCount:   func(n *int32) int32 { *n = 1; return 0 },
		cuDeviceGet: func(dev *int32, ordinal int32) int32 {
			*dev = ordinal
			return 0
		},
		cuDeviceGetName: func(name *byte, n int32, dev int32) int32 {
			copy(unsafe.Slice(name, n), "Fake GPU\x00")
			return 0
		},
		cuDeviceGetAttribute: func(v *int32, attr int32, dev int32) int32 {
			*v = map[int32]int32{attrComputeMajor: 9, attrComputeMinor: 0, attrMultiprocessors: 132, attrMaxThreadsPerBlock: 1024}[attr]
			return 0
		},
		cuDeviceTotalMem: func(b *uint64, dev int32) int32 { *b = f.capacity; return 0 },
		cuDevicePrimaryCtxRetain: func(ctx *uintptr, dev int32) int32 {
			defer ok("cuDevicePrimaryCtxRetain")()
			f.retained++
			*ctx = 0xc0
			return 0
		},
		cuDevicePrimaryCtxRelease: func(dev int32) int32 {
			defer ok("cuDevicePrimaryCtxRelease")()
			f.retained--
			return 0
		},
		cuCtxSetCurrent:  func(uintptr) int32 { defer ok("cuCtxSetCurrent")(); return 0 },
		cuCtxSynchronize: func() int32 { defer ok("cuCtxSynchronize")(); f.sched.syncAll(); return 0 },
		cuMemGetInfo: func(free, total *uint64) int32 {
			defer ok("cuMemGetInfo")()
			*free, *total = f.capacity-f.used, f.capacity
			return 0
		},
		cuMemAlloc: func(p *uint64, n uint64) int32 {
			defer ok("cuMemAlloc")()
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.used+n > f.capacity {
				return int32(OutOfMemory)
			}
			*p = f.next
			f.mem[f.next] = make([]byte, n)
			f.next += (n + 511) &^ 255
			f.used += n
			return 0
		},
		cuMemFree: func(p uint64) int32 {
			defer ok("cuMemFree")()
			f.sched.syncAll() // cuMemFree synchronises the device
			f.mu.Lock()
			defer f.mu.Unlock()
			b, found := f.mem[p]
			if !found {
				return int32(InvalidValue)
			}
			f.used -= uint64(len(b))
			delete(f.mem, p)
			return 0
		},
		cuMemcpyHtoDAsync: func(dst uint64, src unsafe.Pointer, n uint64, s uintptr) int32 {
			defer ok("cuMemcpyHtoDAsync")()
			if f.injected("cuMemcpyHtoDAsync") {
				return int32(f.failRes)
			}
			f.sched.enqueue(s, "HtoD", []fakeAccess{devWrite(dst, n), hostRead(src, n)}, func() {
				copy(f.block(dst, n), unsafe.Slice((*byte)(src), n))
			})
			return 0
		},
		cuMemcpyDtoHAsync: func(dst unsafe.Pointer, src uint64, n uint64, s uintptr) int32 {
			defer ok("cuMemcpyDtoHAsync")()
			if f.injected("cuMemcpyDtoHAsync") {
				return int32(f.failRes)
			}
			f.sched.enqueue(s, "DtoH", []fakeAccess{devRead(src, n), hostWrite(dst, n)}, func() {
				copy(unsafe.Slice((*byte)(dst), n), f.block(src, n))
			})
			return 0
		},
		cuMemHostAlloc: func(p *unsafe.Pointer, n uint64, flags uint32) int32 {
			defer ok("cuMemHostAlloc")()
			if f.injected("cuMemHostAlloc") {
				return int32(OutOfMemory)
			}
			b := make([]byte, n)
			*p = unsafe.Pointer(&b[0])
			f.pinned[*p] = b
			return 0
		},
		cuMemFreeHost: func(p unsafe.Pointer) int32 {
			defer ok("cuMemFreeHost")()
			f.sched.syncAll()
			if f.pinned[p] == nil {
				return int32(InvalidValue)
			}
			delete(f.pinned, p)
			return 0
		},
		cuStreamCreate: func(s *uintptr, flags uint32) int32 {
			defer ok("cuStreamCreate")()
			*s = f.newHandle("stream")
			return 0
		},
		cuStreamDestroy:     func(s uintptr) int32 { defer ok("cuStreamDestroy")(); return f.drop(s, "stream") },
		cuStreamSynchronize: func(s uintptr) int32 { defer ok("cuStreamSynchronize")(); f.sched.syncStream(s); return 0 },
		cuStreamWaitEvent:   func(s, e uintptr, flags uint32) int32 { defer ok("cuStreamWaitEvent")(); f.sched.wait(s, e); return 0 },
		cuEventCreate: func(e *uintptr, flags uint32) int32 {
			defer ok("cuEventCreate")()
			*e = f.newHandle("event")
			return 0
		},
		cuEventRecord:      func(e, s uintptr) int32 { defer ok("cuEventRecord")(); f.sched.record(e, s); return 0 },
		cuEventSynchronize: func(e uintptr) int32 { defer ok("cuEventSynchronize")(); f.sched.syncEvent(e); return 0 },
		cuEventElapsedTime: func(ms *float32, a, b uintptr) int32 {
			defer ok("cuEventElapsedTime")()
			*ms = 1.5
			return 0
		},
		cuEventDestroy: func(e uintptr) int32 { defer ok("cuEventDestroy")(); return f.drop(e, "event") },
		cuModuleLoadData: func(m *uintptr, img unsafe.Pointer) int32 {
			defer ok("cuModuleLoadData")()
			*m = f.newHandle("module")
			return 0
		},
		cuModuleGetFunction: func(fn *uintptr, m uintptr, name string) int32 {
			defer ok("cuModuleGetFunction")()
			if name == "missing" {
				return int32(NotFound)
			}
			*fn = 0xf000 + uintptr(len(name))
			return 0
		},
		cuModuleUnload: func(m uintptr) int32 { defer ok("cuModuleUnload")(); return f.drop(m, "module") },
		cuLaunchKernel: func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, s uintptr, params, extra unsafe.Pointer) int32 {
			defer ok("cuLaunchKernel")()
			l := fakeLaunch{f: fn, dims: [7]uint32{gx, gy, gz, bx, by, bz, shared}, stream: s}
			if f.injected("cuLaunchKernel") {
				return int32(f.failRes)
			}
			// The launch's parameter array ends with a nil (see launch).
			for p := (*unsafe.Pointer)(params); *p != nil; p = (*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(p))) {
				l.params = append(l.params, *(*uint64)(*p))
			}
			f.launches = append(f.launches, l)
			if k := f.kernels[fn]; k != nil {
				acc, run := k(f, l.params)
				f.sched.enqueue(s, fmt.Sprintf("kernel %#x", fn), acc, run)
			}
			return 0
		},
	}
}

func openFake(t *testing.T) (*fakeDriver, *Device) {
	t.Helper()
	f := newFakeDriver(t)
	d, err := openDevice(f.api(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, d
}

func TestFakeDeviceLifecycle(t *testing.T) {
	f, d := openFake(t)
	info := d.Info()
	if info.Name != "Fake GPU" || info.Major != 9 || info.SMs != 132 || info.Memory != 1<<24 || info.DriverVersion != 12080 {
		t.Errorf("Info = %+v", info)
	}
	if s := info.String(); s != "Fake GPU (device 0, sm_90, 132 SMs, 0.0 GiB, driver CUDA 12.8)" {
		t.Errorf("Info.String() = %q", s)
	}
	if _, err := openDevice(f.api(), 1); !errors.Is(err, ErrNoDevice) {
		t.Errorf("device 1 of 1: %v, want ErrNoDevice", err)
	}

	// Copies round-trip, from many goroutines at once.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			src := make([]float64, 100+g)
			for i := range src {
				src[i] = float64(g*1000 + i)
			}
			b, err := d.Alloc(8 * len(src))
			if err != nil {
				t.Error(err)
				return
			}
			if err := Upload(b, src); err != nil {
				t.Error(err)
			}
			got := make([]float64, len(src))
			if err := Download(got, b); err != nil {
				t.Error(err)
			}
			for i := range got {
				if got[i] != src[i] {
					t.Errorf("goroutine %d: element %d = %v, want %v", g, i, got[i], src[i])
					break
				}
			}
			if err := b.Free(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, err := d.PoolStats()
	if err != nil || st.InUse != 0 || st.Cached == 0 {
		t.Errorf("PoolStats = %+v, %v", st, err)
	}

	b, _ := d.Alloc(16)
	if err := Upload(b, make([]float64, 3)); err == nil {
		t.Error("uploading 24 bytes into 16 succeeded")
	}
	if err := Download(make([]uint32, 5), b); err == nil {
		t.Error("downloading 20 bytes from 16 succeeded")
	}
	b.Free()
	if err := b.Free(); err == nil {
		t.Error("double Free succeeded")
	}
	if z, err := d.Alloc(0); err != nil || z.Free() != nil {
		t.Errorf("zero-byte buffer: %v", err)
	}
	if _, err := d.Alloc(-1); err == nil {
		t.Error("Alloc(-1) succeeded")
	}
	if _, err := d.Alloc(1 << 25); !errors.Is(err, OutOfMemory) {
		t.Errorf("Alloc beyond capacity: %v, want OutOfMemory", err)
	}
	if err := d.TrimPool(); err != nil {
		t.Error(err)
	}
	if free, total, err := d.MemInfo(); err != nil || total != 1<<24 || free != total {
		t.Errorf("MemInfo after trim = %d, %d, %v", free, total, err)
	}

	// A panic on the device goroutine comes back as an error.
	if err := d.do(func() error { panic("boom") }); err == nil || err.Error() != "cuda: panic on the device goroutine: boom" {
		t.Errorf("panic: %v", err)
	}
	if err := d.Synchronize(); err != nil {
		t.Errorf("device unusable after a panic: %v", err)
	}

	s, err := d.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	e0, _ := d.NewEvent()
	e1, _ := d.NewEvent()
	for _, err := range []error{e0.Record(nil), e1.Record(s), s.Wait(e1), e1.Synchronize(), s.Synchronize()} {
		if err != nil {
			t.Error(err)
		}
	}
	if dt, err := Elapsed(e0, e1); err != nil || dt.Microseconds() != 1500 {
		t.Errorf("Elapsed = %v, %v", dt, err)
	}
	if err := e0.Close(); err != nil {
		t.Error(err)
	}
	if err := e0.Close(); err == nil {
		t.Error("event closed twice")
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	leak, _ := d.NewStream() // left for Close
	_ = leak

	kept, _ := d.Alloc(1000) // in use at Close
	_ = kept
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if f.retained != 0 || f.used != 0 || len(f.objects) != 0 {
		t.Errorf("after Close: %d context references, %d bytes, objects %v", f.retained, f.used, f.objects)
	}
	if _, err := d.Alloc(8); !errors.Is(err, ErrClosed) {
		t.Errorf("Alloc after Close: %v, want ErrClosed", err)
	}
}

func TestFakeLaunch(t *testing.T) {
	f, d := openFake(t)
	defer d.Close()
	m, err := d.LoadPTX([]byte(".version 8.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Function("missing"); !errors.Is(err, NotFound) {
		t.Errorf("missing function: %v, want NotFound", err)
	}
	fn, err := m.Function("kern")
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := d.Alloc(64)
	err = d.Launch(fn, Dim3{X: 3, Y: 2}, Dim3{X: 128}, 256, nil,
		buf, uint64(7), int64(-2), int32(-3), uint32(5), float32(1.5), 2.25)
	if err != nil {
		t.Fatal(err)
	}
	l := f.launches[len(f.launches)-1]
	if l.dims != [7]uint32{3, 2, 1, 128, 1, 1, 256} {
		t.Errorf("dims %v", l.dims)
	}
	// 4-byte arguments occupy the low half of their slot.
	want := []uint64{buf.Ptr(), 7, math.MaxUint64 - 1, uint64(uint32(0xfffffffd)), 5, uint64(math.Float32bits(1.5)), math.Float64bits(2.25)}
	if fmt.Sprint(l.params) != fmt.Sprint(want) {
		t.Errorf("params %#x, want %#x", l.params, want)
	}
	if err := d.Launch(fn, Dim3{X: 1}, Dim3{X: 1}, 0, nil, 3); err == nil {
		t.Error("an int argument was accepted")
	}
	if err := d.Launch(fn, Dim3{X: -1}, Dim3{X: 1}, 0, nil); err == nil {
		t.Error("a negative grid was accepted")
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

// TestFakeBackendFallsBack runs the conformance suite on a backend whose
// device cannot run cuBLAS: every product must come out right, from the
// host, with the error kept.
func TestFakeBackendFallsBack(t *testing.T) {
	if _, err := loadCUBLAS(); err == nil {
		t.Skip("cuBLAS is installed; the fake device would hand it fake pointers")
	}
	_, d := openFake(t)
	defer d.Close()
	if _, err := NewBackend(d, Options{}); !errors.Is(err, ErrNoCUBLAS) {
		t.Fatalf("NewBackend without cuBLAS: %v, want ErrNoCUBLAS", err)
	}
	b := &Backend{dev: d, host: linalg.CPU()}
	backendtest.Run(t, b)
	if !errors.Is(b.Err(), ErrNoCUBLAS) || b.Fallbacks() == 0 {
		t.Errorf("Err() = %v after %d fallbacks, want ErrNoCUBLAS", b.Err(), b.Fallbacks())
	}
	// Once the device is closed, calls keep working on the host.
	d.Close()
	c := linalg.NewDense64(2, 2, nil)
	b.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, linalg.NewDense64(2, 1, []float64{1, 2}), linalg.NewDense64(1, 2, []float64{3, 4}), 0, c)
	if fmt.Sprint(c.Data) != "[3 4 6 8]" || !b.broken.Load() {
		t.Errorf("after Close: C = %v, broken %v", c.Data, b.broken.Load())
	}
}

// TestKernelArguments checks the kernel methods' validation, which needs
// no device, and that without PTX or NVRTC they fail with ErrNoKernels.
func TestKernelArguments(t *testing.T) {
	_, d := openFake(t)
	defer d.Close()
	b := &Backend{dev: d, host: linalg.CPU()}
	x := make([]float64, 12)
	for _, err := range []error{
		b.ProjectRademacher(make([]float64, 6), x, 5, 2, 1, 0),       // 12 not rows of 5
		b.ProjectRademacher(make([]float64, 5), x, 4, 2, 1, 0),       // dst 5, want 3×2
		b.ProjectRademacher(make([]float64, 0), x, 4, 0, 1, 0),       // k = 0
		b.ProjectSJLT(make([]float64, 3), x, 4, 1<<25, 1, 3),         // k too large
		b.ScaleEKFAC(x, make([]float64, 5), 1),                       // 12 not rows of 5
		b.ScaleEKFAC(x, []float64{1, -1, 2}, 0.5),                    // Λ+δ < 0
		b.ScaleEKFAC32(make([]float32, 3), []float64{math.NaN()}, 1), // NaN
		b.WidenF16(make([]float32, 2), make([]uint16, 3)),
	} {
		if err == nil || errors.Is(err, ErrNoKernels) {
			t.Errorf("bad arguments: got %v, want a validation error", err)
		}
	}
	if err := b.ScaleEKFAC(x, []float64{1, -1, 2}, 0.5); err == nil || err.Error() != "cuda: ScaleEKFAC: Λ + δ = -0.5 at entry 1 (δ = 0.5); use a larger damping" {
		t.Errorf("ScaleEKFAC message: %v", err)
	}
	for _, k := range []int{-1, 1025} {
		if _, _, err := b.TopK(linalg.NewDense32(2, 3, nil), k, false, 0); err == nil {
			t.Errorf("TopK k=%d accepted", k)
		}
	}
	if _, _, err := b.TopK(linalg.NewDense32(2, 3, nil), 2, false, math.MaxUint32-2); err == nil {
		t.Error("TopK with indices beyond 32 bits accepted")
	}
	if idx, vals, err := b.TopK(linalg.NewDense32(0, 3, nil), 2, false, 0); err != nil || len(idx) != 0 || len(vals) != 0 {
		t.Errorf("TopK of no rows: %v, %v, %v", idx, vals, err)
	}
	// Empty inputs need no kernels.
	if err := b.ProjectRademacher(nil, nil, 4, 2, 1, 0); err != nil {
		t.Errorf("empty projection: %v", err)
	}

	if _, err := kernelFiles.ReadFile("kernels/project.ptx"); err == nil {
		t.Skip("PTX is embedded")
	}
	if _, err := loadNVRTC(); err == nil {
		t.Skip("NVRTC is installed")
	}
	err := b.ProjectRademacher(make([]float64, 6), x, 4, 2, 1, 0)
	if !errors.Is(err, ErrNoKernels) {
		t.Errorf("without PTX or NVRTC: %v, want ErrNoKernels", err)
	}
	t.Logf("%v", err)
	if d.PTXSource() != "" {
		t.Errorf("PTXSource = %q without kernels", d.PTXSource())
	}
}

// TestEmbeddedSources checks that every kernel module has its source
// embedded, and that each PTX present has its source.
func TestEmbeddedSources(t *testing.T) {
	for _, name := range kernelModules {
		if _, err := kernelFiles.ReadFile("kernels/" + name + ".cu"); err != nil {
			t.Errorf("kernels/%s.cu not embedded: %v", name, err)
		}
	}
	entries, _ := kernelFiles.ReadDir("kernels")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	t.Logf("embedded: %v", names)
}
