package influence

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
)

// DefaultChunkRows is the number of store rows StreamScores reads at a time
// when StreamOptions.ChunkRows is zero. At 4096 columns a chunk is 128 MiB of
// float32: large enough that each Sgemm call runs near the backend's peak and
// the per-call packing of the queries is amortised, small enough to bound
// memory well below the size of a store.
const DefaultChunkRows = 8192

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
// one on 8192 (measured with OpenBLAS at 512 queries × 4096).
const gemmBlock = 1024

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
// Queries with a NaN or an infinity are an error naming the row, as is a
// query dimension other than the store's. Cancelling ctx stops the stream
// between chunks and returns ctx.Err().
func StreamScores(ctx context.Context, be linalg.Backend, queries *linalg.Dense32, s *store.Store, opt StreamOptions) (*StreamResult, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := streamInput(be, queries, s, opt)
	if err != nil {
		return nil, fmt.Errorf("influence: StreamScores: %w", err)
	}
	chunkRows := opt.ChunkRows
	if chunkRows == 0 {
		chunkRows = DefaultChunkRows
	}
	// Chunks hold whole Sgemm blocks, and no more than the store: a small
	// store needs no 8192-row buffer.
	chunkRows = roundUp(min(chunkRows, max(s.Count(), 1)), gemmBlock)

	nq, dim := q.Rows, q.Cols
	tops := newStreamTops(nq, opt.TopK)
	block := linalg.NewDense32(nq, chunkRows, nil)
	res := &StreamResult{}

	err = streamChunks(ctx, s, chunkRows, dim, func(c *streamChunk) error {
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
		if opt.Scores != nil {
			if err := opt.Scores(c.offset, c.ids, scores); err != nil {
				return fmt.Errorf("influence: StreamScores: Scores callback at row %d: %w", c.offset, err)
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
		return nil, err
	}
	res.Rankings = tops.rankings()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// streamInput checks the arguments of StreamScores and returns the queries
// copied into a buffer with aligned rows (see strideAlign), so that neither
// their address nor their stride changes the scores.
func streamInput(be linalg.Backend, queries *linalg.Dense32, s *store.Store, opt StreamOptions) (*linalg.Dense32, error) {
	switch {
	case be == nil:
		return nil, errors.New("nil backend")
	case queries == nil:
		return nil, errors.New("nil queries")
	case s == nil:
		return nil, errors.New("nil store")
	case opt.TopK < 0:
		return nil, fmt.Errorf("TopK is %d, want ≥ 0", opt.TopK)
	case opt.ChunkRows < 0:
		return nil, fmt.Errorf("ChunkRows is %d, want ≥ 0 (0 for the default)", opt.ChunkRows)
	case queries.Rows < 0 || queries.Cols < 0:
		return nil, fmt.Errorf("queries have negative dimensions %d×%d", queries.Rows, queries.Cols)
	case queries.Cols != s.Dim():
		return nil, fmt.Errorf("queries have dimension %d but the store %s has rows of dimension %d", queries.Cols, s.Dir(), s.Dim())
	}
	nq, dim := queries.Rows, queries.Cols
	if nq > 0 && dim > 0 {
		if queries.Stride < dim {
			return nil, fmt.Errorf("queries are %d×%d with stride %d", nq, dim, queries.Stride)
		}
		if need := (nq-1)*queries.Stride + dim; len(queries.Data) < need {
			return nil, fmt.Errorf("queries are %d×%d (stride %d) but hold %d values, need %d", nq, dim, queries.Stride, len(queries.Data), need)
		}
	}
	stride := alignedStride(dim)
	q := &linalg.Dense32{Rows: nq, Cols: dim, Stride: stride, Data: make([]float32, nq*stride)}
	for i := range nq {
		row := queries.Data[i*queries.Stride : i*queries.Stride+dim]
		for j, v := range row {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("query %d: %w: %v at column %d", i, linalg.ErrNotFinite, v, j)
			}
		}
		copy(q.Data[i*stride:], row)
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
}

// streamChunks walks the store in chunks of chunkRows rows and calls fn on
// each, in order. A goroutine owns the store iterator: it reads and widens
// chunk i+1 into the iterator's buffer while fn works on chunk i in the one
// streamChunk buffer, and copies it across, aligning the rows, once fn
// returns. That is two chunk buffers in all, and the copy is the only work
// not overlapped with fn. The goroutine has exited when streamChunks
// returns.
func streamChunks(ctx context.Context, s *store.Store, chunkRows, dim int, fn func(*streamChunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stride := alignedStride(dim)
	buf := &streamChunk{stride: stride, data: make([]float32, chunkRows*stride), ids: make([]int64, 0, chunkRows)}
	free := make(chan *streamChunk, 1)
	full := make(chan *streamChunk)
	free <- buf

	var (
		wg      sync.WaitGroup
		readErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		it := s.Chunks(chunkRows)
		defer it.Close()
		written := 0 // rows of the buffer that may be non-zero
		for it.Next(ctx) {
			c := it.Chunk()
			var b *streamChunk
			select {
			case b = <-free:
			case <-ctx.Done():
				readErr = ctx.Err()
				return
			}
			n := c.Rows.Rows
			if stride == dim {
				copy(b.data, c.Rows.Data[:n*dim])
			} else {
				for i := range n {
					copy(b.data[i*stride:i*stride+dim], c.Rows.Row(i))
				}
			}
			// A short chunk is padded with zero rows to a whole Sgemm
			// block: clear what earlier chunks left there.
			if end := min(written, roundUp(n, gemmBlock)); n < end {
				clear(b.data[n*stride : end*stride])
			}
			written = max(written, n)
			b.offset, b.n = c.Offset, n
			b.ids = append(b.ids[:0], c.IDs...)
			select {
			case full <- b:
			case <-ctx.Done():
				readErr = ctx.Err()
				return
			}
		}
		if err := it.Err(); err != nil {
			readErr = fmt.Errorf("influence: StreamScores: reading store: %w", err)
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

// streamTops holds the per-query heaps of StreamScores.
type streamTops struct {
	k       int
	helpful []entryHeap
	harmful []entryHeap
}

func newStreamTops(nq, k int) *streamTops {
	t := &streamTops{k: k, helpful: make([]entryHeap, nq), harmful: make([]entryHeap, nq)}
	for i := range nq {
		t.helpful[i] = entryHeap{e: make([]Entry, 0, k), worse: helpfulWorse}
		t.harmful[i] = entryHeap{e: make([]Entry, 0, k), worse: harmfulWorse}
	}
	return t
}

// helpfulWorse and harmfulWorse order entries as TopK does: by score, ties
// to the lower index.
func helpfulWorse(a, b Entry) bool {
	return a.Score < b.Score || (a.Score == b.Score && a.Index > b.Index)
}
func harmfulWorse(a, b Entry) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.Index > b.Index)
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
		for j, v := range row {
			s := float64(v)
			if len(hp.e) < t.k {
				heap.Push(hp, Entry{Index: offset + j, ID: ids[j], Score: s})
			} else if s > hp.e[0].Score {
				hp.e[0] = Entry{Index: offset + j, ID: ids[j], Score: s}
				heap.Fix(hp, 0)
			}
			if len(hm.e) < t.k {
				heap.Push(hm, Entry{Index: offset + j, ID: ids[j], Score: s})
			} else if s < hm.e[0].Score {
				hm.e[0] = Entry{Index: offset + j, ID: ids[j], Score: s}
				heap.Fix(hm, 0)
			}
		}
	}
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
