package cuda

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Info describes a device.
type Info struct {
	Ordinal            int    // as cuDeviceGet numbers it, after CUDA_VISIBLE_DEVICES
	Name               string // e.g. "NVIDIA H100 80GB HBM3"
	Major, Minor       int    // compute capability
	Memory             uint64 // total global memory, bytes
	SMs                int    // streaming multiprocessors
	MaxThreadsPerBlock int
	DriverVersion      int // CUDA version the driver supports, 1000·major + 10·minor
}

func (i Info) String() string {
	return fmt.Sprintf("%s (device %d, sm_%d%d, %d SMs, %.1f GiB, driver CUDA %s)",
		i.Name, i.Ordinal, i.Major, i.Minor, i.SMs, float64(i.Memory)/(1<<30), versionString(i.DriverVersion))
}

// Device is one GPU with its primary context. Every CUDA call for it runs on
// one goroutine locked to its OS thread, on which the context is current:
// methods send their work there and wait, so a Device may be used from any
// number of goroutines, and calls are executed one at a time, in the order
// they arrive.
//
// The primary context is the one the CUDA runtime uses, so a process that
// also links CUDA libraries (a PyTorch extension, say) shares it rather than
// competing with a second context.
type Device struct {
	api  *driverAPI
	info Info
	dev  int32

	mu     sync.RWMutex // held for reading while sending to cmds; Close holds it to stop
	closed bool
	cmds   chan func()
	done   chan struct{} // closed when the device goroutine has finished

	// Owned by the device goroutine.
	ctx        uintptr
	stream     uintptr // the stream synchronous helpers and the backend use
	pool       *pool
	blas       uintptr                 // cuBLAS handle, created on first use
	blasLib    *blasAPI                // cuBLAS in place of the library's (tests); nil: loadCUBLAS
	pinned     map[unsafe.Pointer]bool // page-locked host blocks (cuMemHostAlloc)
	streams    map[uintptr]bool
	events     map[uintptr]bool
	modules    map[uintptr]bool
	kern       *kernelSet // loaded on first use
	kernErr    error
	kernSource string // "embedded" or "nvrtc"
}

// DeviceCount returns the number of GPUs the driver sees, or the error
// that keeps the driver from loading.
func DeviceCount() (int, error) {
	api, err := loadDriver()
	if err != nil {
		return 0, err
	}
	return api.deviceCount()
}

// Open opens device 0 (the first of CUDA_VISIBLE_DEVICES).
func Open() (*Device, error) { return OpenDevice(0) }

// OpenDevice loads the driver, retains the primary context of device
// ordinal and starts the goroutine that owns it. The error says why no GPU
// can be used (see ErrLibraryNotFound and the errors after it).
func OpenDevice(ordinal int) (*Device, error) {
	api, err := loadDriver()
	if err != nil {
		return nil, err
	}
	return openDevice(api, ordinal)
}

func openDevice(api *driverAPI, ordinal int) (*Device, error) {
	dev, info, err := api.query(ordinal)
	if err != nil {
		return nil, err
	}
	d := &Device{
		api: api, info: info, dev: dev,
		cmds: make(chan func()), done: make(chan struct{}),
		streams: map[uintptr]bool{}, events: map[uintptr]bool{}, modules: map[uintptr]bool{},
		pinned: map[unsafe.Pointer]bool{},
	}
	// Keep at most a quarter of the device's memory in free blocks.
	d.pool = newPool(d.rawAlloc, d.rawFree, info.Memory/4)
	started := make(chan error, 1)
	go d.loop(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return d, nil
}

// loop is the device goroutine. The thread stays locked until the
// goroutine exits, which then ends the thread, so no other goroutine ever
// runs with this context current.
func (d *Device) loop(started chan<- error) {
	runtime.LockOSThread()
	defer close(d.done)
	if err := d.setup(); err != nil {
		started <- err
		return
	}
	started <- nil
	for f := range d.cmds {
		if f == nil {
			d.teardown()
			return
		}
		f()
	}
}

func (d *Device) setup() error {
	a := d.api
	if err := check("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return newError(ErrInit, err, "device %d", d.info.Ordinal)
	}
	if err := check("cuCtxSetCurrent", a.cuCtxSetCurrent(d.ctx)); err != nil {
		a.cuDevicePrimaryCtxRelease(d.dev)
		return newError(ErrInit, err, "device %d", d.info.Ordinal)
	}
	if err := check("cuStreamCreate", a.cuStreamCreate(&d.stream, streamNonBlocking)); err != nil {
		a.cuDevicePrimaryCtxRelease(d.dev)
		return newError(ErrInit, err, "device %d", d.info.Ordinal)
	}
	return nil
}

// teardown frees what the device goroutine owns and releases the context.
func (d *Device) teardown() {
	a := d.api
	a.cuCtxSynchronize()
	if d.blas != 0 {
		if b, err := d.cublas(); err == nil {
			b.destroy(d.blas)
		}
	}
	d.pool.release()
	for p := range d.pinned {
		a.cuMemFreeHost(p)
	}
	for s := range d.streams {
		a.cuStreamDestroy(s)
	}
	for e := range d.events {
		a.cuEventDestroy(e)
	}
	for m := range d.modules {
		a.cuModuleUnload(m)
	}
	a.cuStreamDestroy(d.stream)
	a.cuDevicePrimaryCtxRelease(d.dev)
}

// do runs f on the device goroutine and returns its error. f must not call
// do (it would wait for itself). A panic in f is returned as an error rather
// than crashing the device goroutine.
func (d *Device) do(f func() error) error {
	res := make(chan error, 1)
	cmd := func() {
		defer func() {
			if p := recover(); p != nil {
				res <- fmt.Errorf("cuda: panic on the device goroutine: %v", p)
			}
		}()
		res <- f()
	}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return ErrClosed
	}
	d.cmds <- cmd
	d.mu.RUnlock()
	return <-res
}

// Close frees the device's memory, streams, events and modules, releases
// its primary context and stops its goroutine. Later calls fail with
// ErrClosed; Close itself may be called more than once.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.cmds <- nil
	d.mu.Unlock()
	<-d.done
	return nil
}

// Info returns the device's description.
func (d *Device) Info() Info { return d.info }

// MemInfo returns the free and total device memory in bytes.
func (d *Device) MemInfo() (free, total uint64, err error) {
	err = d.do(func() error { return check("cuMemGetInfo_v2", d.api.cuMemGetInfo(&free, &total)) })
	return free, total, err
}

// PoolStats returns the state of the memory pool.
func (d *Device) PoolStats() (s PoolStats, err error) {
	err = d.do(func() error { s = d.pool.stats(); return nil })
	return s, err
}

// TrimPool returns the pool's free blocks to the driver.
func (d *Device) TrimPool() error { return d.do(func() error { return d.pool.trim() }) }

// Synchronize waits for all work on the device.
func (d *Device) Synchronize() error {
	return d.do(func() error { return check("cuCtxSynchronize", d.api.cuCtxSynchronize()) })
}

// rawAlloc and rawFree are the pool's allocator; they run on the device
// goroutine.
func (d *Device) rawAlloc(n uint64) (uint64, error) {
	var p uint64
	if err := check("cuMemAlloc_v2", d.api.cuMemAlloc(&p, n)); err != nil {
		return 0, err
	}
	return p, nil
}

func (d *Device) rawFree(p uint64) error { return check("cuMemFree_v2", d.api.cuMemFree(p)) }

// allocHost returns n bytes (n > 0) of page-locked host memory, which the
// GPU copies from and to asynchronously and at full speed, unlike Go
// memory. It runs on the device goroutine; the block is freed by freeHost,
// or when the device closes.
func (d *Device) allocHost(n int) ([]byte, error) {
	var p unsafe.Pointer
	if err := check("cuMemHostAlloc", d.api.cuMemHostAlloc(&p, uint64(n), 0)); err != nil {
		return nil, err
	}
	d.pinned[p] = true
	return unsafe.Slice((*byte)(p), n), nil
}

// freeHost frees a block of allocHost; it runs on the device goroutine.
func (d *Device) freeHost(b []byte) error {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if !d.pinned[p] {
		return fmt.Errorf("cuda: freeing host memory that is not page-locked")
	}
	delete(d.pinned, p)
	return check("cuMemFreeHost", d.api.cuMemFreeHost(p))
}

// Buffer is a block of device memory from the device's pool.
type Buffer struct {
	d    *Device
	ptr  uint64
	size int
}

// Alloc returns a buffer of n bytes (n ≥ 0; a zero-byte buffer has no
// memory behind it). Its contents are undefined.
func (d *Device) Alloc(n int) (*Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cuda: Alloc(%d)", n)
	}
	b := &Buffer{d: d, size: n}
	if n == 0 {
		return b, nil
	}
	err := d.do(func() (err error) { b.ptr, err = d.pool.get(uint64(n)); return err })
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Size returns the buffer's length in bytes.
func (b *Buffer) Size() int { return b.size }

// Ptr returns the device address (a CUdeviceptr), for kernel arguments.
func (b *Buffer) Ptr() uint64 { return b.ptr }

// Free returns the buffer to the pool. Freeing twice is an error.
func (b *Buffer) Free() error {
	if b.size == 0 {
		return nil
	}
	return b.d.do(func() error { return b.d.pool.put(b.ptr) })
}

// Elem is the element type of host slices copied to and from the device.
type Elem interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~float32 | ~float64
}

// Upload copies src to the start of b and waits for the copy.
func Upload[T Elem](b *Buffer, src []T) error {
	n := len(src) * int(unsafe.Sizeof(*new(T)))
	if n > b.size {
		return fmt.Errorf("cuda: Upload: %d bytes into a buffer of %d", n, b.size)
	}
	if n == 0 {
		return nil
	}
	d := b.d
	return d.do(func() error {
		if err := d.htod(b.ptr, unsafe.Pointer(&src[0]), uint64(n)); err != nil {
			return err
		}
		return d.sync()
	})
}

// Download copies the start of b into dst and waits for the copy.
func Download[T Elem](dst []T, b *Buffer) error {
	n := len(dst) * int(unsafe.Sizeof(*new(T)))
	if n > b.size {
		return fmt.Errorf("cuda: Download: %d bytes from a buffer of %d", n, b.size)
	}
	if n == 0 {
		return nil
	}
	d := b.d
	return d.do(func() error {
		if err := d.dtoh(unsafe.Pointer(&dst[0]), b.ptr, uint64(n)); err != nil {
			return err
		}
		return d.sync()
	})
}

// Helpers for the device goroutine. Host memory handed to the driver is Go
// memory that the caller of do keeps alive, and the copies complete before
// do returns (sync), so the driver keeps no pointer into Go memory.

func (d *Device) htod(dst uint64, src unsafe.Pointer, n uint64) error {
	return check("cuMemcpyHtoDAsync_v2", d.api.cuMemcpyHtoDAsync(dst, src, n, d.stream))
}

func (d *Device) dtoh(dst unsafe.Pointer, src uint64, n uint64) error {
	return check("cuMemcpyDtoHAsync_v2", d.api.cuMemcpyDtoHAsync(dst, src, n, d.stream))
}

func (d *Device) sync() error {
	return check("cuStreamSynchronize", d.api.cuStreamSynchronize(d.stream))
}

// scratch holds the pool blocks of one operation, freed together once the
// stream is synchronised.
type scratch struct {
	d   *Device
	ptr []uint64
}

func (s *scratch) get(n uint64) (uint64, error) {
	p, err := s.d.pool.get(max(n, 1))
	if err == nil {
		s.ptr = append(s.ptr, p)
	}
	return p, err
}

// release synchronises the stream (so that no queued work still uses the
// blocks) and returns the blocks to the pool.
func (s *scratch) release() error {
	err := s.d.sync()
	for _, p := range s.ptr {
		s.d.pool.put(p)
	}
	s.ptr = nil
	return err
}

// uploadSlice copies a host slice into a new block of s.
func uploadSlice[T Elem](s *scratch, src []T) (uint64, error) {
	n := uint64(len(src)) * uint64(unsafe.Sizeof(*new(T)))
	p, err := s.get(n)
	if err != nil || n == 0 {
		return p, err
	}
	return p, s.d.htod(p, unsafe.Pointer(&src[0]), n)
}

// downloadSlice copies the start of device block p into dst.
func downloadSlice[T Elem](d *Device, dst []T, p uint64) error {
	n := uint64(len(dst)) * uint64(unsafe.Sizeof(*new(T)))
	if n == 0 {
		return nil
	}
	return d.dtoh(unsafe.Pointer(&dst[0]), p, n)
}
