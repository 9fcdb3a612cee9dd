package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/quant"
)

// ExactOptions sizes the stores and queries Exact times. Zero fields take
// the defaults of 'goinfluence bench exact'.
type ExactOptions struct {
	Backend linalg.Backend // default linalg.Auto()
	// SingleRows × SingleDim is the store of the one-query and the
	// throughput measurements (default 1,000,000 × 1024).
	SingleRows, SingleDim int
	// BatchRows × BatchDim is the store of the batch measurement, scored
	// with BatchQueries queries (default 200,000 × 4096, 512 queries).
	BatchRows, BatchDim, BatchQueries int
	// Batches are the numbers of queries of the throughput table (default
	// 1, 8, 64, 512).
	Batches []int
	TopK    int // helpful and harmful entries kept per query (default 10)
	Repeats int // timed runs of each measurement, after one untimed (default 3)
	// Dir holds the benchmark's four stores (i8 and f16 of both shapes),
	// reused when they have the shapes; empty: a temporary directory,
	// removed after.
	Dir      string
	Progress io.Writer
}

// ExactResult is the outcome of Exact. Times are the median of the runs;
// Runs fields hold every run.
type ExactResult struct {
	Machine
	Backend string `json:"backend"`
	Kernel  string `json:"kernel"` // the int8 kernel (quant.Default)
	TopK    int    `json:"topk"`

	// One query against the SingleRows × SingleDim i8 store, against a
	// plain sequential pass, on one goroutine, over the same mapped bytes.
	SingleRows    int       `json:"single_rows"`
	SingleDim     int       `json:"single_dim"`
	SingleBytes   int64     `json:"single_grads_bytes"`
	OneQuerySecs  float64   `json:"one_query_seconds"`
	OneQueryRuns  []float64 `json:"one_query_runs"`
	PassSecs      float64   `json:"pass_seconds"` // the faster of the two passes
	WordPassSecs  float64   `json:"word_pass_seconds"`
	WordPassRuns  []float64 `json:"word_pass_runs"`
	VecPassSecs   float64   `json:"vector_pass_seconds"`
	VecPassRuns   []float64 `json:"vector_pass_runs"`
	OneQueryRatio float64   `json:"one_query_ratio"` // one_query_seconds / pass_seconds

	// BatchQueries queries against the BatchRows × BatchDim stores: the i8
	// stream, the int8 kernel on in-memory rows of the same shapes, split
	// between goroutines as the stream splits them, and the f16 stream.
	BatchRows    int       `json:"batch_rows"`
	BatchDim     int       `json:"batch_dim"`
	BatchQueries int       `json:"batch_queries"`
	I8Secs       float64   `json:"i8_stream_seconds"`
	I8Runs       []float64 `json:"i8_stream_runs"`
	I8GOPS       float64   `json:"i8_stream_gops"`
	KernelSecs   float64   `json:"kernel_seconds"`
	KernelRuns   []float64 `json:"kernel_runs"`
	KernelGOPS   float64   `json:"kernel_gops"`
	F16Secs      float64   `json:"f16_stream_seconds"`
	F16Runs      []float64 `json:"f16_stream_runs"`
	F16GFLOPS    float64   `json:"f16_stream_gflops"`
	RatioKernel  float64   `json:"i8_over_kernel"` // i8_stream_gops / kernel_gops
	RatioF16     float64   `json:"i8_over_f16"`    // i8_stream_gops / f16_stream_gflops

	// Throughput holds attributed inferences per second against the
	// SingleRows × SingleDim stores, i8 and f16, per batch size.
	Throughput []ExactThroughput `json:"throughput"`
}

// ExactThroughput is one row of the throughput table.
type ExactThroughput struct {
	Queries   int     `json:"queries"`
	I8Secs    float64 `json:"i8_seconds"`
	F16Secs   float64 `json:"f16_seconds"`
	I8PerSec  float64 `json:"i8_inferences_per_second"`
	F16PerSec float64 `json:"f16_inferences_per_second"`
}

func (o ExactOptions) withDefaults() (ExactOptions, error) {
	if err := setDefaults("bench exact", []intOption{
		{"SingleRows", &o.SingleRows, 1_000_000},
		{"SingleDim", &o.SingleDim, 1024},
		{"BatchRows", &o.BatchRows, 200_000},
		{"BatchDim", &o.BatchDim, 4096},
		{"BatchQueries", &o.BatchQueries, 512},
		{"TopK", &o.TopK, 10},
		{"Repeats", &o.Repeats, 3},
	}); err != nil {
		return o, err
	}
	if o.SingleDim > quant.MaxDim || o.BatchDim > quant.MaxDim {
		return o, fmt.Errorf("bench exact: dimension above %d", quant.MaxDim)
	}
	return o, setBatches("bench exact", "queries", &o.Batches, []int{1, 8, 64, 512})
}

// setBatches sets the batch sizes b to def when nil and refuses a size
// below 1, naming what a batch holds.
func setBatches(bench, what string, b *[]int, def []int) error {
	if *b == nil {
		*b = def
	}
	for _, n := range *b {
		if n < 1 {
			return fmt.Errorf("%s: batch of %d %s", bench, n, what)
		}
	}
	return nil
}

// exactSetup opens the backend (nil: linalg.Auto's choice) and the int8
// kernel of quant.Default that the exact-scoring benchmarks run on.
func exactSetup(bench string, b linalg.Backend) (linalg.Backend, quant.Kernel, error) {
	be, err := linalg.OrAuto(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", bench, err)
	}
	kern, err := quant.Default()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", bench, err)
	}
	return be, kern, nil
}

// Exact times the exact integer scoring of i8 stores (DESIGN §11) against
// yardsticks measured in the same run: one query against a plain pass over
// the same mapped bytes; a batch against the int8 kernel on in-memory rows
// and against the f16 stream of the same shapes; and the attributed
// inferences per second of i8 and f16 stores by batch size. The stores are
// opened without the checks of their checksums, which a store does once.
func Exact(ctx context.Context, opt ExactOptions) (*ExactResult, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	progress := writerOrDiscard(o.Progress)
	be, kern, err := exactSetup("bench exact", o.Backend)
	if err != nil {
		return nil, err
	}
	res := &ExactResult{Machine: ThisMachine(), Backend: be.Name(), Kernel: kern.Name(), TopK: o.TopK,
		SingleRows: o.SingleRows, SingleDim: o.SingleDim, BatchRows: o.BatchRows, BatchDim: o.BatchDim, BatchQueries: o.BatchQueries}
	dir := o.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "goinfluence-bench-exact-")
		if err != nil {
			return nil, fmt.Errorf("bench exact: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	open := func(dt gradients.DType, rows, dim int) (*store.Store, error) {
		return openBenchStore(ctx, dir, dt, rows, dim, progress)
	}
	repeat := func(what string, f func() (float64, error)) (float64, []float64, error) {
		return timeRuns(ctx, progress, what, o.Repeats, f)
	}
	stream := func(s *store.Store, nq int) func() (float64, error) {
		q := linalg.NewDense32(nq, s.Dim(), nil)
		fillUniform(q.Data, rand.New(rand.NewPCG(2, uint64(nq))))
		return func() (float64, error) {
			r, err := influence.StreamScores(ctx, be, q, s, influence.StreamOptions{TopK: o.TopK})
			if err != nil {
				return 0, err
			}
			if r.Rows != s.Count() {
				return 0, fmt.Errorf("bench exact: scored %d rows of %d", r.Rows, s.Count())
			}
			return r.Seconds, nil
		}
	}

	si8, err := open(gradients.I8, o.SingleRows, o.SingleDim)
	if err != nil {
		return nil, err
	}
	defer si8.Close()
	res.SingleBytes = int64(o.SingleRows) * int64(o.SingleDim)
	if res.WordPassSecs, res.WordPassRuns, err = repeat("plain pass over the mapped rows, 64-bit words", func() (float64, error) {
		return mappedPass(si8, false)
	}); err != nil {
		return nil, err
	}
	if res.VecPassSecs, res.VecPassRuns, err = repeat("plain pass over the mapped rows, vector instructions", func() (float64, error) {
		return mappedPass(si8, true)
	}); err != nil {
		return nil, err
	}
	res.PassSecs = min(res.WordPassSecs, res.VecPassSecs)
	if res.OneQuerySecs, res.OneQueryRuns, err = repeat("one query, i8", stream(si8, 1)); err != nil {
		return nil, err
	}
	res.OneQueryRatio = res.OneQuerySecs / res.PassSecs

	sf16, err := open(gradients.F16, o.SingleRows, o.SingleDim)
	if err != nil {
		return nil, err
	}
	defer sf16.Close()
	for _, nq := range o.Batches {
		row := ExactThroughput{Queries: nq}
		if row.I8Secs, _, err = repeat(fmt.Sprintf("%d queries, i8", nq), stream(si8, nq)); err != nil {
			return nil, err
		}
		if row.F16Secs, _, err = repeat(fmt.Sprintf("%d queries, f16", nq), stream(sf16, nq)); err != nil {
			return nil, err
		}
		row.I8PerSec, row.F16PerSec = float64(nq)/row.I8Secs, float64(nq)/row.F16Secs
		res.Throughput = append(res.Throughput, row)
	}

	bi8, err := open(gradients.I8, o.BatchRows, o.BatchDim)
	if err != nil {
		return nil, err
	}
	defer bi8.Close()
	bf16, err := open(gradients.F16, o.BatchRows, o.BatchDim)
	if err != nil {
		return nil, err
	}
	defer bf16.Close()
	ops := 2 * float64(o.BatchQueries) * float64(o.BatchRows) * float64(o.BatchDim)
	fmt.Fprintf(progress, "filling %d × %d int8 rows in memory for the kernel's yardstick\n", o.BatchRows, o.BatchDim)
	yard := kernelYardstick(kern, o.BatchQueries, o.BatchRows, o.BatchDim)
	if res.KernelSecs, res.KernelRuns, err = repeat("int8 kernel, in-memory rows", func() (float64, error) {
		return yard(), nil
	}); err != nil {
		return nil, err
	}
	if res.I8Secs, res.I8Runs, err = repeat(fmt.Sprintf("%d queries, i8 batch store", o.BatchQueries), stream(bi8, o.BatchQueries)); err != nil {
		return nil, err
	}
	if res.F16Secs, res.F16Runs, err = repeat(fmt.Sprintf("%d queries, f16 batch store", o.BatchQueries), stream(bf16, o.BatchQueries)); err != nil {
		return nil, err
	}
	res.KernelGOPS = ops / res.KernelSecs / 1e9
	res.I8GOPS = ops / res.I8Secs / 1e9
	res.F16GFLOPS = ops / res.F16Secs / 1e9
	res.RatioKernel = res.I8GOPS / res.KernelGOPS
	res.RatioF16 = res.I8GOPS / res.F16GFLOPS
	return res, nil
}

// mappedPass reads every stored row of s once, in order, on one goroutine,
// straight from the mapped shards: the least any scoring of one query must
// do. It sums the bytes as 64-bit words, or, with vector, counts their zero
// bytes with bytes.Count, which the runtime runs on vector instructions and
// which reads faster than a loop of 8-byte loads: the stricter yardstick.
func mappedPass(s *store.Store, vector bool) (float64, error) {
	m := s.Manifest()
	start := time.Now()
	var sum uint64
	for _, sh := range m.Shards {
		f, err := safetensors.Open(filepath.Join(s.Dir(), sh.File))
		if err != nil {
			return 0, err
		}
		b := f.Bytes("grads")
		if vector {
			sum += uint64(bytes.Count(b, zero))
			f.Close()
			continue
		}
		words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
		for _, w := range words {
			sum += w
		}
		for _, c := range b[len(words)*8:] {
			sum += uint64(c)
		}
		f.Close()
	}
	secs := time.Since(start).Seconds()
	passSink += sum
	return secs, nil
}

// passSink keeps the pass's sum alive.
var passSink uint64

var zero = []byte{0}

// kernelYardstick returns a function that times the int8 kernel on the
// products of nq queries with rows rows of dimension dim held in memory
// (rows·dim bytes, allocated once), in the stream's chunks
// (influence.ExactChunkRows), each split between GOMAXPROCS goroutines as
// the stream splits it: the rate of a stream that did nothing but the sums
// of the same shapes, with no file, no mapping and no ranking.
func kernelYardstick(kern quant.Kernel, nq, rows, dim int) func() float64 {
	rng := rand.New(rand.NewPCG(4, 0))
	q := randomInt8s(nq*dim, rng)
	data := randomInt8s(rows*dim, rng)
	chunk := min(influence.ExactChunkRows(dim), rows)
	out := make([]int32, nq*chunk)
	return func() float64 {
		start := time.Now()
		for lo := 0; lo < rows; lo += chunk {
			n := min(chunk, rows-lo)
			buf := data[lo*dim : (lo+n)*dim]
			p := max(1, min(runtime.GOMAXPROCS(0), n/64))
			size := (n + p - 1) / p
			linalg.ParallelChunks(p, 1, func(a, b int) {
				for k := a; k < b; k++ {
					r0, r1 := k*size, min((k+1)*size, n)
					if r0 < r1 {
						kern.Gemm(out[r0*nq:r1*nq], q, nq, buf[r0*dim:r1*dim], r1-r0, dim)
					}
				}
			})
		}
		return time.Since(start).Seconds()
	}
}

// randomInt8s returns n values uniform in [−127, 127], eight from each
// draw.
func randomInt8s(n int, rng *rand.Rand) []int8 {
	v := make([]int8, n)
	for i := 0; i < n; i += 8 {
		w := rng.Uint64()
		for j := i; j < min(i+8, n); j++ {
			v[j] = max(int8(w), -127)
			w >>= 8
		}
	}
	return v
}

// openBenchStore returns the store of dt rows × dim in dir, in the
// subdirectory <DTYPE>-<rows>x<dim> (I8-1000000x1024), built there by
// benchStore unless it is there already, opened without the checks of its
// shards' checksums: the stores of 'bench exact' and 'bench attribute',
// which share a --dir.
func openBenchStore(ctx context.Context, dir string, dt gradients.DType, rows, dim int, progress io.Writer) (*store.Store, error) {
	path := filepath.Join(dir, fmt.Sprintf("%s-%dx%d", dt, rows, dim))
	if _, _, err := benchStore(ctx, path, dt, rows, dim, progress); err != nil {
		return nil, err
	}
	return store.OpenWith(path, store.OpenOptions{NoVerify: true})
}

// repeatRuns calls run once untimed (timed false: it warms the page cache
// and the allocator), then n times timed, stopping at the first error or
// when ctx is done; it names the runs on progress as what.
func repeatRuns(ctx context.Context, progress io.Writer, what string, n int, run func(timed bool) error) error {
	fmt.Fprintf(progress, "%s: 1 untimed + %d timed runs\n", what, n)
	for i := range n + 1 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := run(i > 0); err != nil {
			return err
		}
	}
	return nil
}

// timeRuns is repeatRuns of f, which returns the seconds of its run: it
// returns the median of the n timed runs and the runs.
func timeRuns(ctx context.Context, progress io.Writer, what string, n int, f func() (float64, error)) (float64, []float64, error) {
	runs := make([]float64, 0, n)
	err := repeatRuns(ctx, progress, what, n, func(timed bool) error {
		secs, err := f()
		if err == nil && timed {
			runs = append(runs, secs)
		}
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return median(runs), runs, nil
}

// median returns the median of v.
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteTable writes r as 'goinfluence bench exact' prints it.
func (r *ExactResult) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("Exact integer scoring (i8 stores, DESIGN §11): %s kernel, backend %s, %d CPUs, top-%d; median of runs\n", r.Kernel, r.Backend, r.CPUs, r.TopK)
	ew.printf("\none query against %d × %d i8 (%.2f GB of rows):\n", r.SingleRows, r.SingleDim, float64(r.SingleBytes)/1e9)
	ew.printf("  %-44s %8.3f s  %6.2f GB/s  (runs %s)\n", "one query, exact, top-k", r.OneQuerySecs, float64(r.SingleBytes)/r.OneQuerySecs/1e9, fmtSecs(r.OneQueryRuns))
	ew.printf("  %-44s %8.3f s  %6.2f GB/s  (runs %s)\n", "plain pass, same mapped bytes, 64-bit words", r.WordPassSecs, float64(r.SingleBytes)/r.WordPassSecs/1e9, fmtSecs(r.WordPassRuns))
	ew.printf("  %-44s %8.3f s  %6.2f GB/s  (runs %s)\n", "plain pass, same mapped bytes, bytes.Count", r.VecPassSecs, float64(r.SingleBytes)/r.VecPassSecs/1e9, fmtSecs(r.VecPassRuns))
	ew.printf("  ratio one query / faster pass: %.3f\n", r.OneQueryRatio)
	ew.printf("\n%d queries against %d × %d:\n", r.BatchQueries, r.BatchRows, r.BatchDim)
	ew.printf("  %-44s %8.3f s  %7.1f GOP/s  (runs %s)\n", "i8 stream, exact, top-k", r.I8Secs, r.I8GOPS, fmtSecs(r.I8Runs))
	ew.printf("  %-44s %8.3f s  %7.1f GOP/s  (runs %s)\n", "int8 kernel, in-memory rows", r.KernelSecs, r.KernelGOPS, fmtSecs(r.KernelRuns))
	ew.printf("  %-44s %8.3f s  %7.1f GFLOP/s  (runs %s)\n", "f16 stream, float32 Sgemm, top-k", r.F16Secs, r.F16GFLOPS, fmtSecs(r.F16Runs))
	ew.printf("  ratio i8 stream / kernel: %.3f; i8 stream / f16 stream: %.2f\n", r.RatioKernel, r.RatioF16)
	ew.printf("\nattributed inferences per second against %d × %d:\n", r.SingleRows, r.SingleDim)
	ew.printf("  %8s %12s %12s %10s %10s\n", "queries", "i8 s", "f16 s", "i8 inf/s", "f16 inf/s")
	for _, t := range r.Throughput {
		ew.printf("  %8d %12.3f %12.3f %10.1f %10.1f\n", t.Queries, t.I8Secs, t.F16Secs, t.I8PerSec, t.F16PerSec)
	}
	return ew.err
}

// fmtSecs formats times in seconds, to the millisecond.
func fmtSecs(v []float64) string { return fmtFloats(v, 3) }
