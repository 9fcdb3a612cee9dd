package influence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
)

// fakeStreamer is the pure-Go CPU backend with a linalg.ScoreStreamer that
// computes every score exactly as the host path does (rows widened into
// aligned, zero-padded 1024-row blocks, one Sgemm per block, float32
// weights), so that the streamed results must be identical, bit for bit,
// and that checks how StreamScores drives the stream.
type fakeStreamer struct {
	linalg.Backend
	t *testing.T

	failOpen    error // returned by NewScoreStream
	failSend    int   // Send number (from 1) that fails
	failReceive int   // Receive number (from 1) that fails
	badIndex    bool  // return a candidate outside the chunk

	opened, sends, receives, closes int
	offsets                         []int
	opt                             linalg.ScoreStreamOptions
}

func newFakeStreamer(t *testing.T) *fakeStreamer {
	return &fakeStreamer{Backend: linalg.CPU(), t: t}
}

func (f *fakeStreamer) NewScoreStream(q *linalg.Dense32, opt linalg.ScoreStreamOptions) (linalg.ScoreStream, error) {
	if f.failOpen != nil {
		return nil, f.failOpen
	}
	f.opened++
	f.opt = opt
	cols := 0
	for _, p := range opt.Parts {
		cols += p.Cols
	}
	if q.Rows < 1 || q.Cols < 1 || cols != q.Cols || opt.MaxRows%linalg.ScoreBlock != 0 || opt.MaxRows < 1 {
		f.t.Errorf("NewScoreStream(%d×%d queries, %+v)", q.Rows, q.Cols, opt)
	}
	if opt.Scores && opt.TopK != 0 {
		f.t.Errorf("TopK %d asked for with the scores", opt.TopK)
	}
	return &fakeStream{f: f, q: q.Clone(), opt: opt}, nil
}

type fakeStream struct {
	f      *fakeStreamer
	q      *linalg.Dense32
	opt    linalg.ScoreStreamOptions
	queue  []*linalg.ChunkScores
	closed bool
}

func (s *fakeStream) Send(c linalg.RawChunk) error {
	f := s.f
	f.sends++
	f.offsets = append(f.offsets, c.Offset)
	switch {
	case s.closed:
		return errors.New("fake: Send after Close")
	case len(s.queue) == 2:
		return errors.New("fake: a third chunk queued")
	case c.Rows < 1 || c.Rows > s.opt.MaxRows || len(c.Parts) != len(s.opt.Parts):
		return fmt.Errorf("fake: chunk of %d rows in %d parts", c.Rows, len(c.Parts))
	case c.Weights != nil && len(c.Weights) != c.Rows:
		return fmt.Errorf("fake: %d weights for %d rows", len(c.Weights), c.Rows)
	case c.Offset%linalg.ScoreBlock != 0:
		return fmt.Errorf("fake: chunk at row %d", c.Offset)
	case f.sends == f.failSend:
		return fmt.Errorf("fake: chunk at row %d: injected", c.Offset)
	}
	// Rows side by side with aligned rows, padded to whole blocks.
	nq, dim := s.q.Rows, s.q.Cols
	stride := alignedStride(dim)
	padded := roundUp(c.Rows, gemmBlock)
	rows := make([]float32, padded*stride)
	off := 0
	for p, part := range s.opt.Parts {
		raw := c.Parts[p]
		if len(raw) != c.Rows*part.Cols*part.Type.Size() {
			return fmt.Errorf("fake: part %d has %d bytes", p, len(raw))
		}
		rb := part.Cols * part.Type.Size()
		for i := range c.Rows {
			dst, src := rows[i*stride+off:i*stride+off+part.Cols], raw[i*rb:(i+1)*rb]
			switch part.Type {
			case linalg.F16:
				linalg.F16BytesToF32(dst, src)
			case linalg.BF16:
				linalg.BF16BytesToF32(dst, src)
			default:
				for j := range dst {
					dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*j:]))
				}
			}
		}
		off += part.Cols
	}
	block := linalg.NewDense32(nq, padded, nil)
	for lo := 0; lo < padded; lo += gemmBlock {
		r := &linalg.Dense32{Rows: gemmBlock, Cols: dim, Stride: stride, Data: rows[lo*stride : (lo+gemmBlock-1)*stride+dim]}
		s.f.Backend.Sgemm(linalg.NoTrans, linalg.Trans, 1, s.q, r, 0, block.Slice(0, nq, lo, lo+gemmBlock))
	}
	scores := block.Slice(0, nq, 0, c.Rows).Clone()
	if c.Weights != nil {
		for i := range nq {
			row := scores.Row(i)
			for j := range row {
				row[j] *= c.Weights[j]
			}
		}
	}
	res := &linalg.ChunkScores{Offset: c.Offset, Rows: c.Rows}
	switch {
	case s.opt.Scores:
		res.Scores = scores
	case s.opt.TopK > 0:
		// More candidates than needed (twice k), in a scrambled order.
		k := min(2*s.opt.TopK, c.Rows)
		all := TopK(scores.To64(), k)
		rng := rand.New(rand.NewPCG(uint64(c.Offset), 1))
		for _, dir := range []struct {
			dst  *linalg.Candidates
			list func(Ranking) []Entry
		}{{&res.Helpful, func(r Ranking) []Entry { return r.Helpful }}, {&res.Harmful, func(r Ranking) []Entry { return r.Harmful }}} {
			*dir.dst = linalg.Candidates{N: k}
			for _, r := range all {
				l := slices.Clone(dir.list(r))
				rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
				for _, e := range l {
					dir.dst.Index = append(dir.dst.Index, int64(c.Offset+e.Index))
					dir.dst.Score = append(dir.dst.Score, float32(e.Score))
				}
			}
		}
		if f.badIndex {
			res.Helpful.Index[0] = int64(c.Offset + c.Rows)
		}
	}
	s.queue = append(s.queue, res)
	return nil
}

func (s *fakeStream) Receive() (*linalg.ChunkScores, error) {
	s.f.receives++
	if s.closed || len(s.queue) == 0 {
		return nil, errors.New("fake: Receive with nothing queued")
	}
	r := s.queue[0]
	s.queue = s.queue[1:]
	if s.f.receives == s.f.failReceive {
		return nil, fmt.Errorf("fake: chunk at row %d: injected", r.Offset)
	}
	return r, nil
}

func (s *fakeStream) Close() error {
	if !s.closed {
		s.f.closes++
	}
	s.closed = true
	return nil
}

// streamRun is the outcome of a stream with the Scores callback.
type streamRun struct {
	res *StreamResult
	col *collected
}

func runStream(t *testing.T, be linalg.Backend, queries []*linalg.Dense32, stores []*store.Store, opt StreamOptions, callback bool) (streamRun, error) {
	t.Helper()
	var r streamRun
	if callback {
		var fn func(int, []int64, *linalg.Dense32) error
		r.col, fn = collect(t, queries[0].Rows, stores[0].Count())
		opt.Scores = fn
	}
	var err error
	r.res, err = StreamCheckpoints(context.Background(), be, queries, stores, opt)
	return r, err
}

// TestStreamDevice runs StreamScores and StreamCheckpoints on a backend
// that streams (the fake) and on the host path, for every dtype, several
// chunk and shard sizes, top-k sizes, with and without weights and the
// Scores callback: the streamed path must give the same scores and
// rankings, bit for bit, and drive the stream as documented.
func TestStreamDevice(t *testing.T) {
	const n, dim, nq = 3100, 37, 4
	weights := make([]float32, n)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range weights {
		weights[i] = float32(rng.Float64() + 0.5)
	}
	type config struct {
		stores  []*store.Store
		queries []*linalg.Dense32
	}
	configs := map[string]config{}
	for _, dt := range []gradients.DType{gradients.F16, gradients.BF16, gradients.F32} {
		for _, shard := range []int{700, 4096} {
			s := testStore(t, dt, shard, n, dim, 1, normal)
			configs[fmt.Sprintf("%s/shard=%d", dt, shard)] = config{[]*store.Store{s}, []*linalg.Dense32{testQueries(nq, dim, 2)}}
		}
	}
	// Two checkpoints of other dtypes, dimensions and shardings.
	a := testStore(t, gradients.F16, 1000, n, dim, 1, normal)
	b := testStore(t, gradients.F32, 333, n, 20, 2, normal)
	configs["checkpoints"] = config{[]*store.Store{a, b}, []*linalg.Dense32{testQueries(nq, dim, 3), testQueries(nq, 20, 4)}}

	for name, cfg := range configs {
		for _, tc := range []struct {
			k        int
			chunk    int
			weights  bool
			callback bool
		}{
			{7, 1, false, false},
			{7, 2048, true, false},
			{1, 0, false, true},
			{0, 1024, true, true},
			{n + 5, 100000, false, false},
			{3, 3000, true, true},
		} {
			t.Run(fmt.Sprintf("%s/k=%d/chunk=%d/weights=%v/scores=%v", name, tc.k, tc.chunk, tc.weights, tc.callback), func(t *testing.T) {
				opt := StreamOptions{TopK: tc.k, ChunkRows: tc.chunk}
				if tc.weights {
					opt.Weights = weights
				}
				want, err := runStream(t, linalg.CPU(), cfg.queries, cfg.stores, opt, tc.callback)
				if err != nil {
					t.Fatal(err)
				}
				f := newFakeStreamer(t)
				got, err := runStream(t, f, cfg.queries, cfg.stores, opt, tc.callback)
				if err != nil {
					t.Fatal(err)
				}
				chunk := roundUp(min(cmp(tc.chunk, DefaultChunkRows), n), gemmBlock)
				chunks := (n + chunk - 1) / chunk
				if f.opened != 1 || f.sends != chunks || f.receives != chunks || f.closes != 1 {
					t.Errorf("stream opened %d times, %d sends, %d receives, %d closes; want 1, %d, %d, 1", f.opened, f.sends, f.receives, f.closes, chunks, chunks)
				}
				for i, off := range f.offsets {
					if off != i*chunk {
						t.Errorf("chunk %d sent at row %d, want %d", i, off, i*chunk)
					}
				}
				if f.opt.MaxRows != chunk || f.opt.Scores != tc.callback || len(f.opt.Parts) != len(cfg.stores) {
					t.Errorf("stream options %+v", f.opt)
				}
				for c, p := range f.opt.Parts {
					if p.Cols != cfg.stores[c].Dim() || !strings.EqualFold(p.Type.String(), string(cfg.stores[c].DType())) {
						t.Errorf("part %d is %v, store %s %d", c, p, cfg.stores[c].DType(), cfg.stores[c].Dim())
					}
				}
				if got.res.Rows != n {
					t.Errorf("%d rows scored, want %d", got.res.Rows, n)
				}
				if !reflect.DeepEqual(got.res.Rankings, want.res.Rankings) {
					t.Errorf("rankings differ from the host path:\n got %v\nwant %v", got.res.Rankings[0], want.res.Rankings[0])
				}
				if tc.callback {
					if i, ok := sameBits(got.col.scores.Data, want.col.scores.Data); !ok {
						t.Errorf("score (%d, %d) = %v, host %v", i/n, i%n, got.col.scores.Data[i], want.col.scores.Data[i])
					}
					if !slices.Equal(got.col.ids, want.col.ids) || got.col.calls != chunks {
						t.Errorf("callback saw %d calls and ids %v…, want %d", got.col.calls, got.col.ids[:3], chunks)
					}
				}
			})
		}
	}
}

// cmp returns v, or def when v is 0.
func cmp(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// TestStreamDeviceErrors covers a backend that cannot open a stream (the
// host path runs), failures of Send and Receive, cancelling, bad results,
// and shapes that never reach the stream.
func TestStreamDeviceErrors(t *testing.T) {
	ctx := context.Background()
	s := testStore(t, gradients.BF16, 1500, 5000, 16, 1, normal)
	q := testQueries(3, 16, 1)
	want, err := StreamScores(ctx, linalg.CPU(), q, s, StreamOptions{TopK: 4, ChunkRows: 1024})
	if err != nil {
		t.Fatal(err)
	}

	f := newFakeStreamer(t)
	f.failOpen = errors.New("no kernels")
	got, err := StreamScores(ctx, f, q, s, StreamOptions{TopK: 4, ChunkRows: 1024})
	if err != nil || f.sends != 0 || !reflect.DeepEqual(got.Rankings, want.Rankings) {
		t.Errorf("a backend that cannot stream: %v, %d sends, same rankings %v", err, f.sends, err == nil && reflect.DeepEqual(got.Rankings, want.Rankings))
	}

	for _, tc := range []struct {
		name    string
		set     func(*fakeStreamer)
		message []string
	}{
		{"send", func(f *fakeStreamer) { f.failSend = 2 }, []string{"StreamScores", "chunk at row 1024", "injected"}},
		{"receive", func(f *fakeStreamer) { f.failReceive = 3 }, []string{"chunk at row 2048", "injected"}},
		{"bad candidate", func(f *fakeStreamer) { f.badIndex = true }, []string{"candidate row 1024 for the chunk [0, 1024)"}},
	} {
		f := newFakeStreamer(t)
		tc.set(f)
		_, err := StreamScores(ctx, f, q, s, StreamOptions{TopK: 4, ChunkRows: 1024})
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, m := range tc.message {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, m)
			}
		}
		if f.closes != 1 {
			t.Errorf("%s: stream closed %d times", tc.name, f.closes)
		}
	}

	// A failing callback and cancelling stop the stream, which is closed.
	errStop := errors.New("stop")
	f = newFakeStreamer(t)
	_, err = StreamScores(ctx, f, q, s, StreamOptions{ChunkRows: 1024, Scores: func(int, []int64, *linalg.Dense32) error { return errStop }})
	if !errors.Is(err, errStop) || !strings.Contains(err.Error(), "Scores callback at row 0") || f.closes != 1 {
		t.Errorf("failing callback: %v, %d closes", err, f.closes)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	calls := 0
	f = newFakeStreamer(t)
	_, err = StreamScores(cctx, f, q, s, StreamOptions{ChunkRows: 1024, Scores: func(int, []int64, *linalg.Dense32) error {
		if calls++; calls == 2 {
			cancel()
		}
		return nil
	}})
	if err != context.Canceled || calls != 2 || f.closes != 1 {
		t.Errorf("cancelled at the second chunk: %v after %d calls, %d closes", err, calls, f.closes)
	}

	// No queries, or an empty store: nothing to stream.
	f = newFakeStreamer(t)
	if res, err := StreamScores(ctx, f, linalg.NewDense32(0, 16, nil), s, StreamOptions{TopK: 2}); err != nil || res.Rows != 5000 || f.opened != 0 {
		t.Errorf("no queries: %v, %+v, opened %d", err, res, f.opened)
	}
	empty := testStore(t, gradients.F16, 10, 0, 16, 1, normal)
	if res, err := StreamScores(ctx, f, q, empty, StreamOptions{TopK: 2}); err != nil || res.Rows != 0 || f.opened != 0 {
		t.Errorf("empty store: %v, %+v, opened %d", err, res, f.opened)
	}
}
