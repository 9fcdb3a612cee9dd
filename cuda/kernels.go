package cuda

import (
	"fmt"
	"math"
	"slices"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/accel"
)

// The methods below run the package's own kernels (kernels/*.cu) on host
// slices: they copy the inputs in, launch, and copy the results out. Each
// gives bit for bit the result of the CPU code it stands in for (see
// reference.go). They return an error wrapping ErrNoKernels when no PTX is
// available, and, unlike the linalg.Backend methods, do not fall back to
// the CPU: a caller that has a CPU path keeps it for that case.

// maxProjectionDim bounds the output dimension of a projection, as
// gradients.MaxProjectionDim does.
const maxProjectionDim = 1 << 24

// Launch shapes; the kernels' results do not depend on them.
const (
	radOut      = 128  // threads per block of rademacher_*, = RAD_OUT
	radRows     = 8    // rows per block of rademacher_*, = RAD_ROWS
	elemBlock   = 256  // threads per block of the element-wise kernels
	topkThreads = 1024 // threads per block of topk_f32 (one row per block)
	maxGridY    = 65535
)

// elemGrid returns the blocks for an element-wise kernel over n values:
// enough to fill the GPU, and grid-stride loops do the rest.
func (d *Device) elemGrid(n int) int {
	return max(1, min((n+elemBlock-1)/elemBlock, 32*max(d.info.SMs, 1)))
}

// projectionArgs checks the arguments of a projection and returns the
// number of rows.
func projectionArgs(op string, nDst, nX, d, k int) (int, error) {
	if d < 1 || k < 1 || k > maxProjectionDim {
		return 0, fmt.Errorf("cuda: %s: d = %d, k = %d, want d ≥ 1 and 1 ≤ k ≤ %d", op, d, k, maxProjectionDim)
	}
	if nX%d != 0 {
		return 0, fmt.Errorf("cuda: %s: %d inputs are not rows of %d", op, nX, d)
	}
	rows := nX / d
	if nDst != rows*k {
		return 0, fmt.Errorf("cuda: %s: dst has %d values, want %d rows × %d", op, nDst, rows, k)
	}
	return rows, nil
}

// ProjectRademacher sets dst (rows × k, row-major) to the dense Rademacher
// projection of the rows of x (rows × d): entry (j, i) is ±1/√k from bit
// j mod 128 of Philox4x32-10 at counter (i, i>>32, j/128, stream) under
// the key of seed, exactly as gradients.Projection computes it, so that
// the result is bit-identical. stream is layerIndex<<2 | role (0 dense, 1
// and 2 the input and output sides of Kronecker).
func (b *Backend) ProjectRademacher(dst, x []float64, d, k int, seed uint64, stream uint32) error {
	return projectRademacher(b.dev, dst, x, d, k, seed, stream)
}

// ProjectRademacher32 is ProjectRademacher for float32 inputs, which are
// widened exactly; sums and results are float64.
func (b *Backend) ProjectRademacher32(dst []float64, x []float32, d, k int, seed uint64, stream uint32) error {
	return projectRademacher(b.dev, dst, x, d, k, seed, stream)
}

func projectRademacher[T float32 | float64](dev *Device, dst []float64, x []T, d, k int, seed uint64, stream uint32) error {
	rows, err := projectionArgs("ProjectRademacher", len(dst), len(x), d, k)
	if err != nil || rows == 0 {
		return err
	}
	k0, k1 := philoxKey(seed)
	scale := 1 / math.Sqrt(float64(k))
	return dev.do(func() error {
		ks, err := dev.kernels()
		if err != nil {
			return err
		}
		fn, name := ks.rademacherF64, "rademacher_f64"
		if _, ok := any(x).([]float32); ok {
			fn, name = ks.rademacherF32, "rademacher_f32"
		}
		s := &scratch{d: dev}
		defer s.release()
		dx, err := uploadSlice(s, x)
		if err != nil {
			return err
		}
		dout, err := s.get(uint64(rows*k) * 8)
		if err != nil {
			return err
		}
		grid := Dim3{X: (k + radOut - 1) / radOut, Y: min((rows+radRows-1)/radRows, maxGridY)}
		err = dev.launch(fn, name, grid, Dim3{X: radOut}, 0, dev.stream,
			dout, dx, int64(rows), int64(d), int64(k), k0, k1, stream, scale)
		if err != nil {
			return err
		}
		if err := downloadSlice(dev, dst, dout); err != nil {
			return err
		}
		return dev.sync()
	})
}

// ProjectSJLT sets dst (rows × k) to the SJLT of the rows of x (rows × d):
// input i goes to bucket (words[0]·k) >> 32 with sign − when words[1] is
// odd, words = Philox4x32-10 at counter (i, i>>32, 0, stream), and each
// bucket sums its inputs in increasing order, as gradients.Projection does.
// stream is layerIndex<<2 | 3.
func (b *Backend) ProjectSJLT(dst, x []float64, d, k int, seed uint64, stream uint32) error {
	rows, err := projectionArgs("ProjectSJLT", len(dst), len(x), d, k)
	if err != nil || rows == 0 {
		return err
	}
	dev := b.dev
	k0, k1 := philoxKey(seed)
	return dev.do(func() error {
		ks, err := dev.kernels()
		if err != nil {
			return err
		}
		s := &scratch{d: dev}
		defer s.release()
		dbucket, err := s.get(uint64(d) * 4)
		if err != nil {
			return err
		}
		dneg, err := s.get(uint64(d))
		if err != nil {
			return err
		}
		err = dev.launch(ks.sjltHash, "sjlt_hash", Dim3{X: dev.elemGrid(d)}, Dim3{X: elemBlock}, 0, dev.stream,
			dbucket, dneg, int64(d), int64(k), k0, k1, stream)
		if err != nil {
			return err
		}
		// The stable sort by bucket is cheap and sequential: on the host.
		bucket := make([]int32, d)
		if err := downloadSlice(dev, bucket, dbucket); err != nil {
			return err
		}
		if err := dev.sync(); err != nil {
			return err
		}
		order, start := sjltOrder(bucket, k)
		dorder, err := uploadSlice(s, order)
		if err != nil {
			return err
		}
		dstart, err := uploadSlice(s, start)
		if err != nil {
			return err
		}
		dx, err := uploadSlice(s, x)
		if err != nil {
			return err
		}
		dout, err := s.get(uint64(rows*k) * 8)
		if err != nil {
			return err
		}
		grid := Dim3{X: (k + elemBlock - 1) / elemBlock, Y: min(rows, maxGridY)}
		err = dev.launch(ks.sjltGather, "sjlt_gather_f64", grid, Dim3{X: elemBlock}, 0, dev.stream,
			dout, dx, dorder, dstart, dneg, int64(rows), int64(d), int64(k))
		if err != nil {
			return err
		}
		if err := downloadSlice(dev, dst, dout); err != nil {
			return err
		}
		return dev.sync()
	})
}

// checkDamped returns an error naming the first entry where Λ + δ is not
// positive and finite, as ekfac does before inverting.
func checkDamped(lambda []float64, delta float64) error {
	for j, v := range lambda {
		if x := v + delta; !(x > 0) || math.IsInf(x, 0) {
			return fmt.Errorf("cuda: ScaleEKFAC: Λ + δ = %v at entry %d (δ = %g); use a larger damping", x, j, delta)
		}
	}
	return nil
}

// ScaleEKFAC is the middle step of EK-FAC preconditioning: x, rows of
// len(lambda) rotated gradients, is scaled element-wise by 1/(Λ + δ), the
// reciprocal in float64, as ekfac.Precondition does.
func (b *Backend) ScaleEKFAC(x, lambda []float64, delta float64) error {
	return scaleEKFAC(b.dev, x, lambda, delta)
}

// ScaleEKFAC32 is ScaleEKFAC for float32 rows: each product is formed in
// float64 and rounded once.
func (b *Backend) ScaleEKFAC32(x []float32, lambda []float64, delta float64) error {
	return scaleEKFAC(b.dev, x, lambda, delta)
}

func scaleEKFAC[T float32 | float64](dev *Device, x []T, lambda []float64, delta float64) error {
	d := len(lambda)
	if d == 0 || len(x)%d != 0 {
		return fmt.Errorf("cuda: ScaleEKFAC: %d values are not rows of %d", len(x), d)
	}
	if err := checkDamped(lambda, delta); err != nil {
		return err
	}
	if len(x) == 0 {
		return nil
	}
	return dev.do(func() error {
		ks, err := dev.kernels()
		if err != nil {
			return err
		}
		fn, name := ks.ekfacScaleF64, "ekfac_scale_f64"
		if _, ok := any(x).([]float32); ok {
			fn, name = ks.ekfacScaleF32, "ekfac_scale_f32"
		}
		s := &scratch{d: dev}
		defer s.release()
		dx, err := uploadSlice(s, x)
		if err != nil {
			return err
		}
		dl, err := uploadSlice(s, lambda)
		if err != nil {
			return err
		}
		err = dev.launch(fn, name, Dim3{X: dev.elemGrid(len(x))}, Dim3{X: elemBlock}, 0, dev.stream,
			dx, dl, delta, int64(len(x)/d), int64(d))
		if err != nil {
			return err
		}
		if err := downloadSlice(dev, x, dx); err != nil {
			return err
		}
		return dev.sync()
	})
}

// TopK returns, for each row of scores, its k best entries, best first
// (rows × k, row-major): the highest scores, or the lowest when lowest is
// set, ties broken by the lower index, as influence.TopK orders them; NaNs
// come last, where influence.TopK leaves them out (so the two agree on the
// entries before the first NaN, and influence.StreamScores refuses a NaN
// candidate). Indices are offset + column, so that the results of chunks of
// a store can be merged. k is at most 1024 and is reduced to the number of
// columns; offset + columns must not exceed 2³² − 1.
func (b *Backend) TopK(scores *linalg.Dense32, k int, lowest bool, offset int64) (idx []int64, vals []float32, err error) {
	if scores == nil {
		return nil, nil, fmt.Errorf("cuda: TopK: nil scores")
	}
	rows, cols, ld := scores.Rows, scores.Cols, scores.Stride
	switch {
	case k < 0 || k > maxTopK:
		return nil, nil, fmt.Errorf("cuda: TopK: k = %d, want 0 ≤ k ≤ %d", k, maxTopK)
	case offset < 0 || offset+int64(cols) > math.MaxUint32:
		return nil, nil, fmt.Errorf("cuda: TopK: indices %d to %d do not fit 32 bits", offset, offset+int64(cols))
	case rows < 0 || cols < 0 || (rows > 0 && cols > 0 && (ld < cols || len(scores.Data) < (rows-1)*ld+cols)):
		return nil, nil, fmt.Errorf("cuda: TopK: malformed %d×%d matrix (stride %d, %d values)", rows, cols, ld, len(scores.Data))
	}
	k = min(k, cols)
	idx, vals = make([]int64, rows*k), make([]float32, rows*k)
	if k == 0 || rows == 0 {
		return idx, vals, nil
	}
	dev := b.dev
	threads := min(topkThreads, max(dev.info.MaxThreadsPerBlock, 32))
	err = dev.do(func() error {
		ks, err := dev.kernels()
		if err != nil {
			return err
		}
		s := &scratch{d: dev}
		defer s.release()
		dscores, err := uploadSlice(s, scores.Data[:(rows-1)*ld+cols])
		if err != nil {
			return err
		}
		didx, err := s.get(uint64(rows*k) * 8)
		if err != nil {
			return err
		}
		dval, err := s.get(uint64(rows*k) * 4)
		if err != nil {
			return err
		}
		var low int32
		if lowest {
			low = 1
		}
		err = dev.launch(ks.topkF32, "topk_f32", Dim3{X: min(rows, 1<<20)}, Dim3{X: threads}, 0, dev.stream,
			didx, dval, dscores, int64(rows), int64(cols), int64(ld), int32(k), low, offset)
		if err != nil {
			return err
		}
		if err := downloadSlice(dev, idx, didx); err != nil {
			return err
		}
		if err := downloadSlice(dev, vals, dval); err != nil {
			return err
		}
		return dev.sync()
	})
	if err != nil {
		return nil, nil, err
	}
	return idx, vals, nil
}

// WidenF16 converts binary16 values to float32 on the device, bit for bit
// as linalg.F16ToF32.
func (b *Backend) WidenF16(dst []float32, src []uint16) error {
	return widen(b.dev, "f16_to_f32", dst, src)
}

// WidenBF16 converts bfloat16 values to float32 on the device, bit for bit
// as linalg.BF16ToF32.
func (b *Backend) WidenBF16(dst []float32, src []uint16) error {
	return widen(b.dev, "bf16_to_f32", dst, src)
}

func widen(dev *Device, name string, dst []float32, src []uint16) error {
	if len(dst) != len(src) {
		return fmt.Errorf("cuda: %s: len(dst) = %d, len(src) = %d", name, len(dst), len(src))
	}
	if len(src) == 0 {
		return nil
	}
	return dev.do(func() error {
		ks, err := dev.kernels()
		if err != nil {
			return err
		}
		fn := ks.f16ToF32
		if name == "bf16_to_f32" {
			fn = ks.bf16ToF32
		}
		s := &scratch{d: dev}
		defer s.release()
		dsrc, err := uploadSlice(s, src)
		if err != nil {
			return err
		}
		ddst, err := s.get(uint64(len(dst)) * 4)
		if err != nil {
			return err
		}
		err = dev.launch(fn, name, Dim3{X: dev.elemGrid(len(src))}, Dim3{X: elemBlock}, 0, dev.stream,
			ddst, dsrc, int64(len(src)))
		if err != nil {
			return err
		}
		if err := downloadSlice(dev, dst, ddst); err != nil {
			return err
		}
		return dev.sync()
	})
}

// philoxKey returns the key of a 64-bit seed: low word, high word.
func philoxKey(seed uint64) (k0, k1 uint32) { return uint32(seed), uint32(seed >> 32) }

// sjltOrder sorts the inputs by bucket, stably (inputs of a bucket in
// increasing order), for sjlt_gather_f64: order lists them and bucket b's
// inputs are order[start[b]:start[b+1]].
func sjltOrder(bucket []int32, k int) (order, start []int64) {
	start = make([]int64, k+1)
	for _, b := range bucket {
		start[b+1]++
	}
	for b := range k {
		start[b+1] += start[b]
	}
	next := slices.Clone(start[:k])
	order = make([]int64, len(bucket))
	for i, b := range bucket {
		order[next[b]] = int64(i)
		next[b]++
	}
	return order, start
}

// maxTopK bounds k in TopK (the kernel sorts the k entries in shared
// memory).
const maxTopK = 1024

// The capabilities the pipeline finds on this backend by type assertion.
var (
	_ accel.Projector      = (*Backend)(nil)
	_ accel.EKFACScaler    = (*Backend)(nil)
	_ linalg.ScoreStreamer = (*Backend)(nil)
	_ accel.Int8Gemmer     = (*Backend)(nil)
)
