package gradients

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/accel"
)

// ErrProjection is the cause of errors about a projection's parameters or a
// layer it cannot project.
var ErrProjection = errors.New("invalid projection")

// ProjectionKind selects the random matrix of a Projection.
type ProjectionKind int

// Projection kinds. The zero value is no kind, so that a Projection must
// name one.
const (
	// Rademacher is a dense JL map with entries ±1/√k.
	Rademacher ProjectionKind = iota + 1
	// SJLT is a sparse JL map with one ±1 entry per input column.
	SJLT
	// Gaussian is a dense JL map with N(0, 1/k) entries. Its entries go
	// through math.Log, math.Cos and math.Sin and so are not guaranteed to
	// be bit-identical across platforms; the other kinds are.
	Gaussian
	// Kronecker (LoGra) projects a factored layer's activations with a
	// KIn × DIn Rademacher matrix and its output gradients with a
	// KOut × DOut one, so that the projected gradient is P_out G P_inᵀ.
	Kronecker
)

var kindNames = [...]string{Rademacher: "rademacher", SJLT: "sjlt", Gaussian: "gaussian", Kronecker: "kronecker"}

// String returns the kind's name, as ParseProjectionKind reads it, and
// "none" for the zero kind (no projection).
func (k ProjectionKind) String() string {
	if k == 0 {
		return "none"
	}
	if k < Rademacher || k > Kronecker {
		return fmt.Sprintf("ProjectionKind(%d)", int(k))
	}
	return kindNames[k]
}

// ParseProjectionKind returns the kind named s (rademacher, sjlt, gaussian
// or kronecker, in any case).
func ParseProjectionKind(s string) (ProjectionKind, error) {
	for k := Rademacher; k <= Kronecker; k++ {
		if strings.EqualFold(s, kindNames[k]) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown kind %q (have rademacher, sjlt, gaussian, kronecker)", ErrProjection, s)
}

// MaxProjectionDim bounds the output dimensions of a Projection. Projecting
// to more dimensions than the input has is pointless but allowed; beyond
// this it is almost certainly a mistake that would exhaust memory.
const MaxProjectionDim = 1 << 24

// Stream roles: the low two bits of a Philox stream word, whose other bits
// are the layer's position in the batch.
const (
	roleDense   = 0 // Rademacher and Gaussian
	roleKronIn  = 1 // Kronecker input (activation) side
	roleKronOut = 2 // Kronecker output-gradient side
	roleSJLT    = 3
)

func stream(layer int, role uint32) uint32 { return uint32(layer)<<2 | role }

// Projection is a seeded random projection of per-example gradients, applied
// layer by layer. Layer l (its position in Batch.Layers) draws its matrix
// from the Philox4x32-10 stream l<<2|role under Key(Seed), where role is 0
// for Rademacher and Gaussian, 1 and 2 for the input and output sides of
// Kronecker and 3 for SJLT. Entry P[j][i] (output j, input i) uses
//
//   - Rademacher: the words of counter (uint32(i), uint32(i>>32), uint32(j/128), stream);
//     bit b = j mod 128, that is (words[b/32] >> (b%32)) & 1, is 0 for +1/√k
//     and 1 for −1/√k.
//   - Gaussian: the words of counter (uint32(i), uint32(i>>32), uint32(j/2), stream);
//     with u1 = (words[0]+0.5)/2³², u2 = (words[1]+0.5)/2³² and
//     r = √(−2 ln u1), the entry is r·cos(2πu2)/√k for even j and
//     r·sin(2πu2)/√k for odd j.
//   - SJLT: input i has the single nonzero P[bucket][i] = ±1 where, with the
//     words of counter (uint32(i), uint32(i>>32), 0, stream),
//     bucket = (uint64(words[0])·k) >> 32 and the sign is + when words[1]&1 = 0.
//
// The flattened gradient index of weight entry (row, col) is row·DIn + col.
// An output is accumulated in float64 over inputs in increasing order, as
// Σ_i (±1 or z_ji)·g_i, and then multiplied by 1/√k, so it does not depend on
// GOMAXPROCS, block sizes or how examples are batched.
type Projection struct {
	Kind      ProjectionKind
	K         int // output dimension per layer of Rademacher, SJLT and Gaussian
	KIn, KOut int // output dimensions of the two sides of Kronecker
	Seed      uint64
}

// check validates the parameters that do not depend on the batch.
func (p Projection) check() error {
	bad := func(format string, args ...any) error {
		return &Error{Example: -1, Err: fmt.Errorf("%w: "+format, append([]any{ErrProjection}, args...)...)}
	}
	switch p.Kind {
	case Rademacher, SJLT, Gaussian:
		if p.K < 1 || p.K > MaxProjectionDim {
			return bad("%s: k = %d, want 1 ≤ k ≤ %d", p.Kind, p.K, MaxProjectionDim)
		}
	case Kronecker:
		if p.KIn < 1 || p.KIn > MaxProjectionDim || p.KOut < 1 || p.KOut > MaxProjectionDim {
			return bad("kronecker: k_in = %d, k_out = %d, want each in [1, %d]", p.KIn, p.KOut, MaxProjectionDim)
		}
	default:
		return bad("unknown kind %v", p.Kind)
	}
	return nil
}

// Apply returns the projection of b. Rademacher, SJLT and Gaussian give one
// dense layer of dimension K per layer of b, flattening factored layers
// (G_n = Σ_t s aᵀ). Kronecker needs factored layers and gives factored
// layers with DIn = KIn and DOut = KOut and the same token rows: â = P_in a
// and ŝ = P_out s, so that EK-FAC runs on the projected layers unchanged.
// Layer names, their order and the IDs are kept. b is validated first; errors
// name the layer at fault. The products run on the host; ApplyWith runs
// them on a backend that can.
func (p Projection) Apply(ctx context.Context, b *Batch) (*Batch, error) {
	return p.ApplyWith(ctx, b, ApplyOptions{})
}

// ApplyOptions configure Projection.ApplyWith.
type ApplyOptions struct {
	// Backend runs the Rademacher and SJLT products (Kronecker's sides
	// included) when it implements accel.Projector, such as the cuda
	// backend, which computes them bit for bit as the host does; a product
	// the backend fails to run is computed on the host. Nil means the host.
	Backend linalg.Backend
	// MemoryLimit bounds, in bytes, the buffers sized from b's shapes: the
	// projected examples and, for the dense kinds, the flattened gradients
	// of a factored layer (DOut × DIn an example). 0 means
	// linalg.DefaultMemoryLimit(), a negative value no limit (see
	// linalg.CheckMemory).
	MemoryLimit int64
}

// ApplyWith is Apply with options.
func (p Projection) ApplyWith(ctx context.Context, b *Batch, opt ApplyOptions) (*Batch, error) {
	dev, _ := opt.Backend.(accel.Projector)
	if err := p.check(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, &Error{Example: -1, Err: fmt.Errorf("%w: nil batch", ErrShape)}
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if len(b.Layers) > 1<<30 {
		return nil, &Error{Example: -1, Err: fmt.Errorf("%w: %d layers, more than the 2³⁰ a stream word can number", ErrProjection, len(b.Layers))}
	}
	out := &Batch{N: b.N, IDs: slices.Clone(b.IDs), Layers: make([]Layer, len(b.Layers))}
	for li := range b.Layers {
		l := &b.Layers[li]
		var err error
		if p.Kind == Kronecker {
			out.Layers[li], err = p.kronecker(ctx, dev, l, li, b.N)
		} else {
			out.Layers[li], err = p.dense(ctx, dev, l, li, b.N, opt.MemoryLimit)
		}
		if err != nil {
			return nil, &Error{Layer: l.Name, Example: -1, Err: err}
		}
	}
	return out, nil
}

// flattenChunk bounds the values of the flattened gradients of a factored
// layer held at once by a dense projection. Results do not depend on it.
var flattenChunk = 1 << 23

func (p Projection) dense(ctx context.Context, dev accel.Projector, l *Layer, li, n int, limit int64) (Layer, error) {
	role := uint32(roleDense)
	if p.Kind == SJLT {
		role = roleSJLT
	}
	pr := newProjector(p.Kind, p.K, p.Seed, stream(li, role))
	pr.dev = dev
	out := Layer{Name: l.Name, D: p.K, Grad: make([]float64, n*p.K)}
	d := l.Dim()
	if !l.Factored() {
		return out, pr.project(ctx, l.Grad, d, out.Grad)
	}
	chunk := max(1, min(n, flattenChunk/d))
	// A factored layer's a and s are small, but its flattened gradient is
	// DOut × DIn: refuse shapes whose one example would not fit in memory.
	if err := linalg.CheckMemory("flattened gradient", fmt.Sprintf("%d × %d × %d float64", chunk, l.DOut, l.DIn),
		linalg.Float64Bytes(chunk, l.DOut, l.DIn), limit); err != nil {
		return Layer{}, err
	}
	buf := make([]float64, chunk*d)
	for lo := 0; lo < n; lo += chunk {
		hi := min(n, lo+chunk)
		err := parallel(ctx, hi-lo, func(e int) error {
			l.Gradient(lo+e, buf[e*d:(e+1)*d])
			return nil
		})
		if err != nil {
			return Layer{}, err
		}
		if err := pr.project(ctx, buf[:(hi-lo)*d], d, out.Grad[lo*p.K:hi*p.K]); err != nil {
			return Layer{}, err
		}
	}
	return out, nil
}

func (p Projection) kronecker(ctx context.Context, dev accel.Projector, l *Layer, li, n int) (Layer, error) {
	if !l.Factored() {
		return Layer{}, fmt.Errorf("%w: kronecker needs a factored layer (activations a and output gradients s), but this one is dense (grad of dimension %d)", ErrProjection, l.D)
	}
	out := Layer{Name: l.Name, DIn: p.KIn, DOut: p.KOut, Tokens: l.Tokens, TokenAxis: l.TokenAxis,
		A: make([]float64, n*l.Tokens*p.KIn), S: make([]float64, n*l.Tokens*p.KOut)}
	in := newProjector(Rademacher, p.KIn, p.Seed, stream(li, roleKronIn))
	in.dev = dev
	if err := in.project(ctx, l.A, l.DIn, out.A); err != nil {
		return Layer{}, err
	}
	outSide := newProjector(Rademacher, p.KOut, p.Seed, stream(li, roleKronOut))
	outSide.dev = dev
	if err := outSide.project(ctx, l.S, l.DOut, out.S); err != nil {
		return Layer{}, err
	}
	return out, nil
}

// projectBlock is the number of inputs whose matrix entries are generated
// at a time. Results do not depend on it; tests vary it to show that.
var projectBlock = 256

// outBlock is the number of outputs one Rademacher Philox block covers.
const outBlock = 128

// projector applies one layer's matrix to rows of inputs.
type projector struct {
	kind   ProjectionKind // Rademacher, SJLT or Gaussian
	k      int
	seed   uint64
	key    [2]uint32
	stream uint32
	block  int             // inputs per generated tile
	dev    accel.Projector // runs Rademacher and SJLT products when not nil
}

func newProjector(kind ProjectionKind, k int, seed uint64, stream uint32) projector {
	return projector{kind: kind, k: k, seed: seed, key: Key(seed), stream: stream, block: max(1, projectBlock)}
}

// counter returns the Philox counter of input i and word w.
func (pr *projector) counter(i int, w uint32) [4]uint32 {
	return [4]uint32{uint32(i), uint32(uint64(i) >> 32), w, pr.stream}
}

// fill sets tile[(i-i0)*outBlock + j-j0] to the unscaled entry (±1 or a
// standard normal) of output j in [j0, j0+m) and input i in [i0, i1); j0 is
// a multiple of outBlock.
func (pr *projector) fill(tile []float64, j0, m, i0, i1 int) {
	for i := i0; i < i1; i++ {
		t := tile[(i-i0)*outBlock:][:m]
		if pr.kind == Rademacher {
			w := Philox4x32(pr.counter(i, uint32(j0/outBlock)), pr.key)
			for j := range t {
				t[j] = float64(1 - 2*int(w[j>>5]>>(j&31)&1))
			}
			continue
		}
		for j := 0; j < m; j += 2 {
			w := Philox4x32(pr.counter(i, uint32((j0+j)/2)), pr.key)
			z0, z1 := boxMuller(w[0], w[1])
			t[j] = z0
			if j+1 < m {
				t[j+1] = z1
			}
		}
	}
}

// boxMuller maps two uniform words to two independent standard normals. The
// +0.5 keeps u1 away from 0, where the logarithm diverges.
func boxMuller(w0, w1 uint32) (z0, z1 float64) {
	u1 := (float64(w0) + 0.5) / (1 << 32)
	u2 := (float64(w1) + 0.5) / (1 << 32)
	r := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	return r * c, r * s
}

// sjlt returns the bucket and sign of input i.
func (pr *projector) sjlt(i int) (int, float64) {
	w := Philox4x32(pr.counter(i, 0), pr.key)
	return int(uint64(w[0]) * uint64(pr.k) >> 32), float64(1 - 2*int(w[1]&1))
}

// project sets dst (rows × k) to the projections of the rows of x
// (rows × d, row-major). Work is split over output blocks and row groups,
// never over the inputs of one sum.
func (pr *projector) project(ctx context.Context, x []float64, d int, dst []float64) error {
	rows := len(x) / d
	if rows == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case pr.dev == nil:
	case pr.kind == Rademacher:
		if pr.dev.ProjectRademacher(dst, x, d, pr.k, pr.seed, pr.stream) == nil {
			return nil
		}
	case pr.kind == SJLT:
		if pr.dev.ProjectSJLT(dst, x, d, pr.k, pr.seed, pr.stream) == nil {
			return nil
		}
	}
	clear(dst)
	workers := runtime.GOMAXPROCS(0)
	nb := 1
	if pr.kind != SJLT {
		nb = (pr.k + outBlock - 1) / outBlock
	}
	// Enough row groups to keep every worker busy; each regenerates its
	// tiles, so no more than that.
	groups := min(rows, max(1, (workers+nb-1)/nb))
	per := (rows + groups - 1) / groups
	groups = (rows + per - 1) / per
	return parallel(ctx, nb*groups, func(item int) error {
		jb, g := item/groups, item%groups
		r0, r1 := g*per, min(rows, (g+1)*per)
		if pr.kind == SJLT {
			return pr.sparseRows(ctx, x, d, dst, r0, r1)
		}
		return pr.denseRows(ctx, x, d, dst, jb*outBlock, r0, r1)
	})
}

// denseRows accumulates outputs [j0, j0+outBlock) of rows [r0, r1).
func (pr *projector) denseRows(ctx context.Context, x []float64, d int, dst []float64, j0, r0, r1 int) error {
	k, m := pr.k, min(outBlock, pr.k-j0)
	tile := make([]float64, pr.block*outBlock)
	for i0 := 0; i0 < d; i0 += pr.block {
		if err := ctx.Err(); err != nil {
			return err
		}
		i1 := min(d, i0+pr.block)
		pr.fill(tile, j0, m, i0, i1)
		for r := r0; r < r1; r++ {
			acc := dst[r*k+j0:][:m]
			for ii, xi := range x[r*d+i0 : r*d+i1] {
				// A sum that starts at +0 is never −0, so adding ±0 would
				// leave it unchanged: skipping zeros (ReLU activations)
				// changes no bit.
				if xi == 0 {
					continue
				}
				t := tile[ii*outBlock:][:m]
				for j, v := range t {
					// The conversion forbids fusing into an FMA, which
					// would round differently on some platforms.
					acc[j] += float64(v * xi)
				}
			}
		}
	}
	scale := 1 / math.Sqrt(float64(k))
	for r := r0; r < r1; r++ {
		for j := range dst[r*k+j0:][:m] {
			dst[r*k+j0+j] *= scale
		}
	}
	return nil
}

// sparseRows accumulates the SJLT outputs of rows [r0, r1).
func (pr *projector) sparseRows(ctx context.Context, x []float64, d int, dst []float64, r0, r1 int) error {
	k := pr.k
	bucket := make([]int, pr.block)
	sign := make([]float64, pr.block)
	for i0 := 0; i0 < d; i0 += pr.block {
		if err := ctx.Err(); err != nil {
			return err
		}
		i1 := min(d, i0+pr.block)
		for i := i0; i < i1; i++ {
			bucket[i-i0], sign[i-i0] = pr.sjlt(i)
		}
		for r := r0; r < r1; r++ {
			acc := dst[r*k : (r+1)*k]
			for ii, xi := range x[r*d+i0 : r*d+i1] {
				acc[bucket[ii]] += sign[ii] * xi
			}
		}
	}
	return nil
}

// parallel runs f(0), …, f(n-1) on up to GOMAXPROCS goroutines and returns
// the first error, or ctx's error once it is done.
func parallel(ctx context.Context, n int, f func(int) error) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := ctx.Err(); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
				if err := f(i); err != nil {
					errOnce.Do(func() { first = err })
					next.Store(int64(n)) // stop handing out work
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// RademacherMatrix returns the k × d Rademacher matrix of seed and stream,
// entries ±1/√k, as Projection uses it. It panics if k or d is negative.
func RademacherMatrix(k, d int, seed uint64, stream uint32) *linalg.Dense64 {
	return matrix(Rademacher, k, d, seed, stream)
}

// GaussianMatrix returns the k × d Gaussian matrix of seed and stream,
// entries N(0, 1/k), as Projection uses it. It panics if k or d is negative.
func GaussianMatrix(k, d int, seed uint64, stream uint32) *linalg.Dense64 {
	return matrix(Gaussian, k, d, seed, stream)
}

func matrix(kind ProjectionKind, k, d int, seed uint64, stream uint32) *linalg.Dense64 {
	p := linalg.NewDense64(k, d, nil)
	pr := newProjector(kind, k, seed, stream)
	scale := 1 / math.Sqrt(float64(k))
	tile := make([]float64, outBlock)
	for j0 := 0; j0 < k; j0 += outBlock {
		m := min(outBlock, k-j0)
		for i := 0; i < d; i++ {
			pr.fill(tile, j0, m, i, i+1)
			for j, v := range tile[:m] {
				p.Set(j0+j, i, v*scale)
			}
		}
	}
	return p
}

// SJLTBuckets returns, for each input i < d, the output bucket in [0, k) of
// the SJLT of seed and stream and its sign ±1. It panics if k < 1 or d < 0.
func SJLTBuckets(k, d int, seed uint64, stream uint32) (buckets []int, signs []float64) {
	if k < 1 {
		panic(fmt.Sprintf("gradients: SJLT with k = %d", k))
	}
	pr := newProjector(SJLT, k, seed, stream)
	buckets, signs = make([]int, d), make([]float64, d)
	for i := range d {
		buckets[i], signs[i] = pr.sjlt(i)
	}
	return buckets, signs
}
