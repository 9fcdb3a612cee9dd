package cuda

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/goinfluence/goinfluence/linalg"
)

func init() {
	linalg.Register("cuda", 30, openDefault)
}

// openDefault is the linalg driver: device 0 with DefaultOptions. It fails,
// and linalg.Auto moves on to OpenBLAS or pure Go, when there is no GPU or
// no cuBLAS.
func openDefault() (linalg.Backend, error) {
	d, err := Open()
	if err != nil {
		return nil, err
	}
	b, err := NewBackend(d, DefaultOptions())
	if err != nil {
		d.Close()
		return nil, err
	}
	return b, nil
}

// Options configure a Backend.
type Options struct {
	// TF32 lets Sgemm use TF32 tensor cores (Ampere and later), which
	// round the inputs to 10 significant bits: several times faster, with
	// relative errors near 2⁻¹¹ instead of 2⁻²⁴, so results no longer meet
	// the float32 tolerance of linalg's conformance suite. Off by default;
	// Dgemm and the covariance sums are not affected.
	TF32 bool
	// MinFlops sends GEMMs and covariance updates of fewer floating-point
	// operations than this to the host backend, where copying the operands
	// to the GPU would cost more than the product. 0 sends all to the GPU.
	MinFlops float64
	// Host runs what stays on the CPU: CholeskySolve, Eigh, the
	// conversions, small products and fallbacks. Nil means the best other
	// registered backend that opens (openblas, else cpu).
	Host linalg.Backend
}

// DefaultOptions are the options of the backend that linalg.Auto opens:
// no TF32, and products below 2·64³ flops on the host.
func DefaultOptions() Options { return Options{MinFlops: 2 * 64 * 64 * 64} }

// Backend is linalg.Backend on an NVIDIA GPU.
//
// Sgemm and Dgemm run on cuBLAS (row-major operands passed as the
// column-major transposes, C = AB computed as Cᵀ = BᵀAᵀ), CovAccumulate
// and CovAccumulate32 on cuBLAS syrk. CholeskySolve and Eigh, which are
// small and latency-bound in this library (factors of a few thousand
// rows), run on the host backend, as do the f16/bf16 conversions of host
// slices, for which a round trip over PCIe is slower than converting on
// the CPU; the device kernels of WidenF16 and WidenBF16 are for data
// that is on its way to the GPU anyway.
//
// The linalg.Backend methods cannot return errors. When the GPU fails a
// call (out of memory, say), the call is computed on the host instead and
// the error is kept for Err; after an error that leaves the context
// unusable (an illegal address), every later call runs on the host.
//
// Operands are copied to the device and results back on each call, through
// the device's memory pool. A Backend is safe for concurrent use; device
// work is serialised on the Device's goroutine.
type Backend struct {
	dev  *Device
	opt  Options
	host linalg.Backend

	fallbacks atomic.Uint64
	broken    atomic.Bool
	errMu     sync.Mutex
	err       error
}

// NewBackend returns the backend on d. It loads cuBLAS and fails with an
// error wrapping ErrNoCUBLAS when it cannot.
func NewBackend(d *Device, opt Options) (*Backend, error) {
	if _, err := d.BLASVersion(); err != nil {
		return nil, err
	}
	b := &Backend{dev: d, opt: opt, host: opt.Host}
	if b.host == nil {
		b.host = hostBackend()
	}
	return b, nil
}

// hostBackend returns the best registered backend other than this one.
func hostBackend() linalg.Backend {
	for _, name := range linalg.Backends() {
		if name == "cuda" {
			continue
		}
		if be, err := linalg.Open(name); err == nil {
			return be
		}
	}
	return linalg.CPU()
}

// Name returns "cuda".
func (*Backend) Name() string { return "cuda" }

// Device returns the device the backend runs on.
func (b *Backend) Device() *Device { return b.dev }

// Host returns the backend that runs what stays on the CPU.
func (b *Backend) Host() linalg.Backend { return b.host }

// Err returns the first error the GPU gave, nil if none. The call that
// met it was computed on the host.
func (b *Backend) Err() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

// Fallbacks returns how many calls were computed on the host because the
// GPU failed (not counting those sent there by MinFlops).
func (b *Backend) Fallbacks() uint64 { return b.fallbacks.Load() }

// onDevice runs f on the device goroutine and reports whether it
// succeeded; on failure it records the error so that the caller computes
// the result on the host.
func (b *Backend) onDevice(op string, f func() error) bool {
	if b.broken.Load() {
		b.fallbacks.Add(1)
		return false
	}
	err := b.dev.do(f)
	if err == nil {
		return true
	}
	b.fallbacks.Add(1)
	b.noteErr(fmt.Errorf("cuda: %s: %w", op, err))
	return false
}

// noteErr keeps err for Err if it is the first, and stops using the GPU
// when err leaves it unusable.
func (b *Backend) noteErr(err error) {
	var r Result
	if errors.Is(err, ErrClosed) || (errors.As(err, &r) && r.Sticky()) {
		b.broken.Store(true)
	}
	b.errMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.errMu.Unlock()
}

// small reports whether a product of flops operations belongs on the host.
func (b *Backend) small(flops float64) bool { return flops < b.opt.MinFlops }

// fitsBLAS reports whether every dimension fits cuBLAS's 32-bit ints.
func fitsBLAS(dims ...int) bool {
	for _, v := range dims {
		if v > math.MaxInt32 {
			return false
		}
	}
	return true
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C with cublasSgemm.
func (b *Backend) Sgemm(tA, tB linalg.Transpose, alpha float32, a, bm *linalg.Dense32, beta float32, c *linalg.Dense32) {
	m, n, k, ok := linalg.GemmStart("Sgemm", tA, tB, alpha, a, bm, beta, c)
	if !ok {
		return
	}
	if b.small(linalg.GemmFlops(m, n, k)) || !fitsBLAS(m, n, k, a.Stride, bm.Stride, c.Stride) ||
		!b.onDevice("Sgemm", func() error { return gemmDevice(b.dev, b.opt.TF32, tA, tB, m, n, k, alpha, a, bm, beta, c) }) {
		b.host.Sgemm(tA, tB, alpha, a, bm, beta, c)
	}
}

// Dgemm computes C = alpha·op(A)·op(B) + beta·C with cublasDgemm.
func (b *Backend) Dgemm(tA, tB linalg.Transpose, alpha float64, a, bm *linalg.Dense64, beta float64, c *linalg.Dense64) {
	m, n, k, ok := linalg.GemmStart("Dgemm", tA, tB, alpha, a, bm, beta, c)
	if !ok {
		return
	}
	if b.small(linalg.GemmFlops(m, n, k)) || !fitsBLAS(m, n, k, a.Stride, bm.Stride, c.Stride) ||
		!b.onDevice("Dgemm", func() error { return gemmDevice(b.dev, false, tA, tB, m, n, k, alpha, a, bm, beta, c) }) {
		b.host.Dgemm(tA, tB, alpha, a, bm, beta, c)
	}
}

// CovAccumulate adds XᵀX to c with cublasDsyrk.
func (b *Backend) CovAccumulate(c *linalg.Dense64, x *linalg.Dense64) {
	n, ok := linalg.CovStart("CovAccumulate", c, x)
	if !ok {
		return
	}
	if b.small(float64(n)*float64(n)*float64(x.Rows)) || !fitsBLAS(n, x.Rows, x.Stride) ||
		!b.onDevice("CovAccumulate", func() error { return covDevice(b.dev, c, x) }) {
		b.host.CovAccumulate(c, x)
	}
}

// CovAccumulate32 forms XᵀX in float32 with cublasSsyrk and adds it to c in
// float64.
func (b *Backend) CovAccumulate32(c *linalg.Dense64, x *linalg.Dense32) {
	n, ok := linalg.CovStart("CovAccumulate32", c, x)
	if !ok {
		return
	}
	if b.small(float64(n)*float64(n)*float64(x.Rows)) || !fitsBLAS(n, x.Rows, x.Stride) ||
		!b.onDevice("CovAccumulate32", func() error { return covDevice(b.dev, c, x) }) {
		b.host.CovAccumulate32(c, x)
	}
}

// CholeskySolve runs on the host backend.
func (b *Backend) CholeskySolve(a *linalg.Dense64, x *linalg.Dense64) error {
	return b.host.CholeskySolve(a, x)
}

// Eigh runs on the host backend.
func (b *Backend) Eigh(a *linalg.Dense64) ([]float64, *linalg.Dense64, error) {
	return b.host.Eigh(a)
}

// F16ToF32, BF16ToF32, F32ToF16 and F32ToBF16 convert host slices on the
// host; see WidenF16 for the device kernel.
func (b *Backend) F16ToF32(dst []float32, src []uint16)  { b.host.F16ToF32(dst, src) }
func (b *Backend) BF16ToF32(dst []float32, src []uint16) { b.host.BF16ToF32(dst, src) }
func (b *Backend) F32ToF16(dst []uint16, src []float32)  { b.host.F32ToF16(dst, src) }
func (b *Backend) F32ToBF16(dst []uint16, src []float32) { b.host.F32ToBF16(dst, src) }

// compact reports whether m's elements are contiguous.
func compact[T linalg.Float](m *linalg.Dense[T]) bool { return m.Stride == m.Cols || m.Rows <= 1 }

// uploadMatrix copies m to the device and returns its leading dimension
// there. A view whose padding is small is copied with its padding, in one
// transfer and with no host copy; a sparser one is packed first.
func uploadMatrix[T linalg.Float](s *scratch, m *linalg.Dense[T]) (uint64, int, error) {
	r, c := m.Rows, m.Cols
	if span := (r-1)*m.Stride + c; compact(m) || span <= 2*r*c {
		ld := m.Stride
		if r == 1 {
			ld = c
		}
		p, err := uploadSlice(s, m.Data[:span])
		return p, ld, err
	}
	p, err := uploadSlice(s, pack(m))
	return p, c, err
}

// pack returns the elements of m contiguously.
func pack[T linalg.Float](m *linalg.Dense[T]) []T {
	out := make([]T, m.Rows*m.Cols)
	for i := 0; i < m.Rows; i++ {
		copy(out[i*m.Cols:], m.Row(i))
	}
	return out
}

func elemSize[T linalg.Float]() uint64 { return uint64(unsafe.Sizeof(*new(T))) }

func blasOp(t linalg.Transpose) int32 {
	if t {
		return cublasOpT
	}
	return cublasOpN
}

// gemmDevice runs a GEMM on the device goroutine. Row-major C = op(A)op(B)
// is column-major Cᵀ = op(B)ᵀop(A)ᵀ, and a row-major matrix is its
// transpose column-major, so cuBLAS gets B before A and m, n swapped.
func gemmDevice[T linalg.Float](d *Device, tf32 bool, tA, tB linalg.Transpose, m, n, k int, alpha T, a, bm *linalg.Dense[T], beta T, c *linalg.Dense[T]) error {
	bl, h, err := d.blasHandle()
	if err != nil {
		return err
	}
	s := &scratch{d: d}
	defer s.release()
	da, lda, err := uploadMatrix(s, a)
	if err != nil {
		return err
	}
	db, ldb, err := uploadMatrix(s, bm)
	if err != nil {
		return err
	}
	var dc uint64
	if beta != 0 {
		src := c.Data[:m*n]
		if !compact(c) {
			src = pack(c)
		}
		dc, err = uploadSlice(s, src)
	} else {
		dc, err = s.get(uint64(m*n) * elemSize[T]())
	}
	if err != nil {
		return err
	}
	switch al := any(alpha).(type) {
	case float32:
		mode := int32(cublasDefaultMth)
		if tf32 {
			mode = cublasTF32Math
		}
		if err := checkBLAS("cublasSetMathMode", bl.setMathMode(h, mode)); err != nil {
			return err
		}
		be := any(beta).(float32)
		err = checkBLAS("cublasSgemm_v2", bl.sgemm(h, blasOp(tB), blasOp(tA), int32(n), int32(m), int32(k),
			&al, db, int32(ldb), da, int32(lda), &be, dc, int32(n)))
	case float64:
		be := any(beta).(float64)
		err = checkBLAS("cublasDgemm_v2", bl.dgemm(h, blasOp(tB), blasOp(tA), int32(n), int32(m), int32(k),
			&al, db, int32(ldb), da, int32(lda), &be, dc, int32(n)))
	}
	if err != nil {
		return err
	}
	return downloadMatrix(d, c, dc, beta == 0)
}

// downloadMatrix copies the packed m×n result at p into c and waits. It
// writes c only once the whole result has arrived, unless direct is set
// (the old contents of c are not needed for a retry on the host).
func downloadMatrix[T linalg.Float](d *Device, c *linalg.Dense[T], p uint64, direct bool) error {
	m, n := c.Rows, c.Cols
	if direct && compact(c) {
		if err := downloadSlice(d, c.Data[:m*n], p); err != nil {
			return err
		}
		return d.sync()
	}
	tmp := make([]T, m*n)
	if err := downloadSlice(d, tmp, p); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	for i := 0; i < m; i++ {
		copy(c.Row(i), tmp[i*n:(i+1)*n])
	}
	return nil
}

// covDevice adds XᵀX to c with syrk on the device goroutine. Row-major X
// (m×n) is column-major Xᵀ, so syrk without transpose forms XᵀX. The lower
// triangle column-major is the upper one row-major: like the CPU backends,
// it reads and updates the upper triangle of c and mirrors it.
func covDevice[T linalg.Float](d *Device, c *linalg.Dense64, x *linalg.Dense[T]) error {
	bl, h, err := d.blasHandle()
	if err != nil {
		return err
	}
	n, m := x.Cols, x.Rows
	s := &scratch{d: d}
	defer s.release()
	dx, ldx, err := uploadMatrix(s, x)
	if err != nil {
		return err
	}
	switch any(*new(T)).(type) {
	case float64:
		src := c.Data[:n*n]
		if !compact(c) {
			src = pack(c)
		}
		dc, err := uploadSlice(s, src)
		if err != nil {
			return err
		}
		one := 1.0
		if err := checkBLAS("cublasDsyrk_v2", bl.dsyrk(h, cublasFillLower, cublasOpN, int32(n), int32(m), &one, dx, int32(ldx), &one, dc, int32(n))); err != nil {
			return err
		}
		sum := make([]float64, n*n)
		if err := downloadSlice(d, sum, dc); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			copy(c.Data[i*c.Stride+i:i*c.Stride+n], sum[i*n+i:i*n+n])
		}
	case float32:
		dc, err := s.get(uint64(n*n) * 4)
		if err != nil {
			return err
		}
		one, zero := float32(1), float32(0)
		if err := checkBLAS("cublasSsyrk_v2", bl.ssyrk(h, cublasFillLower, cublasOpN, int32(n), int32(m), &one, dx, int32(ldx), &zero, dc, int32(n))); err != nil {
			return err
		}
		sum := make([]float32, n*n)
		if err := downloadSlice(d, sum, dc); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			row := c.Data[i*c.Stride+i : i*c.Stride+n]
			for j, v := range sum[i*n+i : i*n+n] {
				row[j] += float64(v)
			}
		}
	}
	mirrorUpper(c)
	return nil
}

// mirrorUpper copies the strict upper triangle of the square c to its lower.
func mirrorUpper(c *linalg.Dense64) {
	for i := 1; i < c.Rows; i++ {
		row := c.Data[i*c.Stride : i*c.Stride+i]
		for j := range row {
			row[j] = c.Data[j*c.Stride+i]
		}
	}
}
