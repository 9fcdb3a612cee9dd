package influence

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/linalg"
)

// streamBackends returns the backends the stream tests run on: the pure-Go
// one always, then every other registered backend that opens here (OpenBLAS
// where it loads, cuda on a GPU: cuda_register_test.go imports it).
func streamBackends(t *testing.T) []linalg.Backend {
	t.Helper()
	bes := []linalg.Backend{linalg.CPU()}
	for _, name := range linalg.Backends() {
		if name == "cpu" {
			continue
		}
		if be, err := linalg.Open(name); err == nil {
			bes = append(bes, be)
		} else {
			t.Logf("%s not tested: %v", name, err)
		}
	}
	return bes
}

// testStore builds a store of n rows of dimension dim in a temporary
// directory. Row i has id 1000+3i, so ids and indices differ, and values
// drawn by value(rng).
func testStore(t *testing.T, dt gradients.DType, shardRows, n, dim int, seed uint64, value func(*rand.Rand) float32) *store.Store {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	opt := store.Options{DType: dt, ShardRows: shardRows, Layers: []store.LayerInfo{{Name: "g", Dim: dim}}}
	return buildStore(t, opt, func(b *store.Builder) error {
		const piece = 500
		for lo := 0; lo < n; lo += piece {
			hi := min(lo+piece, n)
			ids := make([]int64, hi-lo)
			rows := make([]float32, (hi-lo)*dim)
			for i := range ids {
				ids[i] = 1000 + 3*int64(lo+i)
			}
			for i := range rows {
				rows[i] = value(rng)
			}
			if err := b.Add(context.Background(), ids, rows); err != nil {
				return err
			}
		}
		return nil
	})
}

// buildStore creates a store in a temporary directory, fills it with add
// and opens it for the rest of the test.
func buildStore(t *testing.T, opt store.Options, add func(*store.Builder) error) *store.Store {
	t.Helper()
	dir := t.TempDir()
	b, err := store.Create(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := add(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func normal(rng *rand.Rand) float32 { return float32(rng.NormFloat64()) }

func testQueries(nq, dim int, seed uint64) *linalg.Dense32 {
	rng := rand.New(rand.NewPCG(seed, 11))
	q := linalg.NewDense32(nq, dim, nil)
	for i := range q.Data {
		q.Data[i] = float32(rng.NormFloat64())
	}
	return q
}

// collected is what the Scores callback saw, checked to be every row once,
// in order.
type collected struct {
	scores *linalg.Dense32 // n_query × rows
	ids    []int64
	calls  int
}

func collect(t *testing.T, nq, count int) (*collected, func(int, []int64, *linalg.Dense32) error) {
	c := &collected{scores: linalg.NewDense32(nq, count, nil)}
	return c, func(offset int, ids []int64, block *linalg.Dense32) error {
		c.calls++
		if offset != len(c.ids) {
			t.Errorf("block at offset %d after %d rows", offset, len(c.ids))
		}
		if block.Rows != nq || block.Cols != len(ids) || block.Cols == 0 {
			t.Errorf("block is %d×%d for %d ids and %d queries", block.Rows, block.Cols, len(ids), nq)
			return nil
		}
		if offset+block.Cols > count {
			t.Errorf("block [%d, %d) past the %d rows", offset, offset+block.Cols, count)
			return nil
		}
		c.ids = append(c.ids, ids...)
		for i := range nq {
			copy(c.scores.Row(i)[offset:], block.Row(i))
		}
		return nil
	}
}

func sameBits(a, b []float32) (int, bool) {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, len(a) == len(b)
}

// TestStreamScoresInvariance checks that scores and rankings are identical,
// bit for bit, whatever the chunk size and the shard size, on every backend,
// and that the callback sees every row once, in order.
func TestStreamScoresInvariance(t *testing.T) {
	const n, dim = 9001, 515 // odd sizes: unaligned rows, ragged last chunk
	ctx := context.Background()
	stores := map[int]*store.Store{}
	for _, shard := range []int{1000, 7777} {
		stores[shard] = testStore(t, gradients.F16, shard, n, dim, 1, normal)
	}
	for _, be := range streamBackends(t) {
		for _, nq := range []int{1, 70} {
			t.Run(fmt.Sprintf("%s/queries=%d", be.Name(), nq), func(t *testing.T) {
				q := testQueries(nq, dim, 3)
				var (
					ref    *StreamResult
					refCol *collected
					refCfg string
				)
				for _, shard := range []int{1000, 7777} {
					s := stores[shard]
					for _, chunk := range []int{257, 8192, 100000, 1} {
						cfg := fmt.Sprintf("shard %d chunk %d", shard, chunk)
						col, fn := collect(t, nq, n)
						res, err := StreamScores(ctx, be, q, s, StreamOptions{TopK: 7, ChunkRows: chunk, Scores: fn})
						if err != nil {
							t.Fatalf("%s: %v", cfg, err)
						}
						if res.Rows != n || len(col.ids) != n {
							t.Fatalf("%s: %d rows scored, callback saw %d, want %d", cfg, res.Rows, len(col.ids), n)
						}
						// Chunks are whole Sgemm blocks.
						size := roundUp(min(chunk, n), gemmBlock)
						if want := (n + size - 1) / size; col.calls != want {
							t.Errorf("%s: %d callback calls, want %d", cfg, col.calls, want)
						}
						for i, id := range col.ids {
							if id != 1000+3*int64(i) {
								t.Fatalf("%s: row %d has id %d", cfg, i, id)
							}
						}
						if ref == nil {
							ref, refCol, refCfg = res, col, cfg
							continue
						}
						if i, ok := sameBits(col.scores.Data, refCol.scores.Data); !ok {
							t.Errorf("%s: score (%d, %d) = %v, %s gave %v", cfg, i/n, i%n, col.scores.Data[i], refCfg, refCol.scores.Data[i])
						}
						if !reflect.DeepEqual(res.Rankings, ref.Rankings) {
							t.Errorf("%s: rankings differ from %s", cfg, refCfg)
						}
					}
				}
			})
		}
	}
}

// TestStreamScoresReference compares the scores with a float64 computation
// from the float32 values read back from the store.
func TestStreamScoresReference(t *testing.T) {
	ctx := context.Background()
	for _, dt := range []gradients.DType{gradients.F16, gradients.BF16, gradients.F32} {
		s := testStore(t, dt, 300, 700, 33, 5, normal)
		rows := readAll(t, s)
		q := testQueries(4, 33, 9)
		for _, be := range streamBackends(t) {
			t.Run(fmt.Sprintf("%s/%s", dt, be.Name()), func(t *testing.T) {
				col, fn := collect(t, q.Rows, s.Count())
				if _, err := StreamScores(ctx, be, q, s, StreamOptions{ChunkRows: 256, Scores: fn}); err != nil {
					t.Fatal(err)
				}
				worst := 0.0
				for i := range q.Rows {
					for j := range s.Count() {
						var dot, abs float64
						for k, v := range rows.Row(j) {
							p := float64(q.At(i, k)) * float64(v)
							dot += p
							abs += math.Abs(p)
						}
						worst = max(worst, math.Abs(float64(col.scores.At(i, j))-dot)/abs)
					}
				}
				if worst > 1e-5 {
					t.Errorf("largest error relative to Σ|q_k t_k|: %.3g, want ≤ 1e-5", worst)
				}
			})
		}
	}
}

// readAll returns the rows of s as float32.
func readAll(t *testing.T, s *store.Store) *linalg.Dense32 {
	t.Helper()
	all := linalg.NewDense32(s.Count(), s.Dim(), nil)
	it := s.Chunks(1000)
	for it.Next(context.Background()) {
		c := it.Chunk()
		copy(all.Data[c.Offset*s.Dim():], c.Rows.Data)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return all
}

// TestStreamScoresTopK checks the rankings against TopK over the full score
// matrix, computed in memory with one Sgemm, on scores with many ties.
func TestStreamScoresTopK(t *testing.T) {
	const n, dim = 1500, 64
	ctx := context.Background()
	// Values in {-1, 0, 1} and small integer queries make exact ties common.
	s := testStore(t, gradients.F16, 400, n, dim, 2, func(rng *rand.Rand) float32 { return float32(rng.IntN(3) - 1) })
	rows := readAll(t, s)
	q := linalg.NewDense32(6, dim, nil)
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range q.Data {
		q.Data[i] = float32(rng.IntN(5) - 2)
	}
	for _, be := range streamBackends(t) {
		full := linalg.NewDense32(q.Rows, n, nil)
		be.Sgemm(linalg.NoTrans, linalg.Trans, 1, q, rows, 0, full)
		for _, k := range []int{0, 1, 10, n + 5} {
			t.Run(fmt.Sprintf("%s/k=%d", be.Name(), k), func(t *testing.T) {
				col, fn := collect(t, q.Rows, n)
				res, err := StreamScores(ctx, be, q, s, StreamOptions{TopK: k, ChunkRows: 300, Scores: fn})
				if err != nil {
					t.Fatal(err)
				}
				if i, ok := sameBits(col.scores.Data, full.Data); !ok {
					t.Fatalf("streamed score (%d, %d) = %v, in memory %v", i/n, i%n, col.scores.Data[i], full.Data[i])
				}
				want := TopK(full.To64(), k)
				for i := range want {
					for _, l := range [][]Entry{want[i].Helpful, want[i].Harmful} {
						for j := range l {
							l[j].ID = 1000 + 3*int64(l[j].Index)
						}
					}
				}
				if !reflect.DeepEqual(res.Rankings, want) {
					t.Errorf("rankings differ from TopK:\n got %v\nwant %v", res.Rankings[0], want[0])
				}
			})
		}
	}
}

// TestStreamScoresEmpty covers a store with no rows and no queries.
func TestStreamScoresEmpty(t *testing.T) {
	ctx := context.Background()
	empty := testStore(t, gradients.F16, 10, 0, 8, 1, normal)
	res, err := StreamScores(ctx, linalg.CPU(), testQueries(2, 8, 1), empty, StreamOptions{TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 0 || len(res.Rankings) != 2 || res.Rankings[0].Helpful != nil {
		t.Errorf("empty store: %+v", res)
	}
	s := testStore(t, gradients.F16, 10, 25, 8, 1, normal)
	res, err = StreamScores(ctx, linalg.CPU(), linalg.NewDense32(0, 8, nil), s, StreamOptions{TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 25 || len(res.Rankings) != 0 {
		t.Errorf("no queries: %+v", res)
	}
}

func TestStreamScoresErrors(t *testing.T) {
	ctx := context.Background()
	s := testStore(t, gradients.F16, 50, 120, 8, 1, normal)
	errStop := errors.New("stop")
	nan := testQueries(3, 8, 1)
	nan.Set(2, 5, float32(math.NaN()))
	inf := testQueries(3, 8, 1)
	inf.Set(1, 0, float32(math.Inf(-1)))
	short := testQueries(3, 8, 1)
	short.Data = short.Data[:20]
	tests := []struct {
		name    string
		be      linalg.Backend
		q       *linalg.Dense32
		s       *store.Store
		opt     StreamOptions
		is      error
		message []string
	}{
		{name: "dim mismatch", q: testQueries(2, 9, 1), s: s, message: []string{"dimension 9", "dimension 8"}},
		{name: "NaN", q: nan, s: s, is: linalg.ErrNotFinite, message: []string{"query 2", "NaN", "column 5"}},
		{name: "Inf", q: inf, s: s, is: linalg.ErrNotFinite, message: []string{"query 1", "-Inf"}},
		{name: "short data", q: short, s: s, message: []string{"need 24"}},
		{name: "negative k", q: testQueries(2, 8, 1), s: s, opt: StreamOptions{TopK: -1}, message: []string{"TopK"}},
		{name: "negative chunk", q: testQueries(2, 8, 1), s: s, opt: StreamOptions{ChunkRows: -3}, message: []string{"ChunkRows"}},
		{name: "nil store", q: testQueries(2, 8, 1), message: []string{"nil store"}},
		{name: "nil queries", s: s, message: []string{"nil queries"}},
		{name: "nil backend", be: nil, q: testQueries(2, 8, 1), s: s, message: []string{"nil backend"}},
		{name: "callback", q: testQueries(2, 8, 1), s: s, is: errStop, message: []string{"Scores callback at row 0"},
			opt: StreamOptions{Scores: func(int, []int64, *linalg.Dense32) error { return errStop }}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := tc.be
			if be == nil && tc.name != "nil backend" {
				be = linalg.CPU()
			}
			res, err := StreamScores(ctx, be, tc.q, tc.s, tc.opt)
			if err == nil {
				t.Fatalf("no error, result %+v", res)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			for _, m := range tc.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestStreamScoresCancel(t *testing.T) {
	s := testStore(t, gradients.F16, 500, 3000, 8, 1, normal)
	q := testQueries(2, 8, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := StreamScores(ctx, linalg.CPU(), q, s, StreamOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: %v, want %v", err, context.Canceled)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	_, err := StreamScores(ctx, linalg.CPU(), q, s, StreamOptions{ChunkRows: 1024, Scores: func(int, []int64, *linalg.Dense32) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return nil
	}})
	if err != context.Canceled {
		t.Errorf("cancelled during: %v, want %v", err, context.Canceled)
	}
	if calls != 2 {
		t.Errorf("%d chunks scored after cancelling at the second", calls)
	}
	s.Close()
	if _, err := StreamScores(context.Background(), linalg.CPU(), q, s, StreamOptions{}); err == nil || !strings.Contains(err.Error(), "reading store") {
		t.Errorf("closed store: %v", err)
	}
}
