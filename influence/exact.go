package influence

import (
	"container/heap"
	"context"
	"errors"
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
const exactChunkBytes = 4 << 20

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
	x := &exactStream{
		kern: kern, qs: qs, stores: stores, opt: opt, nq: nq,
		tops: newExactTops(nq, opt.TopK),
	}
	if g, ok := be.(accel.Int8Gemmer); ok && nq >= exactDeviceMin {
		x.dev = g
	}
	if err := x.run(ctx); err != nil {
		return fail(err)
	}
	res := &StreamResult{Rankings: x.tops.rankings(), Rows: x.rows, Kernel: x.kernelName()}
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
	tops   *exactTops
	rows   int

	isums [][]int32 // per store: the chunk's sums, laid out per block (see blocks)
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
		chunkRows = roundUp(max(exactChunkBytes/max(dim, 1), 1), 256)
	}
	chunkRows = min(chunkRows, max(count, 1))
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
	raw := make([][]byte, len(x.stores))
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
		scales := make([][]float32, len(its))
		for c, it := range its {
			scales[c] = it.Chunk().Scales
		}
		// The rows alias the mapped shards: a shard that shrinks under
		// its mapping is an error naming it, not a SIGBUS.
		if err := store.Guard(func() error { x.chunkSums(raw, n); return nil }, its...); err != nil {
			return err
		}
		if err := x.rank(ch.Offset, ch.IDs, scales, n); err != nil {
			return err
		}
		x.rows += n
	}
}

// blocks returns the split of a chunk of n rows between goroutines: block
// k covers rows [k·size, min((k+1)·size, n)). The sums of block k are the
// nq × rows matrix at isums[lo·nq:]. The integers do not depend on it.
func (x *exactStream) blocks(n int) (size, count int) {
	if x.dev != nil && x.devErr == nil {
		return n, 1
	}
	p := max(1, min(runtime.GOMAXPROCS(0), n/64))
	size = (n + p - 1) / p
	return size, (n + size - 1) / size
}

// chunkSums computes the integer sums of every store's queries with the
// chunk's n rows, raw[c] those of store c: on the device while it works,
// else on the CPU kernel, which gives the same integers.
func (x *exactStream) chunkSums(raw [][]byte, n int) {
	if x.dev != nil && x.devErr == nil {
		for c, q := range x.qs {
			if err := x.dev.GemmI8(x.isums[c][:x.nq*n], q.Values, x.nq, store.Int8s(raw[c]), n, q.Dim); err != nil {
				// The sums of the stores before c are laid out for the
				// device's single block: all are made again.
				x.devErr = err
				break
			}
		}
		if x.devErr == nil {
			return
		}
	}
	for c := range x.qs {
		x.sums(c, raw[c], n)
	}
}

// sums computes on the CPU kernel the integer sums of store c's queries
// with the n rows raw, split between goroutines by rows.
func (x *exactStream) sums(c int, raw []byte, n int) {
	q := x.qs[c]
	rows := store.Int8s(raw)
	out := x.isums[c][:x.nq*n]
	size, count := x.blocks(n)
	linalg.ParallelChunks(count, 1, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			r0, r1 := k*size, min((k+1)*size, n)
			x.kern.Gemm(out[r0*x.nq:r1*x.nq], q.Values, x.nq, rows[r0*q.Dim:r1*q.Dim], r1-r0, q.Dim)
		}
	})
}

// rank turns the chunk's sums into scores and offers them to the top-k,
// and to the Scores callback; the queries are split between goroutines,
// each owning its queries' heaps.
func (x *exactStream) rank(offset int, ids []int64, scales [][]float32, n int) error {
	size, _ := x.blocks(n)
	var w []float32
	if x.opt.Weights != nil {
		w = x.opt.Weights[offset : offset+n]
	}
	errs := make([]error, x.nq)
	linalg.ParallelChunks(x.nq, max(1, 4096/max(n, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			errs[i] = x.rankQuery(i, offset, ids, scales, w, n, size)
		}
	})
	if err := errors.Join(errs...); err != nil {
		for _, e := range errs {
			if e != nil {
				return e // the first query's
			}
		}
	}
	if x.opt.Scores != nil {
		b := x.block.Slice(0, x.nq, 0, n)
		if err := x.opt.Scores(offset, ids, b); err != nil {
			return fmt.Errorf("Scores callback at row %d: %w", offset, err)
		}
	}
	return nil
}

// rankQuery scores query i against the chunk's rows and offers the scores
// to its heaps.
func (x *exactStream) rankQuery(i, offset int, ids []int64, scales [][]float32, w []float32, n, size int) error {
	single := len(x.stores) == 1 && w == nil
	var row []float32
	if x.block != nil {
		row = x.block.Row(i)[:n]
	}
	t := x.tops
	hp, hm := &t.helpful[i], &t.harmful[i]
	// Once both heaps are full, almost every score beats neither worst
	// entry: two comparisons reject it without building an Entry.
	full := func() bool { return t.k > 0 && len(hp.e) == t.k && len(hm.e) == t.k }
	hiT, loT := math.Inf(-1), math.Inf(1) // until full, nothing is rejected
	if full() {
		hiT, loT = hp.e[0].Score, hm.e[0].Score
	}
	sq0 := float64(x.qs[0].Scales[i])
	for lo := 0; lo < n; lo += size {
		bn := min(lo+size, n) - lo
		// The sums of block lo are the nq × bn matrix at lo·nq: those of
		// query i and row r at lo·nq + i·bn + (r − lo).
		base := lo*x.nq + i*bn - lo
		for r := lo; r < lo+bn; r++ {
			var score float32
			var isum int64
			if single {
				v := x.isums[0][base+r]
				score = float32(float64(v) * sq0 * float64(scales[0][r]))
				isum = int64(v)
			} else {
				var s float64
				for c := range x.stores {
					v := x.isums[c][base+r]
					s += float64(float64(v) * float64(x.qs[c].Scales[i]) * float64(scales[c][r]))
					isum += int64(v)
				}
				if w != nil {
					s *= float64(w[r])
				}
				score = float32(s)
			}
			if score-score != 0 {
				return &NonFiniteError{Query: i, Index: offset + r, ID: ids[r], Score: float64(score)}
			}
			if row != nil {
				row[r] = score
			}
			if v := float64(score); t.k == 0 || (v < hiT && v > loT) {
				continue
			}
			t.offer(i, Entry{Index: offset + r, ID: ids[r], Score: float64(score), ISum: isum})
			if full() {
				hiT, loT = hp.e[0].Score, hm.e[0].Score
			}
		}
	}
	return nil
}

// exactTops holds the per-query heaps of an exact stream, ordered by score
// and then by id (HelpfulByID, HarmfulByID).
type exactTops struct {
	k       int
	helpful []entryHeap
	harmful []entryHeap
}

func newExactTops(nq, k int) *exactTops {
	t := &exactTops{k: k, helpful: make([]entryHeap, nq), harmful: make([]entryHeap, nq)}
	for i := range nq {
		t.helpful[i] = entryHeap{e: make([]Entry, 0, k), worse: func(a, b Entry) bool { return HelpfulByID(b, a) }}
		t.harmful[i] = entryHeap{e: make([]Entry, 0, k), worse: func(a, b Entry) bool { return HarmfulByID(b, a) }}
	}
	return t
}

// offer gives e to query i's heaps. Most scores beat neither worst entry:
// one comparison of scores each rejects them.
func (t *exactTops) offer(i int, e Entry) {
	if t.k == 0 {
		return
	}
	hp, hm := &t.helpful[i], &t.harmful[i]
	if len(hp.e) < t.k {
		heap.Push(hp, e)
	} else if e.Score >= hp.e[0].Score && HelpfulByID(e, hp.e[0]) {
		hp.e[0] = e
		heap.Fix(hp, 0)
	}
	if len(hm.e) < t.k {
		heap.Push(hm, e)
	} else if e.Score <= hm.e[0].Score && HarmfulByID(e, hm.e[0]) {
		hm.e[0] = e
		heap.Fix(hm, 0)
	}
}

// rankings empties the heaps into lists, best first.
func (t *exactTops) rankings() []Ranking {
	st := &streamTops{k: t.k, helpful: t.helpful, harmful: t.harmful}
	return st.rankings()
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
