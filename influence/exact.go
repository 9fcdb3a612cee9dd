package influence

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/accel"
	"github.com/goinfluence/goinfluence/quant"
)

// exactChunkBytes is about the bytes of int8 rows an exact stream reads at
// a time when StreamOptions.ChunkRows is zero: enough that the split of a
// chunk between goroutines is worth its cost for a single query, small
// enough to stay in the last-level cache while a batch of queries reuses it.
const exactChunkBytes = 8 << 20

// ExactChunkRows is the number of rows of dimension dim (summed over the
// stores) that the exact scoring of i8 stores reads at a time when
// StreamOptions.ChunkRows is zero.
func ExactChunkRows(dim int) int {
	return roundUp(max(exactChunkBytes/max(dim, 1), 1), 256)
}

// exactSumsBytes bounds the integer sums of a chunk of an exact stream.
const exactSumsBytes = 64 << 20

// exactDeviceMin is the fewest queries for which an exact stream multiplies
// on a backend's int8 GEMM (accel.Int8Gemmer) rather than on the CPU
// kernel: one query reads each stored byte once, which the CPU does at
// memory speed, and copying the rows to a device costs more than that.
const exactDeviceMin = 16

// QuantizedQueries are queries quantised for exact scoring against one i8
// store (DESIGN §11): Values holds Rows × Dim int8 values, row after row,
// and Scales one scale per row.
type QuantizedQueries struct {
	Rows, Dim int
	Values    []int8
	Scales    []float32
}

// Row returns the quantised values of query i.
func (q *QuantizedQueries) Row(i int) []int8 { return q.Values[i*q.Dim : (i+1)*q.Dim] }

// QuantizeQueries quantises preconditioned queries (rows of q) with the
// rule of package quant, the rule of the stored rows. A NaN or an infinity
// is an error naming the query and column.
func QuantizeQueries(q *linalg.Dense32) (*QuantizedQueries, error) {
	out := &QuantizedQueries{Rows: q.Rows, Dim: q.Cols, Values: make([]int8, q.Rows*q.Cols), Scales: make([]float32, q.Rows)}
	for i := range q.Rows {
		s, err := quant.Quantize(out.Row(i), q.Row(i))
		if err != nil {
			return nil, fmt.Errorf("query %d: %w", i, err)
		}
		out.Scales[i] = s
	}
	return out, nil
}

// isI8 reports whether the stores hold i8 rows: all of them (true) or none
// (false); a mixture is an error.
func isI8(stores []*store.Store) (bool, error) {
	n := 0
	for _, s := range stores {
		if s != nil && s.DType() == gradients.I8 {
			n++
		}
	}
	if n > 0 && n < len(stores) {
		return false, fmt.Errorf("%d of %d stores are i8: exact integer scores cannot be summed with float ones; build every store with the same dtype", n, len(stores))
	}
	return n > 0, nil
}

// streamExact is streamScores over i8 stores: the exact integer scoring of
// DESIGN §11. Each store's queries are quantised; each chunk of rows is
// multiplied by an int8 kernel into exact int32 sums, split between
// goroutines by rows (a single query streams the mapped rows once); and the
// scores, computed from the sums and scales by a fixed formula, feed the
// per-query top-k as they come. With several stores, or weights, the score
// of query i and row t is
//
//	s = Σ_c float64(isum_c)·float64(s_q,c)·float64(s_t,c)   (in float64, store order)
//	score = float32(s)   or, with weights, float32(s·float64(Weights[t]))
//
// which for one store without weights is quant's score. Rankings order by
// score, ties by id.
func streamExact(ctx context.Context, name string, be linalg.Backend, queries []*linalg.Dense32, stores []*store.Store, opt StreamOptions) (*StreamResult, error) {
	start := time.Now()
	fail := func(err error) (*StreamResult, error) {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("influence: %s: %w", name, err)
	}
	// streamInput checks the shapes, the weights and that the queries are
	// finite; its copy of them side by side is then cut per store.
	all, err := streamInput(be, queries, stores, opt)
	if err != nil {
		return fail(err)
	}
	kern, err := quant.Default()
	if err != nil {
		return fail(err)
	}
	nq := all.Rows
	qs := make([]*QuantizedQueries, len(stores))
	off := 0
	for c, s := range stores {
		part := all.Slice(0, nq, off, off+s.Dim())
		if qs[c], err = QuantizeQueries(part); err != nil {
			return fail(fmt.Errorf("queries for %s: %w", s.Dir(), err))
		}
		off += s.Dim()
	}
	x := &exactStream{kern: kern, qs: qs, stores: stores, opt: opt, nq: nq}
	if g, ok := be.(accel.Int8Gemmer); ok && nq >= exactDeviceMin {
		x.dev = g
	}
	if err := x.run(ctx); err != nil {
		return fail(err)
	}
	for _, t := range x.tops[1:] {
		x.tops[0].mergeTops(t)
	}
	res := &StreamResult{Rankings: x.tops[0].rankings(), Rows: x.rows, Kernel: x.kernelName(), Quantized: qs}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// exactStream is the state of one streamExact.
type exactStream struct {
	kern   quant.Kernel
	dev    accel.Int8Gemmer // nil: the CPU kernel
	devErr error            // why the device was given up, if it was
	qs     []*QuantizedQueries
	stores []*store.Store
	opt    StreamOptions
	nq     int
	rows   int

	// Each worker sums and ranks a block of the rows of every chunk, into
	// its own heaps, merged at the end: the k best of the union of the
	// workers' k best are the k best, since the order (score, then id) is
	// total.
	procs int
	tops  []*streamTops

	isums [][]int32 // per store: the chunk's sums, laid out per block (see run)
	block *linalg.Dense32
}

// kernelName names what computed the sums: the CPU kernel, or "device"
// when the backend's int8 GEMM did all of it.
func (x *exactStream) kernelName() string {
	if x.dev != nil && x.devErr == nil {
		return "device"
	}
	return x.kern.Name()
}

func (x *exactStream) run(ctx context.Context) error {
	count := x.stores[0].Count()
	chunkRows := x.opt.ChunkRows
	if chunkRows == 0 {
		dim := 0
		for _, s := range x.stores {
			dim += s.Dim()
		}
		chunkRows = ExactChunkRows(dim)
	}
	// The sums of a chunk take 4·nq·chunkRows bytes per store: many
	// queries read fewer rows at a time, which changes no result.
	chunkRows = min(chunkRows, max(256, exactSumsBytes/(4*max(x.nq, 1)*len(x.stores))), max(count, 1))
	its := make([]*store.Iterator, len(x.stores))
	for c, s := range x.stores {
		its[c] = s.Chunks(chunkRows)
		defer its[c].Close()
	}
	x.isums = make([][]int32, len(x.stores))
	for c := range x.isums {
		x.isums[c] = make([]int32, x.nq*chunkRows)
	}
	if x.opt.Scores != nil {
		x.block = linalg.NewDense32(x.nq, chunkRows, nil)
	}
	x.procs = max(1, runtime.GOMAXPROCS(0))
	x.tops = make([]*streamTops, x.procs)
	for w := range x.tops {
		x.tops[w] = newTops(x.nq, x.opt.TopK, HelpfulByID, HarmfulByID)
	}
	raw := make([][]byte, len(x.stores))
	scales := make([][]float32, len(x.stores))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := readRawSideBySide(ctx, x.stores, its, raw)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		ch := its[0].Chunk()
		for c, it := range its {
			scales[c] = it.Chunk().Scales
		}
		// The rows alias the mapped shards: a shard that shrinks under
		// its mapping is an error naming it, not a SIGBUS.
		err = store.Guard(func() error { return x.chunk(raw, scales, ch.Offset, ch.IDs, n) }, its...)
		if err != nil {
			return err
		}
		if x.opt.Scores != nil {
			if err := x.opt.Scores(ch.Offset, ch.IDs, x.block.Slice(0, x.nq, 0, n)); err != nil {
				return fmt.Errorf("Scores callback at row %d: %w", ch.Offset, err)
			}
		}
		x.rows += n
	}
}

// chunk sums and ranks a chunk of n rows, raw[c] and scales[c] those of
// store c. The rows are split into at most procs blocks of size rows,
// block k [k·size, min((k+1)·size, n)) going to worker k, which computes
// its sums on the CPU kernel (the nq × rows matrix of store c at
// isums[c][k·size·nq:]) and then ranks them. A device, while it works,
// computes the sums of the whole chunk first, as one block. Any split gives
// the same integers.
func (x *exactStream) chunk(raw [][]byte, scales [][]float32, offset int, ids []int64, n int) error {
	layout := 0 // the rows of a block of sums: 0 for the workers' blocks
	if x.dev != nil && x.devErr == nil {
		layout = n
		for c, q := range x.qs {
			if err := x.dev.GemmI8(x.isums[c][:x.nq*n], q.Values, x.nq, store.Int8s(raw[c]), n, q.Dim); err != nil {
				// The CPU kernel gives the same integers: on without the
				// device, from this chunk on.
				x.devErr = err
				layout = 0
				break
			}
		}
	}
	p := max(1, min(x.procs, n/64))
	size := (n + p - 1) / p
	p = (n + size - 1) / size
	if layout == 0 {
		layout = size
	}
	var w []float32
	if x.opt.Weights != nil {
		w = x.opt.Weights[offset : offset+n]
	}
	errs := make([]*NonFiniteError, p)
	linalg.ParallelChunks(p, 1, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			r0, r1 := k*size, min((k+1)*size, n)
			if layout == size {
				for c, q := range x.qs {
					rows := store.Int8s(raw[c])
					x.kern.Gemm(x.isums[c][r0*x.nq:r1*x.nq], q.Values, x.nq, rows[r0*q.Dim:r1*q.Dim], r1-r0, q.Dim)
				}
			}
			errs[k] = x.rankRows(x.tops[k], r0, r1, layout, offset, ids, scales, w, n)
		}
	})
	for _, e := range errs {
		if e != nil {
			return e // the lowest row's: blocks are in row order
		}
	}
	return nil
}

// rankRows scores every query against rows [r0, r1) of the chunk and
// offers the scores to the heaps t (and the Scores block). The sums are
// laid out in blocks of layout rows (the last one shorter): those of query
// i and row r at lo·nq + i·bn + (r − lo), for the block [lo, lo+bn) holding
// r. A score that is not finite is reported for its lowest row, and the
// lowest query there, whatever the split.
func (x *exactStream) rankRows(t *streamTops, r0, r1, layout, offset int, ids []int64, scales [][]float32, w []float32, n int) *NonFiniteError {
	var bad *NonFiniteError
	for i := range x.nq {
		rk := ranker{x: x, t: t, i: i, offset: offset, ids: ids, scales: scales, w: w}
		rk.thresholds()
		for lo := r0 / layout * layout; lo < r1; lo += layout {
			bn := min(lo+layout, n) - lo
			a, b := max(lo, r0), min(lo+bn, r1)
			rk.base = lo*x.nq + i*bn - lo
			if e := rk.rank(a, b); e != nil {
				if bad == nil || e.Index < bad.Index {
					bad = e
				}
				break // the query's later rows are higher
			}
		}
	}
	return bad
}

// ranker scores the rows of one query.
type ranker struct {
	x      *exactStream
	t      *streamTops
	i      int // the query
	offset int
	ids    []int64
	scales [][]float32
	w      []float32
	base   int // the sums of row r are at base + r

	// Once both heaps are full, almost every score beats neither worst
	// entry: two comparisons reject it. Until then nothing is rejected.
	hiT, loT float64
}

func (rk *ranker) thresholds() {
	t, i := rk.t, rk.i
	rk.hiT, rk.loT = math.Inf(-1), math.Inf(1)
	if t.k > 0 && len(t.helpful[i].e) == t.k && len(t.harmful[i].e) == t.k {
		rk.hiT, rk.loT = t.helpful[i].e[0].Score, t.harmful[i].e[0].Score
	}
}

// rank scores rows [a, b) of the chunk.
func (rk *ranker) rank(a, b int) *NonFiniteError {
	x := rk.x
	if len(x.stores) > 1 || rk.w != nil || x.block != nil || rk.t.k == 0 {
		for r := a; r < b; r++ {
			score, isum := rk.score(r)
			if err := rk.keep(r, score, isum); err != nil {
				return err
			}
		}
		return nil
	}
	// One store, no weights, no Scores callback: the loop that almost
	// every score of a large batch goes through.
	sums := x.isums[0][rk.base+a : rk.base+b]
	st := rk.scales[0][a:b]
	sq := x.qs[0].Scales[rk.i]
	for j, v := range sums {
		score := quant.Score(v, sq, st[j])
		if f := float64(score); f < rk.hiT && f > rk.loT {
			continue // also false for NaN, which keep reports
		}
		if err := rk.keep(a+j, score, int64(v)); err != nil {
			return err
		}
	}
	return nil
}

// score returns the score of row r of the chunk and its integer sum.
func (rk *ranker) score(r int) (float32, int64) {
	x := rk.x
	if len(x.stores) == 1 && rk.w == nil {
		v := x.isums[0][rk.base+r]
		return quant.Score(v, x.qs[0].Scales[rk.i], rk.scales[0][r]), int64(v)
	}
	var s float64
	var isum int64
	for c := range x.stores {
		v := x.isums[c][rk.base+r]
		// The conversion keeps the product from being fused with the
		// sum: the formula is the same on every machine.
		s += float64(float64(v) * float64(x.qs[c].Scales[rk.i]) * float64(rk.scales[c][r]))
		isum += int64(v)
	}
	if rk.w != nil {
		s *= float64(rk.w[r])
	}
	return float32(s), isum
}

// keep checks the score of row r, writes it to the Scores block and offers
// it to the heaps unless it beats neither worst entry.
func (rk *ranker) keep(r int, score float32, isum int64) *NonFiniteError {
	if score-score != 0 {
		return &NonFiniteError{Query: rk.i, Index: rk.offset + r, ID: rk.ids[r], Score: float64(score)}
	}
	if rk.x.block != nil {
		rk.x.block.Row(rk.i)[r] = score
	}
	if f := float64(score); rk.t.k == 0 || (f < rk.hiT && f > rk.loT) {
		return nil
	}
	rk.t.offerEntry(rk.i, Entry{Index: rk.offset + r, ID: rk.ids[r], Score: float64(score), ISum: isum})
	rk.thresholds()
	return nil
}

// offerEntry gives e to query i's heaps, each keeping it if it is among
// its k best by the heap's order.
func (t *streamTops) offerEntry(i int, e Entry) {
	if t.k == 0 {
		return
	}
	push(&t.helpful[i], t.k, e)
	push(&t.harmful[i], t.k, e)
}

// mergeTops offers the entries of each of u's heaps to the same heap of t:
// a row kept by both of u's heaps must not reach one of t's twice.
func (t *streamTops) mergeTops(u *streamTops) {
	for i := range t.helpful {
		for _, e := range u.helpful[i].e {
			push(&t.helpful[i], t.k, e)
		}
		for _, e := range u.harmful[i].e {
			push(&t.harmful[i], t.k, e)
		}
	}
}

// push puts e in h, which keeps the k best entries, if it is among them.
func push(h *entryHeap, k int, e Entry) {
	switch {
	case len(h.e) < k:
		heap.Push(h, e)
	case h.worse(h.e[0], e):
		h.e[0] = e
		heap.Fix(h, 0)
	}
}

// HelpfulByID reports whether a ranks before b among the most helpful
// examples of exact scores (DESIGN §11): the higher score first, ties to
// the lower example id, so that any recomputation, on any machine and with
// the rows in any order, gives the same list.
func HelpfulByID(a, b Entry) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.ID < b.ID)
}

// HarmfulByID is HelpfulByID for the most harmful examples: the lower
// score first, ties to the lower id.
func HarmfulByID(a, b Entry) bool {
	return a.Score < b.Score || (a.Score == b.Score && a.ID < b.ID)
}
