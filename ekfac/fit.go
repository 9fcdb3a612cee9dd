package ekfac

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/progress"
)

// Covariance accumulates the unnormalised sums Σ a aᵀ and Σ s sᵀ of every
// factored layer over token rows, in float64, so that batches, files and
// shards add up in any split: Add any number of batches, then Eigen.
type Covariance struct {
	// MemoryLimit bounds, in bytes, each covariance and eigendecomposition
	// workspace allocated from the layer shapes of the first batch, which
	// come from untrusted file headers: 0 means linalg.DefaultMemoryLimit(),
	// a negative value no limit (see linalg.CheckMemory).
	MemoryLimit int64
	// Precision F32 forms each batch's products Σ a aᵀ and Σ s sᵀ in
	// float32 and adds them into the float64 sums; F64 (the zero value)
	// computes in float64 throughout. Set it before the first Add.
	Precision Precision

	be     linalg.Backend
	layers []covLayer
	n      int
	work   work32 // F32: the narrowed rows, kept between batches
}

type covLayer struct {
	shape
	a, s *linalg.Dense64 // sums
	m    int             // token rows seen
}

// shape is what must agree between batches for a layer.
type shape struct {
	name            string
	din, dout, dim  int
	factored, dense bool
}

// NewCovariance returns an empty accumulator computing on be; nil means
// linalg.Auto()'s choice, made by the first Add.
func NewCovariance(be linalg.Backend) *Covariance { return &Covariance{be: be} }

// Add accumulates one batch. Every batch must have the same layers, in the
// same order and with the same shapes; the number of token rows may differ.
func (c *Covariance) Add(b *gradients.Batch) error {
	if c.be == nil {
		be, err := linalg.Auto()
		if err != nil {
			return fmt.Errorf("ekfac: %w", err)
		}
		c.be = be
	}
	if err := checkPrecision(c.Precision); err != nil {
		return err
	}
	if err := validate(b, c.Precision); err != nil {
		return err
	}
	if c.layers == nil {
		if err := c.checkMemory(b); err != nil {
			return err
		}
		for i := range b.Layers {
			l := &b.Layers[i]
			c.layers = append(c.layers, covLayer{
				shape: shapeOf(l),
				a:     linalg.NewDense64(l.DIn, l.DIn, nil),
				s:     linalg.NewDense64(l.DOut, l.DOut, nil),
			})
		}
	}
	if err := checkShapes(shapesOf(c.layers), b); err != nil {
		return err
	}
	var x32 [][2]*linalg.Dense32
	if c.Precision == F32 {
		var err error
		if x32, err = c.work.narrowBatch(b); err != nil {
			return err
		}
	}
	for i := range b.Layers {
		l, cl := &b.Layers[i], &c.layers[i]
		rows := b.N * l.Tokens
		if c.Precision == F32 {
			c.be.CovAccumulate32(cl.a, x32[i][0])
			c.be.CovAccumulate32(cl.s, x32[i][1])
		} else {
			c.be.CovAccumulate(cl.a, linalg.NewDense64(rows, l.DIn, l.A))
			c.be.CovAccumulate(cl.s, linalg.NewDense64(rows, l.DOut, l.S))
		}
		cl.m += rows
	}
	c.n += b.N
	return nil
}

// validate checks b's shapes and values, as b.Validate does; at F32 only
// the shapes, the values being checked as they are narrowed (narrowBatch).
func validate(b *gradients.Batch, p Precision) error {
	check := b.Validate
	if p == F32 {
		check = b.CheckShapes
	}
	if err := check(); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	return nil
}

// checkMemory refuses layer shapes whose covariances or eigendecomposition
// would not fit in c.MemoryLimit: each one alone, then the sums of all
// layers, which are held together.
func (c *Covariance) checkMemory(b *gradients.Batch) error {
	var total int64
	for i := range b.Layers {
		l := &b.Layers[i]
		if !l.Factored() {
			return fmt.Errorf("ekfac: layer %q is dense (%d values an example); K-FAC and EK-FAC need factored a/s gradients", l.Name, l.D)
		}
		for _, side := range []struct {
			what string
			n    int
		}{{"covariance A", l.DIn}, {"covariance S", l.DOut}} {
			need := linalg.Float64Bytes(side.n, side.n)
			if err := linalg.CheckMemory(fmt.Sprintf("layer %s: %s", l.Name, side.what),
				fmt.Sprintf("%d² float64", side.n), need, c.MemoryLimit); err != nil {
				return fmt.Errorf("ekfac: %w", err)
			}
			// Eigen holds the sum, the normalised covariance, its
			// eigenvectors and the solver's copy at once.
			if err := linalg.CheckMemory(fmt.Sprintf("layer %s: eigendecomposition of %s", l.Name, side.what),
				fmt.Sprintf("4 × %d² float64", side.n), linalg.AddBytes(need, need, need, need), c.MemoryLimit); err != nil {
				return fmt.Errorf("ekfac: %w", err)
			}
			if c.Precision == F32 {
				// CovAccumulate32's float32 product beside the sum.
				if err := linalg.CheckMemory(fmt.Sprintf("layer %s: float32 product of %s", l.Name, side.what),
					fmt.Sprintf("%d² float64 + %d² float32", side.n, side.n), linalg.AddBytes(need, need/2), c.MemoryLimit); err != nil {
					return fmt.Errorf("ekfac: %w", err)
				}
			}
			total = linalg.AddBytes(total, need)
		}
	}
	if err := linalg.CheckMemory(fmt.Sprintf("the covariances of %d layers", len(b.Layers)), "", total, c.MemoryLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	return nil
}

// Eigen normalises the sums (A = Σaaᵀ/M, S = Σssᵀ/M with M the layer's
// token rows), symmetrises them and eigendecomposes both in float64.
func (c *Covariance) Eigen() (*Eigen, error) {
	if c.n == 0 {
		return nil, fmt.Errorf("ekfac: no examples were added")
	}
	e := &Eigen{N: c.n}
	for i := range c.layers {
		cl := &c.layers[i]
		lf := LayerFactors{Name: cl.name, DIn: cl.din, DOut: cl.dout, M: cl.m}
		var err error
		if lf.ACov, lf.LambdaA, lf.QA, err = normEigh(c.be, cl.a, cl.m); err != nil {
			return nil, fmt.Errorf("ekfac: layer %q: activation covariance A: %w", cl.name, err)
		}
		if lf.SCov, lf.LambdaS, lf.QS, err = normEigh(c.be, cl.s, cl.m); err != nil {
			return nil, fmt.Errorf("ekfac: layer %q: output-gradient covariance S: %w", cl.name, err)
		}
		e.Layers = append(e.Layers, lf)
	}
	return e, nil
}

// normEigh returns sum/m symmetrised, and its eigendecomposition.
func normEigh(be linalg.Backend, sum *linalg.Dense64, m int) (*linalg.Dense64, []float64, *linalg.Dense64, error) {
	n := sum.Rows
	cov := linalg.NewDense64(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			cov.Data[i*n+j] = 0.5 * (sum.At(i, j) + sum.At(j, i)) / float64(m)
		}
	}
	w, q, err := be.Eigh(cov)
	if err != nil {
		return nil, nil, nil, err
	}
	return cov, w, q, nil
}

// Eigen holds the eigenbases of A and S of every layer: K-FAC factors, and
// the rotation in which EK-FAC fits Λ.
type Eigen struct {
	N      int
	Layers []LayerFactors
}

// KFAC returns K-FAC factors, Λ_ij = λ_S[i]·λ_A[j].
func (e *Eigen) KFAC() *Factors {
	f := &Factors{Method: KFAC, N: e.N}
	for _, lf := range e.Layers {
		lf.Lambda = linalg.NewDense64(lf.DOut, lf.DIn, nil)
		for i, ls := range lf.LambdaS {
			row := lf.Lambda.Row(i)
			for j, la := range lf.LambdaA {
				row[j] = ls * la
			}
		}
		f.Layers = append(f.Layers, lf)
	}
	return f
}

// Lambda accumulates Σ_n (Q_Sᵀ G_n Q_A)∘² (EK-FAC) or Σ_n G_n∘² (diagonal)
// over examples: Add any number of batches, then Factors.
type Lambda struct {
	// MemoryLimit bounds, in bytes, the Λ sums and per-batch workspaces
	// allocated from the layer shapes of the batches; 0 means
	// linalg.DefaultMemoryLimit(), a negative value no limit.
	MemoryLimit int64
	// Precision F32 forms the rotated gradients and their squares with
	// float32 GEMMs and adds each batch's products into the float64 sums
	// (see FitOptions.Precision); F64 (the zero value) computes in float64
	// throughout. Dense layers are summed in float64 either way. Set it
	// before the first Add.
	Precision Precision

	method Method
	be     linalg.Backend
	eig    *Eigen
	layers []lamLayer
	work   work32 // F32: the rotated rows and products, kept between batches
	n      int
}

type lamLayer struct {
	shape
	sum        *linalg.Dense64 // DOut × DIn, or 1 × D for dense layers
	qa32, qs32 *linalg.Dense32 // F32: the eigenvectors, narrowed on first use
}

// NewLambda returns an empty Λ accumulator for EKFAC (eig from the same fit
// set's Covariance) or Diagonal (eig nil), computing on be (nil:
// linalg.Auto()'s choice).
func NewLambda(method Method, be linalg.Backend, eig *Eigen) (*Lambda, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("ekfac: %w", err)
	}
	switch method {
	case EKFAC:
		if eig == nil {
			return nil, fmt.Errorf("ekfac: EK-FAC needs the eigenbases of a covariance pass")
		}
	case Diagonal:
		eig = nil
	default:
		return nil, fmt.Errorf("ekfac: method %s fits no Λ", method)
	}
	return &Lambda{method: method, be: be, eig: eig}, nil
}

// Add accumulates one batch.
func (l *Lambda) Add(b *gradients.Batch) error {
	if err := checkPrecision(l.Precision); err != nil {
		return err
	}
	if err := validate(b, l.Precision); err != nil {
		return err
	}
	if err := l.checkMemory(b); err != nil {
		return err
	}
	if l.layers == nil {
		for i := range b.Layers {
			bl := &b.Layers[i]
			sh := shapeOf(bl)
			rows, cols := bl.DOut, bl.DIn
			if !bl.Factored() {
				if l.method == EKFAC {
					return fmt.Errorf("ekfac: layer %q is dense; EK-FAC needs factored a/s gradients", bl.Name)
				}
				rows, cols = 1, bl.D
			}
			l.layers = append(l.layers, lamLayer{shape: sh, sum: linalg.NewDense64(rows, cols, nil)})
		}
		if l.eig != nil {
			if err := l.matchEigen(); err != nil {
				return err
			}
		}
	}
	if err := checkShapes(shapesOf(l.layers), b); err != nil {
		return err
	}
	var x32 [][2]*linalg.Dense32
	if l.Precision == F32 {
		var err error
		if x32, err = l.work.narrowBatch(b); err != nil {
			return err
		}
	}
	for i := range b.Layers {
		bl, ll := &b.Layers[i], &l.layers[i]
		switch {
		case !bl.Factored():
			for n := 0; n < b.N; n++ {
				for j, v := range bl.Grad[n*bl.D : (n+1)*bl.D] {
					ll.sum.Data[j] += v * v
				}
			}
		case l.Precision == F32:
			l.add32(bl, ll, i, b.N, x32[i][0], x32[i][1], 2*len(b.Layers))
		case l.method == Diagonal:
			g := make([]float64, bl.DOut*bl.DIn)
			for n := 0; n < b.N; n++ {
				bl.Gradient(n, g)
				for j, v := range g {
					ll.sum.Data[j] += v * v
				}
			}
		default:
			lf := &l.eig.Layers[i]
			rotated(l.be, bl, lf.QA, lf.QS, func(n int, gt *linalg.Dense64) {
				for j, v := range gt.Data {
					ll.sum.Data[j] += v * v
				}
			})
		}
	}
	l.n += b.N
	return nil
}

// checkMemory refuses a batch whose Λ sums (DOut × DIn a factored layer,
// D a dense one) or rotation workspaces would not fit in l.MemoryLimit.
func (l *Lambda) checkMemory(b *gradients.Batch) error {
	var total int64
	for i := range b.Layers {
		bl := &b.Layers[i]
		shape, need := fmt.Sprintf("%d float64", bl.D), linalg.Float64Bytes(bl.D)
		if bl.Factored() {
			shape, need = fmt.Sprintf("%d × %d float64", bl.DOut, bl.DIn), linalg.Float64Bytes(bl.DOut, bl.DIn)
		}
		if err := linalg.CheckMemory(fmt.Sprintf("layer %s: Λ", bl.Name), shape, need, l.MemoryLimit); err != nil {
			return fmt.Errorf("ekfac: %w", err)
		}
		if bl.Factored() {
			// The Λ pass also holds one example's rotated or flattened
			// gradient and the batch's rotated a and s.
			rows := b.N * bl.Tokens
			work := linalg.AddBytes(need, linalg.Float64Bytes(rows, bl.DIn), linalg.Float64Bytes(rows, bl.DOut))
			if err := linalg.CheckMemory(fmt.Sprintf("layer %s: Λ workspace", bl.Name),
				fmt.Sprintf("%d × %d + %d × (%d + %d) float64", bl.DOut, bl.DIn, rows, bl.DIn, bl.DOut), work, l.MemoryLimit); err != nil {
				return fmt.Errorf("ekfac: %w", err)
			}
			if l.Precision == F32 {
				if err := linalg.CheckMemory(fmt.Sprintf("layer %s: float32 Λ workspace", bl.Name),
					fmt.Sprintf("%d × %d float64 and float32 rows, eigenvectors and products", bl.DOut, bl.DIn),
					linalg.AddBytes(need, lamWork32(bl, rows)), l.MemoryLimit); err != nil {
					return fmt.Errorf("ekfac: %w", err)
				}
			}
		}
		total = linalg.AddBytes(total, need)
	}
	if err := linalg.CheckMemory(fmt.Sprintf("Λ of %d layers", len(b.Layers)), "", total, l.MemoryLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	return nil
}

func (l *Lambda) matchEigen() error {
	if len(l.eig.Layers) != len(l.layers) {
		return fmt.Errorf("ekfac: Λ pass has %d layers, the covariance pass %d", len(l.layers), len(l.eig.Layers))
	}
	for i, e := range l.eig.Layers {
		if e.Name != l.layers[i].name || e.DIn != l.layers[i].din || e.DOut != l.layers[i].dout {
			return fmt.Errorf("ekfac: Λ pass layer %d is %q %d×%d, covariance pass %q %d×%d",
				i, l.layers[i].name, l.layers[i].dout, l.layers[i].din, e.Name, e.DOut, e.DIn)
		}
	}
	return nil
}

// Factors divides the sums by the number of examples N.
func (l *Lambda) Factors() (*Factors, error) {
	if l.n == 0 {
		return nil, fmt.Errorf("ekfac: no examples were added to the Λ pass")
	}
	f := &Factors{Method: l.method, N: l.n}
	for i := range l.layers {
		ll := &l.layers[i]
		var lf LayerFactors
		if l.eig != nil {
			lf = l.eig.Layers[i]
		} else {
			lf = LayerFactors{Name: ll.name, DIn: ll.din, DOut: ll.dout, D: ll.denseDim()}
		}
		lf.Lambda = ll.sum.Clone()
		for j := range lf.Lambda.Data {
			lf.Lambda.Data[j] /= float64(l.n)
		}
		f.Layers = append(f.Layers, lf)
	}
	return f, nil
}

// rotated calls fn with Q_Sᵀ G_n Q_A (DOut × DIn) for every example of the
// layer, computed as (S_n Q_S)ᵀ (A_n Q_A) so that the rotations are two
// GEMMs over all token rows of the batch instead of two per example.
func rotated(be linalg.Backend, l *gradients.Layer, qa, qs *linalg.Dense64, fn func(n int, gt *linalg.Dense64)) {
	n := len(l.A) / (l.Tokens * l.DIn)
	ah, sh := rotateRows(be, l, qa, qs)
	gt := linalg.NewDense64(l.DOut, l.DIn, nil)
	for i := 0; i < n; i++ {
		be.Dgemm(linalg.Trans, linalg.NoTrans, 1,
			sh.Slice(i*l.Tokens, (i+1)*l.Tokens, 0, l.DOut),
			ah.Slice(i*l.Tokens, (i+1)*l.Tokens, 0, l.DIn), 0, gt)
		fn(i, gt)
	}
}

// rotateRows returns the token rows of l rotated into the eigenbasis,
// Ã = A·Q_A and S̃ = S·Q_S.
func rotateRows(be linalg.Backend, l *gradients.Layer, qa, qs *linalg.Dense64) (ah, sh *linalg.Dense64) {
	rows := len(l.A) / l.DIn
	ah = linalg.NewDense64(rows, l.DIn, nil)
	sh = linalg.NewDense64(rows, l.DOut, nil)
	be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, linalg.NewDense64(rows, l.DIn, l.A), qa, 0, ah)
	be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, linalg.NewDense64(rows, l.DOut, l.S), qs, 0, sh)
	return ah, sh
}

// IdentityFactors returns the factors of P = I for layers shaped like b.
func IdentityFactors(b *gradients.Batch) *Factors {
	f := &Factors{Method: Identity, N: b.N}
	for i := range b.Layers {
		sh := shapeOf(&b.Layers[i])
		f.Layers = append(f.Layers, LayerFactors{Name: sh.name, DIn: sh.din, DOut: sh.dout, D: sh.denseDim()})
	}
	return f
}

// Source delivers a fit set batch by batch; it is called once per pass and
// must deliver the same examples each time.
type Source func(ctx context.Context, fn func(*gradients.Batch) error) error

// FitOptions configures FitWithOptions.
type FitOptions struct {
	// Progress is told of each stage (covariance, eigendecomposition,
	// lambda) with the examples passed so far (total 0).
	Progress progress.Func
	// MemoryLimit bounds, in bytes, every allocation sized from the layer
	// shapes of the fit set (covariances, eigendecomposition workspaces,
	// Λ): 0 means linalg.DefaultMemoryLimit(), a negative value no limit.
	// An allocation over it fails with an error matching
	// linalg.ErrMemoryLimit and naming the layer, before anything is
	// allocated.
	MemoryLimit int64
	// Precision F32 computes the products of the covariance and Λ passes
	// in float32 and adds each batch's products into float64 sums:
	// Σ a aᵀ and Σ s sᵀ by a float32 syrk/GEMM; Λ without a token axis as
	// (S̃∘S̃)ᵀ(Ã∘Ã), one GEMM a batch and layer, with up to 8 tokens by
	// the same identity over pairs of tokens, with more as G̃_n = S̃_nᵀÃ_n
	// per example, squared. Dense layers (Diagonal) are summed in float64
	// either way. Eigendecompositions, the sums
	// and the factors are float64 as with F64 (the zero value, float64
	// throughout), and the factors file format is the same. F32 factors
	// agree with F64 ones to float32 rounding, and depend to float32
	// rounding on the batch split and the backend (which may sum a GEMM
	// in an order that depends on its shapes).
	Precision Precision
}

// Fit fits factors of the given method over src: a covariance pass and
// eigendecomposition (K-FAC, EK-FAC), then a Λ pass (EK-FAC, diagonal). It
// bounds memory by linalg.DefaultMemoryLimit(); FitWithOptions sets the
// limit.
func Fit(ctx context.Context, method Method, be linalg.Backend, src Source, prog progress.Func) (*Factors, error) {
	return FitWithOptions(ctx, method, be, src, FitOptions{Progress: prog})
}

// FitWithOptions is Fit with options. A nil be means linalg.Auto()'s
// choice.
func FitWithOptions(ctx context.Context, method Method, be linalg.Backend, src Source, opt FitOptions) (*Factors, error) {
	be, err := linalg.OrAuto(be)
	if err != nil {
		return nil, fmt.Errorf("ekfac: %w", err)
	}
	if _, err := ParseMethod(string(method)); err != nil {
		return nil, err
	}
	if err := checkPrecision(opt.Precision); err != nil {
		return nil, err
	}
	report := func(stage string, n int) { opt.Progress.Report(stage, n, 0) }
	if method == Identity {
		var (
			f      *Factors
			shapes []shape
		)
		err := src(ctx, func(b *gradients.Batch) error {
			if err := b.Validate(); err != nil {
				return fmt.Errorf("ekfac: %w", err)
			}
			if f == nil {
				f = IdentityFactors(b)
				f.N = 0
				for i := range b.Layers {
					shapes = append(shapes, shapeOf(&b.Layers[i]))
				}
			}
			if err := checkShapes(shapes, b); err != nil {
				return err
			}
			f.N += b.N
			return nil
		})
		if err == nil && f == nil {
			err = fmt.Errorf("ekfac: no examples were added")
		}
		return f, err
	}
	var eig *Eigen
	if method.needsCovariance() {
		cov := NewCovariance(be)
		cov.MemoryLimit = opt.MemoryLimit
		cov.Precision = opt.Precision
		if err := src(ctx, func(b *gradients.Batch) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := cov.Add(b)
			report("covariance", cov.n)
			return err
		}); err != nil {
			return nil, err
		}
		report("eigendecomposition", cov.n)
		var err error
		if eig, err = cov.Eigen(); err != nil {
			return nil, err
		}
		if method == KFAC {
			return eig.KFAC(), nil
		}
	}
	lam, err := NewLambda(method, be, eig)
	if err != nil {
		return nil, err
	}
	lam.MemoryLimit = opt.MemoryLimit
	lam.Precision = opt.Precision
	if err := src(ctx, func(b *gradients.Batch) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := lam.Add(b)
		report("lambda", lam.n)
		return err
	}); err != nil {
		return nil, err
	}
	if eig != nil && lam.n != eig.N {
		return nil, fmt.Errorf("ekfac: the Λ pass saw %d examples, the covariance pass %d: the source must deliver the same fit set twice", lam.n, eig.N)
	}
	return lam.Factors()
}

// BatchSource delivers in-memory batches as a Source.
func BatchSource(batches ...*gradients.Batch) Source {
	return func(ctx context.Context, fn func(*gradients.Batch) error) error {
		for _, b := range batches {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(b); err != nil {
				return err
			}
		}
		return nil
	}
}

// FileSource delivers the examples of gradient files in chunks of at most
// chunk examples, files in the order given, so memory is bounded by the
// chunk and not by the files. A chunk ≤ 0 takes as many examples as
// ChunkBytes of float64 values hold (at least one): the chunks' products
// then have enough rows to run near the GEMM rate.
func FileSource(chunk int, paths ...string) Source { return FileSourceLimit(chunk, 0, paths...) }

// FileSourceLimit is FileSource refusing, before decoding, a chunk whose
// float64 values would need more than memLimit bytes (see
// linalg.CheckMemory for 0 and negative limits).
func FileSourceLimit(chunk int, memLimit int64, paths ...string) Source {
	return func(ctx context.Context, fn func(*gradients.Batch) error) error {
		for _, p := range paths {
			if err := eachChunk(ctx, p, chunk, memLimit, fn); err != nil {
				return err
			}
		}
		return nil
	}
}

// ChunkBytes is the float64 values of one chunk that FileSource takes when
// asked for no particular size: 64 MiB, a few thousand examples of an MLP
// without a token axis, a few dozen of a 2048-wide layer with 64 tokens.
const ChunkBytes = 64 << 20

// ChunkExamples returns how many examples of exampleBytes each (as
// gradients.ExampleBytes counts them) ChunkBytes holds, at least one.
func ChunkExamples(exampleBytes int64) int {
	return int(max(1, ChunkBytes/max(exampleBytes, 1)))
}

func eachChunk(ctx context.Context, path string, chunk int, memLimit int64, fn func(*gradients.Batch) error) error {
	f, err := gradients.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if chunk <= 0 {
		chunk = ChunkExamples(gradients.ExampleBytes(f.Layers()))
	}
	chunk = max(chunk, 1)
	if n := min(chunk, f.N()); n > 0 {
		if err := linalg.CheckMemory(fmt.Sprintf("%s: a chunk of %d examples", path, n), "", f.ReadBytes(0, n), memLimit); err != nil {
			return fmt.Errorf("ekfac: %w", err)
		}
	}
	for lo := 0; lo < f.N(); lo += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := f.Read(lo, min(lo+chunk, f.N()))
		if err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func shapeOf(l *gradients.Layer) shape {
	return shape{name: l.Name, din: l.DIn, dout: l.DOut, dim: l.Dim(), factored: l.Factored(), dense: !l.Factored()}
}

func (s shape) denseDim() int {
	if s.dense {
		return s.dim
	}
	return 0
}

func (s shape) get() shape { return s }

func shapesOf[L interface{ get() shape }](ls []L) []shape {
	out := make([]shape, len(ls))
	for i := range ls {
		out[i] = ls[i].get()
	}
	return out
}

// checkShapes checks that b has the layers of want, in order.
func checkShapes(want []shape, b *gradients.Batch) error {
	if len(b.Layers) != len(want) {
		return fmt.Errorf("ekfac: batch has %d layers, earlier batches %d", len(b.Layers), len(want))
	}
	for i := range want {
		got := shapeOf(&b.Layers[i])
		if got != want[i] {
			return fmt.Errorf("ekfac: layer %d: batch has %q (%d×%d, dim %d), earlier batches %q (%d×%d, dim %d)",
				i, got.name, got.dout, got.din, got.dim, want[i].name, want[i].dout, want[i].din, want[i].dim)
		}
	}
	return nil
}
