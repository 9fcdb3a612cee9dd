package cuda

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

// gpuStore writes a store of n rows of dimension dim (ids 7n+i, values
// normal, a few exact ties) and opens it.
func gpuStore(tb testing.TB, dt gradients.DType, n, dim, shard int, seed uint64) *store.Store {
	tb.Helper()
	dir := tb.TempDir()
	bl, err := store.Create(dir, store.Options{DType: dt, ShardRows: shard, Layers: []store.LayerInfo{{Name: "g", Dim: dim}}})
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	const piece = 4096
	rows := make([]float32, piece*dim)
	ids := make([]int64, piece)
	for lo := 0; lo < n; lo += piece {
		m := min(piece, n-lo)
		for i := range m {
			ids[i] = 7*int64(n) + int64(lo+i)
		}
		for i := range rows[:m*dim] {
			rows[i] = float32(rng.NormFloat64())
			if rng.IntN(100) == 0 {
				rows[i] = float32(rng.IntN(3) - 1)
			}
		}
		if err := bl.Add(context.Background(), ids[:m], rows[:m*dim]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := bl.Close(); err != nil {
		tb.Fatal(err)
	}
	s, err := store.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func randomQueries(rng *rand.Rand, nq, dim int) *linalg.Dense32 {
	q := linalg.NewDense32(nq, dim, nil)
	for i := range q.Data {
		q.Data[i] = float32(rng.NormFloat64())
	}
	return q
}

// streamScores runs influence.StreamCheckpoints with the Scores callback
// and returns the rankings and the full score matrix.
func streamScores(tb testing.TB, be linalg.Backend, qs []*linalg.Dense32, ss []*store.Store, opt influence.StreamOptions) ([]influence.Ranking, *linalg.Dense32) {
	tb.Helper()
	n := ss[0].Count()
	full := linalg.NewDense32(qs[0].Rows, n, nil)
	opt.Scores = func(off int, ids []int64, block *linalg.Dense32) error {
		for i := range block.Rows {
			copy(full.Row(i)[off:], block.Row(i))
		}
		return nil
	}
	res, err := influence.StreamCheckpoints(context.Background(), be, qs, ss, opt)
	if err != nil {
		tb.Fatal(err)
	}
	if res.Rows != n {
		tb.Fatalf("%d rows scored, want %d", res.Rows, n)
	}
	return res.Rankings, full
}

// TestGPUStream runs influence's streamed scoring on the GPU: the top-k
// lists must equal influence.TopK over the GPU's own scores, scores and
// lists must not depend on the chunk size, and the scores must agree with
// the host's within 1e-5 of Σ|q_k·t_k| (the lists then agree up to scores
// that close).
func TestGPUStream(t *testing.T) {
	b := gpuKernels(t)
	rng := rand.New(rand.NewPCG(41, 1))
	const n, dim, nq, k = 20000, 300, 16, 10
	f16 := gpuStore(t, gradients.F16, n, dim, 7000, 1)
	bf16 := gpuStore(t, gradients.BF16, n, 77, 3000, 2)
	q := randomQueries(rng, nq, dim)
	q2 := randomQueries(rng, nq, 77)
	weights := make([]float32, n)
	for i := range weights {
		weights[i] = float32(rng.Float64() + 0.5)
	}
	// The stream must open, or StreamScores would silently run on the host.
	st, err := b.NewScoreStream(q, linalg.ScoreStreamOptions{Parts: []linalg.RowPart{{Type: linalg.F16, Cols: dim}}, MaxRows: 8192, TopK: k})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	for _, tc := range []struct {
		name    string
		qs      []*linalg.Dense32
		ss      []*store.Store
		weights []float32
	}{
		{"f16", []*linalg.Dense32{q}, []*store.Store{f16}, nil},
		{"checkpoints+weights", []*linalg.Dense32{q, q2}, []*store.Store{f16, bf16}, weights},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var refScores *linalg.Dense32
			var refRank []influence.Ranking
			for _, chunk := range []int{1024, 3000, 0} {
				_, scores := streamScores(t, b, tc.qs, tc.ss, influence.StreamOptions{ChunkRows: chunk, Weights: tc.weights})
				res, err := influence.StreamCheckpoints(context.Background(), b, tc.qs, tc.ss, influence.StreamOptions{TopK: k, ChunkRows: chunk, Weights: tc.weights})
				if err != nil {
					t.Fatal(err)
				}
				want := influence.TopK(scores.To64(), k)
				for _, r := range want {
					for _, l := range [][]influence.Entry{r.Helpful, r.Harmful} {
						for j := range l {
							l[j].ID = 7*n + int64(l[j].Index)
						}
					}
				}
				if !reflect.DeepEqual(res.Rankings, want) {
					t.Fatalf("chunk %d: rankings differ from TopK over the GPU's scores:\n got %v\nwant %v", chunk, res.Rankings[0], want[0])
				}
				if refScores == nil {
					refScores, refRank = scores, res.Rankings
					continue
				}
				if i, ok := sameFloat32Bits(scores.Data, refScores.Data); !ok {
					t.Fatalf("chunk %d changes score (%d, %d): %v, was %v", chunk, i/n, i%n, scores.Data[i], refScores.Data[i])
				}
				if !reflect.DeepEqual(res.Rankings, refRank) {
					t.Fatalf("chunk %d changes the rankings", chunk)
				}
			}

			// Against the host.
			hostRank, host := streamScores(t, linalg.CPU(), tc.qs, tc.ss, influence.StreamOptions{TopK: k, Weights: tc.weights})
			rows := make([]*linalg.Dense32, len(tc.ss))
			for c, s := range tc.ss {
				rows[c] = readStore(t, s)
			}
			worst := 0.0
			rowMag := make([]float64, nq) // the largest Σ|q·t| of each query
			for i := range nq {
				for j := range n {
					var mag float64
					for c := range tc.ss {
						for l, v := range rows[c].Row(j) {
							mag += math.Abs(float64(tc.qs[c].At(i, l)) * float64(v))
						}
					}
					if tc.weights != nil {
						mag *= float64(tc.weights[j])
					}
					rowMag[i] = max(rowMag[i], mag)
					worst = max(worst, math.Abs(float64(refScores.At(i, j))-float64(host.At(i, j)))/mag)
				}
			}
			t.Logf("GPU and host scores differ by up to %.3g of Σ|q·t|", worst)
			if worst > 1e-5 {
				t.Errorf("GPU scores differ from the host's by %.3g of Σ|q·t|, want ≤ 1e-5", worst)
			}
			moved := 0
			for i := range refRank {
				for d, pair := range [][2][]influence.Entry{{refRank[i].Helpful, hostRank[i].Helpful}, {refRank[i].Harmful, hostRank[i].Harmful}} {
					for p := range pair[0] {
						g, h := pair[0][p], pair[1][p]
						if g.Index != h.Index {
							moved++
						}
						if math.Abs(g.Score-h.Score) > 1e-5*rowMag[i] {
							t.Errorf("query %d list %d place %d: GPU score %v (row %d), host %v (row %d)", i, d, p, g.Score, g.Index, h.Score, h.Index)
						}
					}
				}
			}
			t.Logf("%d of %d ranked rows differ from the host's, between scores within tolerance", moved, 2*nq*k)
			if b.Err() != nil {
				t.Errorf("backend error: %v", b.Err())
			}
		})
	}
}

func readStore(tb testing.TB, s *store.Store) *linalg.Dense32 {
	tb.Helper()
	all := linalg.NewDense32(s.Count(), s.Dim(), nil)
	it := s.Chunks(4096)
	for it.Next(context.Background()) {
		c := it.Chunk()
		copy(all.Data[c.Offset*s.Dim():], c.Rows.Data)
	}
	if err := it.Err(); err != nil {
		tb.Fatal(err)
	}
	return all
}

// BenchmarkGPUStream measures streamed scoring of f16 rows held in host
// memory (512 queries × 4096 columns, TopK 100, chunks of 8192 rows)
// against its yardsticks, measured in the same run:
//
//   - h2d: the bandwidth of copies from page-locked memory, the bound of
//     streaming; the stream and store runs report x_h2d, their rate of raw
//     bytes over it (the issue asks for ≥ 0.8);
//   - stream: the score stream fed from Go memory;
//   - store: influence.StreamScores over a store in the page cache;
//   - compute: the stream's device work on a chunk already on the GPU
//     (widening, 8 Sgemm of 1024 rows, top-k, results back) against one
//     cublasSgemm of the whole chunk, as x_cublas (the issue asks ≥ 0.7).
func BenchmarkGPUStream(b *testing.B) {
	be := gpuKernels(b)
	d := be.dev
	const nq, dim, chunk, k = 512, 4096, 8192, 100
	rows := 16 * chunk // 1 GiB of f16
	rng := rand.New(rand.NewPCG(9, 9))
	q := randomQueries(rng, nq, dim)
	opt := linalg.ScoreStreamOptions{Parts: []linalg.RowPart{{Type: linalg.F16, Cols: dim}}, MaxRows: chunk, TopK: k}

	var h2d float64 // bytes per second
	b.Run("h2d", func(b *testing.B) {
		const n = 256 << 20
		var host []byte
		var dev uint64
		err := d.do(func() (err error) {
			if host, err = d.allocHost(n); err != nil {
				return err
			}
			dev, err = d.pool.get(n)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		defer d.do(func() error { d.pool.put(dev); return d.freeHost(host) })
		b.SetBytes(n)
		b.ResetTimer()
		for range b.N {
			err := d.do(func() error {
				if err := check("cuMemcpyHtoDAsync_v2", d.api.cuMemcpyHtoDAsync(dev, unsafe.Pointer(&host[0]), n, d.stream)); err != nil {
					return err
				}
				return d.sync()
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		h2d = float64(n) * float64(b.N) / b.Elapsed().Seconds()
	})
	ratio := func(b *testing.B, bytes int) {
		rate := float64(bytes) * float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate/1e9, "GB/s")
		if h2d > 0 {
			b.ReportMetric(rate/h2d, "x_h2d")
		}
	}

	// Random f16 values below 1 in magnitude: exponent bits 14 and 10 clear.
	raw := make([]byte, rows*dim*2)
	for i := 0; i < len(raw); i += 8 {
		binary.LittleEndian.PutUint64(raw[i:], rng.Uint64()&0xbbff_bbff_bbff_bbff)
	}
	b.Run("stream", func(b *testing.B) {
		st, err := be.NewScoreStream(q, opt)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		b.SetBytes(int64(len(raw)))
		b.ResetTimer()
		for range b.N {
			queued := 0
			for lo := 0; lo < rows; lo += chunk {
				if queued == streamSlots {
					if _, err := st.Receive(); err != nil {
						b.Fatal(err)
					}
					queued--
				}
				c := linalg.RawChunk{Offset: lo, Rows: chunk, Parts: [][]byte{raw[lo*dim*2 : (lo+chunk)*dim*2]}}
				if err := st.Send(c); err != nil {
					b.Fatal(err)
				}
				queued++
			}
			for ; queued > 0; queued-- {
				if _, err := st.Receive(); err != nil {
					b.Fatal(err)
				}
			}
		}
		ratio(b, len(raw))
	})

	b.Run("store", func(b *testing.B) {
		s := gpuStore(b, gradients.F16, rows/2, dim, 16384, 4)
		bytes := s.Count() * dim * 2
		sopt := influence.StreamOptions{TopK: k, ChunkRows: chunk}
		if _, err := influence.StreamScores(context.Background(), be, q, s, sopt); err != nil { // page in
			b.Fatal(err)
		}
		b.SetBytes(int64(bytes))
		b.ResetTimer()
		for range b.N {
			if _, err := influence.StreamScores(context.Background(), be, q, s, sopt); err != nil {
				b.Fatal(err)
			}
		}
		ratio(b, bytes)
	})

	b.Run("compute", func(b *testing.B) {
		st, err := be.NewScoreStream(q, opt)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		s := st.(*scoreStream)
		if err := s.Send(linalg.RawChunk{Offset: 0, Rows: chunk, Parts: [][]byte{raw[:chunk*dim*2]}}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Receive(); err != nil {
			b.Fatal(err)
		}
		flops := linalg.GemmFlops(nq, chunk, dim)
		var stream, cublas time.Duration
		b.ResetTimer()
		err = d.do(func() error {
			var ev [3]uintptr
			for i := range ev {
				if err := check("cuEventCreate", d.api.cuEventCreate(&ev[i], eventDefault)); err != nil {
					return err
				}
				defer d.api.cuEventDestroy(ev[i])
			}
			sl := &s.slots[0]
			d.api.cuEventRecord(ev[0], s.compS)
			for range b.N {
				if err := s.enqueueCompute(sl); err != nil {
					return err
				}
			}
			d.api.cuEventRecord(ev[1], s.compS)
			bl, h := s.bl, s.blas // on s.compS
			one, zero := float32(1), float32(0)
			for range b.N {
				if err := checkBLAS("cublasSgemm_v2", bl.sgemm(h, cublasOpT, cublasOpN, chunk, nq, dim,
					&one, s.parts[0].f32, dim, s.parts[0].q, dim, &zero, s.tiles, chunk)); err != nil {
					return err
				}
			}
			d.api.cuEventRecord(ev[2], s.compS)
			if err := check("cuEventSynchronize", d.api.cuEventSynchronize(ev[2])); err != nil {
				return err
			}
			var ms1, ms2 float32
			d.api.cuEventElapsedTime(&ms1, ev[0], ev[1])
			d.api.cuEventElapsedTime(&ms2, ev[1], ev[2])
			stream = time.Duration(float64(ms1) * float64(time.Millisecond))
			cublas = time.Duration(float64(ms2) * float64(time.Millisecond))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		n := float64(b.N)
		b.ReportMetric(flops*n/stream.Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(flops*n/cublas.Seconds()/1e9, "cublas_GFLOP/s")
		b.ReportMetric(cublas.Seconds()/stream.Seconds(), "x_cublas")
	})
	b.Logf("%v; %s", d.Info(), fmt.Sprintf("h2d %.1f GB/s", h2d/1e9))
}
