package influence

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
)

// DefaultChunkRows is the number of store rows StreamScores reads at a time
// when StreamOptions.ChunkRows is zero: two Sgemm blocks. The products run
// on fixed blocks whatever the chunk, so the chunk only sets how much is
// widened ahead of the multiplication. At 4096 columns a chunk is 32 MiB of
// float32, about a last-level cache; on the 2-core benchmark machine 2048
// rows streamed more steadily than 1024 or 8192 (bench/results/stream-*.md).
const DefaultChunkRows = 2048

// gemmBlock is the number of columns (store rows) of every Sgemm call of
// StreamScores. Backends do not sum along k in the same order for every
// shape, nor for every column of one: OpenBLAS picks its kernels and splits
// the work between threads by shape and position, so that a score changes in
// the last bits with the number of columns in the call and the column's place
// among them; gonum runs products of fewer than four 64×64 output blocks
// serially over the whole of k and larger ones in k-blocks of 64. Calling
// Sgemm only on blocks of gemmBlock rows that start at multiples of gemmBlock
// in the store, the last padded with zero rows, computes every score the same
// way however the store is chunked. At 1024 columns a call runs as fast as
// one on 8192 (measured with OpenBLAS at 512 queries × 4096). A backend that
// streams (linalg.ScoreStreamer) multiplies blocks of the same size.
const gemmBlock = linalg.ScoreBlock

// strideAlign is the multiple, in float32 elements, to which StreamScores
// pads the rows of its query and chunk buffers. gonum's dot kernel sums the
// first few elements of a row that does not start on a 16-byte boundary
// separately, so the summation order of a score would depend on the row's
// address; with 64-byte rows every row is aligned wherever the chunk starts.
const strideAlign = 16

// StreamOptions configures StreamScores.
type StreamOptions struct {
	TopK int // helpful and harmful entries kept per query (0: none)
	// ChunkRows is the number of store rows read at a time, rounded up to a
	// multiple of 1024 (default DefaultChunkRows). It trades memory for
	// speed; the results do not depend on it.
	ChunkRows int

	// Weights, when not nil, multiplies the scores of store row t by
	// Weights[t] (one per store row), before the top-k and the Scores
	// callback: TRAK's Q_t. The products are float32.
	Weights []float32

	// Scores, when set, receives every chunk's block of scores: the
	// n_query × rows matrix for store rows [offset, offset+rows) with their
	// ids, in store order, each row exactly once. The block and ids are
	// reused after the call returns. An error stops StreamScores, which
	// returns it wrapped.
	Scores func(offset int, ids []int64, block *linalg.Dense32) error
}

// StreamResult is the outcome of StreamScores.
type StreamResult struct {
	// Rankings holds, per query, the TopK most helpful and most harmful
	// store rows. Entry.Index is the row's position in the store and
	// Entry.ID its id.
	Rankings []Ranking
	Rows     int     // store rows scored
	Seconds  float64 // wall time of the whole call
	// Kernel names what computed the integer sums of i8 stores: a
	// quant.Kernel ("vnni", "avx2", "go") or "device" (the backend's int8
	// GEMM); empty for float scores.
	Kernel string
	// Quantized holds, for i8 stores, each store's queries as they were
	// scored: projected, preconditioned and quantised (QuantizeQueries);
	// nil for float scores.
	Quantized []*QuantizedQueries
}

// StreamScores scores already-preconditioned queries (n_query × dim) against
// every row of the store, score(q, t) = ⟨q, t⟩ with positive = helpful, and
// keeps the top-k of each query. The store is streamed chunk by chunk: a
// second goroutine reads and widens the next chunk (f16 and bf16 to float32)
// while the current one is multiplied on be, by Sgemm calls on fixed blocks
// of 1024 rows (see gemmBlock), and per-query heaps of the most helpful
// (largest) and most harmful (smallest) scores, ties going to the lower row,
// are carried across chunks. Memory is bounded by two
// chunk buffers of ChunkRows·dim values and an n_query × ChunkRows block of
// scores, whatever the size of the store.
//
// Scores are float32 products, computed the same way for every row, so the
// results are identical, bit for bit, whatever ChunkRows and however the
// store is split into shards. Top-k lists equal TopK over the full score
// matrix.
//
// On a backend that implements linalg.ScoreStreamer (the cuda backend), the
// rows are not widened on the host: each chunk is handed to the backend as
// the shards store it (f16, bf16 or f32), with two chunks in flight while
// the next is read, and only the top-k candidates come back, or the blocks
// of scores when the Scores callback is set. Its scores differ from the
// host's in the last bits (the GPU sums in another order) but, computed on
// the same fixed blocks of 1024 rows, still do not depend on ChunkRows or
// the sharding, and the top-k lists still equal TopK over the scores it
// computes. Where the backend cannot open a stream (no kernels, not enough
// device memory), StreamScores runs on the host through its Sgemm.
//
// Queries with a NaN or an infinity are an error naming the row, as is a
// query dimension other than the store's. A score that is NaN or ±Inf (finite
// but huge rows overflow float32) is a *NonFiniteError naming the query and
// the store row and id, so that no row drops silently out of a ranking or
// the Scores callback. On a streaming backend without the callback only the
// top-k candidates come back: a ±Inf always ranks among them and is caught,
// but the kernel ranks NaN after every number, so a NaN is caught only where
// it reaches the candidates (a block with fewer than TopK other scores);
// the lists are then those of TopK, which never ranks a NaN. Cancelling ctx
// stops the stream between chunks and returns ctx.Err().
func StreamScores(ctx context.Context, be linalg.Backend, queries *linalg.Dense32, s *store.Store, opt StreamOptions) (*StreamResult, error) {
	return streamScores(ctx, "StreamScores", be, []*linalg.Dense32{queries}, []*store.Store{s}, opt)
}

// StreamCheckpoints is StreamScores over several stores of the same rows,
// one per model checkpoint, with queries[c] preconditioned for store c:
//
//	score(q, t) = Weights[t] · Σ_c ⟨queries[c]_q, row_c(t)⟩.
//
// With queries[c] = η_c·g_c(q) this is TracIn-CP; with the TRAK queries of
// TRAKQueries and the weights of TRAKWeights it is TRAK. The stores must hold
// the same ids in the same order (checked chunk by chunk) but may differ in
// dimension, dtype and sharding. Rows of the stores are read side by side,
// as one row of the summed dimension, so that a single product per block sums
// over the checkpoints: the results have the same guarantees as
// StreamScores, and memory grows with the summed dimension, not with the
// number of rows.
func StreamCheckpoints(ctx context.Context, be linalg.Backend, queries []*linalg.Dense32, stores []*store.Store, opt StreamOptions) (*StreamResult, error) {
	return streamScores(ctx, "StreamCheckpoints", be, queries, stores, opt)
}

func streamScores(ctx context.Context, name string, be linalg.Backend, queries []*linalg.Dense32, stores []*store.Store, opt StreamOptions) (*StreamResult, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if exact, err := isI8(stores); err != nil {
		return nil, fmt.Errorf("influence: %s: %w", name, err)
	} else if exact {
		return streamExact(ctx, name, be, queries, stores, opt)
	}
	q, err := streamInput(be, queries, stores, opt)
	if err != nil {
		return nil, fmt.Errorf("influence: %s: %w", name, err)
	}
	count := stores[0].Count()
	chunkRows := opt.ChunkRows
	if chunkRows == 0 {
		chunkRows = DefaultChunkRows
	}
	// Chunks hold whole Sgemm blocks, and no more than the store: a small
	// store needs no 8192-row buffer.
	chunkRows = roundUp(min(chunkRows, max(count, 1)), gemmBlock)

	nq, dim := q.Rows, q.Cols
	tops := newStreamTops(nq, opt.TopK)
	res := &StreamResult{}
	if ss, ok := be.(linalg.ScoreStreamer); ok && nq > 0 && dim > 0 && count > 0 {
		if st, err := ss.NewScoreStream(q, streamOptions(stores, chunkRows, opt)); err == nil {
			err = streamDevice(ctx, st, stores, chunkRows, opt, tops, res)
			if err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return nil, ctxErr
				}
				return nil, fmt.Errorf("influence: %s: %w", name, err)
			}
			res.Rankings = tops.rankings()
			res.Seconds = time.Since(start).Seconds()
			return res, nil
		}
		// The backend cannot stream here (no kernels, no memory): on the
		// host, through its Sgemm.
	}
	block := linalg.NewDense32(nq, chunkRows, nil)

	err = streamChunks(ctx, stores, chunkRows, func(c *streamChunk) error {
		n := c.n
		for lo := 0; lo < n; lo += gemmBlock {
			rows := &linalg.Dense32{Rows: gemmBlock, Cols: dim, Stride: c.stride, Data: c.data[lo*c.stride : (lo+gemmBlock-1)*c.stride+dim]}
			out := block.Slice(0, nq, lo, lo+gemmBlock)
			if nq > 0 && dim > 0 {
				be.Sgemm(linalg.NoTrans, linalg.Trans, 1, q, rows, 0, out)
			} else {
				for i := range nq {
					clear(out.Row(i))
				}
			}
		}
		scores := block.Slice(0, nq, 0, n)
		if opt.Weights != nil {
			w := opt.Weights[c.offset : c.offset+n]
			for i := range nq {
				row := scores.Row(i)
				for j := range row {
					row[j] *= w[j]
				}
			}
		}
		if err := checkBlock(scores, c.offset, c.ids); err != nil {
			return err
		}
		if opt.Scores != nil {
			if err := opt.Scores(c.offset, c.ids, scores); err != nil {
				return fmt.Errorf("influence: %s: Scores callback at row %d: %w", name, c.offset, err)
			}
		}
		tops.add(scores, c.offset, c.ids)
		res.Rows += n
		return nil
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("influence: %s: %w", name, err)
	}
	res.Rankings = tops.rankings()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// streamInput checks the arguments of streamScores and returns the queries
// of all stores side by side, copied into a buffer with aligned rows (see
// strideAlign), so that neither their address nor their stride changes the
// scores.
func streamInput(be linalg.Backend, queries []*linalg.Dense32, stores []*store.Store, opt StreamOptions) (*linalg.Dense32, error) {
	switch {
	case be == nil:
		return nil, errors.New("nil backend")
	case len(stores) == 0:
		return nil, errors.New("no stores")
	case len(queries) != len(stores):
		return nil, fmt.Errorf("%d query matrices for %d stores", len(queries), len(stores))
	case opt.TopK < 0:
		return nil, fmt.Errorf("TopK is %d, want ≥ 0", opt.TopK)
	case opt.ChunkRows < 0:
		return nil, fmt.Errorf("ChunkRows is %d, want ≥ 0 (0 for the default)", opt.ChunkRows)
	}
	nq, total := -1, 0
	for c, s := range stores {
		qc := queries[c]
		switch {
		case s == nil:
			return nil, fmt.Errorf("nil store (%d)", c)
		case qc == nil:
			return nil, fmt.Errorf("nil queries (for store %d)", c)
		case qc.Rows < 0 || qc.Cols < 0:
			return nil, fmt.Errorf("queries %d have negative dimensions %d×%d", c, qc.Rows, qc.Cols)
		case qc.Cols != s.Dim():
			return nil, fmt.Errorf("queries have dimension %d but the store %s has rows of dimension %d", qc.Cols, s.Dir(), s.Dim())
		case c > 0 && qc.Rows != nq:
			return nil, fmt.Errorf("%d queries for the store %s, %d for %s", qc.Rows, s.Dir(), nq, stores[0].Dir())
		case c > 0 && s.Count() != stores[0].Count():
			return nil, fmt.Errorf("the store %s has %d rows, %s has %d", s.Dir(), s.Count(), stores[0].Dir(), stores[0].Count())
		}
		if qc.Rows > 0 && qc.Cols > 0 {
			if qc.Stride < qc.Cols {
				return nil, fmt.Errorf("queries are %d×%d with stride %d", qc.Rows, qc.Cols, qc.Stride)
			}
			if need := (qc.Rows-1)*qc.Stride + qc.Cols; len(qc.Data) < need {
				return nil, fmt.Errorf("queries are %d×%d (stride %d) but hold %d values, need %d", qc.Rows, qc.Cols, qc.Stride, len(qc.Data), need)
			}
		}
		nq = qc.Rows
		total += qc.Cols
	}
	if opt.Weights != nil {
		if len(opt.Weights) != stores[0].Count() {
			return nil, fmt.Errorf("%d weights for %d store rows", len(opt.Weights), stores[0].Count())
		}
		for t, w := range opt.Weights {
			if f := float64(w); math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("weight of store row %d: %w: %v", t, linalg.ErrNotFinite, w)
			}
		}
	}
	stride := alignedStride(total)
	q := &linalg.Dense32{Rows: nq, Cols: total, Stride: stride, Data: make([]float32, nq*stride)}
	off := 0
	for c, qc := range queries {
		for i := range nq {
			row := qc.Data[i*qc.Stride : i*qc.Stride+qc.Cols]
			for j, v := range row {
				if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
					if len(queries) > 1 {
						return nil, fmt.Errorf("queries %d: query %d: %w: %v at column %d", c, i, linalg.ErrNotFinite, v, j)
					}
					return nil, fmt.Errorf("query %d: %w: %v at column %d", i, linalg.ErrNotFinite, v, j)
				}
			}
			copy(q.Data[i*stride+off:], row)
		}
		off += qc.Cols
	}
	return q, nil
}

// roundUp returns n rounded up to a multiple of m.
func roundUp(n, m int) int { return (n + m - 1) / m * m }

// alignedStride returns dim rounded up to a multiple of strideAlign.
func alignedStride(dim int) int {
	return max(roundUp(dim, strideAlign), strideAlign)
}

// streamChunk is a chunk of store rows laid out for Sgemm: n rows of dim
// values, stride apart, followed by zero rows up to a multiple of gemmBlock.
type streamChunk struct {
	offset int
	n      int
	stride int
	ids    []int64
	data   []float32

	written int // leading rows of data that may be non-zero
}

// streamChunks walks the stores side by side in chunks of chunkRows rows
// and calls fn on each, in order: row t of a chunk is row t of every store,
// concatenated. A goroutine owns the store iterators: it reads and widens
// chunk i+1 straight into one of two streamChunk buffers, rows aligned,
// while fn works on chunk i in the other. The goroutine has exited when
// streamChunks returns.
func streamChunks(ctx context.Context, stores []*store.Store, chunkRows int, fn func(*streamChunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	dim := 0
	for _, s := range stores {
		dim += s.Dim()
	}
	stride := alignedStride(dim)
	free := make(chan *streamChunk, 2)
	full := make(chan *streamChunk)
	for range 2 {
		free <- &streamChunk{stride: stride, data: make([]float32, chunkRows*stride)}
	}

	var (
		wg      sync.WaitGroup
		readErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		its := make([]*store.Iterator, len(stores))
		for c, s := range stores {
			its[c] = s.Chunks(chunkRows)
			defer its[c].Close()
		}
		for {
			var b *streamChunk
			select {
			case b = <-free:
			case <-ctx.Done():
				readErr = ctx.Err()
				return
			}
			n, err := readSideBySide(ctx, stores, its, b)
			if err != nil {
				readErr = err
				return
			}
			if n == 0 {
				return
			}
			// A short chunk is padded with zero rows to a whole Sgemm
			// block: clear what earlier chunks left there.
			if end := min(b.written, roundUp(n, gemmBlock)); n < end {
				clear(b.data[n*stride : end*stride])
			}
			b.written = max(b.written, n)
			b.n = n
			select {
			case full <- b:
			case <-ctx.Done():
				readErr = ctx.Err()
				return
			}
		}
	}()

	var err error
	for b := range full {
		if err == nil {
			if err = ctx.Err(); err == nil {
				err = fn(b)
			}
			if err != nil {
				cancel()
			}
		}
		free <- b
	}
	wg.Wait()
	if err != nil {
		return err
	}
	return readErr
}

// readSideBySide reads the next chunk of every store into b, store c's rows
// at its column offset, and returns the number of rows, 0 at the end.
func readSideBySide(ctx context.Context, stores []*store.Store, its []*store.Iterator, b *streamChunk) (int, error) {
	n, off := 0, 0
	for c, it := range its {
		ok := it.NextInto(ctx, b.data[off:], b.stride)
		if err := it.Err(); err != nil {
			return 0, fmt.Errorf("reading store %s: %w", stores[c].Dir(), err)
		}
		if !ok {
			return 0, nil // the stores hold as many rows, checked up front
		}
		ch := it.Chunk()
		if c == 0 {
			n = len(ch.IDs)
			b.offset = ch.Offset
			b.ids = append(b.ids[:0], ch.IDs...)
		} else {
			for i, id := range ch.IDs {
				if id != b.ids[i] {
					return 0, fmt.Errorf("row %d has id %d in the store %s but %d in %s", ch.Offset+i, id, stores[c].Dir(), b.ids[i], stores[0].Dir())
				}
			}
		}
		off += stores[c].Dim()
	}
	return n, nil
}

// streamOptions returns the options of the ScoreStream of streamScores.
func streamOptions(stores []*store.Store, chunkRows int, opt StreamOptions) linalg.ScoreStreamOptions {
	parts := make([]linalg.RowPart, len(stores))
	for c, s := range stores {
		parts[c] = linalg.RowPart{Type: rowType(s.DType()), Cols: s.Dim()}
	}
	so := linalg.ScoreStreamOptions{Parts: parts, MaxRows: chunkRows, Scores: opt.Scores != nil}
	if !so.Scores {
		so.TopK = opt.TopK
	}
	return so
}

// rowType is the linalg name of a store's element type.
func rowType(d gradients.DType) linalg.DType {
	switch d {
	case gradients.F16:
		return linalg.F16
	case gradients.BF16:
		return linalg.BF16
	}
	return linalg.F32
}

// streamDevice is the loop of streamScores on a backend that streams: the
// rows of the stores go to st raw, side by side, in chunks of chunkRows
// (multiples of linalg.ScoreBlock, so that the chunking does not change the
// scores), and the scores (for the callback, then the heaps) or the top-k
// candidates (for the heaps) come back. Two chunks are in flight while the
// next is read. It closes st.
func streamDevice(ctx context.Context, st linalg.ScoreStream, stores []*store.Store, chunkRows int, opt StreamOptions, tops *streamTops, res *StreamResult) (err error) {
	defer func() {
		if cerr := st.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	its := make([]*store.Iterator, len(stores))
	for c, s := range stores {
		its[c] = s.Chunks(chunkRows)
		defer its[c].Close()
	}
	// The chunks sent and not yet received, oldest first.
	type inFlight struct {
		offset int
		ids    []int64
	}
	var (
		queue  [2]inFlight
		head   int
		queued int
		raw    = make([][]byte, len(stores))
	)
	receive := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := st.Receive()
		if err != nil {
			return err
		}
		c := &queue[head]
		head, queued = (head+1)%len(queue), queued-1
		if n := len(c.ids); r.Offset != c.offset || r.Rows != n {
			return fmt.Errorf("the backend returned rows [%d, %d) for the chunk [%d, %d)", r.Offset, r.Offset+r.Rows, c.offset, c.offset+n)
		}
		if opt.Scores != nil {
			if r.Scores == nil || r.Scores.Rows != len(tops.helpful) || r.Scores.Cols != r.Rows {
				return fmt.Errorf("the backend returned no %d×%d block of scores for rows [%d, %d)", len(tops.helpful), r.Rows, r.Offset, r.Offset+r.Rows)
			}
			if err := checkBlock(r.Scores, c.offset, c.ids); err != nil {
				return err
			}
			if err := opt.Scores(c.offset, c.ids, r.Scores); err != nil {
				return fmt.Errorf("Scores callback at row %d: %w", c.offset, err)
			}
			tops.add(r.Scores, c.offset, c.ids)
		} else {
			if err := tops.merge(tops.helpful, r.Helpful, c.offset, c.ids); err != nil {
				return err
			}
			if err := tops.merge(tops.harmful, r.Harmful, c.offset, c.ids); err != nil {
				return err
			}
		}
		res.Rows += r.Rows
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := readRawSideBySide(ctx, stores, its, raw)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if queued == len(queue) {
			if err := receive(); err != nil {
				return err
			}
		}
		c := &queue[(head+queued)%len(queue)]
		ch := its[0].Chunk()
		c.offset, c.ids = ch.Offset, append(c.ids[:0], ch.IDs...)
		var w []float32
		if opt.Weights != nil {
			w = opt.Weights[c.offset : c.offset+n]
		}
		if err := st.Send(linalg.RawChunk{Offset: c.offset, Rows: n, Parts: raw, Weights: w}); err != nil {
			return err
		}
		queued++
	}
	for queued > 0 {
		if err := receive(); err != nil {
			return err
		}
	}
	return nil
}

// readRawSideBySide reads the next chunk of every store with NextRaw, the
// raw rows of store c into raw[c], checks that the stores agree on the ids
// and returns the number of rows, 0 at the end. The chunk is its[0].Chunk().
func readRawSideBySide(ctx context.Context, stores []*store.Store, its []*store.Iterator, raw [][]byte) (int, error) {
	var first store.Chunk
	for c, it := range its {
		ok := it.NextRaw(ctx)
		if err := it.Err(); err != nil {
			return 0, fmt.Errorf("reading store %s: %w", stores[c].Dir(), err)
		}
		if !ok {
			return 0, nil // the stores hold as many rows, checked up front
		}
		ch := it.Chunk()
		raw[c] = ch.Raw
		if c == 0 {
			first = ch
			continue
		}
		for i, id := range ch.IDs {
			if id != first.IDs[i] {
				return 0, fmt.Errorf("row %d has id %d in the store %s but %d in %s", ch.Offset+i, id, stores[c].Dir(), first.IDs[i], stores[0].Dir())
			}
		}
	}
	return len(first.IDs), nil
}

// checkBlock returns a *NonFiniteError for the first NaN or ±Inf of a
// chunk's scores, the store rows [offset, offset+scores.Cols) with their ids.
func checkBlock(scores *linalg.Dense32, offset int, ids []int64) error {
	for q := range scores.Rows {
		for j, v := range scores.Row(q) {
			if v-v != 0 {
				return &NonFiniteError{Query: q, Index: offset + j, ID: ids[j], Score: float64(v)}
			}
		}
	}
	return nil
}

// streamTops holds the per-query heaps of StreamScores.
type streamTops struct {
	k       int
	helpful []entryHeap
	harmful []entryHeap
}

// newStreamTops returns the heaps of StreamScores, in the order of TopK.
func newStreamTops(nq, k int) *streamTops { return newTops(nq, k, HelpfulFirst, HarmfulFirst) }

// newTops returns heaps of the k best entries of nq queries by the orders
// helpful and harmful (which report whether a ranks before b), each heap
// holding its worst entry on top.
func newTops(nq, k int, helpful, harmful func(a, b Entry) bool) *streamTops {
	t := &streamTops{k: k, helpful: make([]entryHeap, nq), harmful: make([]entryHeap, nq)}
	hw := func(a, b Entry) bool { return helpful(b, a) }
	mw := func(a, b Entry) bool { return harmful(b, a) }
	for i := range nq {
		t.helpful[i] = entryHeap{e: make([]Entry, 0, k), worse: hw}
		t.harmful[i] = entryHeap{e: make([]Entry, 0, k), worse: mw}
	}
	return t
}

// add offers the scores of store rows [offset, offset+scores.Cols) to the
// heaps. Rows arrive in increasing order, so a new entry that ties the worst
// kept has the higher index and loses, as in selectK: the fast path compares
// scores only, and the heaps see the same sequence of operations as selectK
// over the whole row, which makes the lists identical to TopK's.
func (t *streamTops) add(scores *linalg.Dense32, offset int, ids []int64) {
	if t.k == 0 {
		return
	}
	for qi := range scores.Rows {
		row := scores.Row(qi)
		hp, hm := &t.helpful[qi], &t.harmful[qi]
		j := 0
		for ; j < len(row) && (len(hp.e) < t.k || len(hm.e) < t.k); j++ {
			t.offer(hp, hm, row[j], offset+j, ids[j])
		}
		// Once both heaps are full, almost every score beats neither
		// threshold: compare in float32 (exact, the scores are float32) and
		// touch the heaps only for the rare one that does.
		hi, lo := float32(hp.e[0].Score), float32(hm.e[0].Score)
		for ; j < len(row); j++ {
			if v := row[j]; v > hi || v < lo {
				t.offer(hp, hm, v, offset+j, ids[j])
				hi, lo = float32(hp.e[0].Score), float32(hm.e[0].Score)
			}
		}
	}
}

// offer pushes a score onto either heap that is not full or whose worst
// entry it beats.
func (t *streamTops) offer(hp, hm *entryHeap, v float32, index int, id int64) {
	s := float64(v)
	if len(hp.e) < t.k {
		heap.Push(hp, Entry{Index: index, ID: id, Score: s})
	} else if s > hp.e[0].Score {
		hp.e[0] = Entry{Index: index, ID: id, Score: s}
		heap.Fix(hp, 0)
	}
	if len(hm.e) < t.k {
		heap.Push(hm, Entry{Index: index, ID: id, Score: s})
	} else if s < hm.e[0].Score {
		hm.e[0] = Entry{Index: index, ID: id, Score: s}
		heap.Fix(hm, 0)
	}
}

// merge offers a chunk's candidates to the heaps hs (tops.helpful or
// tops.harmful). It compares entries in TopK's full order, score then index,
// so that the heaps keep the k best whatever order the candidates come in.
func (t *streamTops) merge(hs []entryHeap, c linalg.Candidates, offset int, ids []int64) error {
	if t.k == 0 {
		return nil
	}
	if c.N < 0 || len(c.Index) != len(hs)*c.N || len(c.Score) != len(c.Index) {
		return fmt.Errorf("the backend returned %d candidate rows and %d scores for %d queries × %d", len(c.Index), len(c.Score), len(hs), c.N)
	}
	for qi := range hs {
		h := &hs[qi]
		rows, scores := c.Index[qi*c.N:(qi+1)*c.N], c.Score[qi*c.N:(qi+1)*c.N]
		for j, r := range rows {
			i := int(r) - offset
			if i < 0 || i >= len(ids) {
				return fmt.Errorf("the backend returned candidate row %d for the chunk [%d, %d)", r, offset, offset+len(ids))
			}
			e := Entry{Index: int(r), ID: ids[i], Score: float64(scores[j])}
			if e.Score-e.Score != 0 {
				return &NonFiniteError{Query: qi, Index: e.Index, ID: e.ID, Score: e.Score}
			}
			push(h, t.k, e)
		}
	}
	return nil
}

// rankings empties the heaps into lists, best first.
func (t *streamTops) rankings() []Ranking {
	out := make([]Ranking, len(t.helpful))
	if t.k == 0 {
		return out
	}
	drain := func(h *entryHeap) []Entry {
		if h.Len() == 0 {
			return nil // as TopK for an empty store
		}
		res := make([]Entry, h.Len())
		for i := len(res) - 1; i >= 0; i-- {
			res[i] = heap.Pop(h).(Entry)
		}
		return res
	}
	for i := range out {
		out[i] = Ranking{Helpful: drain(&t.helpful[i]), Harmful: drain(&t.harmful[i])}
	}
	return out
}
