package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/backendtest"
)

// TestAutoWithoutGPU checks linalg.Auto with this package imported: the
// GPU when one opens, else silently the next backend; and that
// GOINFLUENCE_BACKEND=cuda turns a missing GPU into an error saying why, in
// Auto and in Default.
func TestAutoWithoutGPU(t *testing.T) {
	if !slices.Contains(linalg.Backends(), "cuda") || linalg.Backends()[0] != "cuda" {
		t.Fatalf("cuda not registered first: %v", linalg.Backends())
	}
	_, openErr := linalg.Open("cuda")

	t.Setenv(linalg.EnvBackend, "")
	b, err := linalg.Auto()
	if err != nil {
		t.Fatalf("Auto: %v", err)
	}
	if openErr == nil {
		if b.Name() != "cuda" {
			t.Errorf("a GPU opens but Auto chose %s", b.Name())
		}
		t.Skip("a GPU is present")
	}
	if b.Name() != "openblas" && b.Name() != "cpu" {
		t.Errorf("without a GPU Auto chose %s", b.Name())
	}

	t.Setenv(linalg.EnvBackend, "cuda")
	_, err = linalg.Auto()
	if err == nil || !strings.Contains(err.Error(), linalg.EnvBackend+"=cuda") || !errors.Is(err, ErrLibraryNotFound) && !errors.Is(err, ErrNoDevice) &&
		!errors.Is(err, ErrInit) && !errors.Is(err, ErrDriverTooOld) && !errors.Is(err, ErrSymbolMissing) && !errors.Is(err, ErrNoCUBLAS) {
		t.Errorf("%s=cuda without a GPU: Auto error %v", linalg.EnvBackend, err)
	}
	t.Logf("%s=cuda: %v", linalg.EnvBackend, err)
	// A forced backend that cannot open is never silently replaced:
	// Default, which has no error to return, panics with Auto's error.
	func() {
		defer func() {
			if r, ok := recover().(error); !ok || r.Error() != err.Error() {
				t.Errorf("%s=cuda without a GPU: Default() recovered %v, want a panic with %v", linalg.EnvBackend, r, err)
			}
		}()
		d := linalg.Default()
		t.Errorf("%s=cuda without a GPU: Default() = %s", linalg.EnvBackend, d.Name())
	}()
}

var (
	gpuOnce sync.Once
	gpuBe   *Backend
	gpuErr  error
)

// gpu returns a backend on device 0 that sends every product to the GPU, or
// skips the test with one line saying why there is none.
func gpu(tb testing.TB) *Backend {
	tb.Helper()
	gpuOnce.Do(func() {
		d, err := Open()
		if err != nil {
			gpuErr = err
			return
		}
		gpuBe, gpuErr = NewBackend(d, Options{})
	})
	if gpuErr != nil {
		tb.Skip("cuda: no GPU: " + strings.TrimPrefix(gpuErr.Error(), "cuda: "))
	}
	return gpuBe
}

// gpuKernels is gpu for tests of the package's own kernels, which also
// need PTX (or NVRTC).
func gpuKernels(tb testing.TB) *Backend {
	tb.Helper()
	b := gpu(tb)
	var err error
	b.dev.do(func() error { _, err = b.dev.kernels(); return nil })
	if err != nil {
		tb.Skip("cuda: no kernels: " + strings.TrimPrefix(err.Error(), "cuda: no kernels: "))
	}
	return b
}

// TestConformance runs linalg's conformance suite on the GPU backend, with
// every product on the GPU, then with the default options.
func TestConformance(t *testing.T) {
	b := gpu(t)
	t.Logf("%v", b.dev.Info())
	backendtest.Run(t, b)
	if b.Err() != nil || b.Fallbacks() != 0 {
		t.Errorf("%d calls fell back to the host; first error: %v", b.Fallbacks(), b.Err())
	}
	t.Run("registered", func(t *testing.T) {
		be, err := linalg.Open("cuda")
		if err != nil {
			t.Fatal(err)
		}
		backendtest.Run(t, be)
	})
}

func TestGPUDevice(t *testing.T) {
	b := gpu(t)
	d := b.dev
	info := d.Info()
	if info.Name == "" || info.Major < 3 || info.SMs < 1 || info.Memory == 0 || info.DriverVersion < MinDriverVersion {
		t.Errorf("Info = %+v", info)
	}
	v, err := d.BLASVersion()
	t.Logf("%v; cuBLAS %d; kernels from %q", info, v, d.PTXSource())
	if err != nil || v < 11000 {
		t.Errorf("BLASVersion = %d, %v", v, err)
	}
	n, err := DeviceCount()
	if err != nil || n < 1 {
		t.Errorf("DeviceCount = %d, %v", n, err)
	}
	free, total, err := d.MemInfo()
	if err != nil || free == 0 || total < free {
		t.Errorf("MemInfo = %d, %d, %v", free, total, err)
	}

	// Copies, events and streams.
	src := make([]float32, 1<<20)
	for i := range src {
		src[i] = float32(i) * 0.5
	}
	buf, err := d.Alloc(4 * len(src))
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	e0, _ := d.NewEvent()
	e1, _ := d.NewEvent()
	defer e0.Close()
	defer e1.Close()
	e0.Record(nil)
	if err := Upload(buf, src); err != nil {
		t.Fatal(err)
	}
	e1.Record(nil)
	e1.Synchronize()
	dt, err := Elapsed(e0, e1)
	if err != nil || dt < 0 {
		t.Errorf("Elapsed = %v, %v", dt, err)
	}
	got := make([]float32, len(src))
	if err := Download(got, buf); err != nil || !slices.Equal(got, src) {
		t.Errorf("round trip through device memory: %v", err)
	}
	s, err := d.NewStream()
	if err != nil || s.Synchronize() != nil || s.Close() != nil {
		t.Errorf("stream: %v", err)
	}

	// Running out of memory is an error, not a crash, and the pool
	// recovers.
	if _, err := d.Alloc(int(min(uint64(math.MaxInt), 2*total))); !errors.Is(err, OutOfMemory) {
		t.Errorf("Alloc(2×memory) = %v, want OutOfMemory", err)
	}
	if st, err := d.PoolStats(); err != nil {
		t.Error(err)
	} else {
		t.Logf("pool: %+v", st)
	}
}

// TestGPUGemmDeterministic checks that repeated products are bit-identical
// (cuBLAS picks the same kernel for the same shape).
func TestGPUGemmDeterministic(t *testing.T) {
	b := gpu(t)
	rng := rand.New(rand.NewPCG(1, 1))
	a, bm := linalg.NewDense32(513, 700, nil), linalg.NewDense32(700, 300, nil)
	for _, m := range []*linalg.Dense32{a, bm} {
		for i := range m.Data {
			m.Data[i] = float32(rng.NormFloat64())
		}
	}
	c1, c2 := linalg.NewDense32(513, 300, nil), linalg.NewDense32(513, 300, nil)
	b.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, bm, 0, c1)
	b.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, bm, 0, c2)
	for i := range c1.Data {
		if math.Float32bits(c1.Data[i]) != math.Float32bits(c2.Data[i]) {
			t.Fatalf("element %d: %v then %v", i, c1.Data[i], c2.Data[i])
		}
	}
}

// TestGPUTF32 checks the opt-in TF32 Sgemm against float64 with TF32's
// own bound: inputs rounded to 11 significant bits, 2·2⁻¹¹ per term.
func TestGPUTF32(t *testing.T) {
	d := gpu(t).dev
	if d.Info().Major < 8 {
		t.Skip("cuda: TF32 needs compute capability 8.0")
	}
	b, err := NewBackend(d, Options{TF32: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	const m, n, k = 256, 192, 512
	a, bm, c := linalg.NewDense32(m, k, nil), linalg.NewDense32(k, n, nil), linalg.NewDense32(m, n, nil)
	for _, x := range []*linalg.Dense32{a, bm} {
		for i := range x.Data {
			x.Data[i] = float32(rng.NormFloat64())
		}
	}
	b.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, bm, 0, c)
	var worst float64
	for i := range m {
		for j := range n {
			var s, mag float64
			for l := range k {
				p := float64(a.At(i, l)) * float64(bm.At(l, j))
				s += p
				mag += math.Abs(p)
			}
			worst = max(worst, math.Abs(float64(c.At(i, j))-s)/(mag*(k+2)*2*0x1p-11))
		}
	}
	if worst > 1 || b.Err() != nil {
		t.Errorf("TF32 error %.3g× bound; backend error %v", worst, b.Err())
	}
	t.Logf("TF32 error %.3g of the bound", worst)
}

// TestGPUKernels holds each kernel to its reference, bit for bit.
func TestGPUKernels(t *testing.T) {
	b := gpuKernels(t)
	rng := rand.New(rand.NewPCG(3, 3))
	const seed = 0x5eed_0000_0001

	t.Run("widen", func(t *testing.T) {
		h := make([]uint16, 1<<16+5)
		for i := range h {
			h[i] = uint16(i * 7919)
		}
		got := make([]float32, len(h))
		for _, tc := range []struct {
			name string
			f    func([]float32, []uint16) error
			ref  func(uint16) uint32
		}{{"f16", b.WidenF16, refF16}, {"bf16", b.WidenBF16, refBF16}} {
			if err := tc.f(got, h); err != nil {
				t.Fatal(err)
			}
			for i, x := range h {
				if math.Float32bits(got[i]) != tc.ref(x) {
					t.Fatalf("%s(%#04x) = %#08x, want %#08x", tc.name, x, math.Float32bits(got[i]), tc.ref(x))
				}
			}
		}
	})

	t.Run("rademacher", func(t *testing.T) {
		for _, tc := range []struct{ rows, d, k int }{{1, 1, 1}, {5, 1000, 300}, {70, 513, 128}, {3, 20000, 1024}} {
			x := gradValues(rng, tc.rows*tc.d)
			stream := uint32(3<<2 | 2)
			want, got := make([]float64, tc.rows*tc.k), make([]float64, tc.rows*tc.k)
			refRademacher(want, x, tc.d, tc.k, seed, stream)
			if err := b.ProjectRademacher(got, x, tc.d, tc.k, seed, stream); err != nil {
				t.Fatal(err)
			}
			sameFloat64s(t, fmt.Sprintf("ProjectRademacher %+v", tc), got, want)
			x32 := make([]float32, len(x))
			for i := range x {
				x32[i] = float32(x[i])
				x[i] = float64(x32[i])
			}
			refRademacher(want, x, tc.d, tc.k, seed, stream)
			if err := b.ProjectRademacher32(got, x32, tc.d, tc.k, seed, stream); err != nil {
				t.Fatal(err)
			}
			sameFloat64s(t, fmt.Sprintf("ProjectRademacher32 %+v", tc), got, want)
		}
	})

	t.Run("gradients", func(t *testing.T) {
		// The whole of a gradients.Projection, layer by layer.
		const n = 9
		batch := &gradients.Batch{N: n, Layers: []gradients.Layer{
			{Name: "a", D: 4000, Grad: gradValues(rng, n*4000)},
			{Name: "b", D: 33, Grad: gradValues(rng, n*33)},
		}}
		for _, kind := range []gradients.ProjectionKind{gradients.Rademacher, gradients.SJLT} {
			p := gradients.Projection{Kind: kind, K: 257, Seed: seed}
			want, err := p.Apply(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			for li, l := range batch.Layers {
				got := make([]float64, n*p.K)
				if kind == gradients.Rademacher {
					err = b.ProjectRademacher(got, l.Grad, l.D, p.K, seed, uint32(li)<<2)
				} else {
					err = b.ProjectSJLT(got, l.Grad, l.D, p.K, seed, uint32(li)<<2|3)
				}
				if err != nil {
					t.Fatal(err)
				}
				sameFloat64s(t, kind.String()+" "+l.Name, got, want.Layers[li].Grad)
			}
		}
	})

	t.Run("sjlt", func(t *testing.T) {
		for _, tc := range []struct{ rows, d, k int }{{1, 1, 1}, {4, 5000, 100}, {300, 64, 1000}} {
			x := gradValues(rng, tc.rows*tc.d)
			want, got := make([]float64, tc.rows*tc.k), make([]float64, tc.rows*tc.k)
			refSJLT(want, x, tc.d, tc.k, seed, 7)
			if err := b.ProjectSJLT(got, x, tc.d, tc.k, seed, 7); err != nil {
				t.Fatal(err)
			}
			sameFloat64s(t, fmt.Sprintf("ProjectSJLT %+v", tc), got, want)
		}
	})

	t.Run("ekfac", func(t *testing.T) {
		const n, d, delta = 50, 1234, 1e-4
		lambda := make([]float64, d)
		for i := range lambda {
			lambda[i] = math.Abs(rng.NormFloat64()) * math.Exp2(float64(rng.IntN(20)-10))
		}
		x := gradValues(rng, n*d)
		want := slices.Clone(x)
		refScaleEKFAC(want, lambda, delta)
		if err := b.ScaleEKFAC(x, lambda, delta); err != nil {
			t.Fatal(err)
		}
		sameFloat64s(t, "ScaleEKFAC", x, want)
		x32 := make([]float32, n*d)
		for i := range x32 {
			x32[i] = float32(rng.NormFloat64())
		}
		want32 := slices.Clone(x32)
		refScaleEKFAC32(want32, lambda, delta)
		if err := b.ScaleEKFAC32(x32, lambda, delta); err != nil {
			t.Fatal(err)
		}
		for i := range x32 {
			if math.Float32bits(x32[i]) != math.Float32bits(want32[i]) {
				t.Fatalf("ScaleEKFAC32 element %d = %v, want %v", i, x32[i], want32[i])
			}
		}
	})

	t.Run("topk", func(t *testing.T) {
		levels := []float32{-1, 0, float32(math.Copysign(0, -1)), 2, float32(math.NaN()), float32(math.Inf(1))}
		for _, tc := range []struct {
			rows, cols, k int
			view          bool
			offset        int64
		}{{1, 1, 1, false, 0}, {7, 1000, 10, true, 0}, {3, 100000, 1024, false, 1 << 20}, {200, 3000, 100, true, 5}, {2, 50, 64, false, 0}} {
			ld := tc.cols
			if tc.view {
				ld += 3
			}
			s := linalg.NewDense32(tc.rows, ld, nil)
			for i := range s.Data {
				if rng.IntN(3) == 0 {
					s.Data[i] = levels[rng.IntN(len(levels))]
				} else {
					s.Data[i] = float32(rng.NormFloat64())
				}
			}
			v := s.Slice(0, tc.rows, 0, tc.cols)
			for _, lowest := range []bool{false, true} {
				idx, vals, err := b.TopK(v, tc.k, lowest, tc.offset)
				if err != nil {
					t.Fatal(err)
				}
				k := min(tc.k, tc.cols)
				for r := range tc.rows {
					wi, wv := refTopK(v.Row(r), tc.k, lowest, tc.offset)
					if !slices.Equal(idx[r*k:(r+1)*k], wi) {
						t.Fatalf("%+v lowest %v row %d: indices differ from the reference", tc, lowest, r)
					}
					for p := range wv {
						if math.Float32bits(vals[r*k+p]) != math.Float32bits(wv[p]) {
							t.Fatalf("%+v row %d: value %d = %v, want %v", tc, r, p, vals[r*k+p], wv[p])
						}
					}
				}
			}
		}
	})
}
