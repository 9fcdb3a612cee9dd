package ekfac

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Precision selects the floating-point type of pairwise scoring
// (ScoreOptions) and of the products of a fit (FitOptions).
type Precision int

const (
	// F64 scores in float64 throughout, the reference (the zero value).
	F64 Precision = iota
	// F32 preconditions and rotates the queries in float64 as F64 does,
	// narrowing each to float32 as soon as it is formed, and computes
	// every product with the training gradients in float32 (Sgemm); each
	// layer's scores come back as float64. It applies to LayerScores
	// (and LayerScoresAndSelf without self-influence); self-influence is
	// always computed in float64, and asking for it makes the whole call
	// use F64.
	//
	// Training examples are taken in chunks that bound each float32
	// work buffer to 128 MiB. The backend may sum a GEMM in an order
	// that depends on its shapes, so F32 scores are reproducible only to
	// float32 rounding across chunk sizes, layer shapes and backends;
	// F64 is not affected.
	F32
)

// ParsePrecision parses "f64" or "f32".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "f64":
		return F64, nil
	case "f32":
		return F32, nil
	}
	return 0, fmt.Errorf("ekfac: unknown precision %q (have f64, f32)", s)
}

func (p Precision) String() string {
	switch p {
	case F64:
		return "f64"
	case F32:
		return "f32"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// Algorithm is how the F32 path forms a layer's scores.
type Algorithm string

const (
	// Bilinear scores a factored layer without forming any training
	// gradient: in the eigenbasis score(q, t) = Σ_τ s̃_τᵀ M̃_q ã_τ, with M̃_q
	// the query's transformed d_out × d_in matrix, computed as one GEMM
	// of the rotated activations with all queries' M̃ stacked, then a
	// reduction against the rotated output gradients.
	Bilinear Algorithm = "bilinear"
	// Materialise forms each training gradient in the eigenbasis (G̃_t,
	// d_out·d_in values) and multiplies the queries with a chunk of them
	// in one GEMM. Dense layers are always scored this way.
	Materialise Algorithm = "materialise"
	// LowRank scores a factored layer whose queries a rank limit
	// truncates (ScoreOptions.Rank) from the factors U_q, V_q of each
	// truncated P(G_q) = U_q·V_qᵀ and the raw training rows, in either
	// precision (lowRankScores); no training row is rotated.
	LowRank Algorithm = "lowrank"
)

// LayerPlan is the F32 path's choice for one layer and the flop counts it
// was made from.
type LayerPlan struct {
	Layer     string
	Algorithm Algorithm
	// Rotation is the flops of rotating the training activations and
	// output gradients into the eigenbasis, 2·N·T·(d_in² + d_out²),
	// shared by both algorithms (0 for Diagonal, Identity and dense
	// layers); for LowRank, the lesser of that and rotating the queries'
	// factors out of it, 2·Q·r·(d_in² + d_out²).
	Rotation float64
	// Bilinear is 2·N·T·d_in·Q·d_out + 2·N·T·Q·d_out (0 for a dense
	// layer, where it does not apply); Materialise is
	// 2·N·T·d_out·d_in + 2·Q·N·d_out·d_in for a factored layer and
	// 2·Q·N·D for a dense one. Neither includes Rotation.
	Bilinear, Materialise float64
	// LowRank is 2·N·T·Q·r·(d_in + d_out) + 2·N·T·Q·r, the products and
	// reduction of the rank-r factors with the raw training rows, for a
	// layer the rank truncates (0 otherwise). The per-query truncation
	// (a Gram matrix and its eigendecomposition) is not included.
	LowRank float64
}

// PairwisePlan returns, for each layer, the algorithm the F32 path uses to
// score the queries q against the training examples t and the estimated
// flops of each: the cheaper of the two for a factored layer, Materialise
// for a dense one. The choice depends on the shapes only.
func (f *Factors) PairwisePlan(q, t *gradients.Batch, opt ScoreOptions) []LayerPlan {
	nq, nt := float64(q.N), float64(t.N)
	plan := make([]LayerPlan, len(t.Layers))
	for li := range t.Layers {
		l := &t.Layers[li]
		p := LayerPlan{Layer: l.Name, Algorithm: Materialise}
		if !l.Factored() {
			p.Materialise = 2 * nq * nt * float64(l.D)
			plan[li] = p
			continue
		}
		tok, din, dout := float64(l.Tokens), float64(l.DIn), float64(l.DOut)
		if li < len(f.Layers) && f.Layers[li].QA != nil {
			p.Rotation = 2 * nt * tok * (din*din + dout*dout)
		}
		p.Bilinear = 2*nt*tok*din*nq*dout + 2*nt*tok*nq*dout
		p.Materialise = 2*nt*tok*dout*din + 2*nq*nt*dout*din
		switch {
		case truncates(l, opt.Rank):
			r := float64(opt.Rank)
			p.LowRank = 2*nt*tok*nq*r*(din+dout) + 2*nt*tok*nq*r
			p.Algorithm = LowRank
			if p.Rotation > 0 && !rotateTraining(q.N, t.N, l.Tokens, opt.Rank) {
				p.Rotation = 2 * nq * r * (din*din + dout*dout)
			}
		case opt.algorithm != "":
			p.Algorithm = opt.algorithm
		case p.Bilinear < p.Materialise:
			p.Algorithm = Bilinear
		}
		plan[li] = p
	}
	return plan
}

// chunkFloats32 bounds each float32 work buffer of the F32 path (the
// bilinear products Y, or a chunk of materialised gradients): 128 MiB.
const chunkFloats32 = 1 << 25

// layerScores32 is LayerScores at F32. Each layer's queries are formed
// as they are needed and held in float32 (queryRows32); layers a rank
// limit truncates are scored by lowRankScores; training examples are taken a chunk at a time per layer,
// so that a work buffer holds at most chunkFloats32 values. The chunk and
// block sizes change only the shapes handed to Sgemm, whose summation
// order may depend on them, so scores may differ between them by float32
// rounding.
func (f *Factors) layerScores32(ctx context.Context, be linalg.Backend, q, t *gradients.Batch, opt ScoreOptions) ([]*linalg.Dense64, error) {
	if err := f.checkScores(q, t, opt.MemoryLimit); err != nil {
		return nil, err
	}
	if opt.Rank < 0 {
		return nil, fmt.Errorf("ekfac: rank %d < 0", opt.Rank)
	}
	plan := f.PairwisePlan(q, t, opt)
	limit := chunkFloats32
	if opt.chunkFloats > 0 {
		limit = opt.chunkFloats
	}
	out := make([]*linalg.Dense64, len(f.Layers))
	for li := range f.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[li] = linalg.NewDense64(q.N, t.N, nil)
		if plan[li].Algorithm == LowRank {
			if err := f.lowRankScores(ctx, be, li, q, t, opt, out[li]); err != nil {
				return nil, err
			}
			continue
		}
		inv, err := f.inverse(li, opt.Damping)
		if err != nil {
			return nil, err
		}
		l, lf := &t.Layers[li], &f.Layers[li]
		var qa, qs *linalg.Dense32
		if lf.QA != nil {
			qa, qs = lf.QA.To32(), lf.QS.To32()
		}
		rows := f.queryRows32(be, &q.Layers[li], li, inv, qa, qs)
		if l.Factored() && plan[li].Algorithm == Bilinear {
			err = bilinear(ctx, be, l, rows, qa, qs, out[li], limit, opt.MemoryLimit)
		} else {
			if err := checkWork(l.Name, "query transforms", q.N, l.Dim(), opt.MemoryLimit); err != nil {
				return nil, err
			}
			m := linalg.NewDense32(q.N, l.Dim(), nil)
			rows(0, q.N, m)
			if l.Factored() {
				err = materialise(ctx, be, l, m, qa, qs, out[li], limit, opt.MemoryLimit)
			} else {
				err = materialiseDense(ctx, be, l, m, out[li], limit, opt.MemoryLimit)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queryRows writes the transformed queries [lo, hi) of a layer, narrowed
// to float32, into the rows of dst ((hi-lo) × Dim).
type queryRows func(lo, hi int, dst *linalg.Dense32)

// queryRows32 returns the queryRows of layer li of the queries l without a
// rank limit: the values queryTransform computes (Q_Sᵀ G Q_A ⊘ (Λ + δ), or
// G ⊘ (Λ + δ), or G; inv is 1/(Λ + δ), nil for 1; qa and qs the narrowed
// eigenvectors), narrowed as soon as they are formed, so that no float64
// copy of all queries is held. Without a token axis they are formed in
// float64 (an outer product a value at a time); with one, by float32
// products as the training side's.
func (f *Factors) queryRows32(be linalg.Backend, l *gradients.Layer, li int, inv []float64, qa, qs *linalg.Dense32) queryRows {
	lf := &f.Layers[li]
	d := l.Dim()
	if lf.QA == nil {
		return func(lo, hi int, dst *linalg.Dense32) {
			linalg.ParallelChunks(hi-lo, 1, func(a, b int) {
				g := make([]float64, d)
				for n := a; n < b; n++ {
					l.Gradient(lo+n, g)
					narrowScaled(dst.Row(n), g, inv)
				}
			})
		}
	}
	if l.Tokens > 1 {
		// With a token axis each query's G̃ is a product over its tokens:
		// rotated and formed in float32 like the training side, only the
		// division by Λ + δ in float64.
		ah, sh := rotated32(be, nil, l, 0, examples(l), qa, qs)
		gt := linalg.NewDense32(l.DOut, l.DIn, nil)
		return func(lo, hi int, dst *linalg.Dense32) {
			for n := lo; n < hi; n++ {
				be.Sgemm(linalg.Trans, linalg.NoTrans, 1,
					sh.Slice(n*l.Tokens, (n+1)*l.Tokens, 0, l.DOut),
					ah.Slice(n*l.Tokens, (n+1)*l.Tokens, 0, l.DIn), 0, gt)
				row := dst.Row(n - lo)
				for j, v := range gt.Data {
					row[j] = float32(float64(v) * inv[j])
				}
			}
		}
	}
	ah, sh := rotateRows(be, l, lf.QA, lf.QS)
	// One token: G̃ is the outer product s̃ ã ᵀ, formed a row at a time.
	return func(lo, hi int, dst *linalg.Dense32) {
		linalg.ParallelChunks(hi-lo, 1, func(a, b int) {
			for n := lo + a; n < lo+b; n++ {
				at, row := ah.Row(n), dst.Row(n-lo)
				for o, so := range sh.Row(n) {
					dst := row[o*l.DIn : (o+1)*l.DIn]
					dst = dst[:len(at)]
					if inv == nil {
						for j, aj := range at {
							dst[j] = float32(so * aj)
						}
						continue
					}
					iv := inv[o*l.DIn : (o+1)*l.DIn]
					iv = iv[:len(at)]
					for j, aj := range at {
						dst[j] = float32(so * aj * iv[j])
					}
				}
			}
		})
	}
}

// bilinear sets out (Q × N) to the scores of the queries rows against the
// factored layer l. For a block of queries, M̃ (their transforms stacked,
// Q_b·d_out × d_in), and a chunk of training rows, Y = Ã·M̃ᵀ
// ((n_c·T) × (Q_b·d_out)), then score[q, t] = Σ_τ Σ_i S̃[tτ, i]·Y[tτ, q·d_out + i].
// bilinearBlocks makes the blocks wide enough on both sides that each
// Sgemm packs its operands once for many flops and runs at its full rate.
// When the rotated training rows fit in limit they are rotated once and
// each query block formed once; otherwise each chunk is rotated once and
// the query blocks are formed again for every chunk.
func bilinear(ctx context.Context, be linalg.Backend, l *gradients.Layer, rows queryRows, qa, qs *linalg.Dense32, out *linalg.Dense64, limit int, memLimit int64) error {
	nq, nt, tok, din, dout := out.Rows, out.Cols, l.Tokens, l.DIn, l.DOut
	qb, nc := bilinearBlocks(nq, nt, tok, din, dout, limit)
	if err := checkWork(l.Name, "bilinear products", nc*tok, qb*dout, memLimit); err != nil {
		return err
	}
	if err := checkWork(l.Name, "query transforms", qb*dout, din, memLimit); err != nil {
		return err
	}
	m := make([]float32, qb*dout*din)
	y := linalg.NewDense32(nc*tok, qb*dout, nil)
	block := func(q0, lo, hi int, ah, sh *linalg.Dense32) {
		q1 := min(q0+qb, nq)
		mt := linalg.NewDense32((q1-q0)*dout, din, m[:(q1-q0)*dout*din])
		yc := y.Slice(0, (hi-lo)*tok, 0, (q1-q0)*dout)
		be.Sgemm(linalg.NoTrans, linalg.Trans, 1, ah, mt, 0, yc)
		// The reduction over d_out reads all of Y once: split between
		// goroutines by training example, each score summed by one of
		// them in a fixed order, so that the split changes no result.
		linalg.ParallelChunks(hi-lo, 1, func(a, b int) {
			acc := make([]float64, q1-q0)
			for n := a; n < b; n++ {
				clear(acc)
				for r := n * tok; r < (n+1)*tok; r++ {
					s, yr := sh.Row(r), yc.Row(r)
					for qi := range acc {
						acc[qi] += float64(linalg.Dot32(s, yr[qi*dout:(qi+1)*dout]))
					}
				}
				for qi, v := range acc {
					out.Data[(q0+qi)*out.Stride+lo+n] = v
				}
			}
		})
	}
	form := func(q0 int) {
		q1 := min(q0+qb, nq)
		rows(q0, q1, linalg.NewDense32(q1-q0, dout*din, m[:(q1-q0)*dout*din]))
	}
	if nt*tok*(din+dout) <= limit {
		ah, sh := rotated32(be, nil, l, 0, nt, qa, qs)
		for q0 := 0; q0 < nq; q0 += qb {
			form(q0)
			for lo := 0; lo < nt; lo += nc {
				if err := ctx.Err(); err != nil {
					return err
				}
				hi := min(lo+nc, nt)
				block(q0, lo, hi, ah.Slice(lo*tok, hi*tok, 0, din), sh.Slice(lo*tok, hi*tok, 0, dout))
			}
		}
		return nil
	}
	formed := -1 // the first query of the block in m
	var w work32 // the chunks' rotated rows, in the same buffers
	for lo := 0; lo < nt; lo += nc {
		hi := min(lo+nc, nt)
		ah, sh := rotated32(be, &w, l, lo, hi, qa, qs)
		for q0 := 0; q0 < nq; q0 += qb {
			if err := ctx.Err(); err != nil {
				return err
			}
			if formed != q0 {
				form(q0)
				formed = q0
			}
			block(q0, lo, hi, ah, sh)
		}
	}
	return nil
}

// bilinearSide and bilinearFloats shape a bilinear block. Sgemm reaches
// its full rate once Y is a few thousand wide on each side, so a block
// takes at least bilinearSide/d_out queries, more when the training
// examples are few, up to Y of bilinearFloats (32 MiB), and all the
// training examples the work-buffer bound allows: fewer, smaller blocks
// made the Sgemms slower than the reduction they saved
// (bench/results/ekfac-mlp-2026-12-02.md, "Tuning").
const (
	bilinearSide   = 4096
	bilinearFloats = 1 << 23
)

// bilinearBlocks returns the queries qb and training examples nc of one
// bilinear block, Y being (nc·T) × (qb·d_out) values: qb as bilinearSide
// and bilinearFloats ask, nc all the examples Y of at most limit values can
// hold, the rotated rows of a chunk bounded by limit too; at least one of
// each, the blocks and chunks of even sizes.
func bilinearBlocks(nq, nt, tok, din, dout, limit int) (qb, nc int) {
	ceilDiv := func(a, b int) int { return (a + b - 1) / b }
	row := max(dout*tok, 1) // Y's values a query takes from an example
	qb = max(ceilDiv(bilinearSide, max(dout, 1)), min(limit, bilinearFloats)/max(nt*row, 1))
	qb = max(1, min(nq, qb, limit/row))
	nc = max(1, min(nt, limit/(qb*row), limit/max(tok*max(din, dout), 1)))
	if nq > 0 {
		qb = ceilDiv(nq, ceilDiv(nq, qb))
	}
	if nt > 0 {
		nc = ceilDiv(nt, ceilDiv(nt, nc))
	}
	return qb, nc
}

// materialise sets out (Q × N) to the scores of the queries m against the
// factored layer l, forming G̃_t = S̃_tᵀÃ_t for a chunk of training examples
// and multiplying m with the chunk in one Sgemm.
func materialise(ctx context.Context, be linalg.Backend, l *gradients.Layer, m, qa, qs *linalg.Dense32, out *linalg.Dense64, limit int, memLimit int64) error {
	tok, din, dout := l.Tokens, l.DIn, l.DOut
	var w work32 // the chunks' rotated rows, in the same buffers
	return chunkedScores(ctx, be, l.Name, "materialised gradients", m, out, din*dout, limit, memLimit, func(g *linalg.Dense32, lo, hi int) {
		ah, sh := rotated32(be, &w, l, lo, hi, qa, qs)
		for n := 0; n < hi-lo; n++ {
			gt := g.Row(n)
			if tok == 1 {
				a := ah.Row(n)
				for o, so := range sh.Row(n) {
					row := gt[o*din : (o+1)*din]
					for i, ai := range a {
						row[i] = so * ai
					}
				}
				continue
			}
			be.Sgemm(linalg.Trans, linalg.NoTrans, 1,
				sh.Slice(n*tok, (n+1)*tok, 0, dout), ah.Slice(n*tok, (n+1)*tok, 0, din), 0, linalg.NewDense32(dout, din, gt))
		}
	})
}

// materialiseDense sets out to the scores of the queries m against the
// dense layer l, narrowing a chunk of its gradients at a time.
func materialiseDense(ctx context.Context, be linalg.Backend, l *gradients.Layer, m *linalg.Dense32, out *linalg.Dense64, limit int, memLimit int64) error {
	d := l.D
	return chunkedScores(ctx, be, l.Name, "float32 gradients", m, out, d, limit, memLimit, func(g *linalg.Dense32, lo, hi int) {
		narrowScaled(g.Data, l.Grad[lo*d:hi*d], nil)
	})
}

// chunkedScores sets out (Q × N) to the products of the queries m with the
// training gradients of dimension d, which fill writes into the rows of g
// for training examples [lo, hi), a chunk of at most limit values at a time.
func chunkedScores(ctx context.Context, be linalg.Backend, layer, what string, m *linalg.Dense32, out *linalg.Dense64, d, limit int, memLimit int64,
	fill func(g *linalg.Dense32, lo, hi int)) error {
	nt := out.Cols
	chunk := max(1, min(nt, limit/max(d, 1)))
	if err := checkWork(layer, what, chunk, d, memLimit); err != nil {
		return err
	}
	g := linalg.NewDense32(chunk, d, nil)
	prod := linalg.NewDense32(out.Rows, chunk, nil)
	for lo := 0; lo < nt; lo += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+chunk, nt)
		fill(g, lo, hi)
		scoreChunk(be, m, g.Slice(0, hi-lo, 0, d), prod.Slice(0, out.Rows, 0, hi-lo), out, lo)
	}
	return nil
}

// scoreChunk sets columns [lo, lo+nc) of out to m·gᵀ, computed in float32
// in prod (Q × nc).
func scoreChunk(be linalg.Backend, m, g, prod *linalg.Dense32, out *linalg.Dense64, lo int) {
	be.Sgemm(linalg.NoTrans, linalg.Trans, 1, m, g, 0, prod)
	for qi := 0; qi < prod.Rows; qi++ {
		dst := out.Row(qi)[lo : lo+prod.Cols]
		for j, v := range prod.Row(qi) {
			dst[j] = float64(v)
		}
	}
}

// rotated32 returns the token rows of examples [lo, hi) of l narrowed to
// float32 and rotated, Ã = A·Q_A and S̃ = S·Q_S, or only narrowed when qa is
// nil (Diagonal, Identity); the matrices come from w (nil: fresh ones).
func rotated32(be linalg.Backend, w *work32, l *gradients.Layer, lo, hi int, qa, qs *linalg.Dense32) (ah, sh *linalg.Dense32) {
	rows := (hi - lo) * l.Tokens
	a := w.narrow(0, rows, l.DIn, l.A[lo*l.Tokens*l.DIn:hi*l.Tokens*l.DIn])
	s := w.narrow(1, rows, l.DOut, l.S[lo*l.Tokens*l.DOut:hi*l.Tokens*l.DOut])
	if qa == nil {
		return a, s
	}
	ah, sh = w.get(2, rows, l.DIn), w.get(3, rows, l.DOut)
	be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, qa, 0, ah)
	be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, s, qs, 0, sh)
	return ah, sh
}

// work32 hands out float32 matrices backed by buffers kept between calls,
// numbered by slot, so that a pass over many batches allocates and zeroes
// them once; a matrix's values are left from earlier use, for callers that
// overwrite them. A nil *work32 allocates fresh matrices.
type work32 struct{ bufs [][]float32 }

func (w *work32) get(slot, r, c int) *linalg.Dense32 {
	if w == nil {
		return linalg.NewDense32(r, c, nil)
	}
	for len(w.bufs) <= slot {
		w.bufs = append(w.bufs, nil)
	}
	if cap(w.bufs[slot]) < r*c {
		w.bufs[slot] = make([]float32, r*c)
	}
	return linalg.NewDense32(r, c, w.bufs[slot][:r*c])
}

// narrow returns the r × c values v narrowed to float32 in slot.
func (w *work32) narrow(slot, r, c int, v []float64) *linalg.Dense32 {
	d, _ := w.narrowChecked(slot, r, c, v)
	return d
}

// narrowChecked is narrow also reporting whether every narrowed value is
// finite: false for a NaN or ±Inf of v and for a finite value beyond
// float32's range. The values are split between goroutines.
func (w *work32) narrowChecked(slot, r, c int, v []float64) (*linalg.Dense32, bool) {
	d := w.get(slot, r, c)
	var bad atomic.Bool
	linalg.ParallelChunks(len(v), 1<<16, func(lo, hi int) {
		if !narrowFinite(d.Data[lo:hi], v[lo:hi]) {
			bad.Store(true)
		}
	})
	return d, !bad.Load()
}

// narrowFinite sets dst to src narrowed to float32 and reports whether
// every value of dst is finite: f − f is 0 for a finite f and NaN
// otherwise, and NaN survives the sums (four, so that the loop does not
// wait on one addition chain).
func narrowFinite(dst []float32, src []float64) bool {
	dst = dst[:len(src)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(src); i += 4 {
		v, d := src[i:i+4:i+4], dst[i:i+4:i+4]
		f0, f1, f2, f3 := float32(v[0]), float32(v[1]), float32(v[2]), float32(v[3])
		d[0], d[1], d[2], d[3] = f0, f1, f2, f3
		s0 += f0 - f0
		s1 += f1 - f1
		s2 += f2 - f2
		s3 += f3 - f3
	}
	for ; i < len(src); i++ {
		f := float32(src[i])
		dst[i] = f
		s0 += f - f
	}
	return (s0+s1)+(s2+s3) == 0
}

// narrowBatch narrows the token rows of every factored layer of b into
// slots 2i (activations) and 2i+1 (output gradients), returned per layer,
// and checks every layer's values: a NaN or ±Inf is the error
// Layer.CheckFinite names, a finite value beyond float32's range an error
// naming the layer. Dense layers are checked and not narrowed.
func (w *work32) narrowBatch(b *gradients.Batch) ([][2]*linalg.Dense32, error) {
	out := make([][2]*linalg.Dense32, len(b.Layers))
	for i := range b.Layers {
		l := &b.Layers[i]
		if !l.Factored() {
			if err := l.CheckFinite(); err != nil {
				return nil, fmt.Errorf("ekfac: %w", err)
			}
			continue
		}
		rows := b.N * l.Tokens
		a, okA := w.narrowChecked(2*i, rows, l.DIn, l.A)
		s, okS := w.narrowChecked(2*i+1, rows, l.DOut, l.S)
		if !okA || !okS {
			if err := l.CheckFinite(); err != nil {
				return nil, fmt.Errorf("ekfac: %w", err)
			}
			return nil, fmt.Errorf("ekfac: layer %q: a value beyond float32's range (±3.4e38): use precision f64", l.Name)
		}
		out[i] = [2]*linalg.Dense32{a, s}
	}
	return out, nil
}

// narrowScaled sets dst[j] to g[j]·inv[j] narrowed to float32 (inv nil: 1)
// for every value of g.
func narrowScaled(dst []float32, g, inv []float64) {
	dst = dst[:len(g)]
	if inv == nil {
		for j, v := range g {
			dst[j] = float32(v)
		}
		return
	}
	inv = inv[:len(g)]
	for j, v := range g {
		dst[j] = float32(v * inv[j])
	}
}

// checkWork refuses a float32 work buffer of r × c values over memLimit.
func checkWork(layer, what string, r, c int, memLimit int64) error {
	if err := linalg.CheckMemory(fmt.Sprintf("layer %s: %s", layer, what), fmt.Sprintf("%d × %d float32", r, c),
		linalg.Float64Bytes(r, c)/2, memLimit); err != nil {
		return fmt.Errorf("ekfac: %w", err)
	}
	return nil
}
